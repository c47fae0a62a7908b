"""Motion: DIS optical flow (OpenCV) on downscaled luma pairs. The score is the median over
sampled pairs of the 90th-percentile flow speed, in pixels per frame at `size` pixels on the
longer side: a high percentile sees a few small movers that a global mean misses."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from videoforge.curate.stage import Clip, Stage


@dataclass
class MotionOptions:
    size: int = 256  # longer side of the frames the flow runs on
    step: int = 2  # frames between the two images of a pair
    max_pairs: int = 16  # evenly spaced pairs per clip
    percentile: float = 90.0
    min_motion: float = 0.3  # px/frame: slower clips are static and dropped
    max_motion: float = 24.0  # px/frame: faster clips are flagged (tiers may exclude them)


def flow_speed(gray: np.ndarray, o: MotionOptions) -> float:
    """Motion score of a [T, H, W] luma stack (see module docstring); 0 for < 2 frames."""
    t, h, w = gray.shape
    step = min(o.step, t - 1)
    if step < 1:
        return 0.0
    s = min(1.0, o.size / max(h, w))
    size = (max(8, int(w * s)), max(8, int(h * s)))
    starts = np.unique(np.linspace(0, t - 1 - step, min(o.max_pairs, t - step)).round().astype(int))
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
    speeds = []
    for i in starts:
        a = cv2.resize(gray[i], size, interpolation=cv2.INTER_AREA)
        b = cv2.resize(gray[i + step], size, interpolation=cv2.INTER_AREA)
        flow = dis.calc(a, b, None)
        speeds.append(np.percentile(np.hypot(flow[..., 0], flow[..., 1]), o.percentile) / step)
    return float(np.median(speeds))


class MotionStage(Stage):
    name = "motion"
    drop_stage = "motion"

    def __init__(self, options: MotionOptions) -> None:
        self.options = options

    def process(self, clip: Clip) -> Clip:
        if clip.kind == "image":
            return clip
        o = self.options
        speed = flow_speed(clip.gray(), o)
        clip.scores["motion"] = speed
        clip.scores["fast_motion"] = float(speed > o.max_motion)  # a flag: kept, tiers may exclude
        if speed < o.min_motion:
            clip.drop("motion", f"motion {speed:.3f} px/frame < min_motion {o.min_motion}")
        return clip
