"""Loading and saving checkpoints in every layout (videoforge.models.checkpoints).

The reference weights come from tiny diffusers models with every parameter randomised (norms and
biases included), written with diffusers' own `save_pretrained`, so a swapped, transposed or
misplaced tensor fails a state-dict equality below.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from videoforge.config import VAEConfig, preset
from videoforge.models import load_dit, load_vae, save_dit, save_vae
from videoforge.models.checkpoints import CheckpointError
from videoforge.models.convert import dit_config_from_diffusers, dit_diffusers_to_official, dit_official_to_diffusers

diffusers = pytest.importorskip("diffusers")

REFERENCE = Path(__file__).resolve().parent.parent / "data" / "reference"
TINY_VAE = VAEConfig(block_out_channels=(8, 16, 32, 32), layers_per_block=1, norm_num_groups=4)
# the shapes do not store RoPE dims; inference assumes the release's proportions and says so
rope_warning = pytest.mark.filterwarnings("ignore:rope_dim_list is not stored")


def _randomise(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return model.eval()


@pytest.fixture(scope="module")
def ref_dit() -> torch.nn.Module:
    return _randomise(
        diffusers.HunyuanVideoTransformer3DModel(
            in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=16, num_layers=2,
            num_single_layers=2, num_refiner_layers=1, text_embed_dim=24, pooled_projection_dim=20,
            rope_axes_dim=(4, 6, 6),
        ),
        seed=0,
    )


@pytest.fixture(scope="module")
def ref_vae() -> torch.nn.Module:
    return _randomise(
        diffusers.AutoencoderKLHunyuanVideo(
            block_out_channels=TINY_VAE.block_out_channels, layers_per_block=1, norm_num_groups=4
        ),
        seed=1,
    )


@pytest.fixture(scope="module")
def official_dit(ref_dit) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in dit_diffusers_to_official(ref_dit.state_dict()).items()}


@pytest.fixture(scope="module")
def dit_folder(ref_dit, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("dit_diffusers")
    ref_dit.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def vae_folder(ref_vae, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("vae_diffusers")
    ref_vae.save_pretrained(folder)
    return folder


def assert_state_equal(model: torch.nn.Module, expected: dict[str, torch.Tensor]) -> None:
    got = model.state_dict()
    assert sorted(got) == sorted(expected)
    for k, v in expected.items():
        assert torch.equal(got[k], v.to(got[k].dtype)), k


def dit_inputs(config, seed: int = 3):
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[1, 4:] = 0
    return dict(
        latents=torch.randn(2, config.in_channels, 3, 8, 8, generator=g),
        timestep=torch.tensor([700.0, 120.0]),
        text=torch.randn(2, 7, config.text_states_dim, generator=g),
        mask=mask,
        pooled=torch.randn(2, config.text_states_dim_2, generator=g),
        guidance=torch.tensor([6000.0, 3500.0]),
    )


# ------------------------------------------------------------------------------------------------
# Loading


def test_load_dit_from_diffusers_folder(ref_dit, official_dit, dit_folder):
    dit = load_dit(dit_folder)
    assert dit.config == dit_config_from_diffusers(ref_dit.config)
    assert_state_equal(dit, official_dit)
    assert not dit.training and all(p.dtype == torch.float32 for p in dit.parameters())


@rope_warning
@pytest.mark.parametrize("wrapping", ["module", "ema", "bare", "module+ema", "safetensors"])
def test_load_dit_from_official_files(tmp_path, official_dit, ref_dit, wrapping):
    if wrapping == "safetensors":
        path = tmp_path / "dit.safetensors"
        save_file(official_dit, path)
    else:
        path = tmp_path / "mp_rank_00_model_states.pt"
        decoy = {k: torch.zeros_like(v) for k, v in official_dit.items()}
        payload = {"module": official_dit, "ema": decoy} if wrapping == "module+ema" else (
            official_dit if wrapping == "bare" else {wrapping: official_dit})
        torch.save(payload, path)
    dit = load_dit(path)  # config inferred from the shapes
    assert dit.config == dit_config_from_diffusers(ref_dit.config)
    assert_state_equal(dit, official_dit)


def test_load_dit_from_sharded_diffusers_folder(ref_dit, official_dit, tmp_path):
    ref_dit.save_pretrained(tmp_path, max_shard_size="60KB")
    shards = sorted(tmp_path.glob("diffusion_pytorch_model-*.safetensors"))
    assert len(shards) > 2 and (tmp_path / "diffusion_pytorch_model.safetensors.index.json").is_file()
    assert_state_equal(load_dit(tmp_path, dtype=torch.bfloat16), official_dit)


def test_load_dit_casts_to_the_requested_dtype(dit_folder, official_dit):
    dit = load_dit(dit_folder, dtype=torch.bfloat16)
    assert {p.dtype for p in dit.parameters()} == {torch.bfloat16}
    assert_state_equal(dit, {k: v.to(torch.bfloat16) for k, v in official_dit.items()})


def test_model_folder_and_diffusers_pipeline_folder(ref_dit, ref_vae, official_dit, tmp_path):
    ref_dit.save_pretrained(tmp_path / "transformer")
    ref_vae.save_pretrained(tmp_path / "vae")
    (tmp_path / "videoforge.json").write_text(json.dumps({"steps": 4}))
    assert_state_equal(load_dit(tmp_path), official_dit)
    vae = load_vae(tmp_path)
    assert vae.config == TINY_VAE
    assert_state_equal(vae, ref_vae.state_dict())


def test_load_vae_official_wrappings(ref_vae, tmp_path):
    state = ref_vae.state_dict()
    prefixed = {"vae." + k: v for k, v in state.items()}
    payloads = {
        "bare": state,
        "state_dict": {"state_dict": state},
        "prefixed": {**prefixed, "loss.discriminator.weight": torch.zeros(3)},  # only vae.* is kept
        "state_dict+prefixed": {"state_dict": prefixed},
    }
    for name, payload in payloads.items():
        torch.save(payload, tmp_path / f"{name}.pt")
        assert_state_equal(load_vae(tmp_path / f"{name}.pt", config=TINY_VAE), state)


def _release_config(config: VAEConfig) -> dict:
    n = len(config.block_out_channels)
    return {
        "_class_name": "AutoencoderKLCausal3D", "_diffusers_version": "0.4.2",
        "down_block_types": ["DownEncoderBlockCausal3D"] * n, "up_block_types": ["UpDecoderBlockCausal3D"] * n,
        "force_upcast": True, **config.to_dict(),
    }


@rope_warning
def test_release_folder_layout(ref_vae, official_dit, tmp_path):
    model_dir = tmp_path / "ckpts" / "hunyuan-video-t2v-720p"
    (model_dir / "transformers").mkdir(parents=True)
    (model_dir / "vae").mkdir()
    torch.save({"module": official_dit}, model_dir / "transformers" / "mp_rank_00_model_states.pt")
    torch.save({"module": {}}, model_dir / "transformers" / "mp_rank_00_model_states_fp8.pt")  # not chosen
    torch.save({"state_dict": ref_vae.state_dict()}, model_dir / "vae" / "pytorch_model.pt")
    (model_dir / "vae" / "config.json").write_text(json.dumps(_release_config(TINY_VAE)))
    for path in (tmp_path / "ckpts", model_dir):
        assert_state_equal(load_dit(path), official_dit)
        vae = load_vae(path)
        assert vae.config == TINY_VAE  # from the release's config.json dialect
        assert_state_equal(vae, ref_vae.state_dict())
    assert_state_equal(load_dit(model_dir / "transformers"), official_dit)


@pytest.mark.parametrize("folder, preset_name", [("hunyuan-video-t2v-720p", "hunyuan-t2v-720p"), ("hunyuan-video-i2v-720p", "hunyuan-i2v-720p")])
def test_full_size_release_file_loads_on_meta(tmp_path, folder, preset_name):
    # The 13B key list (tests/data/reference) as a real torch.save'd file of meta tensors: the whole
    # resolve -> unwrap -> config -> strict assign path at full size, without the memory.
    ref = json.loads((REFERENCE / "dit_t2v_keys.json").read_text())
    path = tmp_path / folder / "transformers" / "mp_rank_00_model_states.pt"
    path.parent.mkdir(parents=True)
    torch.save({"module": {k: torch.empty(s, device="meta", dtype=torch.bfloat16) for k, s in ref["state_dict"].items()}}, path)
    dit = load_dit(tmp_path / folder, device="meta", dtype=torch.bfloat16)
    assert dit.config == preset(preset_name).dit  # T2V and I2V weights look alike: the folder says which
    assert sum(p.numel() for p in dit.parameters()) == ref["num_params"]


# ------------------------------------------------------------------------------------------------
# FP8


def _quantise_fp8(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The release's scheme: block Linear weights as float8_e4m3fn with one scale per module."""
    quantised, scales = dict(state), {}
    for key, w in state.items():
        module = key.rpartition(".")[0]
        is_linear = key.endswith(".weight") and w.ndim == 2
        if is_linear and ("double_blocks" in key or "single_blocks" in key):
            scales[module] = w.abs().max() / torch.finfo(torch.float8_e4m3fn).max
            quantised[key] = (w / scales[module]).to(torch.float8_e4m3fn)
    return quantised, scales


def test_fp8_checkpoint_dequantises_within_fp8_tolerance(official_dit, tmp_path):
    quantised, scales = _quantise_fp8(official_dit)
    assert len(scales) == 2 * 10 + 2 * 3  # 10 Linear layers per double block, 3 per single block
    path = tmp_path / "hunyuan-video-t2v-720p" / "transformers" / "mp_rank_00_model_states_fp8.pt"
    path.parent.mkdir(parents=True)
    torch.save({"module": quantised}, path)
    with pytest.raises(CheckpointError, match="holds float8 weights but its scale map mp_rank_00_model_states_fp8_map.pt is missing"):
        load_dit(path)
    torch.save(scales, path.with_name("mp_rank_00_model_states_fp8_map.pt"))
    with pytest.warns(UserWarning, match="rope_dim_list"):
        dit = load_dit(path.parent.parent)  # the release folder holding only the FP8 file
    got = dit.state_dict()
    for key, w in official_dit.items():
        module = key.rpartition(".")[0]
        if quantised[key].dtype != torch.float8_e4m3fn:  # biases, norms, embedders stay as they were
            assert torch.equal(got[key], w), key
            continue
        assert torch.equal(got[key], quantised[key].float() * scales[module]), key
        # e4m3: 3 mantissa bits -> relative error <= 2^-4 for normals, absolute <= 2^-10 * scale below
        bound = w.abs() * 2**-4 + scales[module] * 2**-10
        assert ((got[key] - w).abs() <= bound).all(), key
        assert not torch.equal(got[key], w)  # the quantisation did happen


# ------------------------------------------------------------------------------------------------
# Errors


@rope_warning
def test_mismatch_names_missing_unexpected_and_wrongly_shaped_keys(official_dit, tmp_path):
    broken = dict(official_dit)
    del broken["double_blocks.1.img_mlp.fc2.bias"]
    broken["double_blocks.0.img_attn_proj.weight"] = torch.zeros(3, 3)
    broken["double_blocks.0.lora_up.weight"] = torch.zeros(2)
    save_file(broken, tmp_path / "broken.safetensors")
    with pytest.raises(CheckpointError) as e:
        load_dit(tmp_path / "broken.safetensors")
    msg = str(e.value)
    assert "1 missing keys: double_blocks.1.img_mlp.fc2.bias" in msg
    assert "1 unexpected keys: double_blocks.0.lora_up.weight" in msg
    assert "1 wrongly shaped: double_blocks.0.img_attn_proj.weight (checkpoint [3, 3], model [32, 32])" in msg

    with pytest.raises(CheckpointError) as e:  # the wrong config: long lists are cut, with counts
        load_dit(tmp_path / "broken.safetensors", config="tiny")
    msg = str(e.value)
    count, more = re.search(r"(\d+) wrongly shaped: .*\.\.\. \((\d+) more\)", msg).groups()
    assert int(count) > 50 and int(more) == int(count) - 8 and len(msg) < 3000
    assert "double_blocks.0.img_attn_k_norm.weight (checkpoint [16], model [32])" in msg


def test_wrong_kind_and_unreadable_checkpoints(dit_folder, vae_folder, ref_vae, tmp_path):
    with pytest.raises(CheckpointError, match="holds a DiT \\(HunyuanVideoTransformer3DModel\\), not a VAE"):
        load_vae(dit_folder)
    with pytest.raises(CheckpointError, match="holds a VAE \\(AutoencoderKLHunyuanVideo\\), not a DiT"):
        load_dit(vae_folder)
    torch.save(ref_vae.state_dict(), tmp_path / "vae.pt")
    with pytest.raises(ValueError, match="cannot infer the DiT config: the checkpoint has no 'img_in.proj.weight'"):
        load_dit(tmp_path / "vae.pt")
    with pytest.raises(CheckpointError, match="no such file or folder"):
        load_dit(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no DiT checkpoint recognised in .*empty \\(found nothing\\)"):
        load_dit(tmp_path / "empty")
    torch.save({"module": {"img_in.proj.weight": torch.zeros(1), "step": 3}}, tmp_path / "meta.pt")
    with pytest.raises(CheckpointError, match="non-tensor entries: step"):
        load_dit(tmp_path / "meta.pt")
    (tmp_path / "noweights").mkdir()
    (tmp_path / "noweights" / "config.json").write_text(json.dumps({"_class_name": "HunyuanVideoTransformer3DModel"}))
    with pytest.raises(CheckpointError, match="no diffusion_pytorch_model.safetensors"):
        load_dit(tmp_path / "noweights")
    (tmp_path / "noweights" / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel"}))
    with pytest.raises(CheckpointError, match="unknown _class_name 'UNet2DModel'"):
        load_dit(tmp_path / "noweights")
    with pytest.raises(TypeError, match="config must be a DiTConfig"):
        load_dit(dit_folder, config=TINY_VAE)
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        load_dit(dit_folder, config="huge")


# ------------------------------------------------------------------------------------------------
# Saving


def test_save_dit_diffusers_layout_is_what_diffusers_loads(ref_dit, dit_folder, tmp_path):
    ours = load_dit(dit_folder)
    files = save_dit(ours, tmp_path)
    assert sorted(p.name for p in files) == ["config.json", "diffusion_pytorch_model.safetensors"]
    theirs = diffusers.HunyuanVideoTransformer3DModel.from_pretrained(tmp_path).eval()
    assert_state_equal(theirs, ref_dit.state_dict())
    x = dit_inputs(ours.config)
    with torch.no_grad():
        expected = theirs(hidden_states=x["latents"], timestep=x["timestep"], encoder_hidden_states=x["text"],
                          encoder_attention_mask=x["mask"], pooled_projections=x["pooled"], guidance=x["guidance"],
                          return_dict=False)[0]
        got = ours(x["latents"], x["timestep"], x["text"], x["mask"], x["pooled"], x["guidance"])
    assert expected.abs().max() > 1.0
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    again = load_dit(tmp_path)
    assert again.config == ours.config
    assert_state_equal(again, ours.state_dict())


def test_save_dit_official_layout_and_sharding(dit_folder, tmp_path):
    ours = load_dit(dit_folder)
    ours.config.rope_theta = 128.0  # a field no shape reveals: carried by our config.json
    files = save_dit(ours, tmp_path / "official", layout="official")
    assert sorted(p.name for p in files) == ["config.json", "transformer.safetensors"]
    assert json.loads((tmp_path / "official" / "config.json").read_text())["_class_name"] == "videoforge.DiTConfig"
    for path in (tmp_path / "official", tmp_path / "official" / "transformer.safetensors"):
        again = load_dit(path)
        assert again.config == ours.config
        assert_state_equal(again, ours.state_dict())

    mapped = load_dit(tmp_path / "official")  # its tensors are memory-mapped from the file it overwrites
    save_dit(mapped, tmp_path / "official", layout="official")
    assert_state_equal(load_dit(tmp_path / "official"), ours.state_dict())

    files = save_dit(ours, tmp_path / "sharded", max_shard_bytes=40_000)
    shards = [p for p in files if p.name.startswith("diffusion_pytorch_model-")]
    assert len(shards) > 2 and all(p.stat().st_size < 80_000 for p in shards)
    assert_state_equal(load_dit(tmp_path / "sharded"), ours.state_dict())
    theirs = diffusers.HunyuanVideoTransformer3DModel.from_pretrained(tmp_path / "sharded")
    assert theirs.config.rope_theta == 128.0
    assert_state_equal(theirs, dit_official_to_diffusers(ours.state_dict()))
    save_dit(ours, tmp_path / "sharded")  # re-saving unsharded leaves no stale shards behind
    assert sorted(p.name for p in (tmp_path / "sharded").iterdir()) == ["config.json", "diffusion_pytorch_model.safetensors"]
    with pytest.raises(ValueError, match="layout must be 'diffusers' or 'official'"):
        save_dit(ours, tmp_path / "x", layout="kohya")


def test_save_vae_round_trips_and_diffusers_decodes_the_same(ref_vae, vae_folder, tmp_path):
    ours = load_vae(vae_folder)
    ours.config.sample_size = 128  # not a diffusers field: kept in config.json's "_videoforge"
    save_vae(ours, tmp_path / "diffusers")
    theirs = diffusers.AutoencoderKLHunyuanVideo.from_pretrained(tmp_path / "diffusers").eval()
    assert_state_equal(theirs, ref_vae.state_dict())
    latents = torch.randn(1, 16, 1, 4, 4, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = theirs.decode(latents).sample
        got = ours.decode(latents)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    for layout in ("diffusers", "official"):
        if layout == "official":
            save_vae(ours, tmp_path / "official", layout="official")
            assert (tmp_path / "official" / "vae.safetensors").is_file()
        again = load_vae(tmp_path / layout)
        assert again.config == ours.config
        assert_state_equal(again, ours.state_dict())


# ------------------------------------------------------------------------------------------------
# Memory


def _rss_anon_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no RssAnon in /proc/self/status")


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs Linux /proc")
def test_loading_maps_the_file_instead_of_copying_it(tmp_path):
    from videoforge.config import DiTConfig
    from videoforge.models import build_dit

    config = DiTConfig(hidden_size=512, heads_num=4, mm_double_blocks_depth=2, mm_single_blocks_depth=4,
                       text_states_dim=64, text_states_dim_2=32)
    path = tmp_path / "dit.pt"
    torch.save({"module": build_dit(config).state_dict()}, path)  # ~140 MB, freed before measuring
    size = path.stat().st_size
    before = _rss_anon_bytes()
    same = load_dit(path)  # float32 file -> float32 model: built on meta, tensors stay file-backed
    assert _rss_anon_bytes() - before < 0.15 * size
    half = load_dit(path, dtype=torch.bfloat16)  # cast one tensor at a time: only the bf16 copy remains
    assert _rss_anon_bytes() - before < 0.65 * size
    assert same.config == config and next(half.parameters()).dtype == torch.bfloat16
