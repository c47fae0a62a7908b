"""Where a training batch's clean latents and text embeddings come from.

`MediaSource` decodes media and runs the frozen VAE and text encoder(s) every step;
`cache.CachedSource` reads what `videoforge cache` pre-encoded. Both hand the trainer the same
`ConditionedBatch`, and draw everything random from the per-sample generators in `seeding`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from videoforge.annotate.captions import CaptionMix
from videoforge.config import VAEConfig, preset
from videoforge.models.text_encoders import TextEmbeddings
from videoforge.models.vae import latents_to_model
from videoforge.train import seeding
from videoforge.train.buckets import Bucket, ItemShape
from videoforge.train.datasets import MediaItem, caption_text, load_pixels
from videoforge.train.recipe import Recipe, config_with_overrides


@dataclass
class ConditionedBatch:
    latents: torch.Tensor  # clean, scaled latents [b, C, T, h, w]
    text: TextEmbeddings


class Source(Protocol):
    shapes: list[ItemShape]
    tiers: list[list[str] | None]
    exact_buckets: bool  # True: items are pre-encoded at one size and cannot be re-bucketed

    def batch(
        self, bucket: Bucket, items: Sequence[int], sample_ids: Sequence[int], step: int, stride_range: Sequence[int],
        variants: Sequence[int] | None = None,
    ) -> ConditionedBatch: ...


def sample_posterior(mean: torch.Tensor, logvar: torch.Tensor, seed: int, step: int, sample_ids: Sequence[int]) -> torch.Tensor:
    """One posterior draw per sample, each from its own (seed, step, sample) generator."""
    std = torch.exp(0.5 * logvar.float())
    eps = torch.stack(
        [torch.randn(mean.shape[1:], generator=seeding.torch_generator(seed, step, j, seeding.POSTERIOR)) for j in sample_ids]
    )
    return mean.float() + std * eps.to(mean.device)


def posterior_latents(
    mean: torch.Tensor, logvar: torch.Tensor, seed: int, step: int, sample_ids: Sequence[int], draw: bool
) -> torch.Tensor:
    """The unscaled training latents: a posterior draw (`data.sample_posterior`) or the mean."""
    return sample_posterior(mean, logvar, seed, step, sample_ids) if draw else mean.float()


class MediaSource:
    """Decode, resize/crop, VAE-encode and text-encode on the fly (frozen encoders)."""

    exact_buckets = False

    def __init__(self, items: list[MediaItem], vae: nn.Module, text_encoder, *, seed: int, caption_dropout: float,
                 caption_mix: CaptionMix = CaptionMix(), sample_posterior: bool = True):
        self.items, self.vae, self.text_encoder = items, vae, text_encoder
        self.sample_posterior = sample_posterior
        self.seed, self.caption_dropout, self.caption_mix = seed, caption_dropout, caption_mix
        self.shapes = [it.shape for it in items]
        self.tiers = [it.tiers for it in items]

    @torch.no_grad()
    def batch(
        self, bucket: Bucket, items: Sequence[int], sample_ids: Sequence[int], step: int, stride_range: Sequence[int],
        variants: Sequence[int] | None = None,
    ) -> ConditionedBatch:
        if variants is not None:
            raise ValueError("caption variants exist only in a cache: media captions are drawn afresh every step")
        pixels, texts = [], []
        for i, j in zip(items, sample_ids):
            g = seeding.torch_generator(self.seed, step, j, seeding.MEDIA)
            pixels.append(load_pixels(self.items[i], bucket, g, stride_range))
            rng = seeding.numpy_generator(self.seed, step, j, seeding.CAPTION)
            texts.append(caption_text(self.items[i].caption, rng, self.caption_dropout, self.caption_mix))
        device = next(self.vae.parameters()).device
        dtype = next(self.vae.parameters()).dtype
        posterior = self.vae.encode(torch.stack(pixels).to(device, dtype))
        latents = posterior_latents(posterior.mean, posterior.logvar, self.seed, step, sample_ids, self.sample_posterior)
        text = self.text_encoder.encode(texts, single_frame=bucket.frames == 1)
        return ConditionedBatch(latents_to_model(latents, self.vae.config), text)


def vae_config(recipe: Recipe) -> VAEConfig:
    """The preset's VAE architecture with the recipe's `model.vae_config` overrides."""
    return config_with_overrides(preset(recipe.model.preset).vae, recipe.model.vae_config, "model.vae_config")


def build_vae(recipe: Recipe, device: torch.device) -> nn.Module:
    """The frozen VAE: `model.vae` weights, or the preset's VAE with seeded random weights."""
    from videoforge.models import build_vae as build, load_vae

    if recipe.model.vae:
        vae = load_vae(recipe.model.vae)
    else:
        torch.manual_seed(recipe.model.vae_seed)
        vae = build(vae_config(recipe))
    return vae.to(device).eval().requires_grad_(False)


def build_text_encoder(recipe: Recipe, device: torch.device) -> Any:
    from videoforge.models.text_encoders import load_minilm_encoder, load_text_encoders

    if recipe.model.text_encoder == "minilm":
        return load_minilm_encoder(recipe.model.text_max_length, device=device)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    return load_text_encoders(recipe.model.text_encoder, dtype=dtype, device=device)
