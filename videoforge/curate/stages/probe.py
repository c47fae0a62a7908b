"""Stage 1: probe and decode. Opens the input once (PyAV for videos, OpenCV for images) and
decodes every frame to the analysis size; the frames are then shared by all later stages."""

from __future__ import annotations

from dataclasses import dataclass

from videoforge.curate.stage import Clip, Stage
from videoforge.curate.video_io import decode_image, decode_video, resize_max_side


@dataclass
class ProbeOptions:
    analysis_max_side: int = 320  # longer side of the frames every scorer sees (pixels)
    max_frames: int | None = None  # decode at most this many frames per video (None: all)
    min_side: int = 64  # inputs smaller than this (either side) are dropped at probe


class ProbeStage(Stage):
    name = "probe"
    drop_stage = "probe"

    def __init__(self, options: ProbeOptions) -> None:
        self.options = options

    def process(self, clip: Clip) -> Clip:
        o = self.options
        if clip.kind == "image":
            img = decode_image(clip.source)
            clip.source_height, clip.source_width = img.shape[:2]
            clip.frames = resize_max_side(img, o.analysis_max_side)[None]
        else:
            video = decode_video(clip.source, o.analysis_max_side, o.max_frames)
            clip.frames, clip.fps, clip.codec = video.frames, video.fps, video.codec
            clip.source_width, clip.source_height = video.width, video.height
            clip.end_frame = len(video.frames) - 1
        clip.scale = clip.source_width / clip.frames.shape[2]
        if min(clip.source_width, clip.source_height) < o.min_side:
            clip.drop("probe", f"size {clip.source_width}x{clip.source_height} below min_side {o.min_side}")
        return clip
