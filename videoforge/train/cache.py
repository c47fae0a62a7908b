"""Pre-encoded training data: VAE posteriors and text embeddings in safetensors shards.

Encoding a clip with a 13B model's VAE and MLLM costs more than the DiT step it feeds, so
practitioners encode once (`videoforge cache`) and train from the shards. Layout of a cache folder:

  index.json               entries (one per item x bucket it joins), scaling factor, encoder name
  shard_00000.safetensors  "<n>.mean", "<n>.logvar" (unscaled posterior, so each step can draw its
                           own latent sample) and "<n>.text<v>.{states,mask,pooled}" per caption
                           variant v (structured captions: several dropout/permutation draws)
  empty.safetensors        the empty prompt's embedding ("video.*" and "image.*"), for caption dropout
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn
from tqdm.auto import tqdm

from videoforge.annotate.captions import CaptionMix
from videoforge.config import VAEConfig
from videoforge.models.text_encoders import TextEmbeddings
from videoforge.models.vae import latents_to_model
from videoforge.train import seeding
from videoforge.train.buckets import Bucket, ItemShape, assign_buckets
from videoforge.train.datasets import MediaItem, caption_text, load_pixels
from videoforge.train.recipe import StageSection
from videoforge.train.sources import ConditionedBatch, posterior_latents

INDEX = "index.json"
FORMAT_VERSION = 1


def _text_tensors(prefix: str, e: TextEmbeddings, i: int) -> dict[str, torch.Tensor]:
    return {
        f"{prefix}states": e.states[i].float().cpu().contiguous(),
        f"{prefix}mask": e.mask[i].cpu().contiguous(),
        f"{prefix}pooled": e.pooled[i].float().cpu().contiguous(),
    }


@torch.no_grad()
def write_cache(
    items: list[MediaItem],
    stages: Sequence[StageSection],
    vae: nn.Module,
    text_encoder: Any,
    out: Path,
    *,
    text_encoder_name: str,
    seed: int = 0,
    caption_variants: int = 4,
    shard_size: int = 256,
    batch_size: int = 8,
    caption_mix: CaptionMix = CaptionMix(),
    progress: bool = True,
) -> Path:
    """Encode every (item, bucket) pair the stages use, `batch_size` items of a bucket per VAE and
    text-encoder call; returns the index path. Structured captions become `caption_variants` texts
    each, drawn with `caption_mix` (the recipe's data.caption_fields / caption_permute)."""
    out.mkdir(parents=True, exist_ok=True)
    pairs: dict[tuple[int, Bucket], tuple[int, int]] = {}
    for s in stages:
        buckets = assign_buckets([it.shape for it in items], s.anchors, s.frames, s.bucket_grid, s.max_aspect, s.frame_stride[0])
        for b, members in buckets.items():
            for i in members:
                pairs.setdefault((i, b), tuple(s.frame_stride[:1] * 2))
    if not pairs:
        raise ValueError("no item fits any bucket of the recipe's stages; nothing to cache")

    device, dtype = next(vae.parameters()).device, next(vae.parameters()).dtype
    entries, shard, shard_idx = [], {}, 0

    def flush() -> None:
        nonlocal shard, shard_idx
        if shard:
            save_file(shard, str(out / f"shard_{shard_idx:05d}.safetensors"))
            shard, shard_idx = {}, shard_idx + 1

    # Encode same-bucket pairs `batch_size` at a time: the VAE's GroupNorm is per sample, so a batch
    # encodes each item as alone (to float rounding), at a fraction of the per-call overhead.
    by_bucket: dict[Bucket, list[tuple[int, tuple[int, int]]]] = {}
    for (i, bucket), stride in pairs.items():
        by_bucket.setdefault(bucket, []).append((i, stride))
    chunks = [(b, group[k : k + batch_size]) for b, group in by_bucket.items() for k in range(0, len(group), batch_size)]
    bar = tqdm(total=len(pairs), desc="caching", unit="item", disable=not progress)
    n = 0
    for bucket, chunk in chunks:
        pixels = torch.stack([load_pixels(items[i], bucket, seeding.torch_generator(seed, 0, i, seeding.MEDIA), stride)
                              for i, stride in chunk]).to(device, dtype)
        post = vae.encode(pixels)
        texts, counts = [], []
        for i, _ in chunk:
            rng = seeding.numpy_generator(seed, 0, i, seeding.CAPTION)
            k = caption_variants if isinstance(items[i].caption, dict) else 1
            texts += [caption_text(items[i].caption, rng, 0.0, caption_mix) for _ in range(k)]
            counts.append(k)
        emb = text_encoder.encode(texts, single_frame=bucket.frames == 1)
        first = 0
        for b, ((i, _), k) in enumerate(zip(chunk, counts)):
            shard[f"{n}.mean"] = post.mean[b].float().cpu().contiguous()
            shard[f"{n}.logvar"] = post.logvar[b].float().cpu().contiguous()
            for v in range(k):
                shard.update(_text_tensors(f"{n}.text{v}.", emb, first + v))
            first += k
            entries.append(
                {"key": n, "shard": shard_idx, "height": bucket.height, "width": bucket.width, "frames": bucket.frames,
                 "kind": bucket.kind, "variants": k, "source": str(items[i].path), "tiers": items[i].tiers}
            )
            n += 1
            if len(entries) % shard_size == 0:
                flush()
        bar.update(len(chunk))
    bar.close()
    flush()

    empty = {}
    for kind in ("video", "image"):
        empty.update(_text_tensors(f"{kind}.", text_encoder.encode([""], single_frame=kind == "image"), 0))
    save_file(empty, str(out / "empty.safetensors"))
    index = {
        "format_version": FORMAT_VERSION,
        "scaling_factor": vae.config.scaling_factor,
        "latents_mean": vae.config.latents_mean,
        "latents_std": vae.config.latents_std,
        "latent_channels": vae.config.latent_channels,
        "pixel_shortcut": vae.config.pixel_shortcut,
        "pixel_shortcut_fold": vae.config.pixel_shortcut_fold,
        "text_encoder": text_encoder_name,
        "caption_fields": dict(caption_mix.keep) if caption_mix.keep else None,
        "caption_permute": caption_mix.permute,
        "entries": entries,
    }
    tmp = out / f"{INDEX}.tmp"
    tmp.write_text(json.dumps(index, indent=1))
    os.replace(tmp, out / INDEX)  # the index appears only once every shard is written
    return out / INDEX


class CachedSource:
    """Training batches from a cache folder: a fresh posterior sample and caption variant per step."""

    exact_buckets = True

    def __init__(self, folder: Path, *, seed: int, caption_dropout: float, sample_posterior: bool = True):
        path = folder / INDEX
        if not path.is_file():
            raise FileNotFoundError(f"{folder} is not a training cache (no {INDEX}); build one with `videoforge cache`")
        index = json.loads(path.read_text())
        if index.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{path}: cache format {index.get('format_version')} is not {FORMAT_VERSION}; rebuild it")
        self.folder, self.index, self.seed, self.caption_dropout = folder, index, seed, caption_dropout
        self.sample_posterior = sample_posterior
        self.entries = index["entries"]
        # What the cache's latents mean: the VAE's scaling to the DiT's units (models/vae.latents_to_model)
        # and its pixel shortcut, which caches from before session 30 do not record (the defaults then
        # stand in, and records_pixel_shortcut says so).
        self.latent_format = VAEConfig(latent_channels=index["latent_channels"], scaling_factor=float(index["scaling_factor"]),
                                       latents_mean=index.get("latents_mean"), latents_std=index.get("latents_std"),
                                       pixel_shortcut=index.get("pixel_shortcut", False),
                                       pixel_shortcut_fold=index.get("pixel_shortcut_fold", 2))
        self.records_pixel_shortcut = "pixel_shortcut" in index
        self.shapes = [ItemShape(e["height"], e["width"], e["frames"], e["kind"]) for e in self.entries]
        self.tiers = [e.get("tiers") for e in self.entries]
        self._shards: dict[int, Any] = {}
        self._empty = safe_open(str(folder / "empty.safetensors"), "pt")
        self._text_lengths: list[list[int]] | None = None

    @property
    def text_lengths(self) -> list[list[int]]:
        """Each entry's token count per caption variant (read from the masks once, on first use)."""
        if self._text_lengths is None:
            self._text_lengths = [
                [int(self._shard(e["shard"]).get_tensor(f"{e['key']}.text{v}.mask").sum()) for v in range(e["variants"])]
                for e in self.entries
            ]
        return self._text_lengths

    def _shard(self, k: int) -> Any:
        if k not in self._shards:
            self._shards[k] = safe_open(str(self.folder / f"shard_{k:05d}.safetensors"), "pt")
        return self._shards[k]

    def batch(
        self, bucket: Bucket, items: Sequence[int], sample_ids: Sequence[int], step: int, stride_range: Sequence[int] = (1, 1),
        variants: Sequence[int] | None = None,
    ) -> ConditionedBatch:
        """`variants`: each item's caption variant (the sampler's, when it groups by text length);
        by default each sample draws its own."""
        means, logvars, states, masks, pooled = [], [], [], [], []
        for k, (i, j) in enumerate(zip(items, sample_ids)):
            e = self.entries[i]
            f = self._shard(e["shard"])
            means.append(f.get_tensor(f"{e['key']}.mean"))
            logvars.append(f.get_tensor(f"{e['key']}.logvar"))
            rng = seeding.numpy_generator(self.seed, step, j, seeding.CAPTION)
            if rng.random() < self.caption_dropout:
                src, prefix = self._empty, f"{e['kind']}."
            else:
                v = int(rng.integers(e["variants"])) if variants is None else variants[k]
                src, prefix = f, f"{e['key']}.text{v}."
            states.append(src.get_tensor(prefix + "states"))
            masks.append(src.get_tensor(prefix + "mask"))
            pooled.append(src.get_tensor(prefix + "pooled"))
        latents = posterior_latents(torch.stack(means), torch.stack(logvars), self.seed, step, sample_ids, self.sample_posterior)
        text = TextEmbeddings(torch.stack(states), torch.stack(masks), torch.stack(pooled))
        return ConditionedBatch(latents_to_model(latents, self.latent_format), text)


def cache_dataset(recipe_path: str | Path, data: str | None, out: Path, caption_variants: int = 4, progress: bool = True) -> Path:
    """`videoforge cache`: encode a recipe's data with its VAE and text encoder into `out`."""
    from videoforge.train.datasets import load_items
    from videoforge.train.recipe import load_recipe
    from videoforge.train.sources import build_text_encoder, build_vae

    recipe = load_recipe(recipe_path)
    path = data or recipe.data.path
    if path is None:
        raise ValueError("no data to cache: pass --data PATH or set data.path in the recipe")
    items = load_items(path)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    vae, text_encoder = build_vae(recipe, device), build_text_encoder(recipe, device)
    return write_cache(items, recipe.stages, vae, text_encoder, Path(out), text_encoder_name=recipe.model.text_encoder,
                       seed=recipe.run.seed, caption_variants=caption_variants, caption_mix=recipe.data.caption_mix,
                       progress=progress)
