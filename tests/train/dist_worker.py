"""Run under torchrun by test_distributed.py (2 CPU processes, gloo): an FSDP2 training run through
the CLI, a sequence-parallel training run, and Ulysses attention against full attention.
Rank 0 writes the results as JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from videoforge import cli
from videoforge.models.attention import Attention
from videoforge.train.parallelize import exit_worker
from videoforge.train.recipe import load_recipe
from videoforge.train.sequence_parallel import UlyssesAttention, local_chunk
from videoforge.train.trainer import RunOptions, train


def ulysses_vs_full(group) -> dict[str, float]:
    torch.manual_seed(0)  # same inputs on every rank
    b, n_img, n_txt, h, d = 2, 12, 5, 4, 8
    q, k, v = (torch.randn(b, n_img + n_txt, h, d, requires_grad=True) for _ in range(3))
    key_mask = torch.ones(b, n_img + n_txt, dtype=torch.bool)
    key_mask[1, -2:] = False  # padded text keys in sample 1
    w = torch.randn(b, n_img + n_txt, h, d)  # a fixed linear read-out as the loss

    full = Attention()(q, k, v, key_mask)
    (full * w).sum().backward()
    ref_out, ref_grads = full.detach(), [t.grad.clone() for t in (q, k, v)]

    def local(t):  # this rank's video tokens + all text tokens
        return torch.cat([local_chunk(t[:, :n_img], group), t[:, n_img:]], 1).detach().requires_grad_(True)

    lq, lk, lv = local(q), local(k), local(v)
    out = UlyssesAttention(group)(lq, lk, lv, key_mask)
    # Summed-loss convention: the replicated text part counts once over the group.
    p = dist.get_world_size(group)
    lw = torch.cat([local_chunk(w[:, :n_img], group), w[:, n_img:] / p], 1)
    (out * lw).sum().backward()
    expected_out = torch.cat([local_chunk(ref_out[:, :n_img], group), ref_out[:, n_img:]], 1)
    errs = {"out": (out - expected_out).abs().max().item()}
    for name, t, g in zip("qkv", (lq, lk, lv), ref_grads):
        vid = t.grad[:, : n_img // p]
        txt = t.grad[:, n_img // p :].clone()
        dist.all_reduce(txt, group=group)  # text grads are partial sums per rank
        errs[f"grad_{name}"] = max((vid - local_chunk(g[:, :n_img], group)).abs().max().item(),
                                   (txt - g[:, n_img:]).abs().max().item())
    return errs


def main(recipe_path: str, cache: str, out: str) -> None:
    dist.init_process_group("gloo")  # owned here, so the training runs leave it up for the checks below
    # FSDP2 data parallel through the CLI (what `torchrun -m videoforge train` runs), then Ulysses.
    rc = cli.main(["train", "--config", recipe_path, "--data", cache, "--out", str(Path(out) / "fsdp"), "--no-progress"])
    assert rc == 0, rc
    # Ulysses with activation checkpointing and FSDP2 all on: the three compose.
    recipe = load_recipe(recipe_path)
    recipe.run.activation_checkpointing = True
    summary = train(recipe, RunOptions(out=Path(out) / "sp", data=cache, sp=2, progress=False))
    errs = ulysses_vs_full(dist.group.WORLD)
    if dist.get_rank() == 0:
        (Path(out) / "worker.json").write_text(json.dumps({"ulysses": errs, "sp_summary": summary}))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])
    exit_worker(0)
