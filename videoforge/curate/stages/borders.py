"""Borders: black bars (letterbox / pillarbox) found as edge rows/columns whose brightest pixel
over the whole clip stays dark; the clip is cropped to the content box."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from videoforge.curate.stage import Clip, Stage


@dataclass
class BorderOptions:
    max_luma: int = 24  # a bar row/column never gets brighter than this in any frame
    min_bar: int = 2  # ignore bars thinner than this (analysis pixels)
    min_content_fraction: float = 0.3  # drop when the content box is smaller than this share of the frame


def content_box(gray: np.ndarray, o: BorderOptions) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the non-bar area in a [T, H, W] luma stack (exclusive ends)."""
    peak = gray.max(axis=0)
    rows = np.flatnonzero(peak.max(axis=1) > o.max_luma)
    cols = np.flatnonzero(peak.max(axis=0) > o.max_luma)
    h, w = peak.shape
    if rows.size == 0 or cols.size == 0:  # entirely dark: no content box to speak of
        return 0, 0, 0, 0
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    # Thin dark edges are content (a dark picture edge), not bars.
    y0, x0 = (y0 if y0 >= o.min_bar else 0), (x0 if x0 >= o.min_bar else 0)
    y1, x1 = (y1 if h - y1 >= o.min_bar else h), (x1 if w - x1 >= o.min_bar else w)
    return int(x0), int(y0), int(x1), int(y1)


class BorderStage(Stage):
    name = "border"
    drop_stage = "border"

    def __init__(self, options: BorderOptions) -> None:
        self.options = options

    def process(self, clip: Clip) -> Clip:
        h, w = clip.frames.shape[1:3]
        x0, y0, x1, y1 = content_box(clip.gray(), self.options)
        fraction = (x1 - x0) * (y1 - y0) / (w * h)
        clip.scores["border"] = 1.0 - fraction
        if fraction < self.options.min_content_fraction:
            clip.drop("border", f"content box {fraction:.2f} of the frame < {self.options.min_content_fraction}")
        elif (x0, y0, x1, y1) != (0, 0, w, h):
            clip.set_crop(x0, y0, x1, y1)
        return clip
