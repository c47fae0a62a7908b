"""Stage 1: probe and decode. Opens the input once (PyAV for videos, OpenCV for images) and
decodes frames to the analysis size; the frames are then shared by all later stages. Videos are
decoded in chunks of `chunk_frames` (the pipeline pulls the rest from `clip.decoder`), so memory
stays bounded on long inputs."""

from __future__ import annotations

from dataclasses import dataclass

from videoforge.curate.stage import Clip, Stage
from videoforge.curate.video_io import VideoDecoder, decode_image, resize_max_side


@dataclass
class ProbeOptions:
    analysis_max_side: int = 320  # longer side of the frames every scorer sees (pixels)
    max_frames: int | None = None  # decode at most this many frames per video (None: all)
    chunk_frames: int | None = 3000  # analysis frames held at once (~0.5 GB at 320x180); None: whole video
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
            decoder = VideoDecoder(clip.source, o.analysis_max_side, o.max_frames)
            try:
                clip.frames = decoder.read(o.chunk_frames)
            except Exception:
                decoder.close()
                raise
            if len(clip.frames) == 0:
                decoder.close()
                raise ValueError("no decodable frames")
            clip.fps, clip.codec = decoder.fps, decoder.codec
            clip.source_width, clip.source_height = decoder.width, decoder.height
            clip.end_frame = len(clip.frames) - 1
            if o.chunk_frames is None or len(clip.frames) < o.chunk_frames or decoder.exhausted:
                decoder.close()
            else:
                clip.decoder = decoder
        clip.scale = clip.source_width / clip.frames.shape[2]
        if min(clip.source_width, clip.source_height) < o.min_side:
            clip.drop("probe", f"size {clip.source_width}x{clip.source_height} below min_side {o.min_side}")
        return clip
