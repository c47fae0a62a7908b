"""Typed model configs and the named presets.

Field names follow the released models' configs (`HYVideoDiffusionTransformer` constructor for
the DiT, the VAE's `config.json`), so a config reads the same here, in the release and in our
saved `config.json` files.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class DiTConfig:
    """The dual-stream / single-stream diffusion transformer (`models/dit.py`)."""

    patch_size: tuple[int, int, int] = (1, 2, 2)
    in_channels: int = 16
    out_channels: int = 16
    hidden_size: int = 3072
    heads_num: int = 24
    mlp_width_ratio: float = 4.0
    mlp_act_type: str = "gelu_tanh"
    mm_double_blocks_depth: int = 20
    mm_single_blocks_depth: int = 40
    rope_dim_list: tuple[int, int, int] = (16, 56, 56)
    rope_theta: float = 256.0
    qkv_bias: bool = True
    qk_norm: bool = True
    qk_norm_type: str = "rms"
    guidance_embed: bool = True
    text_projection: str = "single_refiner"
    use_attention_mask: bool = True
    text_states_dim: int = 4096  # MLLM token states
    text_states_dim_2: int = 768  # CLIP pooled vector
    refiner_depth: int = 2
    refiner_heads_num: int | None = None  # None: same as heads_num
    # None (text-to-video), "token_replace" (current I2V release) or "latent_concat" (first I2V
    # release: 33 input channels = noisy 16 | image latent 16 | mask 1).
    i2v_condition_type: str | None = None

    def __post_init__(self) -> None:
        self.patch_size = tuple(self.patch_size)
        self.rope_dim_list = tuple(self.rope_dim_list)
        if self.hidden_size % self.heads_num:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by heads_num {self.heads_num}")
        if sum(self.rope_dim_list) != self.head_dim:
            raise ValueError(f"rope_dim_list {self.rope_dim_list} must sum to head_dim {self.head_dim}")
        if self.i2v_condition_type not in (None, "token_replace", "latent_concat"):
            raise ValueError(f"i2v_condition_type must be None, 'token_replace' or 'latent_concat', got {self.i2v_condition_type!r}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.heads_num

    @property
    def mlp_hidden_dim(self) -> int:
        return int(self.hidden_size * self.mlp_width_ratio)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["patch_size"] = list(self.patch_size)
        d["rope_dim_list"] = list(self.rope_dim_list)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DiTConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class VAEConfig:
    """The causal 3D VAE (`models/vae.py`)."""

    in_channels: int = 3
    out_channels: int = 3
    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: int = 2  # encoder; the decoder uses layers_per_block + 1
    act_fn: str = "silu"
    latent_channels: int = 16
    norm_num_groups: int = 32
    sample_size: int = 256
    sample_tsize: int = 64
    scaling_factor: float = 0.476986
    time_compression_ratio: int = 4
    spatial_compression_ratio: int = 8
    mid_block_add_attention: bool = True
    # Per-channel statistics of the posterior means. When set, the DiT sees (z - mean) / std per
    # channel instead of z * scaling_factor: a VAE whose channels differ in spread (the shapes VAE's
    # by 20x) otherwise hands the DiT some channels that noise drowns at once. The release has none.
    latents_mean: tuple[float, ...] | None = None
    latents_std: tuple[float, ...] | None = None
    # A parameter-free pixel path around the networks (after DC-AE's residual autoencoding): the latent's
    # first fold^2 * in_channels channels carry a thumbnail of its keyframe with fold x fold cells per
    # latent position (fold 2: a quarter-stride thumbnail in 12 channels; fold 1: one cell, the block's
    # mean colour, in 3), and the decoder adds that thumbnail, upsampled, to its output
    # (`models/vae.py`). The release has none.
    pixel_shortcut: bool = False
    pixel_shortcut_fold: int = 2

    def __post_init__(self) -> None:
        self.block_out_channels = tuple(self.block_out_channels)
        fold, s = self.pixel_shortcut_fold, self.spatial_compression_ratio
        if self.pixel_shortcut and (self.in_channels != self.out_channels or fold < 1 or s % fold
                                    or fold * fold * self.in_channels > self.latent_channels):
            raise ValueError(
                f"pixel_shortcut folds a {fold}x{fold} thumbnail of the video's channels into each latent position: it "
                f"needs as many output as input channels (got {self.in_channels} and {self.out_channels}), >= "
                f"{fold * fold * self.in_channels} latent channels (got {self.latent_channels}) and a fold >= 1 that divides "
                f"the spatial compression ratio (got fold {fold}, ratio {s})"
            )
        for name in ("latents_mean", "latents_std"):
            value = getattr(self, name)
            if value is not None:
                value = tuple(float(v) for v in value)
                if len(value) != self.latent_channels:
                    raise ValueError(f"VAE {name} has {len(value)} values for {self.latent_channels} latent channels")
                setattr(self, name, value)
        if (self.latents_mean is None) != (self.latents_std is None):
            raise ValueError("VAE latents_mean and latents_std come together: set both or neither")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["block_out_channels"] = list(self.block_out_channels)
        for name in ("latents_mean", "latents_std"):
            if d[name] is None:
                del d[name]  # configs without statistics read as before
            else:
                d[name] = list(d[name])
        if not d["pixel_shortcut"]:
            del d["pixel_shortcut"]  # nor do configs without the shortcut (the release's among them)
        if not self.pixel_shortcut or self.pixel_shortcut_fold == 2:
            del d["pixel_shortcut_fold"]  # at its default: the configs written before it read as they were
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "VAEConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class Preset:
    name: str
    dit: DiTConfig
    vae: VAEConfig = field(default_factory=VAEConfig)


def _presets() -> dict[str, Preset]:
    return {
        "hunyuan-t2v-720p": Preset("hunyuan-t2v-720p", DiTConfig()),
        "hunyuan-i2v-720p": Preset("hunyuan-i2v-720p", DiTConfig(i2v_condition_type="token_replace")),
        "hunyuan-i2v-720p-33ch": Preset(
            "hunyuan-i2v-720p-33ch",
            DiTConfig(in_channels=33, guidance_embed=False, i2v_condition_type="latent_concat"),
        ),
        # The bundled CPU model: the real architecture at small width and depth, with the MiniLM
        # sentence encoder (384-d) standing in for both text encoders.
        "tiny": Preset(
            "tiny",
            DiTConfig(
                hidden_size=128,
                heads_num=4,
                mm_double_blocks_depth=2,
                mm_single_blocks_depth=2,
                rope_dim_list=(8, 12, 12),
                text_states_dim=384,
                text_states_dim_2=384,
                refiner_depth=1,
            ),
            VAEConfig(block_out_channels=(32, 64, 64, 64), layers_per_block=1, norm_num_groups=16),
        ),
    }


PRESET_NAMES = tuple(_presets())


def preset(name: str) -> Preset:
    """Return a fresh copy of a named preset (`.dit`, `.vae`)."""
    presets = _presets()
    if name not in presets:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(presets)}")
    return presets[name]
