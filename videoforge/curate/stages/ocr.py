"""Text: RapidOCR (its wheel ships PP-OCR ONNX models, so it runs offline) on a few frames per
clip. Boxes confined to the bottom band are subtitles and are cropped away; the rest give the
text-area ratio, and clips with too much text are dropped."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from videoforge.curate.stage import Clip, Stage


@dataclass
class OCROptions:
    enabled: bool = True
    frames: int = 3  # evenly spaced frames read per clip (Data-Juicer and NeMo use 3)
    det_side: int = 320  # longer side the text detector sees
    min_score: float = 0.8  # recognition confidence below which a box is noise
    min_chars: int = 2  # single glyphs on textures are noise
    max_text_area: float = 0.05  # drop when text covers more of the frame than this
    subtitle_band: float = 0.2  # boxes entirely in this bottom share of the frame are subtitles
    crop_subtitles: bool = True
    threads: int = 1  # onnxruntime intra-op threads per worker


def text_boxes(engine, rgb: np.ndarray, o: OCROptions) -> list[np.ndarray]:
    """Text boxes [4, 2] (x, y) that pass the score and length filters."""
    result = engine(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if result.boxes is None:
        return []
    return [np.asarray(b, np.float32) for b, t, s in zip(result.boxes, result.txts, result.scores)
            if s >= o.min_score and len(t.strip()) >= o.min_chars]


def area_ratio(boxes: list[np.ndarray], h: int, w: int) -> float:
    """Share of an h x w frame covered by the union of the boxes."""
    mask = np.zeros((h, w), np.uint8)
    for b in boxes:
        cv2.fillPoly(mask, [b.round().astype(np.int32)], 1)
    return float(mask.mean())


class OCRStage(Stage):
    name = "ocr"
    drop_stage = "ocr"
    skip_dropped = True

    def __init__(self, options: OCROptions) -> None:
        self.options = options
        self.engine = None

    def setup(self) -> None:
        if not self.options.enabled:
            return
        from rapidocr import RapidOCR

        self.engine = RapidOCR(params={
            "Global.log_level": "error", "Global.use_cls": False,
            "Det.limit_type": "max", "Det.limit_side_len": self.options.det_side,
            "EngineConfig.onnxruntime.intra_op_num_threads": self.options.threads,
        })

    def process(self, clip: Clip) -> Clip:
        o = self.options
        if self.engine is None:
            return clip
        t, h, w = clip.frames.shape[:3]
        picks = np.unique(np.linspace(0, t - 1, min(o.frames, t)).round().astype(int))
        per_frame = [text_boxes(self.engine, clip.frames[i], o) for i in picks]
        band_top = h * (1.0 - o.subtitle_band)
        subtitles = [b for boxes in per_frame for b in boxes if b[:, 1].min() >= band_top]
        if subtitles and o.crop_subtitles:
            clip.set_crop(0, 0, w, max(2, int(min(b[:, 1].min() for b in subtitles)) - 2))
        cropped = bool(subtitles) and o.crop_subtitles
        ratio = max(area_ratio([b for b in boxes if not (cropped and b[:, 1].min() >= band_top)], h, w)
                    for boxes in per_frame)
        clip.scores["text_area"] = ratio
        if ratio > o.max_text_area:
            clip.drop("ocr", f"text area {ratio:.3f} > max_text_area {o.max_text_area}")
        return clip
