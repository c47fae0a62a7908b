"""Technical quality and aesthetics. A classical score that needs no weights (contrast, clipped
exposure, compression blockiness) drops clearly degraded clips by default; a quality model slot
(DOVER-style) replaces it when configured, and an aesthetic slot fills `score_aesthetic`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from videoforge.curate.slots import load_slot
from videoforge.curate.stage import Clip, Stage


@dataclass
class QualityOptions:
    frames: int = 8  # evenly spaced frames scored per clip
    min_quality: float = 0.35  # drop below this (score in [0, 1]); null keeps everything
    full_contrast: float = 40.0  # luma standard deviation that counts as full contrast
    block: int = 8  # codec block size in source pixels
    bad_blockiness: float = 4.0  # boundary/interior gradient ratio that scores 0
    model: str | None = None  # quality model slot "module:factory" -> score in [0, 1]
    weights: str | None = None
    aesthetic_model: str | None = None  # aesthetic slot; `score_aesthetic` stays null without one
    aesthetic_weights: str | None = None
    min_aesthetic: float | None = None


def blockiness(gray: np.ndarray, period: int) -> float:
    """Ratio of the strongest block-boundary phase of horizontal and vertical gradients to the
    median phase: ~1 for clean pictures, large for blocky compression. Phase-free, so crops that
    shift the block grid do not matter."""
    g = gray.astype(np.float32)
    ratios = []
    for d in (np.abs(np.diff(g, axis=2)).mean(axis=(0, 1)), np.abs(np.diff(g, axis=1)).mean(axis=(0, 2))):
        n = len(d) // period * period
        if n < 2 * period:
            continue
        phases = d[:n].reshape(-1, period).mean(axis=0)
        ratios.append(float(phases.max() / (np.median(phases) + 1e-3)))
    return max(ratios, default=1.0)


def classical_quality(gray: np.ndarray, scale: float, o: QualityOptions) -> float:
    """The weakest of the contrast, exposure and blockiness sub-scores of a luma stack, in [0, 1]:
    one clearly bad aspect (washed out, blown out, blocky) is enough to call a clip degraded."""
    contrast = min(1.0, float(gray.reshape(len(gray), -1).std(axis=1).mean()) / o.full_contrast)
    clipped = float(((gray <= 4) | (gray >= 251)).mean())
    exposure = 1.0 - min(1.0, clipped / 0.5)
    period = int(round(o.block / scale))
    # Below ~3 analysis pixels per block the grid is smoothed away by the resize: not measurable.
    block = 1.0 if period < 3 else float(np.clip(1 - (blockiness(gray, period) - 1) / (o.bad_blockiness - 1), 0, 1))
    return min(contrast, exposure, block)


class QualityStage(Stage):
    name = "quality"
    drop_stage = "quality"

    def __init__(self, options: QualityOptions) -> None:
        self.options = options
        self.model = self.aesthetic = None

    def setup(self) -> None:
        o = self.options
        self.model = load_slot(o.model, o.weights) if o.model else None
        self.aesthetic = load_slot(o.aesthetic_model, o.aesthetic_weights) if o.aesthetic_model else None

    def process(self, clip: Clip) -> Clip:
        o = self.options
        t = len(clip.frames)
        picks = np.unique(np.linspace(0, t - 1, min(o.frames, t)).round().astype(int))
        if self.model is not None:
            quality = float(self.model(clip.frames[picks]))
        else:
            quality = classical_quality(clip.gray()[picks], clip.scale, o)
        clip.scores["quality"] = quality
        clip.scores["aesthetic"] = float(self.aesthetic(clip.frames[picks])) if self.aesthetic else None
        if o.min_quality is not None and quality < o.min_quality:
            clip.drop("quality", f"quality {quality:.3f} < min_quality {o.min_quality}")
        elif o.min_aesthetic is not None and self.aesthetic is not None and clip.scores["aesthetic"] < o.min_aesthetic:
            clip.drop("quality", f"aesthetic {clip.scores['aesthetic']:.3f} < min_aesthetic {o.min_aesthetic}")
        return clip
