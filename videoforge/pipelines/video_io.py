"""Videos in and out with PyAV: H.264 mp4 (yuv420p, what every player reads), PNG frames, GIF preview.

Frames are uint8 numpy arrays [T, H, W, 3] in RGB order throughout.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np
import torch

from videoforge.curate.video_io import decode_video


def to_uint8_frames(video: torch.Tensor) -> np.ndarray:
    """A decoded video [3, T, H, W] in [-1, 1] -> uint8 frames [T, H, W, 3] (the release's (x/2+0.5) clamp)."""
    if video.ndim != 4 or video.shape[0] != 3:
        raise ValueError(f"expected a video [3, T, H, W], got shape {tuple(video.shape)}")
    x = (video.float() / 2 + 0.5).clamp(0, 1)
    return (x * 255).round().to(torch.uint8).permute(1, 2, 3, 0).cpu().numpy()


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames [T, H, W, 3], got {frames.dtype} {frames.shape}")
    if frames.shape[0] == 0:
        raise ValueError("no frames to write")
    return frames


def _encode_all(container: "av.container.OutputContainer", stream: "av.video.stream.VideoStream", frames: np.ndarray) -> None:
    for frame in frames:
        for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():  # flush the encoder's delayed frames
        container.mux(packet)


def write_mp4(frames: np.ndarray, path: str | Path | BinaryIO, fps: float = 24, crf: int = 17,
              preset: str | None = None) -> Path | BinaryIO:
    """Write H.264 (libx264, yuv420p) mp4 to a path (parent folders made) or a binary file object,
    e.g. `io.BytesIO`. yuv420p needs even sizes; odd ones are refused, not cropped. `preset` is
    libx264's speed/size trade-off (None: its default, "medium")."""
    frames = _check_frames(frames)
    t, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise ValueError(f"H.264 yuv420p needs an even frame size, got {h}x{w}")
    if isinstance(path, (str, Path)):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
    target = str(path) if isinstance(path, Path) else path  # PyAV opens a str path or a file object
    with av.open(target, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": str(crf)} | ({"preset": preset} if preset else {})
        _encode_all(container, stream, frames)
    return path


def write_gif(frames: np.ndarray, path: str | Path, fps: float = 24) -> Path:
    """An animated GIF preview (palette-reduced; for looking at, not for measuring)."""
    frames = _check_frames(frames)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w", format="gif") as container:
        stream = container.add_stream("gif", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "rgb8"
        _encode_all(container, stream, frames)
    return path


def write_png_frames(frames: np.ndarray, folder: str | Path) -> list[Path]:
    """One lossless PNG per frame: folder/00000.png, ..."""
    import cv2

    frames = _check_frames(frames)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, frame in enumerate(frames):
        p = folder / f"{i:05d}.png"
        if not cv2.imwrite(str(p), frame[..., ::-1]):  # OpenCV writes BGR
            raise OSError(f"could not write {p}")
        paths.append(p)
    return paths


def read_video(path: str | Path, max_frames: int | None = None) -> tuple[np.ndarray, float]:
    """Decode a video file -> (uint8 frames [T, H, W, 3] RGB at the source size, fps)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no video at {path}")
    try:
        video = decode_video(str(path), max_side=None, max_frames=max_frames)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    return video.frames, video.fps
