"""Flow matching on the linear noise-data path, in the released models' convention.

x_sigma = (1 - sigma) * x_data + sigma * noise, sigma in [0, 1] (1 = pure noise); the model is
fed time 1000 * sigma and predicts the velocity v = noise - x_data, so one Euler step
x <- x + v * (sigma_next - sigma) walks from noise to data (official-architecture.md §5.1).
"""

from __future__ import annotations

import torch

TIME_SCALE = 1000.0  # model time = TIME_SCALE * sigma


def _expand(sigma: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Broadcast per-sample sigma [B] over the trailing dimensions of `like` [B, ...]."""
    return sigma.to(like.dtype).reshape(-1, *([1] * (like.ndim - 1)))


def interpolate(x_data: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """The point x_sigma on the straight path from data (sigma=0) to noise (sigma=1)."""
    s = _expand(sigma, x_data)
    return (1.0 - s) * x_data + s * noise


def velocity_target(x_data: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """d x_sigma / d sigma: what the model is trained to predict."""
    return noise - x_data


def shift_sigmas(sigma: torch.Tensor, shift: float) -> torch.Tensor:
    """The released schedule's shift s*sigma / (1 + (s-1)*sigma); s > 1 moves mass toward noise."""
    if shift <= 0:
        raise ValueError(f"flow shift must be positive, got {shift}")
    if shift == 1.0:
        return sigma
    return shift * sigma / (1.0 + (shift - 1.0) * sigma)


def sample_logit_normal_timesteps(
    n: int,
    mean: float = 0.0,
    std: float = 1.0,
    shift: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """n noise levels sigma = shift(sigmoid(N(mean, std))), float32 in (0, 1).

    Logit-normal sampling (SD3) spends most training on the middle of the path, where the
    velocity is hardest to predict; `shift` then skews it toward noise for large inputs.
    """
    if std <= 0:
        raise ValueError(f"logit-normal std must be positive, got {std}")
    u = torch.randn(n, generator=generator, dtype=torch.float32) * std + mean
    return shift_sigmas(torch.sigmoid(u), shift)


def per_sample_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared velocity error of each sample, [B], computed in float32."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    return (pred.float() - target.float()).pow(2).flatten(1).mean(dim=1)


def flow_matching_loss(pred: torch.Tensor, x_data: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Batch mean of the velocity MSE (for single-process use; the trainer normalises globally)."""
    return per_sample_loss(pred, velocity_target(x_data, noise)).mean()
