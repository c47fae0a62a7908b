"""Start frame: a clip starts at the sharpest frame (variance of the Laplacian, shared with the
blur stage) of its first part, so the first frame a model sees (and I2V conditions on) is crisp."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from videoforge.curate.stage import Clip, Stage
from videoforge.curate.stages.blur import frame_sharpness


@dataclass
class StartFrameOptions:
    search_fraction: float = 0.1  # look for the sharpest frame in this first share of the clip
    max_search_frames: int = 24


class StartFrameStage(Stage):
    name = "start_frame"
    drop_stage = "blur"

    def __init__(self, options: StartFrameOptions) -> None:
        self.options = options

    def process(self, clip: Clip) -> Clip:
        s = frame_sharpness(clip)
        n = max(1, min(self.options.max_search_frames, int(len(s) * self.options.search_fraction)))
        clip.start_frame_sharpest = clip.start_frame + int(np.argmax(s[:n]))
        return clip
