"""Key and config conversion between the release's layout and diffusers' (videoforge.models.convert)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from videoforge.config import DiTConfig, VAEConfig, preset
from videoforge.models import build_dit, build_vae
from videoforge.models.convert import (
    dequantize_fp8,
    dit_config_from_diffusers,
    dit_config_to_diffusers,
    dit_diffusers_to_official,
    dit_official_to_diffusers,
    infer_dit_config,
    infer_vae_config,
    vae_config_from_diffusers,
    vae_config_from_official,
    vae_config_to_diffusers,
)

diffusers = pytest.importorskip("diffusers")

REFERENCE = Path(__file__).resolve().parent.parent / "data" / "reference"
SMALL = DiTConfig(
    in_channels=4, out_channels=4, hidden_size=32, heads_num=2, mm_double_blocks_depth=2, mm_single_blocks_depth=2,
    rope_dim_list=(4, 6, 6), text_states_dim=24, text_states_dim_2=20, refiner_depth=2,
)
VARIANTS = {
    "t2v": {},
    "token_replace": {"i2v_condition_type": "token_replace"},
    "latent_concat": {"in_channels": 9, "guidance_embed": False, "i2v_condition_type": "latent_concat"},
}


def _config(variant: str) -> DiTConfig:
    return DiTConfig(**{**SMALL.to_dict(), **VARIANTS[variant]})


def _random_state(module: torch.nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=g) for k, v in module.state_dict().items()}


def _meta_reference(name: str) -> dict[str, torch.Tensor]:
    ref = json.loads((REFERENCE / name).read_text())["state_dict"]
    return {k: torch.empty(s, device="meta") for k, s in ref.items()}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_official_keys_map_onto_diffusers_model_for_matching_config(variant):
    config = _config(variant)
    ours = build_dit(config, device="meta")
    with torch.device("meta"):
        theirs = diffusers.HunyuanVideoTransformer3DModel(**dit_config_to_diffusers(config))
    converted = dit_official_to_diffusers(ours.state_dict())
    expected = theirs.state_dict()
    assert sorted(converted) == sorted(expected)
    assert all(converted[k].shape == expected[k].shape for k in expected)


def test_round_trips_are_identity_on_random_weights():
    official = _random_state(build_dit(SMALL, device="meta"))
    back = dit_diffusers_to_official(dit_official_to_diffusers(official))
    assert back.keys() == official.keys()
    assert all(torch.equal(back[k], official[k]) for k in official)

    with torch.device("meta"):
        theirs = diffusers.HunyuanVideoTransformer3DModel(**dit_config_to_diffusers(SMALL))
    diff = _random_state(theirs, seed=1)
    again = dit_official_to_diffusers(dit_diffusers_to_official(diff))
    assert again.keys() == diff.keys()
    assert all(torch.equal(again[k], diff[k]) for k in diff)


def test_fused_tensors_split_in_release_order():
    official = _random_state(build_dit(SMALL, device="meta"))
    d = dit_official_to_diffusers(official)
    h = SMALL.hidden_size
    qkv = official["double_blocks.1.txt_attn_qkv.weight"]
    assert torch.equal(d["transformer_blocks.1.attn.add_q_proj.weight"], qkv[:h])
    assert torch.equal(d["transformer_blocks.1.attn.add_k_proj.weight"], qkv[h : 2 * h])
    assert torch.equal(d["transformer_blocks.1.attn.add_v_proj.weight"], qkv[2 * h :])
    linear1 = official["single_blocks.0.linear1.bias"]
    assert torch.equal(d["single_transformer_blocks.0.attn.to_v.bias"], linear1[2 * h : 3 * h])
    assert torch.equal(d["single_transformer_blocks.0.proj_mlp.bias"], linear1[3 * h :])
    assert d["single_transformer_blocks.0.proj_mlp.weight"].shape == (SMALL.mlp_hidden_dim, h)
    # the release's final layer gives (shift, scale), diffusers' (scale, shift)
    final = official["final_layer.adaLN_modulation.1.weight"]
    assert torch.equal(d["norm_out.linear.weight"], torch.cat([final[h:], final[:h]]))
    assert torch.equal(d["context_embedder.token_refiner.refiner_blocks.1.attn.to_out.0.bias"],
                       official["txt_in.individual_token_refiner.blocks.1.self_attn_proj.bias"])


def test_unknown_and_incomplete_keys_are_named():
    official = _random_state(build_dit(SMALL, device="meta"))
    with pytest.raises(ValueError, match=r"1 key\(s\) not in the official DiT layout: double_blocks.0.extra.weight"):
        dit_official_to_diffusers({**official, "double_blocks.0.extra.weight": torch.zeros(1)})
    d = dit_official_to_diffusers(official)
    del d["transformer_blocks.0.attn.to_k.weight"]
    with pytest.raises(ValueError, match=r"double_blocks.0.img_attn_qkv.weight: missing diffusers parts \['transformer_blocks.0.attn.to_k'\]"):
        dit_diffusers_to_official(d)
    with pytest.raises(ValueError, match="not in the diffusers DiT layout: .*img_in.proj.weight"):
        dit_diffusers_to_official({**d, "img_in.proj.weight": torch.zeros(1)})


@pytest.mark.parametrize("name", ["hunyuan-t2v-720p", "hunyuan-i2v-720p", "hunyuan-i2v-720p-33ch", "tiny"])
def test_dit_config_round_trips_through_diffusers(name):
    config = preset(name).dit
    assert dit_config_from_diffusers(dit_config_to_diffusers(config)) == config


def test_release_defaults_equal_diffusers_defaults():
    # diffusers' constructor defaults are the release's T2V model; a config.json missing a field means them
    assert dit_config_from_diffusers({}) == preset("hunyuan-t2v-720p").dit
    assert vae_config_from_diffusers({}) == preset("hunyuan-t2v-720p").vae


def test_configs_diffusers_cannot_express_are_refused():
    with pytest.raises(ValueError, match="mlp_act_type='gelu_tanh'"):
        dit_config_to_diffusers(DiTConfig(mlp_act_type="silu"))
    with pytest.raises(ValueError, match="refiner_heads_num"):
        dit_config_to_diffusers(DiTConfig(refiner_heads_num=8))
    with pytest.raises(ValueError, match="qk_norm"):
        dit_config_from_diffusers({"qk_norm": "layer_norm"})


def test_vae_configs_in_all_three_dialects():
    release = {  # the release's vae/config.json (tests/data/reference: hunyuanvideo_vae.json "config")
        "_class_name": "AutoencoderKLCausal3D", "in_channels": 3, "out_channels": 3,
        "down_block_types": ["DownEncoderBlockCausal3D"] * 4, "up_block_types": ["UpDecoderBlockCausal3D"] * 4,
        "block_out_channels": [128, 256, 512, 512], "layers_per_block": 2, "act_fn": "silu", "latent_channels": 16,
        "norm_num_groups": 32, "sample_size": 256, "sample_tsize": 64, "scaling_factor": 0.476986,
        "time_compression_ratio": 4, "mid_block_add_attention": True, "force_upcast": True, "_diffusers_version": "0.4.2",
    }
    assert vae_config_from_official(release) == preset("hunyuan-t2v-720p").vae
    tiny = preset("tiny").vae
    d = vae_config_to_diffusers(tiny)
    assert d["temporal_compression_ratio"] == 4 and d["down_block_types"] == ["HunyuanVideoDownBlock3D"] * 4
    assert vae_config_from_diffusers(d) == tiny
    with torch.device("meta"):  # diffusers accepts the dict and builds the same parameters
        theirs = diffusers.AutoencoderKLHunyuanVideo(**d)
    ours = build_vae(tiny, device="meta")
    assert {k: v.shape for k, v in theirs.state_dict().items()} == {k: v.shape for k, v in ours.state_dict().items()}


def test_vae_channel_statistics_travel_in_the_config_and_map_latents_both_ways():
    from dataclasses import replace

    from videoforge.models.vae import latents_from_model, latents_to_model

    tiny = preset("tiny").vae
    assert "latents_mean" not in vae_config_to_diffusers(tiny) and "latents_mean" not in tiny.to_dict()
    stats = replace(tiny, latents_mean=[0.5] * 16, latents_std=[2.0] * 8 + [0.25] * 8)
    assert stats.latents_std[8] == 0.25 and isinstance(stats.latents_std, tuple)
    d = vae_config_to_diffusers(stats)
    assert d["latents_std"] == [2.0] * 8 + [0.25] * 8  # diffusers' keys for them
    assert vae_config_from_diffusers(json.loads(json.dumps(d))) == stats
    assert VAEConfig.from_dict(json.loads(json.dumps(stats.to_dict()))) == stats
    z = torch.randn(2, 16, 3, 4, 4)
    scaled = latents_to_model(z, stats)
    torch.testing.assert_close(scaled[:, 0], (z[:, 0] - 0.5) / 2.0)
    torch.testing.assert_close(scaled[:, 15], (z[:, 15] - 0.5) / 0.25)
    torch.testing.assert_close(latents_from_model(scaled, stats), z)
    torch.testing.assert_close(latents_to_model(z, tiny), z * tiny.scaling_factor)  # no statistics: the factor
    torch.testing.assert_close(latents_from_model(z, tiny), z / tiny.scaling_factor)
    with pytest.raises(ValueError, match="latents_std has 3 values for 16 latent channels"):
        replace(tiny, latents_mean=[0.0] * 16, latents_std=[1.0] * 3)
    with pytest.raises(ValueError, match="set both or neither"):
        replace(tiny, latents_mean=[0.0] * 16)
    shortcut = replace(tiny, pixel_shortcut=True)  # ours alone, so it travels under its own key
    assert vae_config_from_diffusers(json.loads(json.dumps(vae_config_to_diffusers(shortcut)))) == shortcut
    assert "pixel_shortcut" not in vae_config_to_diffusers(tiny)
    folded = replace(tiny, pixel_shortcut=True, pixel_shortcut_fold=1)
    assert vae_config_from_diffusers(json.loads(json.dumps(vae_config_to_diffusers(folded)))) == folded


def test_infer_release_configs_from_reference_keys():
    t2v = _meta_reference("dit_t2v_keys.json")
    assert infer_dit_config(t2v) == preset("hunyuan-t2v-720p").dit
    legacy = json.loads((REFERENCE / "dit_i2v_keys.json").read_text())["latent_concat_variant"]
    concat = {k: v for k, v in t2v.items() if k not in legacy["missing_keys"]}
    concat["img_in.proj.weight"] = torch.empty(legacy["changed"]["img_in.proj.weight"], device="meta")
    assert infer_dit_config(concat) == preset("hunyuan-i2v-720p-33ch").dit
    assert infer_vae_config(_meta_reference("vae_keys.json")) == preset("hunyuan-t2v-720p").vae


def test_infer_tiny_and_custom_configs():
    tiny = preset("tiny")
    assert infer_dit_config(build_dit(tiny.dit, device="meta").state_dict()) == tiny.dit
    assert infer_vae_config(build_vae(tiny.vae, device="meta").state_dict()) == tiny.vae
    for variant in VARIANTS:  # no preset matches: shapes + the release's RoPE proportions, with a warning
        config = _config(variant)
        if variant == "token_replace":
            config.i2v_condition_type = None  # its weights are T2V's
        with pytest.warns(UserWarning, match=r"assuming \(4, 6, 6\) for head dim 16"):
            assert infer_dit_config(build_dit(_config(variant), device="meta").state_dict()) == config


def test_infer_refuses_what_shapes_do_not_determine():
    state = build_dit(DiTConfig(**{**SMALL.to_dict(), "qk_norm": False}), device="meta").state_dict()
    with pytest.raises(ValueError, match="cannot infer the head count.*pass config="):
        infer_dit_config(state)
    with pytest.raises(ValueError, match="has no 'img_in.proj.weight'"):
        infer_dit_config({"foo.weight": torch.zeros(1)})
    odd = build_vae(VAEConfig(block_out_channels=(8, 16, 16, 16), layers_per_block=1, norm_num_groups=4), device="meta")
    with pytest.raises(ValueError, match=r"cannot infer norm_num_groups for channel widths \(8, 16, 16, 16\)"):
        infer_vae_config(odd.state_dict())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the release's own head dim needs no assumption
        infer_dit_config(_meta_reference("dit_t2v_keys.json"))


def test_dequantize_fp8_multiplies_by_the_module_scale():
    w = torch.tensor([[1.0, -2.0], [0.5, 448.0]]).to(torch.float8_e4m3fn)
    state = {"double_blocks.0.img_attn_qkv.weight": w, "double_blocks.0.img_attn_qkv.bias": torch.ones(2)}
    out = dequantize_fp8(state, {"double_blocks.0.img_attn_qkv": torch.tensor(0.25)}, torch.float32)
    assert torch.equal(out["double_blocks.0.img_attn_qkv.weight"], torch.tensor([[0.25, -0.5], [0.125, 112.0]]))
    assert out["double_blocks.0.img_attn_qkv.bias"] is state["double_blocks.0.img_attn_qkv.bias"]
    with pytest.raises(ValueError, match="no scale for 1 fp8 weight.*double_blocks.0.img_attn_qkv"):
        dequantize_fp8(state, {}, torch.float32)
