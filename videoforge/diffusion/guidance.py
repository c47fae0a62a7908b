"""Guidance as wrappers of a model function `model_fn(x, sigma[B], **cond) -> velocity`.

- Embedded guidance: the released model is guidance-distilled, so the guidance strength is just
  another model input (`guidance` = scale * 1000). `embedded_guidance` builds that input.
- True classifier-free guidance: `classifier_free_guidance` runs the conditional and the
  unconditional branch (one batched call when their inputs stack) and combines
  v = v_uncond + scale * (v_cond - v_uncond).
"""

from __future__ import annotations

from typing import Any

import torch

from videoforge.diffusion.samplers import ModelFn


def embedded_guidance(
    scale: float, batch_size: int, device: torch.device | str | None = None, round_bf16: bool = False
) -> torch.Tensor:
    """The guidance input fed to a guidance-distilled model: float32 [B] of scale * 1000.

    `round_bf16=True` reproduces the release, which builds the scale in bfloat16 before the
    multiplication (6.0 -> 6016.0, 3.5 -> 3504.0).
    """
    g = torch.full((batch_size,), float(scale), device=device)
    if round_bf16:
        g = g.to(torch.bfloat16)
        return (g * 1000.0).to(torch.float32)
    return g * 1000.0


def _stackable(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if a.keys() != b.keys():
        return False
    for k in a:
        va, vb = a[k], b[k]
        if isinstance(va, torch.Tensor) != isinstance(vb, torch.Tensor):
            return False
        if isinstance(va, torch.Tensor) and va.shape[1:] != vb.shape[1:]:
            return False
        if not isinstance(va, torch.Tensor) and va is not vb and va != vb:
            return False
    return True


def classifier_free_guidance(model_fn: ModelFn, scale: float, uncond: dict[str, Any]) -> ModelFn:
    """Wrap `model_fn` so that its conditional velocity is pushed away from the `uncond` one.

    `uncond` holds the keyword inputs of the unconditional branch (e.g. the negative prompt's
    text states); the wrapped function takes the conditional ones as usual. scale == 1 returns
    `model_fn` itself (the unconditional branch would not change the result).
    """
    if scale == 1.0:
        return model_fn

    def guided(x: torch.Tensor, sigma: torch.Tensor, **cond: Any) -> torch.Tensor:
        if _stackable(cond, uncond):
            # One batched call, the release's [uncond, cond] order.
            both = {
                k: torch.cat([uncond[k], cond[k]]) if isinstance(cond[k], torch.Tensor) else cond[k] for k in cond
            }
            v_uncond, v_cond = model_fn(torch.cat([x, x]), torch.cat([sigma, sigma]), **both).chunk(2)
        else:
            v_uncond = model_fn(x, sigma, **uncond)
            v_cond = model_fn(x, sigma, **cond)
        return v_uncond + scale * (v_cond - v_uncond)

    return guided
