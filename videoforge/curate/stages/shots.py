"""Stage 2: shot splitting. PySceneDetect detectors run on the shared analysis frames; their cuts
are fused (union, merged within a few frames), cuts caused by flashes are vetoed, and the shots
become child clips: too-short ones dropped (`length`), long ones cut to `max_frames` pieces."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from videoforge.curate.stage import Clip, Stage
from videoforge.curate.stages.transnet import TransNetV2Cuts


@dataclass
class ShotOptions:
    # content, adaptive, hash (PySceneDetect); transnetv2 (optional package, see stages/transnet.py)
    detectors: list[str] = field(default_factory=lambda: ["content", "hash"])
    content_threshold: float = 27.0  # PySceneDetect ContentDetector default
    adaptive_threshold: float = 3.0  # Open-Sora's AdaptiveDetector setting
    hash_threshold: float = 0.395  # PySceneDetect HashDetector default
    transnet_threshold: float = 0.3  # TransNetV2 under-fires at its 0.5 default on unusual content
    min_scene_len: int = 8  # frames between two cuts of one detector
    merge_window: int = 2  # cuts of different detectors this close are one cut
    flash_veto: bool = True
    flash_window: int = 4  # compare the frame before a cut with the next this many frames
    flash_similarity: float = 0.8  # correlation above which a "cut" is a flash, not a new shot
    min_frames: int = 16  # shorter shots are dropped (drop_stage `length`)
    max_frames: int = 129  # longer shots are cut into pieces of this length (the largest tier's)


def _detector(name: str, o: ShotOptions):
    from scenedetect.detectors import AdaptiveDetector, ContentDetector, HashDetector

    if name == "content":
        return ContentDetector(threshold=o.content_threshold, min_scene_len=o.min_scene_len)
    if name == "adaptive":
        return AdaptiveDetector(adaptive_threshold=o.adaptive_threshold, min_scene_len=o.min_scene_len)
    if name == "hash":
        return HashDetector(threshold=o.hash_threshold, min_scene_len=o.min_scene_len)
    raise ValueError(f"unknown shot detector {name!r}; expected content, adaptive, hash or transnetv2")


def detect_cuts(frames: np.ndarray, fps: float, o: ShotOptions, transnet: TransNetV2Cuts | None = None) -> list[int]:
    """Frame indices where a new shot starts (0 excluded), fused over `o.detectors`."""
    from scenedetect import FrameTimecode

    # (cut, first, last): the cut and the frames the transition spans, for the flash veto.
    found: list[tuple[int, int, int]] = []
    for name in o.detectors:
        if name == "transnetv2":
            if transnet is None:
                raise ValueError("the transnetv2 detector is not loaded (ShotStage.setup() loads it)")
            found += transnet.transitions(frames)
            continue
        det = _detector(name, o)
        cuts = []
        for i, rgb in enumerate(frames):
            bgr = np.ascontiguousarray(rgb[..., ::-1])
            cuts += [c.frame_num for c in det.process_frame(FrameTimecode(i, float(fps)), bgr)]
        cuts += [c.frame_num for c in det.post_process(FrameTimecode(len(frames) - 1, float(fps)))]
        found += [(c, c, c) for c in cuts]
    fused: list[tuple[int, int, int]] = []
    for cut in sorted(set(found)):
        if 0 < cut[0] < len(frames) and not (fused and cut[0] - fused[-1][0] <= o.merge_window):
            fused.append(cut)
    if o.flash_veto:
        fused = [c for c in fused if not _is_flash(frames, c[1], c[2], o)]
    return [c for c, _, _ in fused]


def _normalised_thumb(rgb: np.ndarray) -> np.ndarray:
    # 16x9: coarse enough that a few frames of motion keep the correlation high.
    g = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (16, 9), interpolation=cv2.INTER_AREA).astype(np.float32)
    g -= g.mean()
    return g / (np.linalg.norm(g) + 1e-6)


def _is_flash(frames: np.ndarray, first: int, last: int, o: ShotOptions) -> bool:
    """A flash leaves the picture as it was: some frame shortly after the transition (frames
    first..last) correlates with the frame before it after brightness normalisation, while a real
    cut or dissolve changes the content."""
    if first < 1:
        return False
    before = _normalised_thumb(frames[first - 1])
    after = range(last + 1, min(len(frames), last + o.flash_window + 1))
    return any(float((before * _normalised_thumb(frames[i])).sum()) > o.flash_similarity for i in after)


def shot_spans(num_frames: int, cuts: list[int], o: ShotOptions) -> list[tuple[int, int]]:
    """Inclusive (start, end) spans of the shots, long ones cut into `max_frames` pieces."""
    bounds = [0, *cuts, num_frames]
    spans = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        for s in range(a, b, o.max_frames):
            spans.append((s, min(b, s + o.max_frames) - 1))
    return spans


class ShotStage(Stage):
    name = "shot"
    drop_stage = "shot"

    def __init__(self, options: ShotOptions) -> None:
        self.options = options
        self.transnet: TransNetV2Cuts | None = None

    def setup(self) -> None:
        if "transnetv2" in self.options.detectors:
            self.transnet = TransNetV2Cuts(self.options.transnet_threshold)

    def process(self, clip: Clip) -> Clip:
        clip.cuts = [] if clip.kind == "image" else detect_cuts(clip.frames, clip.fps, self.options, self.transnet)
        return clip


def split_into_clips(source_clip: Clip, spans: list[tuple[int, int]], offset: int, o: ShotOptions) -> list[Clip]:
    """Child clips of a whole-input record for `spans` of its current frames (which start at
    source frame `offset`), sharing the decoded frames (views, no copies)."""
    if source_clip.kind == "image":
        return [source_clip]
    children = []
    for start, end in spans:
        child = Clip(
            source=source_clip.source, kind="video", start_frame=offset + start, end_frame=offset + end,
            fps=source_clip.fps, source_width=source_clip.source_width, source_height=source_clip.source_height,
            codec=source_clip.codec, frames=source_clip.frames[start:end + 1], scale=source_clip.scale,
        )
        if end - start + 1 < o.min_frames:
            child.drop("length", f"shot of {end - start + 1} frames < min_frames {o.min_frames}")
        children.append(child)
    return children
