"""Aspect-ratio x duration buckets and the sampler that draws one bucket per global batch.

Buckets are the (height, width) staircase on a pixel grid around each resolution anchor (area
<= anchor^2, aspect <= max_aspect) crossed with the stage's 4k+1 duration buckets (1 = image).
Each bucket's global batch comes from a token budget, so every step costs about the same
memory whatever its shape. A step's bucket, kind (image/video) and items are drawn from
generators keyed by (seed, step, index): the same batches at any process count.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from videoforge.train import seeding


@dataclass(frozen=True)
class Bucket:
    height: int
    width: int
    frames: int  # 1 for images

    @property
    def kind(self) -> str:
        return "image" if self.frames == 1 else "video"


@dataclass(frozen=True)
class ItemShape:
    """What bucketing needs to know about a dataset item."""

    height: int
    width: int
    frames: int
    kind: str  # "image" or "video"


@dataclass(frozen=True)
class LatentGeometry:
    """How pixels map to DiT tokens: VAE compression times patch size."""

    spatial: int = 16  # 8 (VAE) x 2 (patch)
    temporal: int = 4  # VAE; the release's temporal patch is 1

    def tokens(self, b: Bucket) -> int:
        return ((b.frames - 1) // self.temporal + 1) * (b.height // self.spatial) * (b.width // self.spatial)


def bucket_sizes(anchor: int, grid: int = 16, max_aspect: float = 4.0) -> list[tuple[int, int]]:
    """The maximal (h, w) pairs on `grid` with h*w <= anchor^2 and aspect <= max_aspect, tall to wide."""
    if anchor < grid or grid < 1:
        raise ValueError(f"anchor {anchor} must be at least the bucket grid {grid}")
    area = anchor * anchor
    sizes = []
    for h in range(grid, int(anchor * math.sqrt(max_aspect)) + 1, grid):
        w = (area // h) // grid * grid
        if w >= grid and max(h / w, w / h) <= max_aspect + 1e-9:
            sizes.append((h, w))
    return sizes[::-1]  # h descending: tall buckets first


def nearest_size(height: int, width: int, sizes: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """The size whose aspect ratio is closest (in log space) to height/width; ties go to the less elongated."""
    r = math.log(height / width)
    return min(sizes, key=lambda s: (round(abs(math.log(s[0] / s[1]) - r), 9), abs(math.log(s[0] / s[1]))))


def duration_bucket(item_frames: int, frames: Sequence[int], min_stride: int = 1) -> int | None:
    """The longest video bucket (> 1 frame) that fits the item at the smallest stride, or None."""
    fitting = [f for f in frames if f > 1 and (f - 1) * min_stride + 1 <= item_frames]
    return max(fitting) if fitting else None


def assign_buckets(
    items: Sequence[ItemShape],
    anchors: Sequence[int],
    frames: Sequence[int],
    grid: int = 16,
    max_aspect: float = 4.0,
    min_stride: int = 1,
    exact: bool = False,
) -> dict[Bucket, list[int]]:
    """Bucket -> indices of the items it holds. An item joins one bucket per anchor; images go
    to the 1-frame bucket (if the stage has one), videos to their longest fitting duration.
    `exact` (pre-encoded items, which cannot be resized): only a bucket of the item's own size."""
    sizes = {a: bucket_sizes(a, grid, max_aspect) for a in anchors}
    out: dict[Bucket, list[int]] = {}
    for i, it in enumerate(items):
        if it.kind == "image":
            f = 1 if 1 in frames else None
        else:
            f = duration_bucket(it.frames, frames, min_stride)
        if f is None:
            continue
        if exact and (f != it.frames or not any((it.height, it.width) in sizes[a] for a in anchors)):
            continue
        for a in anchors:
            h, w = nearest_size(it.height, it.width, sizes[a])
            if not exact or (h, w) == (it.height, it.width):
                out.setdefault(Bucket(h, w, f), []).append(i)
    return dict(sorted(out.items(), key=lambda kv: (kv[0].frames, kv[0].height * kv[0].width, kv[0].height)))


def global_batch_size(bucket: Bucket, token_budget: int, geometry: LatentGeometry, dp_size: int, max_batch: int) -> int:
    """Samples per global batch: token_budget // tokens, capped, rounded down to a multiple of
    the data-parallel size (and at least one sample per data-parallel rank)."""
    n = min(max_batch, token_budget // max(1, geometry.tokens(bucket)))
    return max(dp_size, n // dp_size * dp_size)


class BucketSampler:
    """Draws, for each global step, a bucket and the item indices of its global batch."""

    def __init__(
        self,
        items: Sequence[ItemShape],
        *,
        anchors: Sequence[int],
        frames: Sequence[int],
        token_budget: int,
        max_batch: int = 64,
        image_ratio: float = 1.0,
        dp_size: int = 1,
        seed: int = 0,
        geometry: LatentGeometry = LatentGeometry(),
        grid: int = 16,
        max_aspect: float = 4.0,
        min_stride: int = 1,
        exact: bool = False,
        ids: Sequence[int] | None = None,
    ):
        """`ids`: what to hand out for items[k] (default k), e.g. dataset indices of a tier subset."""
        self.buckets = assign_buckets(items, anchors, frames, grid, max_aspect, min_stride, exact)
        if ids is not None:
            self.buckets = {b: [ids[k] for k in members] for b, members in self.buckets.items()}
        if not self.buckets:
            raise ValueError(
                f"no item fits any bucket (anchors {list(anchors)}, frames {list(frames)}); "
                f"{len(items)} items: {sum(i.kind == 'video' for i in items)} videos, "
                f"{sum(i.kind == 'image' for i in items)} images"
            )
        self.image_ratio, self.seed = image_ratio, seed
        self.batch_sizes = {b: global_batch_size(b, token_budget, geometry, dp_size, max_batch) for b in self.buckets}
        self.by_kind = {k: [b for b in self.buckets if b.kind == k] for k in ("image", "video")}

    def _kind(self, g: torch.Generator) -> str:
        have = [k for k in ("image", "video") if self.by_kind[k]]
        u = torch.rand((), generator=g).item()
        if len(have) == 1:
            return have[0]
        return "image" if u < self.image_ratio else "video"

    def batch_at(self, step: int) -> tuple[Bucket, list[int]]:
        """(bucket, global batch of item indices) for a global step; a pure function of (seed, step)."""
        g = seeding.torch_generator(self.seed, step, -1, seeding.BUCKET)
        candidates = self.by_kind[self._kind(g)]
        # Buckets are drawn in proportion to how many items they hold.
        weights = torch.tensor([len(self.buckets[b]) for b in candidates], dtype=torch.float64)
        bucket = candidates[int(torch.multinomial(weights, 1, generator=g))]
        members = self.buckets[bucket]
        picks = []
        for j in range(self.batch_sizes[bucket]):
            gj = seeding.torch_generator(self.seed, step, j, seeding.ITEM)
            picks.append(members[int(torch.randint(len(members), (), generator=gj))])
        return bucket, picks
