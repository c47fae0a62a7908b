"""The VAE trainer (recipe `task: vae`): L1 (+ L2) + LPIPS + KL, plus a 3D patch adversarial term
from `vae_loss.disc_start` on. Video and image batches mixed (video_ratio, 4:1 by default), frames
at a random stride (stage `frame_stride`, 1..8 in the recipes), the resolution/length
curriculum from the stages, and tiled passes mixed in at random so tiled inference sees what
training saw. Single process (the VAE is small next to the DiT); same checkpoint and metrics
layout as the DiT trainer. `final/vae` holds the raw weights, `final/vae_ema` the EMA (with its
fitted scaling factor: see `vae_loss.scaling_batches`).

For small models from scratch on sparse synthetic data (configs/shapes-vae.yaml): train on the
posterior mean (`sample_posterior: false`, a fixed small variance from `init_logvar`), weight
object pixels up (`foreground_weight`), and afterwards fine-tune the decoder alone
(`train_encoder: false`), which leaves the latents, and so any cache or DiT built on them, as is.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from videoforge.train import seeding
from videoforge.train.buckets import BucketSampler, LatentGeometry
from videoforge.train.checkpoint import checkpoint_dirs, load_checkpoint, save_checkpoint
from videoforge.train.datasets import load_items, load_pixels, select_tiers
from videoforge.train.ema import EMA
from videoforge.train.losses import LPIPS, PatchDiscriminator3D, generator_adv_loss, hinge_d_loss, video_lpips
from videoforge.train.recipe import Recipe
from videoforge.train.sources import vae_config
from videoforge.train.trainer import RunOptions


def build_trainable_vae(recipe: Recipe) -> torch.nn.Module:
    """The VAE a recipe trains, before any step: loaded (`model.init` / `model.vae`) or seeded from
    scratch, in train mode, with the parameters the recipe trains requiring grad (so an `EMA` of it
    tracks exactly those)."""
    from videoforge.models import build_vae, load_vae
    from videoforge.models.vae import concentrate_temporal_taps

    if recipe.vae_loss.concentrate_temporal_taps and not (recipe.model.init or recipe.model.vae):
        raise ValueError("vae_loss.concentrate_temporal_taps inflates trained image weights: set model.init to them "
                         "(a from-scratch VAE has no image training to keep)")
    if recipe.model.init or recipe.model.vae:
        vae = load_vae(recipe.model.init or recipe.model.vae)
        if recipe.vae_loss.concentrate_temporal_taps:
            concentrate_temporal_taps(vae)
    else:
        torch.manual_seed(recipe.run.seed)
        vae = build_vae(vae_config(recipe))
        if recipe.vae_loss.init_logvar is not None:
            with torch.no_grad():  # quant_conv emits the moments: [mean, logvar] along channels
                c = vae.config.latent_channels
                vae.quant_conv.weight[c:] = 0.0
                vae.quant_conv.bias[c:] = recipe.vae_loss.init_logvar
    vae.train().requires_grad_(True)
    if not recipe.vae_loss.train_encoder:
        vae.encoder.requires_grad_(False)
        vae.quant_conv.requires_grad_(False)
    return vae


def foreground_mask(video: torch.Tensor, threshold: float = 0.1) -> torch.Tensor:
    """[B, 1, F, H, W] 1.0 where a pixel differs (max over RGB, [-1, 1] units) from its frame's
    border colour (the per-channel median of the outer ring), else 0.0."""
    ring = torch.cat([video[..., 0, :], video[..., -1, :], video[..., :, 0], video[..., :, -1]], dim=-1)  # [B, 3, F, 2H+2W]
    border = ring.median(dim=-1).values[..., None, None]
    return ((video - border).abs().amax(dim=1, keepdim=True) > threshold).float()


def vae_step(vae, disc, lpips, opt, opt_d, pixels, recipe: Recipe, step: int) -> dict[str, float]:
    w = recipe.vae_loss
    g = seeding.torch_generator(recipe.run.seed, step, -1, seeding.NOISE)
    tiled = torch.rand((), generator=g).item() < w.tiled_ratio
    if tiled:
        vae.enable_tiling(w.tile_sample_min_size, w.tile_sample_min_tsize)
    autocast = (torch.autocast("cuda", dtype=getattr(torch, recipe.run.mixed_precision))
                if pixels.is_cuda and recipe.run.mixed_precision != "float32" else contextlib.nullcontext())
    try:
        with autocast:
            with torch.set_grad_enabled(w.train_encoder):
                post = vae.encode(pixels)
            z = post.mean + post.std * torch.randn(post.mean.shape, generator=g).to(post.mean) if w.sample_posterior else post.mean
            recon = vae.decode(z)
    finally:
        vae.disable_tiling()
    recon = recon.float()
    err = recon - pixels
    weight = 1.0 + w.foreground_weight * foreground_mask(pixels) if w.foreground_weight > 0 else None
    weighted = (lambda e: (e * weight).mean() / weight.mean()) if weight is not None else (lambda e: e.mean())
    l1, l2 = err.abs().mean(), err.pow(2).mean()  # logged unweighted, comparable across recipes
    kl = post.kl().mean() / pixels[0].numel()  # per input element, so the weight is resolution-free
    loss = w.l1 * weighted(err.abs()) + w.kl * kl
    out = {"l1": l1.item(), "l2": l2.item(), "kl": kl.item(), "tiled": tiled, "latent_std": post.std.mean().item()}
    if w.l2 > 0:
        loss = loss + w.l2 * weighted(err.pow(2))
    if w.lpips > 0:
        lp = video_lpips(lpips, recon, pixels)
        loss = loss + w.lpips * lp
        out["lpips"] = lp.item()
    adv_on = w.adversarial > 0 and step >= w.disc_start
    if adv_on:
        adv = generator_adv_loss(disc(recon))
        loss = loss + w.adversarial * adv
        out["adv"] = adv.item()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if recipe.optim.grad_clip > 0:
        out["grad_norm"] = float(torch.nn.utils.clip_grad_norm_([p for p in vae.parameters() if p.requires_grad], recipe.optim.grad_clip))
    opt.step()
    if adv_on:
        d_loss = hinge_d_loss(disc(pixels), disc(recon.detach()))
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        out["d_loss"] = d_loss.item()
    out["loss"] = loss.item()
    return out


@torch.no_grad()
def fit_latent_statistics(vae: torch.nn.Module, batches: Iterable[torch.Tensor]) -> tuple[float, list[float], list[float]]:
    """Over `batches` of pixels, the posterior means' (1 / std, per-channel means, per-channel stds):
    latents * factor, or (latents - mean) / std per channel, have unit variance."""
    sums = sq_sums = None  # per channel, over every other dimension
    per = 0  # values per channel so far
    for pixels in batches:
        mean = vae.encode(pixels).mean.double().transpose(0, 1).flatten(1)  # [C, everything else]
        s, sq = mean.sum(1), mean.pow(2).sum(1)
        sums, sq_sums = (s, sq) if sums is None else (sums + s, sq_sums + sq)
        per += mean.shape[1]
    if sums is None:
        raise ValueError("no batches to fit the latent statistics on")
    n = per * len(sums)
    std = (sq_sums.sum() / n - (sums.sum() / n) ** 2).sqrt().item()
    channel_mean = sums / per
    # A channel the encoder left constant would divide by zero: floor its std at 1e-3 of the overall.
    channel_std = (sq_sums / per - channel_mean.pow(2)).clamp_min(0).sqrt().clamp_min(1e-3 * std)
    return 1.0 / std, channel_mean.tolist(), channel_std.tolist()


def train_vae(recipe: Recipe, opts: RunOptions) -> dict[str, Any]:
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 or opts.sp != 1:
        raise ValueError("the VAE trainer runs in one process; launch it without torchrun and without --sp")
    path = opts.data or recipe.data.path
    if path is None:
        raise ValueError("no training data: pass --data PATH or set data.path in the recipe")
    items = load_items(path)
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    recipe.write_json(out)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    w = recipe.vae_loss

    vae = build_trainable_vae(recipe).to(device)
    torch.manual_seed(recipe.run.seed + 1)
    disc = PatchDiscriminator3D().to(device)
    lpips = (LPIPS.from_file(w.lpips_weights) if w.lpips_weights else LPIPS()).to(device) if w.lpips > 0 else None
    if w.lpips > 0 and not w.lpips_weights:
        import logging

        logging.getLogger(__name__).warning("LPIPS with random weights (no vae_loss.lpips_weights): not a perceptual loss")
    o = recipe.optim
    trainable = [p for p in vae.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=recipe.lr_at(0), betas=o.betas, weight_decay=o.weight_decay)
    opt_d = torch.optim.AdamW(disc.parameters(), lr=w.disc_lr, betas=(0.5, 0.9))
    ema = EMA(vae, o.ema_decay)
    extra = {"disc": (disc, opt_d)}

    step = 0
    found = checkpoint_dirs(out / "checkpoints") if opts.resume else []
    if found:
        step = load_checkpoint(found[-1], vae, opt, ema, extra)
    end = recipe.total_steps if opts.max_steps is None else min(recipe.total_steps, opts.max_steps)
    vae_cfg = vae.config
    geometry = LatentGeometry(spatial=vae_cfg.spatial_compression_ratio, temporal=vae_cfg.time_compression_ratio)
    samplers: dict[int, BucketSampler] = {}

    def batch_at(si: int, stage, step: int):
        if si not in samplers:
            ids = select_tiers([it.tiers for it in items], stage.tiers)
            samplers[si] = BucketSampler(
                [items[i].shape for i in ids], ids=ids, anchors=stage.anchors, frames=stage.frames,
                token_budget=stage.token_budget, max_batch=stage.max_batch, image_ratio=1.0 - w.video_ratio,
                seed=recipe.run.seed + 7919 * si, geometry=geometry, grid=stage.bucket_grid,
                max_aspect=stage.max_aspect, min_stride=stage.frame_stride[0],
            )
        bucket, picks, _ = samplers[si].batch_at(step)
        pixels = torch.stack([
            load_pixels(items[i], bucket, seeding.torch_generator(recipe.run.seed, step, j, seeding.MEDIA), stage.frame_stride)
            for j, i in enumerate(picks)
        ]).to(device)
        return bucket, pixels

    bar = tqdm(total=end, initial=step, desc="train vae", disable=not opts.progress)
    last: dict[str, Any] = {}
    with (out / "metrics.jsonl").open("a") as metrics:
        while step < end:
            si, stage = recipe.stage_at(step)
            t0 = time.perf_counter()
            bucket, pixels = batch_at(si, stage, step)
            for group in opt.param_groups:
                group["lr"] = recipe.lr_at(step)
            last = vae_step(vae, disc, lpips, opt, opt_d, pixels, recipe, step)
            ema.update(vae)
            step += 1
            last.update(step=step, batch=len(pixels), bucket=f"{bucket.frames}x{bucket.height}x{bucket.width}",
                        step_time=time.perf_counter() - t0)
            metrics.write(json.dumps(last) + "\n")
            metrics.flush()
            bar.update(1)
            bar.set_postfix(loss=f"{last['loss']:.4f}", l1=f"{last['l1']:.4f}")
            if recipe.run.checkpoint_every and step % recipe.run.checkpoint_every == 0:
                save_checkpoint(out / "checkpoints", step, vae, opt, ema, recipe.run.keep_checkpoints, extra)
    bar.close()
    save_checkpoint(out / "checkpoints", step, vae, opt, ema, recipe.run.keep_checkpoints, extra)
    from videoforge.models import save_vae

    save_vae(vae, out / "final" / "vae")
    vae.load_state_dict(ema.state_dict(), strict=False)
    summary: dict[str, Any] = {"step": step, "loss": last.get("loss"), "out": str(out)}
    from_scratch = not (recipe.model.init or recipe.model.vae)
    fit_channels = w.channel_statistics and vae.config.latents_std is None
    if w.scaling_batches > 0 and (from_scratch or fit_channels):
        # Drawn past the end of the run, from the last stage: data the schedule would show next.
        si, stage = len(recipe.stages) - 1, recipe.stages[-1]
        vae.eval()
        factor, channel_mean, channel_std = fit_latent_statistics(
            vae, (batch_at(si, stage, end + k)[1] for k in range(w.scaling_batches)))
        if from_scratch:
            vae.config.scaling_factor = summary["scaling_factor"] = factor
        if fit_channels:
            vae.config.latents_mean, vae.config.latents_std = tuple(channel_mean), tuple(channel_std)
            summary["latents_std"] = channel_std
    save_vae(vae, out / "final" / "vae_ema")
    return summary
