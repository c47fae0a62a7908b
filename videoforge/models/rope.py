"""3D rotary position embedding over (t, h, w), as the release builds it.

Each axis with d channels gets frequencies w_j = theta^(-2j/d), j < d/2; the angle is the
integer grid position times w_j. cos and sin are repeat-interleaved x2 so that channel pairs
(2i, 2i+1) rotate together (the LLaMA/complex form, not the NeoX half split), and the three
axes are concatenated as [t | h | w]. Text tokens get no positional encoding.
"""

from __future__ import annotations

import torch


def rope_frequencies(
    grid: tuple[int, int, int],
    dims: tuple[int, int, int],
    theta: float = 256.0,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin tables [T*H*W, sum(dims)] (float32) for tokens flattened t-major, then h, then w."""
    axes = []
    for size, dim in zip(grid, dims):
        if dim % 2:
            raise ValueError(f"each RoPE axis needs an even number of channels, got {dims}")
        freqs = theta ** (-torch.arange(0, dim, 2, dtype=torch.float64, device=device)[: dim // 2] / dim)
        axes.append(torch.outer(torch.arange(size, dtype=torch.float64, device=device), freqs))
    t, h, w = grid
    angles = torch.cat(
        [
            axes[0][:, None, None, :].expand(t, h, w, -1),
            axes[1][None, :, None, :].expand(t, h, w, -1),
            axes[2][None, None, :, :].expand(t, h, w, -1),
        ],
        dim=-1,
    ).reshape(t * h * w, -1)
    angles = angles.repeat_interleave(2, dim=-1)
    return angles.cos().float(), angles.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x [B, L, H, D] by tables [L, D]; computed in float32, returned in x's dtype."""
    xf = x.float()
    pairs = xf.unflatten(-1, (-1, 2))
    rotated = torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)
    out = xf * cos[None, :, None, :] + rotated * sin[None, :, None, :]
    return out.type_as(x)
