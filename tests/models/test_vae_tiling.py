"""The release's tiling rule (official-architecture.md section 6.5), checked on a stub VAE.

The stub records which windows it was asked to encode/decode and returns tiles filled with the
call index, so the stitched output shows where each tile landed and how the seams were blended.
Numerical parity of tiling with diffusers on a real model is in test_vae_parity.py.
"""

from __future__ import annotations

import pytest
import torch

from videoforge.config import VAEConfig
from videoforge.models.vae_tiling import Tiling, tiled_decode, tiled_encode


class StubVAE:
    def __init__(self) -> None:
        self.calls: list[tuple[int, ...]] = []

    def decode_latents(self, z: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(z.shape[2:]))
        b, _, t, h, w = z.shape
        return torch.full((b, 3, 4 * (t - 1) + 1, 8 * h, 8 * w), float(len(self.calls) - 1))

    def encode_moments(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(x.shape[2:]))
        b, _, f, h, w = x.shape
        return torch.full((b, 32, (f - 1) // 4 + 1, h // 8, w // 8), float(len(self.calls) - 1))


def test_release_tile_numbers():
    tiling = Tiling(VAEConfig())
    assert (tiling.latent_size, tiling.latent_stride, tiling.sample_stride) == (32, 24, 192)
    assert (tiling.latent_tsize, tiling.latent_tstride, tiling.sample_tstride) == (16, 12, 48)


def test_temporal_decode_33_latents():
    """33 latents: tiles start at 0, 12, 24 (17, 17, 9 latents) and keep 49 + 48 + 32 = 129 frames."""
    vae = StubVAE()
    out = tiled_decode(vae, torch.zeros(1, 16, 33, 2, 2), Tiling(VAEConfig()))
    assert vae.calls == [(17, 2, 2), (17, 2, 2), (9, 2, 2)]
    assert out.shape == (1, 3, 129, 16, 16)
    frames = out[0, 0, :, 0, 0]
    ramp = torch.arange(16) / 16  # a later tile fades in linearly over E = 16 frames
    torch.testing.assert_close(frames[:49], torch.zeros(49))
    torch.testing.assert_close(frames[49:65], ramp)
    torch.testing.assert_close(frames[65:97], torch.ones(32))
    torch.testing.assert_close(frames[97:113], 1 + ramp)
    torch.testing.assert_close(frames[113:], torch.full((16,), 2.0))


def test_spatial_decode_windows_and_ramp():
    """Latent H = 40 > 32: rows at 0 and 24 (32 and 16 latents); W = 24 fits in one column."""
    vae = StubVAE()
    out = tiled_decode(vae, torch.zeros(1, 16, 1, 40, 24), Tiling(VAEConfig()))
    assert vae.calls == [(1, 32, 24), (1, 16, 24)]
    assert out.shape == (1, 3, 1, 320, 192)
    column = out[0, 0, 0, :, 5]
    torch.testing.assert_close(column[:192], torch.zeros(192))
    torch.testing.assert_close(column[192:256], torch.arange(64) / 64)
    torch.testing.assert_close(column[256:], torch.ones(64))


def test_spatial_decode_corner_blends_already_blended_neighbours():
    """2x2 tiles: the bottom-right tile blends with the above tile as already blended with its left."""
    vae = StubVAE()
    out = tiled_decode(vae, torch.zeros(1, 16, 1, 40, 40), Tiling(VAEConfig()))
    assert len(vae.calls) == 4
    w = torch.arange(64) / 64
    above = 0 * (1 - w) + 1 * w  # tile 1 (top right) after its left blend, over its first 64 columns
    left = 0 * (1 - w) + 2 * w  # tile 2 (bottom left) after its top blend, over its first 64 rows
    # tile 3 at row y < 64, col x < 64: vertical blend with `above`, then horizontal with `left`.
    vert = above[None, :] * (1 - w[:, None]) + 3 * w[:, None]
    want = left[:, None] * (1 - w[None, :]) + vert * w[None, :]
    torch.testing.assert_close(out[0, 0, 0, 192:256, 192:256], want)


def test_temporal_encode_windows_and_moments_blend():
    """F = 129 > 64: frame windows at 0, 48, 96 (65, 65, 33 frames); keep 13 + 12 + 8 = 33 latents."""
    vae = StubVAE()
    out = tiled_encode(vae, torch.zeros(1, 3, 129, 16, 16), Tiling(VAEConfig()))
    assert vae.calls == [(65, 16, 16), (65, 16, 16), (33, 16, 16)]
    assert out.shape == (1, 32, 33, 2, 2)
    latents = out[0, 0, :, 0, 0]
    torch.testing.assert_close(latents[:13], torch.zeros(13))
    torch.testing.assert_close(latents[13:17], torch.arange(4) / 4)
    torch.testing.assert_close(latents[17:25], torch.ones(8))
    torch.testing.assert_close(latents[25:29], 1 + torch.arange(4) / 4)


def test_spatial_encode_windows():
    """W = 320 px > 256: columns at 0 and 192 px; blend 8 latents, keep 24."""
    vae = StubVAE()
    out = tiled_encode(vae, torch.zeros(1, 3, 1, 64, 320), Tiling(VAEConfig()))
    assert vae.calls == [(1, 64, 256), (1, 64, 128)]
    assert out.shape == (1, 32, 1, 8, 40)
    row = out[0, 0, 0, 0]
    torch.testing.assert_close(row[:24], torch.zeros(24))
    torch.testing.assert_close(row[24:32], torch.arange(8) / 8)
    torch.testing.assert_close(row[32:], torch.ones(8))


@pytest.mark.parametrize("shape", [(1, 16, 16, 32, 32), (1, 16, 5, 8, 8)])
def test_no_tiling_below_thresholds(shape):
    vae = StubVAE()
    tiled_decode(vae, torch.zeros(shape), Tiling(VAEConfig()))
    assert vae.calls == [shape[2:]]


def test_tiled_encode_decode_backpropagate():
    """The VAE trainer trains on tiled passes: gradients must flow through the stitching and blends."""
    from videoforge.config import preset
    from videoforge.models.vae import build_vae

    torch.manual_seed(0)
    vae = build_vae(preset("tiny").vae).train()
    vae.enable_tiling(tile_sample_min_size=32, tile_sample_min_tsize=16)
    x = torch.rand(1, 3, 21, 48, 48) * 2 - 1  # 2 temporal x 2x2 spatial tiles both ways
    posterior = vae.encode(x)
    recon = vae.decode(posterior.mean + posterior.std * torch.randn_like(posterior.mean))
    assert recon.shape == x.shape
    ((recon - x).abs().mean() + 1e-6 * posterior.kl().mean()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in vae.parameters())
