"""PyAV and OpenCV I/O for curation: probe + decode once to analysis frames; write clips.

Frame indices count decoded frames from 0 (constant frame rate assumed, as PySceneDetect does);
the writer counts the same way, so spans found on analysis frames cut the same source frames.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av
import cv2
import numpy as np

VIDEO_EXTENSIONS = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv"}
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}


def kind_of(source: str) -> str:
    """`image` for image file extensions, else `video` (URIs and unknown extensions are tried as video)."""
    return "image" if Path(source.split("?")[0]).suffix.lower() in IMAGE_EXTENSIONS else "video"


def analysis_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """Size of the analysis frames: longer side at most `max_side`, aspect kept, even numbers."""
    s = min(1.0, max_side / max(width, height))
    w, h = max(2, int(round(width * s / 2)) * 2), max(2, int(round(height * s / 2)) * 2)
    return w, h


class VideoDecoder:
    """An open video: metadata on construction, then analysis frames in chunks (`read`), each
    resized inside FFmpeg (`max_side=None`: at the source size). Raises `ValueError` with a
    specific reason for inputs that hold no decodable video. Use as a context manager or call
    `close`."""

    def __init__(self, source: str | BinaryIO, max_side: int | None, max_frames: int | None = None) -> None:
        self.container = av.open(source)
        try:
            if not self.container.streams.video:
                raise ValueError("no video stream")
            stream = self.container.streams.video[0]
            stream.thread_type = "AUTO"
            self.width, self.height = stream.codec_context.width, stream.codec_context.height
            if not self.width or not self.height:
                raise ValueError("video stream has no frame size")
            rate = stream.average_rate or stream.guessed_rate
            if not rate:
                raise ValueError("video stream has no frame rate")
        except Exception:
            self.container.close()
            raise
        self.fps, self.codec = float(rate), stream.codec_context.name
        self.size = (self.width, self.height) if max_side is None else analysis_size(self.width, self.height, max_side)
        self.remaining = max_frames
        self._frames = self.container.decode(stream)

    def read(self, n: int | None = None) -> np.ndarray:
        """Up to `n` more frames [k, h, w, 3] (all the rest when None); k == 0 at the end."""
        w, h = self.size
        out = []
        for frame in self._frames:
            out.append(frame.to_ndarray(width=w, height=h, format="rgb24"))
            if self.remaining is not None:
                self.remaining -= 1
                if self.remaining <= 0:
                    break
            if n is not None and len(out) >= n:
                break
        return np.stack(out) if out else np.empty((0, h, w, 3), np.uint8)

    @property
    def exhausted(self) -> bool:
        return self.remaining is not None and self.remaining <= 0

    def close(self) -> None:
        self.container.close()

    def __enter__(self) -> "VideoDecoder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class DecodedVideo:
    frames: np.ndarray  # [T, h, w, 3] uint8 RGB at analysis size
    fps: float
    width: int  # source size
    height: int
    codec: str


def decode_video(source: str | BinaryIO, max_side: int | None, max_frames: int | None = None) -> DecodedVideo:
    """Probe and decode a whole video (or its first `max_frames`) to the analysis size (the
    source size for `max_side=None`)."""
    with VideoDecoder(source, max_side, max_frames) as decoder:
        frames = decoder.read()
    if len(frames) == 0:
        raise ValueError("no decodable frames")
    return DecodedVideo(frames, decoder.fps, decoder.width, decoder.height, decoder.codec)


def decode_image(source: str) -> np.ndarray:
    """Read an image as RGB uint8 [H, W, 3]; `ValueError` when unreadable."""
    data = np.fromfile(source, dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise ValueError("unreadable image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def resize_max_side(img: np.ndarray, max_side: int) -> np.ndarray:
    w, h = analysis_size(img.shape[1], img.shape[0], max_side)
    if (w, h) == (img.shape[1], img.shape[0]):
        return img
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)


@dataclass
class ClipSpec:
    """What to write: source frames [start, end] (inclusive), cropped to `crop`, to `path`."""

    start: int
    end: int
    crop: list[int]  # [x0, y0, x1, y1] source pixels
    path: Path


def write_clips(source: str, specs: list[ClipSpec], crf: int = 18, preset: str = "veryfast") -> None:
    """Write every clip of one source in a single sequential decode pass (H.264 mp4).

    Each clip goes to a temporary name and is renamed when complete, so a killed run never leaves
    a truncated clip under its final name.
    """
    if not specs:
        return
    pending = sorted(specs, key=lambda s: s.start)
    last = max(s.end for s in specs)
    open_: list[tuple[ClipSpec, av.container.OutputContainer, av.VideoStream, Path]] = []
    with av.open(source) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = Fraction(stream.average_rate or stream.guessed_rate).limit_denominator(100000)
        for index, frame in enumerate(container.decode(stream)):
            while pending and pending[0].start == index:
                spec = pending.pop(0)
                tmp = spec.path.with_name(f".{spec.path.name}.tmp")
                out = av.open(str(tmp), "w", format="mp4")
                vs = out.add_stream("libx264", rate=rate)
                vs.width, vs.height = spec.crop[2] - spec.crop[0], spec.crop[3] - spec.crop[1]
                vs.pix_fmt = "yuv420p"
                vs.options = {"crf": str(crf), "preset": preset}
                open_.append((spec, out, vs, tmp))
            if open_:
                rgb = frame.to_ndarray(format="rgb24")
                for spec, out, vs, _ in open_:
                    x0, y0, x1, y1 = spec.crop
                    vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[y0:y1, x0:x1]), format="rgb24")
                    out.mux(vs.encode(vf))
            for item in [o for o in open_ if o[0].end == index]:
                spec, out, vs, tmp = item
                out.mux(vs.encode())
                out.close()
                os.replace(tmp, spec.path)
                open_.remove(item)
            if index >= last:
                break
    for spec, out, _, tmp in open_:  # source ended early: close what we have
        out.close()
        os.replace(tmp, spec.path)


def write_image(img: np.ndarray, crop: list[int] | None, path: Path) -> None:
    if crop:
        img = img[crop[1]:crop[3], crop[0]:crop[2]]
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    if not cv2.imwrite(str(tmp), cv2.cvtColor(img, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write image {path}")
    os.replace(tmp, path)


def jpeg_thumbnail(rgb: np.ndarray, max_side: int = 160) -> bytes:
    img = resize_max_side(rgb, max_side)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])
    return buf.tobytes() if ok else b""
