"""The DiT trainer: build -> parallelize -> init/resume -> loop -> export. Knows flow matching,
not meshes (those are `parallelize.py`'s).

One optimizer step at global step s: the stage's bucket sampler picks a bucket and the global
batch (a pure function of (seed, s)); this rank takes its data-parallel slice, in micro-batches
if `optim.micro_batch` is set; each sample's noise, timestep and guidance come from its own
(seed, s, sample) generator; the loss is normalised by the global batch. So a recipe optimises
the same way at any process count and resumes exactly.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import signal
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from videoforge.config import DiTConfig, preset
from videoforge.diffusion import flow
from videoforge.train import seeding
from videoforge.train.buckets import BucketSampler, LatentGeometry
from videoforge.train.datasets import select_tiers
from videoforge.train.checkpoint import checkpoint_dirs, load_checkpoint, save_checkpoint
from videoforge.train.ema import EMA
from videoforge.train.parallelize import ParallelDims, parallelize_dit, setup_distributed
from videoforge.train.recipe import Recipe, StageSection, config_with_overrides
from videoforge.train.sources import ConditionedBatch, Source, build_text_encoder, build_vae, vae_config

log = logging.getLogger(__name__)


@dataclass
class RunOptions:
    out: Path
    data: str | None = None  # overrides recipe.data.path
    max_steps: int | None = None  # absolute cap on the global step
    resume: bool = False
    sp: int = 1
    progress: bool = True


class StopRequest:
    """SIGTERM / Ctrl-C set a flag that the loop reads between steps (never mid-step, so the
    checkpoint written on the way out is consistent); all ranks agree before anyone stops."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopRequest":
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True

    def agreed(self, dims: ParallelDims) -> bool:
        if dims.world == 1:
            return self.requested
        flag = torch.tensor([float(self.requested)], device=dims.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())


def tensorboard_writer(folder: Path) -> Any:
    """A TensorBoard SummaryWriter when the `tensorboard` package is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(folder))


def dit_config(recipe: Recipe) -> DiTConfig:
    return config_with_overrides(preset(recipe.model.preset).dit, recipe.model.dit, "model.dit")


def build_model(recipe: Recipe) -> nn.Module:
    """The DiT to train: from `model.init` weights, or seeded random init; LoRA adapters if set."""
    from videoforge.models import build_dit, load_dit

    if recipe.model.init:
        model = load_dit(recipe.model.init)
    else:
        torch.manual_seed(recipe.run.seed)
        model = build_dit(dit_config(recipe))
    if recipe.lora is not None:
        from videoforge.train.lora import add_lora

        add_lora(model, recipe.lora)
    return model


def build_source(recipe: Recipe, data: str | None, device: torch.device) -> tuple[Source, nn.Module | None, Any]:
    """(source, vae, text encoder); a cache needs neither encoder at train time."""
    from videoforge.train.cache import CachedSource
    from videoforge.train.datasets import load_items
    from videoforge.train.sources import MediaSource

    d = recipe.data
    path = data or d.cache or d.path
    if path is None:
        raise ValueError("no training data: pass --data PATH or set data.path / data.cache in the recipe")
    if (Path(path) / "index.json").is_file():
        cached = CachedSource(Path(path), seed=recipe.run.seed, caption_dropout=d.caption_dropout,
                              sample_posterior=d.sample_posterior)
        if recipe.model.vae:
            _check_cache_latents(cached, recipe.model.vae, path)
        return cached, None, None
    items = load_items(path)
    vae, text_encoder = build_vae(recipe, device), build_text_encoder(recipe, device)
    source = MediaSource(items, vae, text_encoder, seed=recipe.run.seed, caption_dropout=d.caption_dropout,
                         caption_mix=d.caption_mix, sample_posterior=d.sample_posterior)
    return source, vae, text_encoder


def _check_cache_latents(cached: Any, vae_path: str, cache_path: str | Path) -> None:
    """The run's final/ folder carries `model.vae`: its latents must mean what the cache's do, or the
    exported model decodes what its DiT never learned (found at load time, before any step)."""
    from videoforge.models.checkpoints import latent_difference, read_vae_config

    config = read_vae_config(vae_path)
    if config is None:
        return  # a bare weights file: no config to compare
    cache_format = cached.latent_format
    if not cached.records_pixel_shortcut:  # an older cache: only its scaling can be checked
        cache_format = replace(cache_format, pixel_shortcut=config.pixel_shortcut, pixel_shortcut_fold=config.pixel_shortcut_fold)
    difference = latent_difference(cache_format, config)
    if difference is not None:
        raise ValueError(f"model.vae {vae_path} {difference} (the VAE that built the cache {cache_path}); "
                         "rebuild the cache with this VAE (`videoforge cache`) or point model.vae at that one")


def condition_first_frame(cond_type: str | None, x0: torch.Tensor, xt: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Image-to-video training: (model input, first latent frame the loss covers).

    The first latent frame is the conditioning image, as at inference (pipelines/image_to_video):
    "token_replace" feeds it clean in place of its noisy version; "latent_concat" appends
    [image latent in frame 0, zeros after | frame-0 mask] on the channels. Either way the loss
    covers the frames the model must generate, 1 onward.
    """
    if cond_type is None:
        return xt, 0
    if x0.shape[2] < 2:
        raise ValueError("image-to-video training needs video buckets (more than one latent frame); drop 1 from `frames`")
    if cond_type == "token_replace":
        return torch.cat([x0[:, :, :1], xt[:, :, 1:]], 2), 1
    cond = torch.zeros_like(x0)
    cond[:, :, 0] = x0[:, :, 0]
    mask = torch.zeros_like(x0[:, :1])
    mask[:, :, 0] = 1
    return torch.cat([xt, cond, mask], 1), 1


def local_loss(model: nn.Module, batch: ConditionedBatch, recipe: Recipe, step: int, sample_ids: list[int],
               scale: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(scaled loss to back-propagate, unscaled sum of per-sample losses) for one micro-batch."""
    f = recipe.flow
    x0 = batch.latents.to(device)
    sig, gui, noise = [], [], []
    for j in sample_ids:
        g = seeding.torch_generator(recipe.run.seed, step, j, seeding.NOISE)
        sig.append(flow.sample_logit_normal_timesteps(1, f.logit_mean, f.logit_std, f.shift, generator=g))
        lo, hi = f.guidance_range
        gui.append(lo + (hi - lo) * torch.rand(1, generator=g))
        noise.append(torch.randn(x0.shape[1:], generator=g))
    sigma, guidance = torch.cat(sig).to(device), torch.cat(gui).to(device)
    noise = torch.stack(noise).to(device)
    xt = flow.interpolate(x0, noise, sigma)
    config = getattr(model, "config", None)
    xt, f0 = condition_first_frame(getattr(config, "i2v_condition_type", None), x0, xt)
    text = batch.text.to(device)
    autocast = (
        torch.autocast("cuda", dtype=getattr(torch, recipe.run.mixed_precision))
        if device.type == "cuda" and recipe.run.mixed_precision != "float32"
        else contextlib.nullcontext()
    )
    with autocast:
        pred = model(xt, flow.TIME_SCALE * sigma, text.states, text.mask, text.pooled, flow.TIME_SCALE * guidance)
    per = flow.per_sample_loss(pred[:, :, f0:], flow.velocity_target(x0, noise)[:, :, f0:])
    return per.sum() * scale, per.detach().sum()


def _micro_batches(n: int, size: int) -> list[slice]:
    size = n if size <= 0 else size
    return [slice(i, min(n, i + size)) for i in range(0, n, size)]


def _set_grad_sync(model: nn.Module, on: bool) -> None:
    if hasattr(model, "set_requires_gradient_sync"):  # FSDP2: reduce only after the last micro-batch
        model.set_requires_gradient_sync(on)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, ema: EMA, sampler: BucketSampler, source: Source,
               recipe: Recipe, step: int, dims: ParallelDims, stage: StageSection) -> dict[str, Any]:
    """One optimizer step at global step `step` (0-based); returns its metrics."""
    bucket, items, variants = sampler.batch_at(step)
    global_b = len(items)
    per_rank = global_b // dims.dp
    lo = dims.dp_rank * per_rank
    ids = list(range(lo, lo + per_rank))
    # FSDP averages gradients over all ranks; an sp group's ranks each hold the whole loss.
    scale = dims.dp / global_b
    for group in optimizer.param_groups:
        group["lr"] = recipe.lr_at(step)
    loss_sum = torch.zeros((), device=dims.device)
    mbs = _micro_batches(per_rank, recipe.optim.micro_batch)
    for k, mb in enumerate(mbs):
        _set_grad_sync(model, k == len(mbs) - 1)
        batch = source.batch(bucket, [items[i] for i in ids[mb]], ids[mb], step, stage.frame_stride,
                             None if variants is None else [variants[i] for i in ids[mb]])
        loss, raw = local_loss(model, batch, recipe, step, ids[mb], scale, dims.device)
        loss.backward()
        loss_sum += raw
    params = [p for p in model.parameters() if p.requires_grad]
    clip = recipe.optim.grad_clip if recipe.optim.grad_clip > 0 else math.inf
    grad_norm = torch.nn.utils.clip_grad_norm_(params, clip)
    if hasattr(grad_norm, "full_tensor"):
        grad_norm = grad_norm.full_tensor()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    ema.update(model)
    if dims.world > 1:
        dist.all_reduce(loss_sum)
        loss_sum /= dims.sp
    tokens = global_b * sampler_geometry(recipe).tokens(bucket)
    return {"loss": loss_sum.item() / global_b, "grad_norm": float(grad_norm), "lr": recipe.lr_at(step),
            "batch": global_b, "bucket": f"{bucket.frames}x{bucket.height}x{bucket.width}", "tokens": tokens}


def sampler_geometry(recipe: Recipe) -> LatentGeometry:
    vae = vae_config(recipe)
    p = dit_config(recipe).patch_size
    return LatentGeometry(spatial=vae.spatial_compression_ratio * p[1], temporal=vae.time_compression_ratio * p[0])


def make_sampler(source: Source, recipe: Recipe, stage_index: int, dims: ParallelDims) -> BucketSampler:
    s = recipe.stages[stage_index]
    ids = select_tiers(source.tiers, s.tiers)
    groups = recipe.data.text_length_groups
    if groups > 1 and not hasattr(source, "text_lengths"):
        raise ValueError(f"data.text_length_groups: {groups} needs pre-encoded captions (a `videoforge cache` folder); "
                         "media captions are drawn afresh every step, so their lengths are not known ahead")
    return BucketSampler(
        [source.shapes[i] for i in ids], ids=ids, anchors=s.anchors, frames=s.frames, token_budget=s.token_budget, max_batch=s.max_batch,
        image_ratio=s.image_ratio, dp_size=dims.dp, seed=recipe.run.seed + 7919 * stage_index,
        geometry=sampler_geometry(recipe), grid=s.bucket_grid, max_aspect=s.max_aspect, min_stride=s.frame_stride[0],
        exact=source.exact_buckets, text_groups=groups,
        text_lengths=[source.text_lengths[i] for i in ids] if groups > 1 else None,
    )


def train(recipe: Recipe, opts: RunOptions) -> dict[str, Any]:
    """Run (or resume) a recipe; returns a summary with the last step and loss."""
    dims = setup_distributed(opts.sp)
    out = Path(opts.out)
    if dims.is_main:
        out.mkdir(parents=True, exist_ok=True)
        recipe.write_json(out)
    source, vae, text_encoder = build_source(recipe, opts.data, dims.device)

    model = build_model(recipe).to(dims.device)
    parallelize_dit(model, dims, activation_checkpointing=recipe.run.activation_checkpointing, compile=recipe.run.compile)
    o = recipe.optim
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=recipe.lr_at(0), betas=o.betas, eps=o.eps, weight_decay=o.weight_decay)
    ema = EMA(model, o.ema_decay)

    ckpt_root = out / "checkpoints"
    step = 0
    if opts.resume:
        found = checkpoint_dirs(ckpt_root)
        if found:
            step = load_checkpoint(found[-1], model, optimizer, ema)
            log.info("resumed from %s (step %d)", found[-1], step)
        elif dims.is_main:
            log.warning("--resume: no checkpoint under %s, starting from step 0", ckpt_root)
    end = recipe.total_steps if opts.max_steps is None else min(recipe.total_steps, opts.max_steps)

    samplers: dict[int, BucketSampler] = {}
    metrics = (out / "metrics.jsonl").open("a") if dims.is_main else None
    tb = tensorboard_writer(out / "tensorboard") if dims.is_main else None
    bar = tqdm(total=end, initial=step, desc="train", disable=not (opts.progress and dims.is_main))
    last_saved, last = step, {}
    model.train()
    try:
        with StopRequest() as stop:
            while step < end:
                if stop.agreed(dims):
                    log.warning("stop requested at step %d; writing a checkpoint", step)
                    break
                si, stage = recipe.stage_at(step)
                if si not in samplers:
                    samplers[si] = make_sampler(source, recipe, si, dims)
                t0 = time.perf_counter()
                last = train_step(model, optimizer, ema, samplers[si], source, recipe, step, dims, stage)
                step += 1
                dt = time.perf_counter() - t0
                last.update(step=step, stage=stage.name, step_time=dt, tokens_per_s=last["tokens"] / dt)
                if metrics is not None and step % recipe.run.log_every == 0:
                    metrics.write(json.dumps(last) + "\n")
                    metrics.flush()
                    for k, v in last.items():
                        if tb is not None and isinstance(v, (int, float)) and k != "step":
                            tb.add_scalar(f"train/{k}", v, step)
                bar.update(1)
                bar.set_postfix(loss=f"{last['loss']:.4f}", s_per_step=f"{dt:.2f}", tok_s=f"{last['tokens_per_s']:.0f}")
                if recipe.run.checkpoint_every and step % recipe.run.checkpoint_every == 0:
                    save_checkpoint(ckpt_root, step, model, optimizer, ema, recipe.run.keep_checkpoints)
                    last_saved = step
                if recipe.run.validate_every and step % recipe.run.validate_every == 0:
                    from videoforge.train.validation import validate

                    validate(model, ema, recipe, out / "validation" / f"step_{step:08d}", dims, vae, text_encoder)
    finally:
        bar.close()
        if metrics is not None:
            metrics.close()
        if tb is not None:
            tb.close()
    if step != last_saved:  # always leave a checkpoint at exit
        save_checkpoint(ckpt_root, step, model, optimizer, ema, recipe.run.keep_checkpoints)
    if step >= recipe.total_steps or (opts.max_steps is not None and step >= opts.max_steps):
        from videoforge.train.export import export_final

        export_final(out / "final", model, ema, recipe, dims, vae)
    if dims.world > 1:
        dist.barrier()
    if dims.owns_group:
        dist.destroy_process_group()
    return {"step": step, "loss": last.get("loss") if dims.is_main else None, "out": str(out)}
