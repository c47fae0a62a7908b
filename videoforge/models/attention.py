"""The attention seam: `Attention`, a parameter-free module every transformer block calls.

It exists as a module (not a function) so that things can be attached to it from outside the
model: a backend choice (PyTorch SDPA or flash-attn) and sequence parallelism (Ulysses
all-to-all, `videoforge/train/sequence_parallel.py`) wrap or replace it without touching the
model code.

Layout: q, k, v are [B, L, H, D]; `key_mask` is a [B, L] boolean mask of keys that may be
attended to (True = valid). The release masks padded text tokens this way (flash-attn varlen
with [image + valid text] as one segment per sample and the padding as another); a key-padding
mask gives the same outputs for every valid token.
"""

from __future__ import annotations

import importlib.util

import torch
import torch.nn.functional as F
from torch import nn

BACKENDS = ("sdpa", "flash")
_backend = "sdpa"


def flash_attn_available() -> bool:
    return importlib.util.find_spec("flash_attn") is not None


def set_attention_backend(name: str) -> None:
    """Pick the attention kernel for every `Attention` module: "sdpa" (default) or "flash"."""
    global _backend
    if name not in BACKENDS:
        raise ValueError(f"unknown attention backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if name == "flash" and not flash_attn_available():
        raise ValueError("attention backend 'flash' needs the flash-attn package (pip install 'videoforge[gpu]')")
    _backend = name


def get_attention_backend() -> str:
    return _backend


def sdpa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
    """q, k, v [B, L, H, D]; attn_mask boolean, broadcastable to [B, H, Lq, Lk]."""
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=attn_mask)
    return out.transpose(1, 2)


def flash_varlen_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
    """The release's flash-attn layout: per sample, the valid prefix is one segment and the
    right padding another, so padded tokens never reach valid ones."""
    from flash_attn import flash_attn_varlen_func

    b, n, h, d = q.shape
    valid = key_mask.sum(dim=1, dtype=torch.int32)  # right padding: valid tokens come first
    bounds = torch.stack([valid, torch.full_like(valid, n)], dim=1)
    offsets = (torch.arange(b, device=q.device, dtype=torch.int32) * n)[:, None]
    cu = torch.cat([torch.zeros(1, dtype=torch.int32, device=q.device), (bounds + offsets).flatten()])
    cu = torch.unique_consecutive(cu)  # a sample without padding has an empty second segment
    out = flash_attn_varlen_func(
        q.reshape(b * n, h, d), k.reshape(b * n, h, d), v.reshape(b * n, h, d), cu, cu, n, n
    )
    return out.reshape(b, n, h, d)


class Attention(nn.Module):
    """Scaled dot-product attention (scale 1/sqrt(D)) with an optional key-padding mask."""

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        key_mask: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if attn_mask is not None:  # a full [B, 1|H, Lq, Lk] mask (the token refiner's)
            return sdpa_attention(q, k, v, attn_mask)
        if _backend == "flash" and q.is_cuda and q.dtype in (torch.float16, torch.bfloat16):
            if key_mask is None:
                key_mask = torch.ones(q.shape[:2], dtype=torch.bool, device=q.device)
            return flash_varlen_attention(q, k, v, key_mask)
        mask = None if key_mask is None else key_mask[:, None, None, :].bool()
        return sdpa_attention(q, k, v, mask)
