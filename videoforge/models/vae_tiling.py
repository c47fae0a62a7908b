"""Tiled encode/decode for the causal VAE, with the release's tiling rule.

For a sample tile size S (pixels), a temporal tile size S_t (frames) and an overlap factor f:

| | tile | stride | blend width E | kept per tile |
|---|---|---|---|---|
| decode, space | S/8 latents | int(S/8 (1-f)) latents | int(S f) px | S - E px |
| decode, time  | S_t/4 + 1 latents | int(S_t/4 (1-f)) latents | int(S_t f) frames | S_t - E frames (+1 in the first tile) |
| encode, space | S px | int(S (1-f)) px | int(S/8 f) latents | S/8 - E latents |
| encode, time  | S_t + 1 frames | int(S_t (1-f)) frames | int(S_t/4 f) latents | S_t/4 - E latents (+1 in the first tile) |

Every temporal tile after the first drops its first output frame (it re-encodes/decodes from a
replicated "first frame"), then blends. Blends are linear ramps over E (previous tile fading
out, current fading in), top/left before the current tile in space; encode blends the moments
(mean and logvar). Time is tiled first and each temporal tile is tiled in space if it is large.
Tiling applies only where needed: decode in time when latent T > S_t/4, in space when latent H
or W > S/8; encode in time when F > S_t, in space when H or W > S.

Peak memory: tiles stream into a preallocated output; only the E-wide edges that a later tile
blends with are kept, so memory is the output plus one tile's activations plus those edges.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from videoforge.config import VAEConfig


@dataclass(frozen=True)
class Tiling:
    """Tile sizes in both spaces, derived from (S, S_t, f) and the VAE's compression ratios."""

    config: VAEConfig
    sample_size: int = 256
    sample_tsize: int = 64
    overlap: float = 0.25

    def __post_init__(self) -> None:
        s, t, f = self.config.spatial_compression_ratio, self.config.time_compression_ratio, self.overlap
        if not 0.0 <= f < 1.0:
            raise ValueError(f"tile_overlap_factor must be in [0, 1), got {f}")
        if self.sample_size < s or self.sample_size % s:
            raise ValueError(f"tile_sample_min_size must be a positive multiple of {s}, got {self.sample_size}")
        if self.sample_tsize < t or self.sample_tsize % t:
            raise ValueError(f"tile_sample_min_tsize must be a positive multiple of {t}, got {self.sample_tsize}")
        # The release's formulas only tile seamlessly when the kept part of a tile equals its
        # stride; other (S, f) pairs would leave gaps or overlaps, so refuse them.
        for what, size, ratio in (("tile_sample_min_size", self.sample_size, s), ("tile_sample_min_tsize", self.sample_tsize, t)):
            latent = size // ratio
            if (size - int(size * f)) != int(latent * (1 - f)) * ratio or (latent - int(latent * f)) * ratio != int(size * (1 - f)):
                raise ValueError(
                    f"{what}={size} with tile_overlap_factor={f} does not tile seamlessly: the kept part of a tile must "
                    f"equal its stride in both pixel and latent units (e.g. use a multiple of {4 * ratio} with f=0.25)"
                )

    # Spatial, in latents (L) and pixels (px).
    @property
    def latent_size(self) -> int:
        return self.sample_size // self.config.spatial_compression_ratio

    @property
    def latent_stride(self) -> int:
        return int(self.latent_size * (1 - self.overlap))

    @property
    def sample_stride(self) -> int:
        return int(self.sample_size * (1 - self.overlap))

    # Temporal, in latent frames and pixel frames.
    @property
    def latent_tsize(self) -> int:
        return self.sample_tsize // self.config.time_compression_ratio

    @property
    def latent_tstride(self) -> int:
        return int(self.latent_tsize * (1 - self.overlap))

    @property
    def sample_tstride(self) -> int:
        return int(self.sample_tsize * (1 - self.overlap))


def tiled_encode(vae: torch.nn.Module, video: torch.Tensor, tiling: Tiling) -> torch.Tensor:
    """video [B, 3, F, H, W] -> moments [B, 2*latent, (F-1)/4+1, H/8, W/8], encoding tile by tile."""
    s, t = tiling.config.spatial_compression_ratio, tiling.config.time_compression_ratio
    ls, lt = tiling.latent_size, tiling.latent_tsize

    def encode_space(x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] <= tiling.sample_size and x.shape[-1] <= tiling.sample_size:
            return vae.encode_moments(x)
        blend = int(ls * tiling.overlap)
        out_hw = (x.shape[-2] // s, x.shape[-1] // s)
        return _tile_space(vae.encode_moments, x, tiling.sample_size, tiling.sample_stride, blend, ls - blend, out_hw)

    if video.shape[2] <= tiling.sample_tsize:
        return encode_space(video)
    blend = int(lt * tiling.overlap)
    out_frames = (video.shape[2] - 1) // t + 1
    return _tile_time(encode_space, video, tiling.sample_tsize + 1, tiling.sample_tstride, blend, lt - blend, out_frames)


def tiled_decode(vae: torch.nn.Module, latents: torch.Tensor, tiling: Tiling) -> torch.Tensor:
    """latents [B, latent, T, h, w] -> video [B, 3, 4(T-1)+1, 8h, 8w], decoding tile by tile."""
    s, t = tiling.config.spatial_compression_ratio, tiling.config.time_compression_ratio
    ls, lt = tiling.latent_size, tiling.latent_tsize

    def decode_space(z: torch.Tensor) -> torch.Tensor:
        if z.shape[-2] <= ls and z.shape[-1] <= ls:
            return vae.decode_latents(z)
        blend = int(tiling.sample_size * tiling.overlap)
        out_hw = (z.shape[-2] * s, z.shape[-1] * s)
        return _tile_space(vae.decode_latents, z, ls, tiling.latent_stride, blend, tiling.sample_size - blend, out_hw)

    if latents.shape[2] <= lt:
        return decode_space(latents)
    blend = int(tiling.sample_tsize * tiling.overlap)
    out_frames = (latents.shape[2] - 1) * t + 1
    return _tile_time(decode_space, latents, lt + 1, tiling.latent_tstride, blend, tiling.sample_tsize - blend, out_frames)


def _tile_space(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    tile: int,
    stride: int,
    blend: int,
    keep: int,
    out_hw: tuple[int, int],
) -> torch.Tensor:
    """Apply `fn` to overlapping (tile x tile) windows of x's last two dims and stitch the outputs.

    `tile`, `stride` are in input units; `blend`, `keep` in output units, with keep = stride * scale
    so tile (i, j) lands at output offset (i, j) * scale.
    """
    height, width = x.shape[-2:]
    out = None
    above: list[torch.Tensor] = []  # bottom `blend` rows of each tile in the previous row, already blended
    for row, i in enumerate(range(0, height, stride)):
        below: list[torch.Tensor] = []
        left = None  # right `blend` columns of the previous tile in this row, already blended
        for col, j in enumerate(range(0, width, stride)):
            y = fn(x[..., i : i + tile, j : j + tile])
            if out is None:
                out = y.new_empty(*y.shape[:-2], *out_hw)
            if row > 0:
                _blend_(above[col], y, blend, dim=-2)
            if left is not None:
                _blend_(left, y, blend, dim=-1)
            top, lft = row * keep, col * keep
            kept = y[..., : min(keep, out_hw[0] - top), : min(keep, out_hw[1] - lft)]
            out[..., top : top + kept.shape[-2], lft : lft + kept.shape[-1]] = kept
            below.append(y[..., -blend:, :].clone() if blend else y[..., :0, :])
            left = y[..., -blend:].clone() if blend else None
        above = below
    return out


def _tile_time(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    tile: int,
    stride: int,
    blend: int,
    keep: int,
    out_frames: int,
) -> torch.Tensor:
    """Apply `fn` to overlapping windows of `tile` frames of x (dim 2) and stitch the outputs.

    Tiles after the first drop their first output frame (computed from a replicated "first frame"),
    then blend with the previous tile; the first tile keeps keep + 1 frames, later ones keep `keep`.
    """
    out = None
    prev = None  # last `blend` frames of the previous tile, already blended
    pos = 0
    for i in range(0, x.shape[2], stride):
        y = fn(x[:, :, i : i + tile])
        if out is None:
            out = y.new_empty(*y.shape[:2], out_frames, *y.shape[3:])
        if i > 0:
            y = y[:, :, 1:]
        if prev is not None:
            _blend_(prev, y, blend, dim=2)
        kept = y[:, :, : min(keep + (i == 0), out_frames - pos)]
        out[:, :, pos : pos + kept.shape[2]] = kept
        pos += kept.shape[2]
        prev = y[:, :, -blend:].clone() if blend else None
    return out


def _blend_(prev: torch.Tensor, cur: torch.Tensor, extent: int, dim: int) -> None:
    """In place: cur's first E slices along `dim` = linear ramp from prev's last E slices to cur.

    cur[k] = prev[-E + k] * (1 - k/E) + cur[k] * (k/E) for k < E, with E = min(extent, both sizes).
    """
    extent = min(extent, prev.shape[dim], cur.shape[dim])
    if extent == 0:
        return
    ramp = torch.arange(extent, dtype=torch.float64) / extent  # ramp weights computed in double, as python floats would be
    shape = [1] * cur.ndim
    shape[dim] = extent
    w_cur = ramp.to(cur.dtype).to(cur.device).view(shape)
    w_prev = (1 - ramp).to(cur.dtype).to(cur.device).view(shape)
    head = cur.narrow(dim, 0, extent)
    head.copy_(prev.narrow(dim, prev.shape[dim] - extent, extent) * w_prev + head * w_cur)
