import math
from collections import Counter

import pytest

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
        bucket, picks = s.batch_at(step)
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
