"""Ulysses sequence parallelism around the DiT's attention seam.

Each rank of a sequence-parallel group holds 1/P of the video tokens and all text tokens. In
attention, an all-to-all trades the sequence split for a head split: every rank then attends
over the whole sequence with H/P heads, and a second all-to-all trades back. Text tokens are
replicated, so each rank just takes its heads of them and the text outputs are gathered over
heads. Everything outside attention is per-token and needs no communication.

Gradient convention: each rank back-propagates its own copy of the loss and gradients are
summed over the group (FSDP's reduction does this). The collectives below are written so their
backward passes are the exact adjoints under that convention.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from videoforge.models.attention import sdpa_attention


def _all_to_all(x: torch.Tensor, group: dist.ProcessGroup, scatter_dim: int, gather_dim: int) -> torch.Tensor:
    p = dist.get_world_size(group)
    inputs = [c.contiguous() for c in x.chunk(p, dim=scatter_dim)]
    outputs = [torch.empty_like(inputs[0]) for _ in range(p)]
    dist.all_to_all(outputs, inputs, group=group)
    return torch.cat(outputs, dim=gather_dim)


class _AllToAll(torch.autograd.Function):
    """Scatter `scatter_dim`, gather `gather_dim`; the adjoint is the reverse all-to-all."""

    @staticmethod
    def forward(ctx, x, group, scatter_dim, gather_dim):
        ctx.group, ctx.dims = group, (scatter_dim, gather_dim)
        return _all_to_all(x, group, scatter_dim, gather_dim)

    @staticmethod
    def backward(ctx, grad):
        scatter_dim, gather_dim = ctx.dims
        return _all_to_all(grad, ctx.group, gather_dim, scatter_dim), None, None, None


class _GatherSum(torch.autograd.Function):
    """All-gather along `dim` into a replicated tensor; the adjoint under summed per-rank losses
    is a reduce-scatter: each rank's slice gets the sum of every rank's gradient for it."""

    @staticmethod
    def forward(ctx, x, group, dim):
        ctx.group, ctx.dim = group, dim
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size(group))]
        dist.all_gather(parts, x.contiguous(), group=group)
        return torch.cat(parts, dim=dim)

    @staticmethod
    def backward(ctx, grad):
        p, r = dist.get_world_size(ctx.group), dist.get_rank(ctx.group)
        total = grad.contiguous().clone()
        dist.all_reduce(total, group=ctx.group)
        return total.chunk(p, dim=ctx.dim)[r].contiguous(), None, None


def gather_sequence(x: torch.Tensor, group: dist.ProcessGroup, dim: int = 1) -> torch.Tensor:
    return _GatherSum.apply(x, group, dim)


def local_chunk(x: torch.Tensor, group: dist.ProcessGroup, dim: int = 1) -> torch.Tensor:
    """This rank's contiguous 1/P of `dim` (must divide evenly)."""
    p, r = dist.get_world_size(group), dist.get_rank(group)
    if x.shape[dim] % p:
        raise ValueError(f"sequence length {x.shape[dim]} is not divisible by the sequence-parallel degree {p}")
    return x.chunk(p, dim=dim)[r]


class UlyssesAttention(nn.Module):
    """Drop-in for `models.attention.Attention` inside the DiT blocks under sequence parallelism.

    q, k, v arrive as [B, N/P + L_txt, H, D] (local video tokens, then all text tokens) and the
    key mask as [B, N + L_txt] (the full sequence, as the model built it), so the local video
    length follows from the two: N/P = (mask_len - q_len) / (P - 1).
    """

    def __init__(self, group: dist.ProcessGroup):
        super().__init__()
        self.group = group
        self.degree = dist.get_world_size(group)

    def forward(self, q, k, v, key_mask=None, attn_mask=None):
        if attn_mask is not None or key_mask is None:
            raise ValueError("UlyssesAttention needs the DiT's key mask over [video; text] and no full attn_mask")
        p, r = self.degree, dist.get_rank(self.group)
        heads = q.shape[2]
        if heads % p:
            raise ValueError(f"{heads} attention heads are not divisible by the sequence-parallel degree {p}")
        n_local = (key_mask.shape[1] - q.shape[1]) // (p - 1)
        hs = slice(r * heads // p, (r + 1) * heads // p)

        def full(t: torch.Tensor) -> torch.Tensor:
            # [B, N/P, H, D] video -> [B, N, H/P, D]; text keeps its length, takes this rank's heads.
            vid = _AllToAll.apply(t[:, :n_local], self.group, 2, 1)
            return torch.cat([vid, t[:, n_local:, hs]], dim=1)

        mask = key_mask[:, None, None, :].bool()
        out = sdpa_attention(full(q), full(k), full(v), mask)  # [B, N + L_txt, H/P, D]
        n_img = n_local * p
        vid = _AllToAll.apply(out[:, :n_img], self.group, 1, 2)  # back to [B, N/P, H, D]
        txt = gather_sequence(out[:, n_img:], self.group, dim=2)  # all heads of the text outputs
        return torch.cat([vid, txt], dim=1)
