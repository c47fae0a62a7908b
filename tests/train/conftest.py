"""Shared fixtures for the training tests: a tiny synthetic dataset of moving squares."""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from videoforge.train.cache import write_cache
from videoforge.train.datasets import load_items
from videoforge.train.recipe import recipe_from_dict
from videoforge.train.sources import build_text_encoder, build_vae

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


# The real architecture, shrunk until a step takes milliseconds.
TEST_DIT = {"hidden_size": 64, "heads_num": 2, "mm_double_blocks_depth": 1, "mm_single_blocks_depth": 1,
            "mlp_width_ratio": 2.0, "rope_dim_list": [8, 12, 12], "refiner_depth": 1}


def tiny_recipe_dict(steps: int, **run) -> dict:
    return {
        "model": {"preset": "tiny", "dit": TEST_DIT, "text_max_length": 8},
        "optim": {"warmup_steps": 5, "ema_decay": 0.9, "grad_clip": 1.0},
        "run": {"seed": 3, "checkpoint_every": 0, **run},
        "data": {"caption_dropout": 0.1},
        "stages": [{"name": "s", "anchors": [32], "frames": [9], "token_budget": 96, "lr": 2e-3, "steps": steps}],
    }


@pytest.fixture(scope="session")
def cache(squares, tmp_path_factory) -> Path:
    r = recipe_from_dict(tiny_recipe_dict(1))
    out = tmp_path_factory.mktemp("cache")
    device = torch.device("cpu")
    write_cache(load_items(squares), r.stages, build_vae(r, device), build_text_encoder(r, device), out,
                text_encoder_name="minilm", seed=0, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_recipe():
    """recipe(steps, **run) -> the tiny test recipe as a dict."""
    return tiny_recipe_dict


@pytest.fixture(autouse=True)
def one_thread():
    """These tests run tiny ops, where intra-op threads only contend (the CI machine is shared):
    one thread is 10-20x faster here."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
