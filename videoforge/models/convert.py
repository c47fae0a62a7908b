"""Checkpoint layouts: the release's ("official") key names <-> diffusers', and their configs.

Our module names are the official checkpoint's, so an official state dict loads as is. The
diffusers layout (`HunyuanVideoTransformer3DModel`) renames every module, splits the fused
q/k/v projections (and the single blocks' `linear1` into q/k/v/mlp) and stores the final
layer's modulation as (scale, shift) where the release stores (shift, scale). The VAE keys are
identical in both layouts (`AutoencoderKLHunyuanVideo` loads the release file with no renames);
only its config differs.

Everything here is pure: state dicts and config dicts in, state dicts and configs out.
"""

from __future__ import annotations

import re
import warnings
from typing import Any, Mapping, NamedTuple

import torch

from videoforge.config import PRESET_NAMES, DiTConfig, VAEConfig, preset

# ------------------------------------------------------------------------------------------------
# DiT keys. Official module name -> diffusers module name(s); "{}" is a block index. A tuple means
# the official tensor is the concatenation (along dim 0) of the diffusers tensors, in that order.

DIT_WEIGHT_MAP: dict[str, str | tuple[str, ...]] = {
    "img_in.proj": "x_embedder.proj",
    # text branch: token refiner over the MLLM states
    "txt_in.input_embedder": "context_embedder.proj_in",
    "txt_in.t_embedder.mlp.0": "context_embedder.time_text_embed.timestep_embedder.linear_1",
    "txt_in.t_embedder.mlp.2": "context_embedder.time_text_embed.timestep_embedder.linear_2",
    "txt_in.c_embedder.linear_1": "context_embedder.time_text_embed.text_embedder.linear_1",
    "txt_in.c_embedder.linear_2": "context_embedder.time_text_embed.text_embedder.linear_2",
    "txt_in.individual_token_refiner.blocks.{}.norm1": "context_embedder.token_refiner.refiner_blocks.{}.norm1",
    "txt_in.individual_token_refiner.blocks.{}.self_attn_qkv": (
        "context_embedder.token_refiner.refiner_blocks.{}.attn.to_q",
        "context_embedder.token_refiner.refiner_blocks.{}.attn.to_k",
        "context_embedder.token_refiner.refiner_blocks.{}.attn.to_v",
    ),
    "txt_in.individual_token_refiner.blocks.{}.self_attn_proj": "context_embedder.token_refiner.refiner_blocks.{}.attn.to_out.0",
    "txt_in.individual_token_refiner.blocks.{}.norm2": "context_embedder.token_refiner.refiner_blocks.{}.norm2",
    "txt_in.individual_token_refiner.blocks.{}.mlp.fc1": "context_embedder.token_refiner.refiner_blocks.{}.ff.net.0.proj",
    "txt_in.individual_token_refiner.blocks.{}.mlp.fc2": "context_embedder.token_refiner.refiner_blocks.{}.ff.net.2",
    "txt_in.individual_token_refiner.blocks.{}.adaLN_modulation.1": "context_embedder.token_refiner.refiner_blocks.{}.norm_out.linear",
    # conditioning vector: timestep + pooled CLIP text (+ guidance)
    "time_in.mlp.0": "time_text_embed.timestep_embedder.linear_1",
    "time_in.mlp.2": "time_text_embed.timestep_embedder.linear_2",
    "vector_in.in_layer": "time_text_embed.text_embedder.linear_1",
    "vector_in.out_layer": "time_text_embed.text_embedder.linear_2",
    "guidance_in.mlp.0": "time_text_embed.guidance_embedder.linear_1",
    "guidance_in.mlp.2": "time_text_embed.guidance_embedder.linear_2",
    # dual-stream blocks: img_* are diffusers' plain names, txt_* its "context"/"add" names
    "double_blocks.{}.img_mod.linear": "transformer_blocks.{}.norm1.linear",
    "double_blocks.{}.img_attn_qkv": (
        "transformer_blocks.{}.attn.to_q",
        "transformer_blocks.{}.attn.to_k",
        "transformer_blocks.{}.attn.to_v",
    ),
    "double_blocks.{}.img_attn_q_norm": "transformer_blocks.{}.attn.norm_q",
    "double_blocks.{}.img_attn_k_norm": "transformer_blocks.{}.attn.norm_k",
    "double_blocks.{}.img_attn_proj": "transformer_blocks.{}.attn.to_out.0",
    "double_blocks.{}.img_mlp.fc1": "transformer_blocks.{}.ff.net.0.proj",
    "double_blocks.{}.img_mlp.fc2": "transformer_blocks.{}.ff.net.2",
    "double_blocks.{}.txt_mod.linear": "transformer_blocks.{}.norm1_context.linear",
    "double_blocks.{}.txt_attn_qkv": (
        "transformer_blocks.{}.attn.add_q_proj",
        "transformer_blocks.{}.attn.add_k_proj",
        "transformer_blocks.{}.attn.add_v_proj",
    ),
    "double_blocks.{}.txt_attn_q_norm": "transformer_blocks.{}.attn.norm_added_q",
    "double_blocks.{}.txt_attn_k_norm": "transformer_blocks.{}.attn.norm_added_k",
    "double_blocks.{}.txt_attn_proj": "transformer_blocks.{}.attn.to_add_out",
    "double_blocks.{}.txt_mlp.fc1": "transformer_blocks.{}.ff_context.net.0.proj",
    "double_blocks.{}.txt_mlp.fc2": "transformer_blocks.{}.ff_context.net.2",
    # single-stream blocks: linear1 = [q | k | v | mlp-in], linear2 = proj_out over [attn | mlp]
    "single_blocks.{}.linear1": (
        "single_transformer_blocks.{}.attn.to_q",
        "single_transformer_blocks.{}.attn.to_k",
        "single_transformer_blocks.{}.attn.to_v",
        "single_transformer_blocks.{}.proj_mlp",
    ),
    "single_blocks.{}.linear2": "single_transformer_blocks.{}.proj_out",
    "single_blocks.{}.q_norm": "single_transformer_blocks.{}.attn.norm_q",
    "single_blocks.{}.k_norm": "single_transformer_blocks.{}.attn.norm_k",
    "single_blocks.{}.modulation.linear": "single_transformer_blocks.{}.norm.linear",
    # final layer
    "final_layer.linear": "proj_out",
    "final_layer.adaLN_modulation.1": "norm_out.linear",
}

# Modules whose output halves are swapped between layouts: the release's final layer computes
# (shift, scale) = chunk(2), diffusers' AdaLayerNormContinuous computes (scale, shift).
_HALVES_SWAPPED = {"final_layer.adaLN_modulation.1"}

_DIFFUSERS_TO_OFFICIAL: dict[str, tuple[str, int]] = {}  # diffusers module -> (official module, part)
for _official, _diffusers in DIT_WEIGHT_MAP.items():
    for _part, _name in enumerate((_diffusers,) if isinstance(_diffusers, str) else _diffusers):
        _DIFFUSERS_TO_OFFICIAL[_name] = (_official, _part)

_BLOCK_INDEX = re.compile(r"^(.*?blocks)\.(\d+)\.(.+)$")


def _template(module: str) -> tuple[str, str | None]:
    """'double_blocks.7.img_mod.linear' -> ('double_blocks.{}.img_mod.linear', '7')."""
    m = _BLOCK_INDEX.match(module)
    if m is None:
        return module, None
    return f"{m.group(1)}.{{}}.{m.group(3)}", m.group(2)


def _split_key(key: str) -> tuple[str, str, str | None]:
    """'double_blocks.7.img_mod.linear.weight' -> ('double_blocks.{}.img_mod.linear', 'weight', '7')."""
    module, _, param = key.rpartition(".")
    template, index = _template(module)
    return template, param, index


def _fill(template: str, index: str | None) -> str:
    return template.format(index) if index is not None else template


def _swap_halves(t: torch.Tensor) -> torch.Tensor:
    a, b = t.chunk(2, dim=0)
    return torch.cat([b, a], dim=0)


def fused_part_rows(rows: int, hidden: int, parts: int) -> list[int]:
    """Row counts of the parts of a fused official weight of `rows` rows and input width `hidden`:
    q, k, v are `hidden` rows each; the single blocks' fourth part (mlp-in) is the rest."""
    sizes = [hidden] * 3 + ([rows - 3 * hidden] if parts == 4 else [])
    if parts not in (3, 4) or sum(sizes) != rows or min(sizes) <= 0:
        raise ValueError(f"{rows} rows of input width {hidden} cannot be split into {parts} parts")
    return sizes


class OfficialPart(NamedTuple):
    module: str  # official module name
    part: int  # row block of the official weight that the diffusers module is
    parts: int  # row blocks in all (1: a plain rename)
    halves_swapped: bool  # output halves swapped between the layouts


def official_part(diffusers_module: str) -> OfficialPart | None:
    """Where a diffusers-layout DiT module lives in the official layout, e.g.
    'transformer_blocks.3.attn.to_k' -> ('double_blocks.3.img_attn_qkv', 1, 3, False); None when
    the name is not a diffusers DiT module."""
    template, index = _template(diffusers_module)
    if template not in _DIFFUSERS_TO_OFFICIAL:
        return None
    official, part = _DIFFUSERS_TO_OFFICIAL[template]
    target = DIT_WEIGHT_MAP[official]
    return OfficialPart(_fill(official, index), part, 1 if isinstance(target, str) else len(target), official in _HALVES_SWAPPED)


def _unknown_keys_error(kind: str, keys: list[str]) -> ValueError:
    shown = ", ".join(keys[:10]) + (f", ... ({len(keys) - 10} more)" if len(keys) > 10 else "")
    return ValueError(f"{len(keys)} key(s) not in the {kind} DiT layout: {shown}")


def dit_official_to_diffusers(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename/split an official-layout DiT state dict into diffusers' layout (views where possible)."""
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, tensor in state_dict.items():
        template, param, index = _split_key(key)
        target = DIT_WEIGHT_MAP.get(template)
        if target is None:
            unknown.append(key)
            continue
        if template in _HALVES_SWAPPED:
            tensor = _swap_halves(tensor)
        if isinstance(target, str):
            out[f"{_fill(target, index)}.{param}"] = tensor
            continue
        hidden = state_dict[f"{_fill(template, index)}.weight"].shape[1]
        try:
            sizes = fused_part_rows(tensor.shape[0], hidden, len(target))
        except ValueError as e:
            raise ValueError(f"{key}: shape {tuple(tensor.shape)}: {e}") from None
        for name, part in zip(target, tensor.split(sizes, dim=0)):
            out[f"{_fill(name, index)}.{param}"] = part
    if unknown:
        raise _unknown_keys_error("official", unknown)
    return out


def dit_diffusers_to_official(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of `dit_official_to_diffusers`: rename, concatenate the split parts, swap halves back."""
    parts: dict[str, dict[int, torch.Tensor]] = {}
    unknown = []
    for key, tensor in state_dict.items():
        template, param, index = _split_key(key)
        if template not in _DIFFUSERS_TO_OFFICIAL:
            unknown.append(key)
            continue
        official, part = _DIFFUSERS_TO_OFFICIAL[template]
        parts.setdefault(f"{_fill(official, index)}.{param}", {})[part] = tensor
    if unknown:
        raise _unknown_keys_error("diffusers", unknown)
    out: dict[str, torch.Tensor] = {}
    for key, pieces in parts.items():
        template, _, _ = _split_key(key)
        target = DIT_WEIGHT_MAP[template]
        n = 1 if isinstance(target, str) else len(target)
        if len(pieces) != n:
            missing = [_fill(target[i], _split_key(key)[2]) for i in range(n) if i not in pieces]
            raise ValueError(f"cannot rebuild {key}: missing diffusers parts {missing}")
        tensor = pieces[0] if n == 1 else torch.cat([pieces[i] for i in range(n)], dim=0)
        out[key] = _swap_halves(tensor) if template in _HALVES_SWAPPED else tensor
    return out


def dequantize_fp8(
    state_dict: Mapping[str, torch.Tensor], scales: Mapping[str, Any], dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    """The release's FP8 file: w = fp8_weight * scale[module name], computed in float32, then cast.

    Dequantising once at load time (rather than per forward, as the release does) gives the same
    weights up to the final cast to `dtype`, and leaves a plain model behind.
    """
    out: dict[str, torch.Tensor] = {}
    fp8_dtypes = {torch.float8_e4m3fn, torch.float8_e5m2}
    missing = []
    for key, tensor in state_dict.items():
        if tensor.dtype not in fp8_dtypes:
            out[key] = tensor
            continue
        module = key.rpartition(".")[0]
        if module not in scales:
            missing.append(module)
            continue
        scale = torch.as_tensor(scales[module], dtype=torch.float32)
        out[key] = (tensor.to(torch.float32) * scale).to(dtype)
    if missing:
        raise ValueError(f"the FP8 scale map has no scale for {len(missing)} fp8 weight(s): {', '.join(missing[:5])}")
    return out


# ------------------------------------------------------------------------------------------------
# Configs. diffusers' names for our DiTConfig fields; the rest of DiTConfig has no diffusers field
# and must equal the release's value for the diffusers model to compute the same function.

_DIT_FIXED_FOR_DIFFUSERS = {
    "mlp_act_type": "gelu_tanh",
    "qkv_bias": True,
    "qk_norm": True,
    "qk_norm_type": "rms",
    "text_projection": "single_refiner",
    "use_attention_mask": True,
}


def dit_config_to_diffusers(config: DiTConfig) -> dict[str, Any]:
    """A `HunyuanVideoTransformer3DModel` config dict (without `_class_name`)."""
    for name, value in _DIT_FIXED_FOR_DIFFUSERS.items():
        if getattr(config, name) != value:
            raise ValueError(f"diffusers' HunyuanVideoTransformer3DModel needs {name}={value!r}, the config has {getattr(config, name)!r}")
    if config.refiner_heads_num not in (None, config.heads_num):
        raise ValueError("diffusers' HunyuanVideoTransformer3DModel needs refiner_heads_num == heads_num")
    pt, ph, pw = config.patch_size
    if ph != pw:
        raise ValueError(f"diffusers' HunyuanVideoTransformer3DModel needs a square spatial patch, got {config.patch_size}")
    return {
        "in_channels": config.in_channels,
        "out_channels": config.out_channels,
        "num_attention_heads": config.heads_num,
        "attention_head_dim": config.head_dim,
        "num_layers": config.mm_double_blocks_depth,
        "num_single_layers": config.mm_single_blocks_depth,
        "num_refiner_layers": config.refiner_depth,
        "mlp_ratio": config.mlp_width_ratio,
        "patch_size": ph,
        "patch_size_t": pt,
        "qk_norm": "rms_norm",
        "guidance_embeds": config.guidance_embed,
        "text_embed_dim": config.text_states_dim,
        "pooled_projection_dim": config.text_states_dim_2,
        "rope_theta": config.rope_theta,
        "rope_axes_dim": list(config.rope_dim_list),
        "image_condition_type": config.i2v_condition_type,
    }


def dit_config_from_diffusers(d: Mapping[str, Any]) -> DiTConfig:
    """Our DiTConfig from a diffusers `HunyuanVideoTransformer3DModel` config.json dict."""
    if d.get("qk_norm", "rms_norm") != "rms_norm":
        raise ValueError(f"unsupported diffusers qk_norm {d['qk_norm']!r} (the release uses 'rms_norm')")
    base = DiTConfig()
    heads = d.get("num_attention_heads", base.heads_num)
    patch = d.get("patch_size", base.patch_size[1])
    return DiTConfig(
        patch_size=(d.get("patch_size_t", base.patch_size[0]), patch, patch),
        in_channels=d.get("in_channels", base.in_channels),
        out_channels=d.get("out_channels", base.out_channels),
        hidden_size=heads * d.get("attention_head_dim", base.head_dim),
        heads_num=heads,
        mlp_width_ratio=d.get("mlp_ratio", base.mlp_width_ratio),
        mm_double_blocks_depth=d.get("num_layers", base.mm_double_blocks_depth),
        mm_single_blocks_depth=d.get("num_single_layers", base.mm_single_blocks_depth),
        rope_dim_list=tuple(d.get("rope_axes_dim", base.rope_dim_list)),
        rope_theta=d.get("rope_theta", base.rope_theta),
        guidance_embed=d.get("guidance_embeds", base.guidance_embed),
        text_states_dim=d.get("text_embed_dim", base.text_states_dim),
        text_states_dim_2=d.get("pooled_projection_dim", base.text_states_dim_2),
        refiner_depth=d.get("num_refiner_layers", base.refiner_depth),
        i2v_condition_type=d.get("image_condition_type"),
    )


def vae_config_to_diffusers(config: VAEConfig) -> dict[str, Any]:
    """An `AutoencoderKLHunyuanVideo` config dict (without `_class_name`)."""
    n = len(config.block_out_channels)
    d = {
        "in_channels": config.in_channels,
        "out_channels": config.out_channels,
        "latent_channels": config.latent_channels,
        "down_block_types": ["HunyuanVideoDownBlock3D"] * n,
        "up_block_types": ["HunyuanVideoUpBlock3D"] * n,
        "block_out_channels": list(config.block_out_channels),
        "layers_per_block": config.layers_per_block,
        "act_fn": config.act_fn,
        "norm_num_groups": config.norm_num_groups,
        "scaling_factor": config.scaling_factor,
        "spatial_compression_ratio": config.spatial_compression_ratio,
        "temporal_compression_ratio": config.time_compression_ratio,
        "mid_block_add_attention": config.mid_block_add_attention,
    }
    if config.latents_std is not None:  # diffusers' name for per-channel latent statistics (its Wan VAE)
        d["latents_mean"], d["latents_std"] = list(config.latents_mean), list(config.latents_std)
    if config.pixel_shortcut:  # ours alone: diffusers' class has no such path and would ignore the key
        d["pixel_shortcut"] = True
        if config.pixel_shortcut_fold != 2:
            d["pixel_shortcut_fold"] = config.pixel_shortcut_fold
    return d


def vae_config_from_diffusers(d: Mapping[str, Any]) -> VAEConfig:
    """Our VAEConfig from a diffusers `AutoencoderKLHunyuanVideo` config.json dict.

    diffusers has no `sample_size`/`sample_tsize` (tile sizes); they keep our defaults.
    """
    fields = dict(d)
    if "temporal_compression_ratio" in fields:
        fields["time_compression_ratio"] = fields.pop("temporal_compression_ratio")
    return VAEConfig.from_dict(fields)


def vae_config_from_official(d: Mapping[str, Any]) -> VAEConfig:
    """Our VAEConfig from the release's `AutoencoderKLCausal3D` config.json (same field names)."""
    return VAEConfig.from_dict(dict(d))


# ------------------------------------------------------------------------------------------------
# Configs inferred from an official-layout state dict's shapes. Fields the shapes do not fix come
# from the preset whose shape-fixed fields all match (so the release's files and our tiny model get
# their exact configs), else from the release's defaults where those fit, else an error.


def _indices(keys: list[str], prefix: str) -> list[int]:
    found = {int(k[len(prefix):].split(".", 1)[0]) for k in keys if k.startswith(prefix)}
    return sorted(found)


def _matching_preset(kind: str, fields: dict[str, Any]) -> Any:
    for name in PRESET_NAMES:
        candidate = getattr(preset(name), kind)
        if all(getattr(candidate, k) == v for k, v in fields.items()):
            return candidate
    return None


def default_rope_dims(head_dim: int) -> tuple[int, int, int]:
    """The release's RoPE split scaled to `head_dim`: h = w = the largest even number <= 7/16 of it,
    t = the rest. (16, 56, 56) for the release's 128, (4, 6, 6) for 16."""
    hw = (7 * head_dim // 16) // 2 * 2
    return (head_dim - 2 * hw, hw, hw)


def infer_dit_config(state_dict: Mapping[str, torch.Tensor]) -> DiTConfig:
    """Read a DiTConfig off an official-layout state dict.

    Shapes fix widths, depths, channels, text dims, biases, guidance and (through the qk-norm weight)
    the head count. They do not fix rope_dim_list (a matching preset's, else `default_rope_dims`,
    with a warning when that is not the release's), rope_theta, the activation, or T2V vs
    token_replace I2V (identical weights: the T2V preset wins; pass config="hunyuan-i2v-720p").
    """
    sd = state_dict
    keys = list(sd)
    try:
        hidden, in_channels, *patch = sd["img_in.proj.weight"].shape
        if "double_blocks.0.img_mlp.fc1.weight" in sd:
            mlp_hidden = sd["double_blocks.0.img_mlp.fc1.weight"].shape[0]
        else:
            mlp_hidden = sd["single_blocks.0.linear1.weight"].shape[0] - 3 * hidden
        fields: dict[str, Any] = {
            "patch_size": tuple(patch),
            "in_channels": in_channels,
            "out_channels": sd["final_layer.linear.weight"].shape[0] // (patch[0] * patch[1] * patch[2]),
            "hidden_size": hidden,
            "mlp_width_ratio": mlp_hidden / hidden,
            "mm_double_blocks_depth": len(_indices(keys, "double_blocks.")),
            "mm_single_blocks_depth": len(_indices(keys, "single_blocks.")),
            "qkv_bias": any(k.endswith("attn_qkv.bias") or k.endswith("linear1.bias") for k in keys),
            "guidance_embed": "guidance_in.mlp.0.weight" in sd,
            "text_states_dim": sd["txt_in.input_embedder.weight"].shape[1],
            "text_states_dim_2": sd["vector_in.in_layer.weight"].shape[1],
            "refiner_depth": len(_indices(keys, "txt_in.individual_token_refiner.blocks.")),
        }
    except KeyError as e:
        raise ValueError(f"cannot infer the DiT config: the checkpoint has no {e.args[0]!r}; pass config= (a DiTConfig or preset name)") from None
    norms = [k for k in keys if k.endswith("q_norm.weight")]
    fields["qk_norm"] = bool(norms)
    if norms:
        fields["heads_num"] = hidden // sd[norms[0]].shape[0]
    found = _matching_preset("dit", fields)
    if found is not None:
        return found
    if "heads_num" not in fields:
        raise ValueError(
            "cannot infer the head count from this checkpoint (it has no qk-norm weights) and no preset matches "
            "its shapes; pass config= (a DiTConfig or preset name)"
        )
    head_dim = hidden // fields["heads_num"]
    rope = default_rope_dims(head_dim)
    if rope != DiTConfig.rope_dim_list:
        warnings.warn(
            f"rope_dim_list is not stored in a checkpoint; assuming {rope} for head dim {head_dim} (the release's "
            "proportions). Pass config= if the model was trained with another split.",
            stacklevel=3,
        )
    latent_concat = in_channels == 2 * fields["out_channels"] + 1  # noisy | image latent | mask
    return DiTConfig(**fields, rope_dim_list=rope, i2v_condition_type="latent_concat" if latent_concat else None)


def infer_vae_config(state_dict: Mapping[str, torch.Tensor]) -> VAEConfig:
    """Read a VAEConfig off a VAE state dict. The GroupNorm group count, time compression and tile
    sizes are not in the shapes: a matching preset's, else the release's values."""
    sd = state_dict
    keys = list(sd)
    try:
        levels = _indices(keys, "encoder.down_blocks.")
        fields: dict[str, Any] = {
            "in_channels": sd["encoder.conv_in.conv.weight"].shape[1],
            "out_channels": sd["decoder.conv_out.conv.weight"].shape[0],
            "block_out_channels": tuple(sd[f"encoder.down_blocks.{i}.resnets.0.conv1.conv.weight"].shape[0] for i in levels),
            "layers_per_block": len(_indices(keys, "encoder.down_blocks.0.resnets.")),
            "latent_channels": sd["decoder.conv_in.conv.weight"].shape[1],
            "spatial_compression_ratio": 2 ** sum(f"encoder.down_blocks.{i}.downsamplers.0.conv.conv.weight" in sd for i in levels),
            "mid_block_add_attention": "encoder.mid_block.attentions.0.to_q.weight" in sd,
        }
    except KeyError as e:
        raise ValueError(f"cannot infer the VAE config: the checkpoint has no {e.args[0]!r}; pass config= (a VAEConfig or preset name)") from None
    found = _matching_preset("vae", fields)
    if found is not None:
        return found
    groups = VAEConfig.norm_num_groups
    if any(w % groups for w in fields["block_out_channels"]):
        raise ValueError(
            f"cannot infer norm_num_groups for channel widths {fields['block_out_channels']} and no preset "
            "matches; pass config= (a VAEConfig or preset name)"
        )
    return VAEConfig(**fields)
