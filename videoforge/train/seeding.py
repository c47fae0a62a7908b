"""Per-sample random streams keyed by (seed, global step, sample index, purpose).

Everything random about a training sample (which item, crop/stride, noise, timestep, caption
dropout) comes from a generator seeded by these numbers, never from a per-process stream, so a
run draws the same samples at any process count and after any resume.
"""

from __future__ import annotations

import numpy as np
import torch

# Purposes: separate streams so adding a draw to one never shifts another.
BUCKET, ITEM, MEDIA, CAPTION, NOISE, POSTERIOR = range(6)


def _seed(seed: int, step: int, index: int, purpose: int) -> int:
    # SeedSequence hashes the tuple, so neighbouring keys give unrelated streams.
    return int(np.random.SeedSequence([seed, step, index + 1, purpose]).generate_state(1, dtype=np.uint64)[0] >> 1)


def torch_generator(seed: int, step: int, index: int, purpose: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(_seed(seed, step, index, purpose))
    return g


def numpy_generator(seed: int, step: int, index: int, purpose: int) -> np.random.Generator:
    return np.random.default_rng(_seed(seed, step, index, purpose))
