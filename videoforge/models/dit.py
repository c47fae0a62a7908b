"""The HunyuanVideo diffusion transformer: dual-stream blocks, then single-stream blocks.

Module names mirror the released checkpoint's keys, so an official state dict loads strictly.
Shapes in comments: B batch, N video tokens, L text tokens, D hidden size, H heads.

  latents [B,C,T,H,W] --img_in--> img [B,N,D]           text_states [B,L,Dt] --txt_in--> txt [B,L,D]
  vec = time_in(t) + vector_in(pooled) (+ guidance_in(g))
  double blocks: separate weights per stream, joint attention over [img; txt], RoPE on img only
  single blocks: one stream over x = [img; txt]
  final_layer(img) -> unpatchify -> velocity [B,Cout,T,H,W]

Image-to-video ("token_replace"): the first latent frame is the clean image; its tokens are
modulated by time_in(0) + vector_in(pooled) (no guidance term) instead of vec, in every double
block's image stream and every single block. "latent_concat" only widens `in_channels`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from videoforge.config import DiTConfig
from videoforge.models.attention import Attention
from videoforge.models.layers import MLP, RMSNorm, TimestepEmbedder, modulate
from videoforge.models.refiner import TokenRefiner
from videoforge.models.rope import apply_rope, rope_frequencies


@dataclass
class ModParams:
    """One shift/scale/gate triple; `first` holds the first-frame tokens' own triple (I2V)."""

    shift: torch.Tensor
    scale: torch.Tensor
    gate: torch.Tensor
    first: "ModParams | None" = None
    n_first: int = 0

    def modulate(self, x: torch.Tensor) -> torch.Tensor:
        if self.first is None:
            return modulate(x, self.shift, self.scale)
        n = self.n_first
        return torch.cat([self.first.modulate(x[:, :n]), modulate(x[:, n:], self.shift, self.scale)], dim=1)

    def gated(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x + gate * y (the gate is a plain multiply, no tanh)."""
        if self.first is None:
            return x + self.gate[:, None] * y
        n = self.n_first
        return x + torch.cat([self.first.gate[:, None] * y[:, :n], self.gate[:, None] * y[:, n:]], dim=1)


class Modulation(nn.Module):
    """SiLU(vec) -> Linear(D, 3k*D), chunked as k (shift, scale, gate) triples in that order."""

    def __init__(self, hidden_size: int, triples: int):
        super().__init__()
        self.triples = triples
        self.linear = nn.Linear(hidden_size, 3 * triples * hidden_size)

    def _triples(self, vec: torch.Tensor) -> list[ModParams]:
        chunks = self.linear(F.silu(vec)).chunk(3 * self.triples, dim=-1)
        return [ModParams(*chunks[i : i + 3]) for i in range(0, len(chunks), 3)]

    def forward(self, vec: torch.Tensor, first_vec: torch.Tensor | None = None, n_first: int = 0) -> list[ModParams]:
        params = self._triples(vec)
        if first_vec is not None:
            for p, f in zip(params, self._triples(first_vec)):
                p.first, p.n_first = f, n_first
        return params


class PatchEmbed(nn.Module):
    """Conv3d with kernel = stride = patch size: [B,C,T,H,W] -> [B, T'H'W', D], t-major order."""

    def __init__(self, patch_size: tuple[int, int, int], in_channels: int, hidden_size: int):
        super().__init__()
        self.proj = nn.Conv3d(in_channels, hidden_size, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class VectorEmbedder(nn.Module):
    """The CLIP pooled vector's embedder: Linear -> SiLU -> Linear (`in_layer`, `out_layer`)."""

    def __init__(self, in_dim: int, hidden_size: int):
        super().__init__()
        self.in_layer = nn.Linear(in_dim, hidden_size)
        self.act = nn.SiLU()
        self.out_layer = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_layer(self.act(self.in_layer(x)))


def _qk_norm(config: DiTConfig) -> nn.Module:
    return RMSNorm(config.head_dim, eps=1e-6) if config.qk_norm else nn.Identity()


class DoubleStreamBlock(nn.Module):
    def __init__(self, config: DiTConfig):
        super().__init__()
        d, h = config.hidden_size, config.heads_num
        self.heads_num = h
        for s in ("img", "txt"):
            self.add_module(f"{s}_mod", Modulation(d, 2))
            self.add_module(f"{s}_norm1", nn.LayerNorm(d, elementwise_affine=False, eps=1e-6))
            self.add_module(f"{s}_attn_qkv", nn.Linear(d, 3 * d, bias=config.qkv_bias))
            self.add_module(f"{s}_attn_q_norm", _qk_norm(config))
            self.add_module(f"{s}_attn_k_norm", _qk_norm(config))
            self.add_module(f"{s}_attn_proj", nn.Linear(d, d, bias=config.qkv_bias))
            self.add_module(f"{s}_norm2", nn.LayerNorm(d, elementwise_affine=False, eps=1e-6))
            self.add_module(f"{s}_mlp", MLP(d, config.mlp_hidden_dim, config.mlp_act_type))
        self.attn = Attention()

    def _qkv(self, stream: str, x: torch.Tensor, mod: ModParams) -> tuple[torch.Tensor, ...]:
        h = mod.modulate(getattr(self, f"{stream}_norm1")(x))
        q, k, v = getattr(self, f"{stream}_attn_qkv")(h).unflatten(-1, (3, self.heads_num, -1)).unbind(2)
        return getattr(self, f"{stream}_attn_q_norm")(q), getattr(self, f"{stream}_attn_k_norm")(k), v

    def forward(
        self,
        img: torch.Tensor,
        txt: torch.Tensor,
        vec: torch.Tensor,
        key_mask: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        first_vec: torch.Tensor | None = None,
        n_first: int = 0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        img_mod1, img_mod2 = self.img_mod(vec, first_vec, n_first)
        txt_mod1, txt_mod2 = self.txt_mod(vec)

        # Per-stream projections; RoPE on the video tokens only, after the QK norm.
        img_q, img_k, img_v = self._qkv("img", img, img_mod1)
        img_q, img_k = apply_rope(img_q, *rope), apply_rope(img_k, *rope)
        txt_q, txt_k, txt_v = self._qkv("txt", txt, txt_mod1)

        # Joint attention over [img; txt]; padded text keys are masked.
        attn = self.attn(
            torch.cat([img_q, txt_q], 1), torch.cat([img_k, txt_k], 1), torch.cat([img_v, txt_v], 1), key_mask
        ).flatten(2)
        img_attn, txt_attn = attn[:, : img.shape[1]], attn[:, img.shape[1] :]

        # Gated residuals: attention, then MLP, per stream.
        img = img_mod1.gated(img, self.img_attn_proj(img_attn))
        img = img_mod2.gated(img, self.img_mlp(img_mod2.modulate(self.img_norm2(img))))
        txt = txt_mod1.gated(txt, self.txt_attn_proj(txt_attn))
        txt = txt_mod2.gated(txt, self.txt_mlp(txt_mod2.modulate(self.txt_norm2(txt))))
        return img, txt


class SingleStreamBlock(nn.Module):
    """One stream over [img; txt]: linear1 gives q, k, v and the MLP input in one matmul; linear2
    projects the concatenated attention output and MLP activation (no separate proj/fc2)."""

    def __init__(self, config: DiTConfig):
        super().__init__()
        d = config.hidden_size
        self.hidden_size, self.heads_num, self.mlp_hidden_dim = d, config.heads_num, config.mlp_hidden_dim
        self.linear1 = nn.Linear(d, 3 * d + self.mlp_hidden_dim)
        self.linear2 = nn.Linear(d + self.mlp_hidden_dim, d)
        self.q_norm = _qk_norm(config)
        self.k_norm = _qk_norm(config)
        self.pre_norm = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.mlp_act = nn.GELU(approximate="tanh")
        self.modulation = Modulation(d, 1)
        self.attn = Attention()

    def forward(
        self,
        x: torch.Tensor,
        vec: torch.Tensor,
        key_mask: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        n_img: int,
        first_vec: torch.Tensor | None = None,
        n_first: int = 0,
    ) -> torch.Tensor:
        (mod,) = self.modulation(vec, first_vec, n_first)
        qkv, mlp = self.linear1(mod.modulate(self.pre_norm(x))).split([3 * self.hidden_size, self.mlp_hidden_dim], -1)
        q, k, v = qkv.unflatten(-1, (3, self.heads_num, -1)).unbind(2)
        q, k = self.q_norm(q), self.k_norm(k)
        q = torch.cat([apply_rope(q[:, :n_img], *rope), q[:, n_img:]], 1)
        k = torch.cat([apply_rope(k[:, :n_img], *rope), k[:, n_img:]], 1)
        attn = self.attn(q, k, v, key_mask).flatten(2)
        return mod.gated(x, self.linear2(torch.cat([attn, self.mlp_act(mlp)], -1)))


class FinalLayer(nn.Module):
    """LayerNorm -> modulate (shift, scale: the release's order) -> Linear to patch features."""

    def __init__(self, hidden_size: int, out_features: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, out_features)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))

    def forward(self, x: torch.Tensor, vec: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(vec).chunk(2, dim=-1)
        x = modulate(self.norm_final(x), shift, scale)
        return self.linear(x.to(self.linear.weight.dtype))


class HunyuanVideoDiT(nn.Module):
    def __init__(self, config: DiTConfig):
        super().__init__()
        if config.text_projection != "single_refiner":
            raise ValueError(f"only text_projection='single_refiner' (the release's) is supported, got {config.text_projection!r}")
        self.config = config
        d = config.hidden_size
        self.img_in = PatchEmbed(config.patch_size, config.in_channels, d)
        self.txt_in = TokenRefiner(
            config.text_states_dim, d, config.refiner_heads_num or config.heads_num, config.refiner_depth
        )
        self.time_in = TimestepEmbedder(d)
        self.vector_in = VectorEmbedder(config.text_states_dim_2, d)
        self.guidance_in = TimestepEmbedder(d) if config.guidance_embed else None
        self.double_blocks = nn.ModuleList(DoubleStreamBlock(config) for _ in range(config.mm_double_blocks_depth))
        self.single_blocks = nn.ModuleList(SingleStreamBlock(config) for _ in range(config.mm_single_blocks_depth))
        pt, ph, pw = config.patch_size
        self.final_layer = FinalLayer(d, pt * ph * pw * config.out_channels)

    def _check_inputs(self, latents: torch.Tensor, text_states: torch.Tensor, text_pooled: torch.Tensor) -> None:
        c = self.config
        if latents.dim() != 5 or latents.shape[1] != c.in_channels:
            raise ValueError(f"latents must be [B, {c.in_channels}, T, H, W], got {tuple(latents.shape)}")
        for size, p, axis in zip(latents.shape[2:], c.patch_size, "THW"):
            if size % p:
                raise ValueError(f"latent {axis}={size} is not divisible by the patch size {p} ({tuple(latents.shape)})")
        if text_states.dim() != 3 or text_states.shape[-1] != c.text_states_dim:
            raise ValueError(f"text_states must be [B, L, {c.text_states_dim}], got {tuple(text_states.shape)}")
        if text_pooled.dim() != 2 or text_pooled.shape[-1] != c.text_states_dim_2:
            raise ValueError(f"text_pooled must be [B, {c.text_states_dim_2}], got {tuple(text_pooled.shape)}")

    def forward(
        self,
        latents: torch.Tensor,
        timestep: torch.Tensor,
        text_states: torch.Tensor,
        text_mask: torch.Tensor | None,
        text_pooled: torch.Tensor,
        guidance: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Velocity [B, out_channels, T, H, W] for latents at time `timestep` (1000 * sigma).

        `guidance` is the embedded guidance strength in model units (scale * 1000); the release
        is guidance-distilled and needs it."""
        self._check_inputs(latents, text_states, text_pooled)
        c = self.config
        b, _, t, h, w = latents.shape
        pt, ph, pw = c.patch_size
        grid = (t // pt, h // ph, w // pw)
        dtype = self.img_in.proj.weight.dtype
        timestep = timestep.float().expand(b) if timestep.dim() <= 1 else timestep
        if text_mask is None:
            text_mask = torch.ones(text_states.shape[:2], dtype=torch.bool, device=text_states.device)
        # Positions that are padding in every prompt of the batch are masked keys everywhere and
        # no output reads them: dropping that tail changes no result, only the work (the tiny
        # model's 48-token text is mostly padding, and was 75% of an image batch's tokens).
        used = text_mask.bool().any(0).nonzero()
        keep = int(used.max()) + 1 if len(used) else 1
        text_states, text_mask = text_states[:, :keep], text_mask[:, :keep]

        # Conditioning vector; the I2V first frame gets time 0 and no guidance term.
        pooled = text_pooled.to(dtype)
        vec = self.time_in(timestep) + self.vector_in(pooled)
        if self.guidance_in is not None:
            if guidance is None:
                raise ValueError("this model embeds guidance (guidance_embed=True): pass guidance = scale * 1000")
            vec = vec + self.guidance_in(guidance.float().expand(b) if guidance.dim() <= 1 else guidance)
        first_vec, n_first = None, 0
        if c.i2v_condition_type == "token_replace":
            first_vec = self.time_in(torch.zeros_like(timestep)) + self.vector_in(pooled)
            n_first = grid[1] * grid[2]

        img = self.img_in(latents.to(dtype))
        txt = self.txt_in(text_states.to(dtype), timestep, text_mask)
        rope = rope_frequencies(grid, c.rope_dim_list, c.rope_theta, device=latents.device)
        n_img = img.shape[1]
        key_mask = torch.cat([torch.ones(b, n_img, dtype=torch.bool, device=img.device), text_mask.bool()], 1)

        for block in self.double_blocks:
            img, txt = block(img, txt, vec, key_mask, rope, first_vec, n_first)
        x = torch.cat([img, txt], 1)
        for block in self.single_blocks:
            x = block(x, vec, key_mask, rope, n_img, first_vec, n_first)

        out = self.final_layer(x[:, :n_img], vec)
        # Unpatchify: features are ordered (c, pt, ph, pw), c slowest.
        out = out.reshape(b, *grid, c.out_channels, pt, ph, pw)
        out = out.permute(0, 4, 1, 5, 2, 6, 3, 7).reshape(b, c.out_channels, t, h, w)
        return out


def build_dit(config: DiTConfig, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> HunyuanVideoDiT:
    """Build the DiT; `device="meta"` allocates nothing (for loading with `assign=True`)."""
    with torch.device(device or "cpu"):
        model = HunyuanVideoDiT(config)
    return model.to(dtype) if dtype is not None else model
