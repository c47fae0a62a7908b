"""Validation samples during training: the run's fixed prompts generated with the EMA weights,
saved as mp4 under `DIR/validation/step_XXXXXXXX/` beside the checkpoints, so progress can be
watched, not just read off the loss. Fixed seeds make samples comparable across steps.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from videoforge.train.ema import EMA
from videoforge.train.export import full_state
from videoforge.train.parallelize import ParallelDims
from videoforge.train.recipe import Recipe


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "empty"


@torch.no_grad()
def validate(model: nn.Module, ema: EMA, recipe: Recipe, folder: Path, dims: ParallelDims,
             vae: nn.Module | None, text_encoder: Any) -> list[Path]:
    """Generate every validation prompt on rank 0 (the EMA gather is collective); returns the files."""
    from videoforge.models import build_dit
    from videoforge.pipelines.text_to_video import TextToVideoPipeline
    from videoforge.pipelines.video_io import write_mp4
    from videoforge.train.sources import build_text_encoder, build_vae

    _, ema_state = full_state(model, ema)
    written: list[Path] = []
    if dims.is_main and recipe.run.validation_prompts:
        if recipe.lora is not None:
            return written  # adapters only: validate after merging them into the base (generate --lora)
        dit = build_dit(model.config).to(dims.device).eval()
        dit.load_state_dict(ema_state)
        pipe = TextToVideoPipeline(
            dit, vae if vae is not None else build_vae(recipe, dims.device),
            text_encoder if text_encoder is not None else build_text_encoder(recipe, dims.device),
            device=dims.device, vae_tiling=False,
        )
        _, stage = recipe.stage_at(0)
        side = stage.anchors[0] // 16 * 16
        lo, hi = recipe.flow.guidance_range
        folder.mkdir(parents=True, exist_ok=True)
        for k, prompt in enumerate(recipe.run.validation_prompts):
            out = pipe(prompt, height=side, width=side, num_frames=max(stage.frames),
                       num_inference_steps=recipe.run.validation_steps, guidance_scale=(lo + hi) / 2,
                       flow_shift=recipe.flow.shift, seed=k)
            written.append(write_mp4(out.frames, folder / f"{k:02d}-{_slug(prompt)}.mp4", fps=out.fps))
    if dims.world > 1:
        dist.barrier()
    return written
