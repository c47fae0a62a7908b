"""Noise-level grids for flow-matching sampling.

Convention (the release's, with `--flow-reverse`): x_sigma = (1 - sigma) * x_data + sigma * noise,
sigma runs from 1 (pure noise) down to 0 (data), and the model is fed time 1000 * sigma.
"""

from __future__ import annotations

import torch

from videoforge.diffusion.flow import shift_sigmas


def flow_sigmas(num_steps: int, shift: float = 7.0) -> torch.Tensor:
    """Shifted sigmas for `num_steps` Euler steps: float32 [num_steps + 1], from 1 down to exactly 0.

    The unshifted grid is linspace(1, 0, num_steps + 1), built in float64 and rounded to float32
    before the shift, which is then applied in float32 (the order diffusers' scheduler uses, so the
    grids agree bit for bit).
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    base = torch.linspace(1.0, 0.0, num_steps + 1, dtype=torch.float64)[:-1].to(torch.float32)
    return torch.cat([shift_sigmas(base, float(shift)), torch.zeros(1)])


def model_timesteps(sigmas: torch.Tensor) -> torch.Tensor:
    """The time fed to the model at each step: 1000 * sigma, for every sigma but the final 0."""
    return sigmas[:-1] * 1000.0
