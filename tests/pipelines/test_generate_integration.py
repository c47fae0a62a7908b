"""`videoforge generate` with the pieces other areas built: `--rewrite` (prompt rewriter over real
HTTP on 127.0.0.1, through its cache), `--lora` (a LoRA file saved by the training code, merged
into the DiT) and `--sp` (sequence parallelism over 2 gloo processes under torchrun)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from videoforge.cli import main
from videoforge.llm.testing import ScriptedChatServer
from videoforge.pipelines.video_io import read_video
from videoforge.testing import free_port

HERE = Path(__file__).parent
FOX = "a red fox runs through a snowy forest"
FOX_REWRITE = ("A red fox with a thick bushy tail runs through a snowy pine forest in the early morning. "
               "Soft winter light, wide shot; the camera pans slowly to follow the fox.")
DOGS = "two dogs play with a ball on the beach"
DOGS_REWRITE = "Two brown dogs play with a yellow ball on a sandy beach at sunset, warm light, medium shot."


def _generate(model_dir: Path, out: Path, *extra: str, prompt: str = FOX) -> int:
    return main(["generate", "--prompt", prompt, "--model-dir", str(model_dir), "--out", str(out),
                 "--seed", "3", "--steps", "2", "--size", "32x32", "--frames", "1", "--quiet", *extra])


def _sidecar(mp4: Path) -> dict:
    return json.loads(mp4.with_suffix(".json").read_text())


@pytest.fixture(scope="module")
def plain_video(tiny_model_dir, tmp_path_factory) -> Path:
    """FOX with _generate's settings and nothing else: the reference for --rewrite and --lora."""
    out = tmp_path_factory.mktemp("plain") / "plain.mp4"
    assert _generate(tiny_model_dir, out) == 0
    return out


@pytest.fixture
def rewrite_cache(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "rewrites.json"
    monkeypatch.setenv("VIDEOFORGE_REWRITE_CACHE", str(path))
    return path


# --- --rewrite ---------------------------------------------------------------------------------


def test_rewrite_generates_from_the_rewrite_records_it_and_uses_the_cache(tiny_model_dir, plain_video, tmp_path,
                                                                         rewrite_cache):
    with ScriptedChatServer(lambda r: FOX_REWRITE) as server:
        flags = ["--rewrite", "--rewrite-base-url", server.base_url, "--rewrite-model", "m", "--rewrite-mode", "master"]
        assert _generate(tiny_model_dir, tmp_path / "rw.mp4", *flags) == 0
        asked = len(server.requests)
    assert asked >= 1 and FOX in server.requests[0].last_user_text
    side = _sidecar(tmp_path / "rw.mp4")
    assert side["prompt_original"] == FOX and side["prompt_rewritten"] == FOX_REWRITE
    assert side["prompt"] == FOX_REWRITE  # what the video was generated from
    assert (side["rewrite_model"], side["rewrite_mode"], side["rewrite_kept_original"]) == ("m", "master", False)
    # the video is the one the rewritten prompt gives, not the original's
    assert _generate(tiny_model_dir, tmp_path / "direct.mp4", prompt=FOX_REWRITE) == 0
    rewritten, direct, plain = (read_video(p)[0] for p in (tmp_path / "rw.mp4", tmp_path / "direct.mp4", plain_video))
    assert np.array_equal(rewritten, direct) and not np.array_equal(rewritten, plain)
    # the endpoint is gone: the same (prompt, mode, model) comes from the rewrite cache
    assert rewrite_cache.is_file()
    assert _generate(tiny_model_dir, tmp_path / "cached.mp4", *flags) == 0
    assert _sidecar(tmp_path / "cached.mp4")["prompt_rewritten"] == FOX_REWRITE
    assert np.array_equal(read_video(tmp_path / "cached.mp4")[0], rewritten)


def test_rewrite_each_prompt_of_a_prompts_file(tiny_model_dir, tmp_path, rewrite_cache):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(f'{FOX}\n{{"prompt": "{DOGS}", "frames": 1}}\n')
    with ScriptedChatServer(lambda r: FOX_REWRITE if "fox" in r.last_user_text else DOGS_REWRITE) as server:
        rc = main(["generate", "--prompts-file", str(prompts), "--model-dir", str(tiny_model_dir), "--out",
                   str(tmp_path / "many"), "--seed", "1", "--steps", "1", "--quiet",
                   "--rewrite", "--rewrite-base-url", server.base_url, "--rewrite-model", "m"])
    assert rc == 0
    first, second = (_sidecar(tmp_path / "many" / n) for n in ("000_a-red-fox-runs-through-a-snowy-forest.mp4",
                                                                 "001_two-dogs-play-with-a-ball-on-the-beach.mp4"))
    assert (first["prompt_original"], first["prompt"]) == (FOX, FOX_REWRITE)
    assert (second["prompt_original"], second["prompt"], second["num_frames"]) == (DOGS, DOGS_REWRITE, 1)


def test_rewrite_unreachable_endpoint_is_one_line_and_writes_nothing(tiny_model_dir, tmp_path, rewrite_cache, capsys):
    url = f"http://127.0.0.1:{free_port()}/v1"
    rc = _generate(tiny_model_dir, tmp_path / "x.mp4", "--rewrite", "--rewrite-base-url", url,
                   "--rewrite-model", "m", "--rewrite-timeout", "2")
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("videoforge generate: error: ") and err.count("\n") == 1
    assert "127.0.0.1" in err and "Traceback" not in err
    assert not list(tmp_path.glob("*.mp4"))
    assert _generate(tiny_model_dir, tmp_path / "x.mp4", "--rewrite") == 1
    assert "--rewrite needs --rewrite-model" in capsys.readouterr().err


# --- --lora ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lora_file(tiny_model_dir, tmp_path_factory) -> Path:
    """A LoRA for the tiny model's DiT saved by the training code (rank 4, PEFT keys), with
    random up-projections so it is not the zero update a fresh adapter starts from."""
    from videoforge.models import load_dit
    from videoforge.train.lora import add_lora, lora_state_dict, save_lora
    from videoforge.train.recipe import LoRASection

    cfg = LoRASection(rank=4, alpha=8.0)
    dit = add_lora(load_dit(tiny_model_dir), cfg)
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in dit.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    path = tmp_path_factory.mktemp("lora") / "tiny-lora.safetensors"
    save_lora(lora_state_dict(dit.state_dict()), path, cfg)
    return path


def test_lora_changes_the_video_and_scale_zero_does_not(tiny_model_dir, plain_video, lora_file, tmp_path):
    assert _generate(tiny_model_dir, tmp_path / "lora.mp4", "--lora", str(lora_file), "--lora-scale", "0.8") == 0
    assert _generate(tiny_model_dir, tmp_path / "zero.mp4", "--lora", str(lora_file), "--lora-scale", "0") == 0
    base, lora, zero = (read_video(p)[0].astype(int) for p in (plain_video, tmp_path / "lora.mp4", tmp_path / "zero.mp4"))
    assert np.array_equal(zero, base)
    print(f"LoRA at 0.8 moves pixels by up to {np.abs(lora - base).max()} (mean {np.abs(lora - base).mean():.2f})")
    assert np.abs(lora - base).max() > 2
    side = _sidecar(tmp_path / "lora.mp4")
    assert side["lora_sha256"] == hashlib.sha256(lora_file.read_bytes()).hexdigest()
    assert side["lora_scale"] == 0.8 and side["lora"] == str(lora_file.resolve()) and side["lora_layers"] > 0
    assert "lora" not in _sidecar(plain_video)


def test_lora_unmatched_keys_are_an_error(tiny_model_dir, lora_file, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    state = load_file(str(lora_file))
    state["transformer.no_such_layer.lora_A.weight"] = torch.zeros(4, 8)
    state["transformer.no_such_layer.lora_B.weight"] = torch.zeros(8, 4)
    save_file(state, str(tmp_path / "extra.safetensors"))
    assert _generate(tiny_model_dir, tmp_path / "x.mp4", "--lora", str(tmp_path / "extra.safetensors")) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "2 key(s) match no linear of the model" in err and "no_such_layer" in err
    assert _generate(tiny_model_dir, tmp_path / "x.mp4", "--lora", str(tmp_path / "missing.safetensors")) == 1
    assert "LoRA file" in capsys.readouterr().err and not list(tmp_path.glob("*.mp4"))


# --- --sp --------------------------------------------------------------------------------------


def test_sp_needs_torchrun(tiny_model_dir, tmp_path, capsys):
    assert _generate(tiny_model_dir, tmp_path / "x.mp4", "--sp", "2") == 1
    assert "torchrun --nproc_per_node 2" in capsys.readouterr().err


def test_sequence_parallel_two_processes_match_one(tiny_model_dir, tmp_path):
    from videoforge.pipelines.text_to_video import TextToVideoPipeline

    prompt, seed, steps = "a red circle moving to the right", 5, 2

    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(HERE.parents[1])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           str(HERE / "generate_sp_worker.py"), str(tiny_model_dir), str(tmp_path), prompt, str(seed), str(steps)]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    single = TextToVideoPipeline.from_pretrained(tiny_model_dir)(prompt, seed=seed, num_inference_steps=steps,
                                                                  output_type="latent")
    sharded = torch.load(tmp_path / "sp_latents.pt", weights_only=True)
    assert sharded.shape == single.shape
    err = (sharded - single).abs().max().item()
    print(f"sequence parallel (2 gloo processes) vs one process: max |d latents| = {err:.2e}, |latents| ~ {single.abs().mean():.2f}")
    assert err < 1e-4
    # rank 0 alone wrote the video and printed its path; a bad request fails on both ranks
    assert proc.stdout.count(str(tmp_path / "sp.mp4")) == 1
    checks = json.loads((tmp_path / "checks.json").read_text())
    assert checks == {"codes": [[0, 1], [0, 1]], "draws_equal": True}
    assert "videoforge generate: error: rank 0: height and width must be positive multiples of 16, got 30x50" in proc.stderr
    assert not (tmp_path / "bad.mp4").exists()
    side = _sidecar(tmp_path / "sp.mp4")
    assert side["sequence_parallel"] == 2 and side["seed"] == seed
    assert read_video(tmp_path / "sp.mp4")[0].shape == (5, 32, 48, 3)
