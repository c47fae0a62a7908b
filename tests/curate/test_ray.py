"""The Ray Data engine runs the same stages as the local one and writes the same manifest
(a local Ray instance; skipped where Ray is not installed)."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from videoforge.curate import curate
from videoforge.curate.config import config_from_dict


def test_ray_engine_matches_local(raw, test_config, tmp_path):
    ray = pytest.importorskip("ray")
    root, _ = raw
    inputs = [str(root / n) for n in ("scene.mp4", "corrupt.mp4", "photo.png")]
    cfg = config_from_dict(test_config)
    local = curate(inputs, tmp_path / "local", cfg, progress=False)
    try:
        remote = curate(inputs, tmp_path / "ray", cfg, workers=1, engine="ray", progress=False)
    finally:
        ray.shutdown()
    assert local == {**remote, "manifest": local["manifest"]}
    assert pq.read_table(tmp_path / "ray" / "manifest.parquet").equals(pq.read_table(tmp_path / "local" / "manifest.parquet"))
