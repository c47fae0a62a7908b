"""Parity of our CausalVAE with diffusers' AutoencoderKLHunyuanVideo (test oracle only).

Both are built tiny with every parameter randomised (norm weights and biases included, so a
swapped or misplaced weight cannot pass), our model loads diffusers' state dict unchanged
(strict, same keys), and encode / decode / tiled encode / tiled decode must agree to 1e-4.
"""

from __future__ import annotations

import pytest
import torch

from videoforge.config import VAEConfig
from videoforge.models.vae import CausalVAE, build_vae

diffusers = pytest.importorskip("diffusers")
pytestmark = pytest.mark.parity

ATOL = 1e-4
# Small enough for tiles to happen on small inputs, and seamless (kept part = stride) at f = 0.25.
TILE, TILE_T, OVERLAP = 32, 16, 0.25


def tiny_config() -> VAEConfig:
    return VAEConfig(block_out_channels=(8, 16, 32, 32), layers_per_block=1, norm_num_groups=4)


def randomise_(model: torch.nn.Module, seed: int) -> None:
    """Give every parameter a random value of a sensible scale (weights ~ 1/sqrt(fan_in))."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if p.ndim > 1:
                p.copy_(noise / p[0].numel() ** 0.5)
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * noise)
            else:
                p.copy_(0.2 * noise)


@pytest.fixture(scope="module")
def pair() -> tuple[CausalVAE, torch.nn.Module]:
    cfg = tiny_config()
    ref = diffusers.AutoencoderKLHunyuanVideo(
        block_out_channels=cfg.block_out_channels,
        layers_per_block=cfg.layers_per_block,
        norm_num_groups=cfg.norm_num_groups,
        latent_channels=cfg.latent_channels,
    ).eval()
    randomise_(ref, seed=0)
    ours = build_vae(cfg).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ours, ref


def reference_untiled(ref: torch.nn.Module) -> None:
    ref.disable_tiling()
    ref.use_framewise_encoding = False
    ref.use_framewise_decoding = False


def reference_tiled(ref: torch.nn.Module) -> None:
    stride, stride_t = TILE - int(TILE * OVERLAP), TILE_T - int(TILE_T * OVERLAP)
    ref.enable_tiling(
        tile_sample_min_height=TILE,
        tile_sample_min_width=TILE,
        tile_sample_min_num_frames=TILE_T,
        tile_sample_stride_height=stride,
        tile_sample_stride_width=stride,
        tile_sample_stride_num_frames=stride_t,
    )
    ref.use_framewise_encoding = True
    ref.use_framewise_decoding = True


def video(frames: int, size: int, seed: int) -> torch.Tensor:
    return torch.rand(1, 3, frames, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_state_dict_keys_equal_diffusers(pair):
    ours, ref = pair
    theirs = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == theirs


@torch.no_grad()
def test_encode_matches(pair):
    ours, ref = pair
    reference_untiled(ref)
    ours.disable_tiling()
    x = video(9, 32, seed=1)
    want = ref.encode(x).latent_dist
    got = ours.encode(x)
    assert got.mean.shape == (1, 16, 3, 4, 4)
    torch.testing.assert_close(got.mean, want.mean, atol=ATOL, rtol=0)
    torch.testing.assert_close(got.logvar, want.logvar, atol=ATOL, rtol=0)
    torch.testing.assert_close(got.std, want.std, atol=ATOL, rtol=0)


@torch.no_grad()
def test_decode_matches(pair):
    ours, ref = pair
    reference_untiled(ref)
    ours.disable_tiling()
    z = torch.randn(1, 16, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    want = ref.decode(z).sample
    got = ours.decode(z)
    assert got.shape == (1, 3, 9, 32, 32)
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)


@torch.no_grad()
def test_tiled_encode_matches(pair):
    ours, ref = pair
    reference_tiled(ref)
    ours.enable_tiling(TILE, TILE_T, OVERLAP)
    try:
        x = video(21, 48, seed=3)  # 2 temporal tiles x 2x2 spatial tiles
        want = ref.encode(x).latent_dist
        got = ours.encode(x)
    finally:
        ours.disable_tiling()
    assert got.mean.shape == (1, 16, 6, 6, 6)
    torch.testing.assert_close(got.mean, want.mean, atol=ATOL, rtol=0)
    torch.testing.assert_close(got.logvar, want.logvar, atol=ATOL, rtol=0)
    # Tiling changes the result (it is not a no-op on this input).
    untiled = ours.encode(x).mean
    assert (untiled - got.mean).abs().max() > 1e-3


@torch.no_grad()
def test_tiled_decode_matches(pair):
    ours, ref = pair
    reference_tiled(ref)
    ours.enable_tiling(TILE, TILE_T, OVERLAP)
    try:
        z = torch.randn(1, 16, 6, 6, 6, generator=torch.Generator().manual_seed(4))  # 2 temporal x 2x2 spatial tiles
        want = ref.decode(z).sample
        got = ours.decode(z)
    finally:
        ours.disable_tiling()
    assert got.shape == (1, 3, 21, 48, 48)
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
    untiled = ours.decode(z)
    assert (untiled - got).abs().max() > 1e-3


@torch.no_grad()
def test_image_round_trip_matches(pair):
    """A 1-frame video (an image): one latent frame, decoded back to one frame."""
    ours, ref = pair
    reference_untiled(ref)
    x = video(1, 16, seed=5)
    got = ours.encode(x).mode()
    assert got.shape == (1, 16, 1, 2, 2)
    torch.testing.assert_close(got, ref.encode(x).latent_dist.mode(), atol=ATOL, rtol=0)
    torch.testing.assert_close(ours.decode(got), ref.decode(got).sample, atol=ATOL, rtol=0)
