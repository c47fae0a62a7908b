"""Blur. Sharpness is the variance of the Laplacian of each analysis frame (computed once per
clip and shared with the start-frame stage); blurred segments are runs of frames below
`min_sharpness`, and clips mostly in blurred segments are dropped."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from videoforge.curate.stage import Clip, Stage


def frame_sharpness(clip: Clip) -> np.ndarray:
    """Variance of the Laplacian per frame [T] (float64), cached on the clip."""
    if "sharpness" not in clip.cache:
        clip.cache["sharpness"] = np.array([cv2.Laplacian(g, cv2.CV_64F).var() for g in clip.gray()])
    return clip.cache["sharpness"]


def blurred_segments(sharpness: np.ndarray, threshold: float, min_len: int = 1) -> list[tuple[int, int]]:
    """Inclusive index runs where sharpness < threshold, at least `min_len` long."""
    low = np.concatenate([[False], sharpness < threshold, [False]])
    edges = np.flatnonzero(low[1:] != low[:-1])
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2]) if b - a >= min_len]


@dataclass
class BlurOptions:
    min_sharpness: float = 30.0  # Laplacian variance at the analysis size below which a frame is blurred
    max_blurred_fraction: float = 0.5  # drop when more of the clip than this is in blurred segments
    min_segment_frames: int = 3  # shorter dips (a frame of motion blur) are not segments


class BlurStage(Stage):
    name = "blur"
    drop_stage = "blur"

    def __init__(self, options: BlurOptions) -> None:
        self.options = options

    def process(self, clip: Clip) -> Clip:
        o = self.options
        s = frame_sharpness(clip)
        segments = blurred_segments(s, o.min_sharpness, 1 if clip.kind == "image" else o.min_segment_frames)
        fraction = sum(b - a + 1 for a, b in segments) / len(s)
        clip.scores["sharpness"] = float(np.median(s))
        clip.scores["blur"] = fraction
        clip.cache["blurred_segments"] = segments
        if fraction > o.max_blurred_fraction:
            clip.drop("blur", f"blurred frames {fraction:.2f} > {o.max_blurred_fraction} "
                              f"(sharpness {clip.scores['sharpness']:.1f}, min {o.min_sharpness})")
        return clip
