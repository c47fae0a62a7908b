"""What grouping batches by caption length (`data.text_length_groups`) saves the bundled shapes DiT.

A batch pads its captions to the longest, and each text position costs the DiT about what a video
token does. This draws shapes-world captions the way `configs/shapes-dit.yaml` turns them into
text (short description always, the dense one in 30%: 4 variants per item, as `videoforge cache`
stores them), counts their MiniLM tokens, and builds the recipe's joint-stage sampler (16-clip and
32-image batches) with 1 (no grouping), 2, 3 and 4 length groups. It prints each one's mean padded
text length per batch kind, then times the recipe's DiT (eager) on the same 24 steps of each
sampler, with text padded as each batch pads it, and prints the time ratio against no grouping.
Run: `.venv/bin/python bench/text_length_groups.py [--repeats N] [--threads N]`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _measure import median_seconds, timing_args  # noqa: E402

from videoforge.models import build_dit  # noqa: E402
from videoforge.models.text_encoders import load_minilm_encoder  # noqa: E402
from videoforge.synthetic.shapes import SceneConfig, sample_scene, shapes_caption  # noqa: E402
from videoforge.train.buckets import BucketSampler, ItemShape, LatentGeometry  # noqa: E402
from videoforge.train.datasets import caption_text  # noqa: E402
from videoforge.train.recipe import load_recipe  # noqa: E402
from videoforge.train.trainer import dit_config  # noqa: E402

RECIPE = Path(__file__).parents[1] / "configs" / "shapes-dit.yaml"
ITEMS, VARIANTS, DRAWN_STEPS, TIMED_STEPS = 400, 4, 2000, 24


def caption_lengths(recipe, frames: int, tokenizer, max_length: int) -> list[list[int]]:
    """Token counts of VARIANTS texts for each of ITEMS shapes-world samples of `frames` frames."""
    cfg = SceneConfig(width=64, height=64, num_frames=frames, two_object_prob=0.15)
    out = []
    for k in range(ITEMS):
        rng = np.random.default_rng([7, frames, k])
        caption = shapes_caption(sample_scene(rng, cfg), rng)
        texts = [caption_text(caption, rng, 0.0, recipe.data.caption_mix) for _ in range(VARIANTS)]
        out.append([min(max_length, len(ids)) for ids in tokenizer(texts)["input_ids"]])
    return out


def batch_variants(sampler: BucketSampler, step: int) -> tuple:
    """The step's bucket, items and caption variants; without grouping each sample draws its own
    variant, as a cache does."""
    bucket, picks, variants = sampler.batch_at(step)
    if variants is None:
        variants = [int(v) for v in np.random.default_rng(step).integers(VARIANTS, size=len(picks))]
    return bucket, picks, variants


def main() -> None:
    args = timing_args(__doc__)
    recipe = load_recipe(RECIPE)
    stage = recipe.stages[1]  # the joint image + clip stage
    encoder = load_minilm_encoder(recipe.model.text_max_length)
    lengths = caption_lengths(recipe, 17, encoder.tokenizer, encoder.max_length) + \
        caption_lengths(recipe, 1, encoder.tokenizer, encoder.max_length)
    items = [ItemShape(64, 64, 17, "video")] * ITEMS + [ItemShape(64, 64, 1, "image")] * ITEMS
    geometry = LatentGeometry(spatial=16, temporal=4)

    samplers = {}
    print(f"{recipe.data.caption_mix}; joint stage: {stage.frames} frames, image ratio {stage.image_ratio}")
    print(f"{'groups':>6}  {'clip batch pads to':>18}  {'image batch pads to':>19}  length ranges (clips | images)")
    for groups in (1, 2, 3, 4):
        s = BucketSampler(items, anchors=stage.anchors, frames=stage.frames, token_budget=stage.token_budget,
                          max_batch=stage.max_batch, image_ratio=stage.image_ratio, seed=0, geometry=geometry,
                          text_lengths=lengths, text_groups=groups)
        samplers[groups] = s
        pads = {"video": [], "image": []}
        for step in range(DRAWN_STEPS):
            bucket, picks, variants = batch_variants(s, step)
            pads[bucket.kind].append(max(lengths[i][v] for i, v in zip(picks, variants)))
        ranges = " | ".join(str([g.lengths for g in s.text_groups.get(b, [])]) for b in sorted(s.buckets, key=lambda b: -b.frames))
        print(f"{groups:>6}  {np.mean(pads['video']):>18.1f}  {np.mean(pads['image']):>19.1f}  {ranges}")

    cfg = dit_config(recipe)
    torch.manual_seed(0)
    model = build_dit(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def run(groups: int) -> None:
        s = samplers[groups]
        for step in range(TIMED_STEPS):
            bucket, picks, variants = batch_variants(s, step)
            n = len(picks)
            text = [lengths[i][v] for i, v in zip(picks, variants)]
            mask = torch.zeros(n, encoder.max_length, dtype=torch.long)
            for k, t in enumerate(text):
                mask[k, :t] = 1
            x = torch.randn(n, 16, (bucket.frames - 1) // 4 + 1, 8, 8)
            pred = model(x, torch.rand(n) * 1000, torch.randn(n, encoder.max_length, cfg.text_states_dim), mask,
                         torch.randn(n, cfg.text_states_dim_2))
            (pred - x).pow(2).mean().backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

    times = median_seconds({g: (lambda g=g: run(g)) for g in samplers}, repeats=args.repeats)
    print(f"\n{TIMED_STEPS} training steps of the recipe's DiT (eager, {torch.get_num_threads()} threads), median of {args.repeats}:")
    for g, t in times.items():
        print(f"  {g} group(s): {t / TIMED_STEPS:.3f} s per step, {t / times[1]:.2f}x no grouping")


if __name__ == "__main__":
    main()
