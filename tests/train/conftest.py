"""Shared fixtures for the training tests: a tiny synthetic dataset of moving squares."""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

COLOURS = {"red": (230, 40, 40), "green": (40, 200, 60), "blue": (50, 80, 230), "yellow": (230, 220, 40)}
DIRECTIONS = {"right": (1, 0), "left": (-1, 0), "down": (0, 1), "up": (0, -1)}


def square_clip(colour: str, direction: str, frames: int, height: int, width: int, size: int = 12) -> np.ndarray:
    """[F, H, W, 3] uint8: a coloured square crossing a grey background."""
    dx, dy = DIRECTIONS[direction]
    out = np.full((frames, height, width, 3), 90, np.uint8)
    x0, y0 = (width - size) // 2 - dx * width // 4, (height - size) // 2 - dy * height // 4
    for t in range(frames):
        x, y = x0 + dx * 3 * t, y0 + dy * 3 * t
        out[t, max(0, y) : max(0, y + size), max(0, x) : max(0, x + size)] = COLOURS[colour]
    return out


def write_mp4(path: Path, frames: np.ndarray, fps: int = 8) -> None:
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        s.options = {"crf": "10"}
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def make_square_folder(folder: Path, n: int = 8, frames: int = 9, height: int = 64, width: int = 64) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    combos = [(c, d) for c in COLOURS for d in DIRECTIONS][:n]
    for k, (c, d) in enumerate(combos):
        write_mp4(folder / f"clip{k:02d}.mp4", square_clip(c, d, frames, height, width))
        (folder / f"clip{k:02d}.txt").write_text(f"a {c} square moving {d}")
    return folder


@pytest.fixture(scope="session")
def squares(tmp_path_factory) -> Path:
    return make_square_folder(tmp_path_factory.mktemp("squares"))


@pytest.fixture(autouse=True)
def one_thread():
    """These tests run tiny ops, where intra-op threads only contend (the CI machine is shared):
    one thread is 10-20x faster here."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
