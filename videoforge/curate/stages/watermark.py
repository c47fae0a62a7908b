"""Watermarks and logos. A detector slot when configured; otherwise the classical fallback: a
logo is the set of edges that stay put while the content moves (Canny edges present in most
sampled frames). Only meaningful on moving clips: on a still shot every edge persists.
Flagged (`score_watermark` = area share of the persistent-edge box) and kept by default."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from videoforge.curate.slots import load_slot
from videoforge.curate.stage import Clip, Stage


@dataclass
class WatermarkOptions:
    frames: int = 16  # evenly spaced frames sampled for edge persistence
    persistence: float = 0.8  # share of sampled frames an edge pixel must be present in
    min_pixels: int = 12  # smaller persistent-edge blobs are ignored
    min_motion: float = 0.3  # px/frame: slower clips are not tested (everything persists)
    max_watermark: float | None = None  # drop above this score; null flags only
    model: str | None = None  # detector slot "module:factory" -> score in [0, 1]
    weights: str | None = None


def persistent_edge_box(gray: np.ndarray, o: WatermarkOptions) -> tuple[int, int, int, int] | None:
    """Bounding box (x0, y0, x1, y1) of the largest blob of persistent edges, or None."""
    t = len(gray)
    picks = np.unique(np.linspace(0, t - 1, min(o.frames, t)).round().astype(int))
    edges = np.mean([cv2.Canny(gray[i], 100, 200) > 0 for i in picks], axis=0)
    mask = (edges >= o.persistence).astype(np.uint8)
    if mask.sum() < o.min_pixels:
        return None
    mask = cv2.dilate(mask, np.ones((5, 5), np.uint8))
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask)
    if n < 2:
        return None
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, w, h = stats[best, :4]
    return int(x), int(y), int(x + w), int(y + h)


class WatermarkStage(Stage):
    name = "watermark"
    drop_stage = "watermark"
    skip_dropped = True

    def __init__(self, options: WatermarkOptions) -> None:
        self.options = options
        self.model = None

    def setup(self) -> None:
        self.model = load_slot(self.options.model, self.options.weights) if self.options.model else None

    def process(self, clip: Clip) -> Clip:
        o = self.options
        if self.model is not None:
            score = float(self.model(clip.frames))
        elif clip.kind == "image" or (clip.scores.get("motion") or 0.0) < o.min_motion:
            return clip  # the persistence test cannot tell a logo from a still picture
        else:
            box = persistent_edge_box(clip.gray(), o)
            h, w = clip.frames.shape[1:3]
            score = 0.0 if box is None else (box[2] - box[0]) * (box[3] - box[1]) / (w * h)
        clip.scores["watermark"] = score
        if o.max_watermark is not None and score > o.max_watermark:
            clip.drop("watermark", f"watermark score {score:.3f} > max_watermark {o.max_watermark}")
        return clip
