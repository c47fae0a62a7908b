"""Run under torchrun by test_generate_integration.py (2 CPU processes, gloo): the sampler's final
latents with the DiT sharded as `generate --sp` does it, then `generate --sp 2` through the CLI,
a bad request (both ranks must fail, not hang) and a random draw shared from rank 0.
Rank 0 writes the latents and a JSON of the checks."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from videoforge import cli
from videoforge.pipelines.generate import join_sequence_parallel, on_rank0
from videoforge.pipelines.text_to_video import TextToVideoPipeline
from videoforge.train.parallelize import apply_sequence_parallel, exit_worker


def main(model_dir: str, out: str, prompt: str, seed: str, steps: str) -> None:
    dims = join_sequence_parallel(2)  # owns the group, so the CLI runs below leave it up
    pipe = TextToVideoPipeline.from_pretrained(model_dir)
    apply_sequence_parallel(pipe.dit, dims.sp_group)
    latents = pipe(prompt, seed=int(seed), num_inference_steps=int(steps), output_type="latent")
    args = ["generate", "--prompt", prompt, "--model-dir", model_dir, "--steps", steps, "--sp", "2", "--quiet"]
    rc = cli.main(args + ["--out", f"{out}/sp.mp4", "--seed", seed])
    bad_rc = cli.main(args + ["--out", f"{out}/bad.mp4", "--size", "30x50"])  # rank 0 finds the error
    draws = [None, None]
    dist.all_gather_object(draws, on_rank0(2, dims.rank, lambda: random.SystemRandom().random()))
    codes = [None, None]
    dist.all_gather_object(codes, (rc, bad_rc))
    if dims.rank == 0:
        torch.save(latents, f"{out}/sp_latents.pt")
        Path(out, "checks.json").write_text(
            json.dumps({"codes": codes, "draws_equal": draws[0] == draws[1]}))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])
    exit_worker(0)
