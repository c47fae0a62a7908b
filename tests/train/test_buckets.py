import math
from collections import Counter
from collections.abc import Sequence

import pytest
import torch

from videoforge.train.buckets import (
    Bucket, BucketSampler, ItemShape, LatentGeometry, assign_buckets, bucket_sizes, global_batch_size, nearest_size,
)


def test_bucket_sizes_respect_area_grid_and_aspect():
    for anchor in (64, 256, 512):
        sizes = bucket_sizes(anchor, grid=16, max_aspect=4.0)
        assert (anchor, anchor) in sizes
        for h, w in sizes:
            assert h % 16 == 0 and w % 16 == 0
            assert h * w <= anchor * anchor and max(h / w, w / h) <= 4.0
    assert nearest_size(720, 1280, bucket_sizes(256)) == min(
        bucket_sizes(256), key=lambda s: abs(math.log(s[0] / s[1]) - math.log(720 / 1280))
    )
    assert nearest_size(100, 100, bucket_sizes(64)) == (64, 64)


def test_items_join_nearest_bucket_and_longest_duration():
    items = [ItemShape(720, 1280, 40, "video"), ItemShape(300, 300, 1, "image"), ItemShape(480, 640, 5, "video"),
             ItemShape(100, 100, 3, "video")]  # the last is too short for any duration bucket
    b = assign_buckets(items, anchors=[256, 512], frames=[1, 5, 17, 33])
    joined = {i for members in b.values() for i in members}
    assert joined == {0, 1, 2}
    assert Bucket(256, 256, 1) in b and b[Bucket(256, 256, 1)] == [1]
    assert {bk.frames for bk, m in b.items() if 0 in m} == {33}
    assert {bk.frames for bk, m in b.items() if 2 in m} == {5}
    assert sum(0 in m for m in b.values()) == 2  # one bucket per anchor


def test_batch_size_from_token_budget():
    geo = LatentGeometry()
    for bucket in (Bucket(256, 256, 1), Bucket(256, 256, 33), Bucket(512, 512, 65)):
        n = global_batch_size(bucket, token_budget=65536, geometry=geo, dp_size=4, max_batch=1024)
        assert n % 4 == 0 and n >= 4
        assert n * geo.tokens(bucket) <= 65536 or n == 4
    # images get bigger batches than long videos under the same budget
    assert global_batch_size(Bucket(256, 256, 1), 65536, geo, 1, 1024) > global_batch_size(Bucket(256, 256, 65), 65536, geo, 1, 1024)


def test_sampler_batches_are_single_bucket_ratio_and_deterministic():
    items = [ItemShape(360, 640, 65, "video")] * 30 + [ItemShape(640, 360, 33, "video")] * 20 + \
            [ItemShape(512, 512, 1, "image")] * 40 + [ItemShape(300, 900, 1, "image")] * 10
    kw = dict(anchors=[256], frames=[1, 17, 33, 65], token_budget=16384, image_ratio=0.3, dp_size=2, seed=5)
    s = BucketSampler(items, **kw)
    kinds = Counter()
    for step in range(2000):
        bucket, picks, variants = s.batch_at(step)
        assert variants is None
        kinds[bucket.kind] += 1
        assert all(i in s.buckets[bucket] for i in picks)  # every sample from the step's bucket
        assert len(picks) == s.batch_sizes[bucket] and len(picks) % 2 == 0
        assert len(picks) * LatentGeometry().tokens(bucket) <= 16384 or len(picks) == 2
    assert abs(kinds["image"] / 2000 - 0.3) < 0.03
    again = BucketSampler(items, **{**kw, "dp_size": 2})
    assert [again.batch_at(t) for t in (0, 7, 1999)] == [s.batch_at(t) for t in (0, 7, 1999)]


def test_sampler_rejects_data_that_fits_nothing():
    with pytest.raises(ValueError, match="no item fits"):
        BucketSampler([ItemShape(64, 64, 1, "image")], anchors=[64], frames=[17], token_budget=100)


def expected_padded_length(lengths: Sequence[int], weights: Sequence[float], batch_size: int) -> float:
    """The reference: E[longest of `batch_size` draws], drawing lengths[k] with probability proportional to weights[k]."""
    total, by_length = float(sum(weights)), {}
    for n, w in zip(lengths, weights):
        by_length[n] = by_length.get(n, 0.0) + w
    expected, below = 0.0, 0.0
    for n in sorted(by_length):
        at_most = below + by_length[n] / total
        expected += n * (at_most**batch_size - below**batch_size)
        below = at_most
    return expected


def partition_padding(lengths, weights, bounds, batch_size) -> float:
    """Expected padded length when a batch comes from one of the ranges (.., bounds[0]], (bounds[0],
    bounds[1]], ... with probability its weight share."""
    cost, lo, total = 0.0, -1, sum(weights)
    for hi in bounds:
        sel = [(n, w) for n, w in zip(lengths, weights) if lo < n <= hi]
        cost += sum(w for _, w in sel) / total * expected_padded_length([n for n, _ in sel], [w for _, w in sel], batch_size)
        lo = hi
    return cost


def brute_force_split(lengths, weights, batch_size, groups):
    """Least expected padding over every way to cut the sorted distinct lengths into <= groups ranges."""
    from itertools import combinations

    values = sorted(set(lengths))
    best = (math.inf, None)
    for g in range(1, groups + 1):
        for cuts in combinations(range(1, len(values)), g - 1):
            bounds = [values[c - 1] for c in cuts] + [values[-1]]
            best = min(best, (partition_padding(lengths, weights, bounds, batch_size), bounds), key=lambda t: t[0])
    return best


def test_expected_padded_length_is_the_mean_longest_of_a_batch():
    # Two draws from {10 (w 3), 20 (w 1)}: the longest is 10 only if both are 10.
    assert expected_padded_length([10, 20], [3.0, 1.0], 2) == pytest.approx(10 * 0.75**2 + 20 * (1 - 0.75**2))
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(5, 48, (200,))
    draws = lengths[torch.randint(200, (20000, 16), generator=g)].amax(1).double().mean().item()
    assert expected_padded_length(lengths.tolist(), [1.0] * 200, 16) == pytest.approx(draws, rel=0.01)
    # The sampler's vectorised table: each length range's weight share times its expected padding.
    from videoforge.train.buckets import _padding_costs

    values, mass = [3, 5, 9, 14, 30], [1.0, 2.0, 0.5, 3.0, 0.25]
    cost = _padding_costs(values, mass, 4)
    for i in range(5):
        for j in range(i, 5):
            share = sum(mass[i : j + 1]) / sum(mass)
            assert cost[i, j].item() == pytest.approx(share * expected_padded_length(values[i : j + 1], mass[i : j + 1], 4))


@pytest.mark.parametrize("seed", range(6))
def test_length_split_is_the_least_padding_partition(seed):
    from videoforge.train.buckets import split_by_text_length

    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, 30, (40,), generator=g).tolist()
    weights = (torch.rand(40, generator=g) + 0.1).tolist()
    for groups in (1, 2, 3):
        bounds = split_by_text_length(lengths, weights, 8, groups)
        assert len(bounds) <= groups and bounds[-1] == max(lengths)
        assert partition_padding(lengths, weights, bounds, 8) == pytest.approx(brute_force_split(lengths, weights, 8, groups)[0], rel=1e-9)


def test_text_length_groups_keep_each_caption_as_frequent_and_cut_padding():
    """Short captions for most items, a long one now and then (the shapes recipe's mix): grouped
    batches share a length range, every (item, variant) comes as often as before, and the mean
    padded length falls."""
    g = torch.Generator().manual_seed(1)
    items = [ItemShape(64, 64, 1, "image")] * 60 + [ItemShape(64, 64, 17, "video")] * 40
    lengths = [[int(n) for n in (torch.randint(9, 16, (4,), generator=g) + (torch.rand(4, generator=g) < 0.3) * 30)]
               for _ in items]
    lengths[5] = [12]  # a plain-text caption: one variant, so drawn with four times its variants' weight
    ids = [1000 + k for k in range(100)]
    kw = dict(anchors=[64], frames=[1, 17], token_budget=1280, max_batch=32, image_ratio=0.5, seed=2, ids=ids)
    plain = BucketSampler(items, **kw)
    grouped = BucketSampler(items, **kw, text_lengths=lengths, text_groups=3)
    by_id = dict(zip(ids, lengths))
    counts, pads_plain, pads_grouped = Counter(), [], []
    steps = 3000
    for step in range(steps):
        bucket, picks, variants = grouped.batch_at(step)
        assert bucket == plain.batch_at(step).bucket  # the same buckets, step for step
        ranges = [gr.lengths for gr in grouped.text_groups[bucket]]
        texts = [by_id[i][v] for i, v in zip(picks, variants)]
        assert any(lo <= min(texts) and max(texts) <= hi for lo, hi in ranges)  # one group per batch
        pads_grouped.append(max(texts))
        _, plain_picks, _ = plain.batch_at(step)
        pads_plain.append(max(by_id[i][int(torch.randint(len(by_id[i]), (), generator=g))] for i in plain_picks))
        if bucket.kind == "image":
            counts.update((i, v) for i, v in zip(picks, variants))
    assert len(grouped.text_groups[Bucket(64, 64, 1)]) >= 2
    assert sum(pads_grouped) < 0.75 * sum(pads_plain)
    # Images: 60 items, so each item 1/60 of the draws and each variant 1/4 of its item's.
    n = sum(counts.values())
    per_item = Counter()
    for (i, _), c in counts.items():
        per_item[i] += c
    for i in ids[:60]:
        assert per_item[i] / n == pytest.approx(1 / 60, rel=0.25)
    assert counts[(1005, 0)] / n == pytest.approx(1 / 60, rel=0.25)
    assert all(c / n == pytest.approx(1 / 240, rel=0.5) for (i, _), c in counts.items() if i != 1005)
    again = BucketSampler(items, **kw, text_lengths=lengths, text_groups=3)
    assert [again.batch_at(t) for t in (0, 7, 2999)] == [grouped.batch_at(t) for t in (0, 7, 2999)]


def test_text_groups_need_lengths():
    with pytest.raises(ValueError, match="text_lengths"):
        BucketSampler([ItemShape(64, 64, 1, "image")], anchors=[64], frames=[1], token_budget=100, text_groups=2)
