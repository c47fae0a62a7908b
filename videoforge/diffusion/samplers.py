"""Samplers for the flow ODE, k-diffusion style: short pure functions over a model callable.

Every sampler has the signature `(model_fn, x, sigmas, extra_args=None, callback=None, disable=True)`
where `model_fn(x, sigma[B], **extra_args)` returns the velocity v = noise - data at noise level
sigma (see `schedules.py` for the convention) and `sigmas` runs down to 0.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from tqdm.auto import trange

ModelFn = Callable[..., torch.Tensor]
StepCallback = Callable[[dict[str, Any]], None]


@torch.no_grad()
def sample_euler(
    model_fn: ModelFn,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: dict[str, Any] | None = None,
    callback: StepCallback | None = None,
    disable: bool = True,
    keep: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """First-order Euler solver of dx/dsigma = v (the release's sampler).

    The state is kept in float32 whatever the model's dtype, as the release does (its latents
    become float32 after the first step). `keep=(mask, values)` pins the entries where `mask` is
    True to `values` before every model call and after every step: image-to-video's clean first
    frame.
    """
    extra_args = extra_args or {}
    x = x.to(torch.float32)
    sigmas = sigmas.to(device=x.device, dtype=torch.float32)
    ones = x.new_ones(x.shape[0])
    for i in trange(len(sigmas) - 1, disable=disable, desc="denoising"):
        if keep is not None:
            x = torch.where(keep[0], keep[1], x)
        v = model_fn(x, sigmas[i] * ones, **extra_args)
        x = x + (sigmas[i + 1] - sigmas[i]) * v.to(torch.float32)
        if keep is not None:
            x = torch.where(keep[0], keep[1], x)
        if callback is not None:
            callback({"i": i, "x": x, "sigma": sigmas[i], "sigma_next": sigmas[i + 1], "velocity": v})
    return x
