"""Two CPU processes under gloo (torchrun): FSDP2 training equals one process on the same
global batch; Ulysses attention equals full attention; sequence-parallel training equals one process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from videoforge.testing import free_port
from videoforge.train.recipe import recipe_from_dict
from videoforge.train.trainer import RunOptions, train

HERE = Path(__file__).parent
STEPS = 4


def torchrun(args: list[str], cwd: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(HERE.parents[1])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()), *args]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def weights(run: Path, sub: str = "transformer") -> dict[str, torch.Tensor]:
    return load_file(str(run / "final" / sub / "diffusion_pytorch_model.safetensors"))


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


@pytest.fixture(scope="module")
def runs(cache, tiny_recipe, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("dist")
    d = tiny_recipe(STEPS, checkpoint_every=2)
    (root / "recipe.yaml").write_text(yaml.safe_dump(d))
    train(recipe_from_dict(d), RunOptions(out=root / "single", data=str(cache), progress=False))
    torchrun([str(HERE / "dist_worker.py"), str(root / "recipe.yaml"), str(cache), str(root)], cwd=root)
    return {"root": root, "single": root / "single", "fsdp": root / "fsdp", "sp": root / "sp"}


def test_fsdp_two_processes_match_one(runs):
    for sub in ("transformer", "transformer_ema"):
        diff = max_diff(weights(runs["single"], sub), weights(runs["fsdp"], sub))
        print(f"FSDP2 x2 vs single, {sub}: max |dw| = {diff:.2e}")
        assert diff < 1e-5
    one = [json.loads(l)["loss"] for l in (runs["single"] / "metrics.jsonl").read_text().splitlines()]
    two = [json.loads(l)["loss"] for l in (runs["fsdp"] / "metrics.jsonl").read_text().splitlines()]
    assert len(two) == STEPS and max(abs(a - b) for a, b in zip(one, two)) < 1e-5


def test_ulysses_attention_equals_full(runs):
    errs = json.loads((runs["root"] / "worker.json").read_text())["ulysses"]
    print("Ulysses vs full attention:", errs)
    assert max(errs.values()) < 1e-5


def test_sequence_parallel_training_matches_one(runs):
    """Ulysses x2 (+ activation checkpointing, + FSDP2 over the two ranks) vs one process."""
    diff = max_diff(weights(runs["single"]), weights(runs["sp"]))
    print(f"Ulysses SP x2 + AC vs single: max |dw| = {diff:.2e}")
    assert diff < 1e-5


def test_two_process_checkpoint_resumes_in_one_process(runs, cache, tmp_path):
    """DCP reshards: the FSDP run's step-2 checkpoint continues in a single process."""
    ckpt = runs["fsdp"] / "checkpoints" / "step_00000002"
    assert ckpt.is_dir()
    shutil.copytree(ckpt, tmp_path / "checkpoints" / ckpt.name)
    r = recipe_from_dict(yaml.safe_load((runs["root"] / "recipe.yaml").read_text()))
    summary = train(r, RunOptions(out=tmp_path, data=str(cache), resume=True, progress=False))
    assert summary["step"] == STEPS
    diff = max_diff(weights(runs["single"]), weights(tmp_path))
    print(f"resume 2-process checkpoint in 1 process vs single: max |dw| = {diff:.2e}")
    assert diff < 1e-5
