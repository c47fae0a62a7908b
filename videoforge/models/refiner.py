"""The token refiner (`txt_in`): bidirectional self-attention over the MLLM token states.

It turns the decoder-only MLLM's causal states into bidirectional ones and projects them to
the DiT width. Conditioning is t (the DiT's timestep) plus the masked mean of the raw states;
each block is gated (no shift/scale) by that conditioning. No positional encoding.
"""

from __future__ import annotations

import torch
from torch import nn

from videoforge.models.attention import Attention
from videoforge.models.layers import MLP, TimestepEmbedder


class TextProjection(nn.Module):
    """Linear -> SiLU -> Linear (keys `linear_1`, `linear_2`): the pooled-states embedder."""

    def __init__(self, in_dim: int, hidden_size: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, hidden_size)
        self.act = nn.SiLU()
        self.linear_2 = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(x)))


class RefinerBlock(nn.Module):
    def __init__(self, hidden_size: int, heads_num: int, mlp_ratio: float):
        super().__init__()
        self.heads_num = heads_num
        self.norm1 = nn.LayerNorm(hidden_size, eps=1e-6)
        self.self_attn_qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.attn = Attention()
        self.self_attn_proj = nn.Linear(hidden_size, hidden_size)
        self.norm2 = nn.LayerNorm(hidden_size, eps=1e-6)
        self.mlp = MLP(hidden_size, int(hidden_size * mlp_ratio), "silu")
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))

    def forward(self, x: torch.Tensor, c: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        gate_msa, gate_mlp = self.adaLN_modulation(c).unsqueeze(1).chunk(2, dim=-1)
        q, k, v = self.self_attn_qkv(self.norm1(x)).unflatten(-1, (3, self.heads_num, -1)).unbind(2)
        x = x + gate_msa * self.self_attn_proj(self.attn(q, k, v, attn_mask=attn_mask).flatten(2))
        return x + gate_mlp * self.mlp(self.norm2(x))


class IndividualTokenRefiner(nn.Module):
    def __init__(self, hidden_size: int, heads_num: int, depth: int, mlp_ratio: float):
        super().__init__()
        self.blocks = nn.ModuleList(RefinerBlock(hidden_size, heads_num, mlp_ratio) for _ in range(depth))

    def forward(self, x: torch.Tensor, c: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # Query i may see key j when both are valid. Column 0 (always a valid token: padding is
        # on the right) is opened for every row so padded query rows are never all-masked.
        m = mask.bool()
        attn_mask = (m[:, None, :, None] & m[:, None, None, :]).clone()
        attn_mask[..., 0] = True
        for block in self.blocks:
            x = block(x, c, attn_mask)
        return x


class TokenRefiner(nn.Module):
    """`txt_in`: [B, L, text_dim] MLLM states -> [B, L, hidden_size]."""

    def __init__(self, text_dim: int, hidden_size: int, heads_num: int, depth: int = 2, mlp_ratio: float = 4.0):
        super().__init__()
        self.input_embedder = nn.Linear(text_dim, hidden_size)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.c_embedder = TextProjection(text_dim, hidden_size)
        self.individual_token_refiner = IndividualTokenRefiner(hidden_size, heads_num, depth, mlp_ratio)

    def forward(self, x: torch.Tensor, t: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.to(x.dtype)[..., None]
        pooled = (x * m).sum(dim=1) / m.sum(dim=1).clamp(min=1)  # masked mean of the raw states
        c = self.t_embedder(t) + self.c_embedder(pooled)
        return self.individual_token_refiner(self.input_embedder(x), c, mask)
