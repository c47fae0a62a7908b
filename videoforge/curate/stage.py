"""The stage contract: one record type (`Clip`) flowing through small `Stage` objects.

A stage has an options dataclass, `setup()` (load models once, in the worker that will use
them) and `process(clip) -> Clip`. A stage never raises for a bad clip: `run_stage` catches the
exception and records it on the clip (`clip.errors[stage] = reason`), marking the clip failed, so
one broken input never stops a run. Filtering stages call `clip.drop(...)`; the first drop wins,
later stages still add their (cheap) scores so every histogram in the report is complete.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

# The `drop_stage` vocabulary of SCHEMA.md, in pipeline order.
DROP_STAGES = (
    "probe", "shot", "length", "border", "blur", "motion", "ocr", "quality", "watermark", "people", "dedup",
)


def make_clip_id(source: str, start_frame: int, end_frame: int) -> str:
    """Stable id: hash of the source path and the span (the same input always gets the same id)."""
    return hashlib.sha1(f"{source}|{start_frame}|{end_frame}".encode()).hexdigest()[:16]


@dataclass
class Clip:
    """One clip, image or whole input as it moves through the stages.

    Frames are the *analysis* frames (RGB uint8 [T, H, W, 3], longer side at most
    `ProbeOptions.analysis_max_side`), decoded once by the probe stage and shared, as views, by
    every scorer. `crop` is kept in source pixels; `frames` is always already cropped.
    """

    source: str
    kind: str = "video"  # "video" or "image"
    start_frame: int = 0
    end_frame: int = 0
    fps: float | None = None
    source_width: int = 0
    source_height: int = 0
    codec: str | None = None
    status: str = "kept"
    drop_stage: str | None = None
    drop_reason: str | None = None
    crop: list[int] | None = None
    frame_box: list[int] | None = None  # the same crop in analysis pixels of the uncropped frames
    scores: dict[str, float | None] = field(default_factory=dict)
    num_people: int | None = None
    start_frame_sharpest: int | None = None
    errors: dict[str, str] = field(default_factory=dict)
    embedding: np.ndarray | None = None
    thumbnail: bytes | None = None  # small JPEG for the report
    path: str | None = None
    # Not serialised: shared decoded data and per-clip caches of derived arrays.
    frames: np.ndarray | None = field(default=None, repr=False)
    scale: float = 1.0  # source pixels per analysis pixel
    cuts: list[int] | None = None  # set by the shot stage on a whole-input record
    decoder: Any = None  # a whole-input record's open VideoDecoder while more frames remain
    cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def clip_id(self) -> str:
        return make_clip_id(self.source, self.start_frame, self.end_frame)

    @property
    def alive(self) -> bool:
        return self.status == "kept"

    def drop(self, stage: str, reason: str) -> None:
        """Mark the clip dropped by `stage` unless an earlier stage already dropped it."""
        assert stage in DROP_STAGES, stage
        if self.status == "kept":
            self.status, self.drop_stage, self.drop_reason = "dropped", stage, reason

    def fail(self, stage: str, drop_stage: str, reason: str) -> None:
        """Record an error: the clip is `failed`, with the first failing stage's reason."""
        self.errors[stage] = reason
        if self.status != "failed":
            self.status, self.drop_stage, self.drop_reason = "failed", drop_stage, reason

    def gray(self) -> np.ndarray:
        """Luma of the analysis frames [T, H, W] uint8, computed once per clip (shared by scorers)."""
        if "gray" not in self.cache:
            f = self.frames.astype(np.float32)
            self.cache["gray"] = (0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]).round().astype(np.uint8)
        return self.cache["gray"]

    def set_crop(self, x0: int, y0: int, x1: int, y1: int) -> None:
        """Crop to a box given in analysis pixels of the current frames; composes with earlier crops."""
        ox, oy = (self.crop[0], self.crop[1]) if self.crop else (0, 0)
        s = self.scale
        sx0, sy0 = ox + int(round(x0 * s)), oy + int(round(y0 * s))
        sx1, sy1 = ox + int(round(x1 * s)), oy + int(round(y1 * s))
        # Even sizes: H.264 with 4:2:0 chroma needs them.
        sx1 -= (sx1 - sx0) % 2
        sy1 -= (sy1 - sy0) % 2
        self.crop = [sx0, sy0, sx1, sy1]
        fx, fy = (self.frame_box[0], self.frame_box[1]) if self.frame_box else (0, 0)
        self.frame_box = [fx + x0, fy + y0, fx + x1, fy + y1]
        self.frames = self.frames[:, y0:y1, x0:x1]
        self.cache.clear()

    @property
    def out_size(self) -> tuple[int, int]:
        """(width, height) of the clip as written."""
        if self.crop:
            return self.crop[2] - self.crop[0], self.crop[3] - self.crop[1]
        w, h = self.source_width, self.source_height
        return (w - w % 2, h - h % 2) if self.kind == "video" else (w, h)


class Stage(ABC):
    """Base class of a curation stage. Subclasses set `name` (used in progress bars and
    `clip.errors`) and `drop_stage` (the SCHEMA.md name recorded when it drops or fails a clip),
    take their options dataclass in `__init__`, and implement `process`."""

    name: ClassVar[str]
    drop_stage: ClassVar[str]
    # Expensive stages skip clips an earlier stage already dropped.
    skip_dropped: ClassVar[bool] = False

    def setup(self) -> None:
        """Load models; called once per worker before the first `process`."""

    @abstractmethod
    def process(self, clip: Clip) -> Clip:
        """Score and/or filter one clip, returning it (the same object, updated)."""


def applies(stage: Stage, clip: Clip) -> bool:
    """Whether `run_stage` will run the stage on this clip (failed clips and, for expensive
    stages, dropped ones are passed through)."""
    return clip.status != "failed" and (clip.alive or not stage.skip_dropped)


def run_stage(stage: Stage, clip: Clip) -> Clip:
    """Run one stage on one clip; exceptions become `clip.errors[stage.name]` and status failed."""
    if not applies(stage, clip):
        return clip
    try:
        return stage.process(clip)
    except Exception as e:  # noqa: BLE001 - a stage failure is data, never fatal to the run
        clip.fail(stage.name, stage.drop_stage, f"{stage.name} failed: {type(e).__name__}: {e}")
        return clip
