"""Aspect-ratio x duration buckets and the sampler that draws one bucket per global batch.

Buckets are the (height, width) staircase on a pixel grid around each resolution anchor (area
<= anchor^2, aspect <= max_aspect) crossed with the stage's 4k+1 duration buckets (1 = image).
Each bucket's global batch comes from a token budget, so every step costs about the same
memory whatever its shape. A step's bucket, kind (image/video) and items are drawn from
generators keyed by (seed, step, index): the same batches at any process count.

A batch pads every caption to its longest, and text tokens cost the DiT as much as video tokens
(a 64x64 image is 16 tokens, its caption 10 to 48). With `text_groups`, each bucket's (item,
caption variant) pairs are split by text length into groups chosen to minimise the expected padded
length, and a step draws all its samples from one group: every pair is still drawn as often as
before (uniform item, then uniform variant), only batch-mates share a length range.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

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


class GlobalBatch(NamedTuple):
    bucket: Bucket
    items: list[int]
    variants: list[int] | None  # each item's caption variant when the sampler groups by text length


@dataclass(frozen=True)
class TextLengthGroup:
    """(item, caption variant) pairs of one bucket whose texts fall in one length range."""

    items: torch.Tensor  # int64 [n]
    variants: torch.Tensor  # int64 [n]
    cumulative: torch.Tensor  # float64 [n]: running sum of each pair's weight (1 / its item's variants)
    lengths: tuple[int, int]  # shortest and longest text in the group

    @property
    def mass(self) -> float:
        return float(self.cumulative[-1])


def _padding_costs(values: Sequence[int], mass: Sequence[float], batch_size: int) -> torch.Tensor:
    """cost[i, j] (i <= j): the weight share of values[i..j] times the expected padded length of a
    batch drawn from them alone; vectorised, as the release's texts have up to 256 distinct lengths."""
    u = torch.tensor(values, dtype=torch.float64)
    p = torch.tensor(mass, dtype=torch.float64) / sum(mass)
    m = len(values)
    cost = torch.full((m, m), math.inf, dtype=torch.float64)
    for i in range(m):
        c = p[i:].cumsum(0)  # mass of values[i..l]
        cdf = (c[None, :] / c[:, None]).clamp(max=1.0).tril()  # [j, l]: P(length <= values[l] | range i..j)
        at_most = cdf.pow(batch_size)
        below = torch.cat([torch.zeros(m - i, 1, dtype=torch.float64), at_most[:, :-1]], 1).tril()
        cost[i, i:] = c * ((at_most - below) * u[None, i:]).sum(1)
    return cost


def split_by_text_length(lengths: Sequence[int], weights: Sequence[float], batch_size: int, groups: int) -> list[int]:
    """Upper length bounds of at most `groups` contiguous length ranges that minimise the expected
    padded text length of a batch (drawn from one range with probability its weight share)."""
    values = sorted(set(lengths))
    mass = dict.fromkeys(values, 0.0)
    for n, w in zip(lengths, weights):
        mass[n] += w
    cost = _padding_costs(values, [mass[n] for n in values], batch_size).tolist()
    m = len(values)
    # best[g][j]: least cost of values[0..j] in at most g ranges; start[g][j]: where its last range
    # starts (0 for one range; -1: fewer than g ranges do best)
    best = [[math.inf] * m for _ in range(groups + 1)]
    start = [[0] * m for _ in range(groups + 1)]
    best[1] = [cost[0][j] for j in range(m)]
    for g in range(2, groups + 1):
        for j in range(m):
            best[g][j], start[g][j] = best[g - 1][j], -1
            for i in range(1, j + 1):
                c = best[g - 1][i - 1] + cost[i][j]
                if c < best[g][j] - 1e-12:
                    best[g][j], start[g][j] = c, i
    bounds, g, j = [], groups, m - 1
    while j >= 0:
        while g > 1 and start[g][j] == -1:
            g -= 1
        bounds.append(values[j])
        j, g = (start[g][j] if g > 1 else 0) - 1, g - 1
    return bounds[::-1]


def text_length_groups(members: Sequence[int], text_lengths: Mapping[int, Sequence[int]], batch_size: int,
                       groups: int) -> list[TextLengthGroup]:
    """A bucket's (item, variant) pairs in the length ranges of `split_by_text_length`."""
    pairs = [(i, v, n) for i in members for v, n in enumerate(text_lengths[i])]
    weights = [1.0 / len(text_lengths[i]) for i, _, _ in pairs]
    bounds = split_by_text_length([n for _, _, n in pairs], weights, batch_size, groups)
    out, lo = [], -1
    for hi in bounds:
        chosen = [(p, w) for p, w in zip(pairs, weights) if lo < p[2] <= hi]
        out.append(TextLengthGroup(
            items=torch.tensor([p[0] for p, _ in chosen]), variants=torch.tensor([p[1] for p, _ in chosen]),
            cumulative=torch.tensor([w for _, w in chosen], dtype=torch.float64).cumsum(0),
            lengths=(min(p[2] for p, _ in chosen), hi)))
        lo = hi
    return out


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
        text_lengths: Sequence[Sequence[int]] | None = None,
        text_groups: int = 1,
    ):
        """`ids`: what to hand out for items[k] (default k), e.g. dataset indices of a tier subset.
        `text_lengths[k]`: the token count of each caption variant of items[k]; with `text_groups` > 1
        a batch's samples come from one length range of their bucket (module docstring)."""
        if text_groups > 1 and text_lengths is None:
            raise ValueError("text_groups > 1 needs each item's caption lengths (text_lengths)")
        self.buckets = assign_buckets(items, anchors, frames, grid, max_aspect, min_stride, exact)
        hand_out = list(ids) if ids is not None else list(range(len(items)))
        self.buckets = {b: [hand_out[k] for k in members] for b, members in self.buckets.items()}
        if not self.buckets:
            raise ValueError(
                f"no item fits any bucket (anchors {list(anchors)}, frames {list(frames)}); "
                f"{len(items)} items: {sum(i.kind == 'video' for i in items)} videos, "
                f"{sum(i.kind == 'image' for i in items)} images"
            )
        self.image_ratio, self.seed = image_ratio, seed
        self.batch_sizes = {b: global_batch_size(b, token_budget, geometry, dp_size, max_batch) for b in self.buckets}
        self.by_kind = {k: [b for b in self.buckets if b.kind == k] for k in ("image", "video")}
        self.text_groups: dict[Bucket, list[TextLengthGroup]] = {}
        if text_groups > 1:
            lengths = dict(zip(hand_out, text_lengths))
            self.text_groups = {b: text_length_groups(members, lengths, self.batch_sizes[b], text_groups)
                                for b, members in self.buckets.items()}

    def _kind(self, g: torch.Generator) -> str:
        have = [k for k in ("image", "video") if self.by_kind[k]]
        u = torch.rand((), generator=g).item()
        if len(have) == 1:
            return have[0]
        return "image" if u < self.image_ratio else "video"

    def batch_at(self, step: int) -> GlobalBatch:
        """The bucket and global batch (item indices; caption variants when grouping by text length)
        of a global step: a pure function of (seed, step)."""
        g = seeding.torch_generator(self.seed, step, -1, seeding.BUCKET)
        candidates = self.by_kind[self._kind(g)]
        # Buckets are drawn in proportion to how many items they hold.
        weights = torch.tensor([len(self.buckets[b]) for b in candidates], dtype=torch.float64)
        bucket = candidates[int(torch.multinomial(weights, 1, generator=g))]
        n = self.batch_sizes[bucket]
        if bucket not in self.text_groups:
            members = self.buckets[bucket]
            picks = []
            for j in range(n):
                gj = seeding.torch_generator(self.seed, step, j, seeding.ITEM)
                picks.append(members[int(torch.randint(len(members), (), generator=gj))])
            return GlobalBatch(bucket, picks, None)
        # A length group in proportion to its pairs' weight, then pairs in proportion to theirs.
        groups = self.text_groups[bucket]
        group = groups[int(torch.multinomial(torch.tensor([gr.mass for gr in groups]), 1, generator=g))]
        picks, variants = [], []
        for j in range(n):
            gj = seeding.torch_generator(self.seed, step, j, seeding.ITEM)
            k = int(torch.searchsorted(group.cumulative, torch.rand((), dtype=torch.float64, generator=gj) * group.mass, right=True))
            k = min(k, len(group.items) - 1)
            picks.append(int(group.items[k]))
            variants.append(int(group.variants[k]))
        return GlobalBatch(bucket, picks, variants)
