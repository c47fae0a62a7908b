"""Shared fixtures: one synthetic raw folder with planted events, curated once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from videoforge.curate import curate
from videoforge.curate.config import config_from_dict
from videoforge.curate.synthetic import make_raw_folder

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# The defaults, except tiers sized for 256x144 test clips and few concepts.
TEST_CONFIG = {
    "concepts": {"num_centroids": 3},
    "tiers": [
        {"name": "video-small", "short_side": 96, "num_frames": 40, "min_quality": 0.4, "min_motion": 0.3},
        {"name": "video-wide", "short_side": 140, "num_frames": 40, "min_quality": 0.4},
        {"name": "image-1", "kind": "image", "short_side": 200, "min_quality": 0.3},
    ],
    "finetune": {"from_tier": "video-small", "size": 2},
}


@pytest.fixture(scope="session")
def test_config() -> dict:
    return TEST_CONFIG


@pytest.fixture(scope="session")
def raw(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("raw")
    return root, make_raw_folder(root)


@pytest.fixture(scope="session")
def config_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "curate.yaml"
    path.write_text(yaml.safe_dump(TEST_CONFIG))
    return path


@pytest.fixture(scope="session")
def curated(raw, tmp_path_factory):
    """(out_dir, summary, rows by source file name) of one uninterrupted in-process run."""
    root, _ = raw
    out = tmp_path_factory.mktemp("out")
    summary = curate(root, out, config_from_dict(TEST_CONFIG), workers=1, progress=False)
    rows = pq.read_table(out / "manifest.parquet").to_pylist()
    by_name: dict[str, list[dict]] = {}
    for r in rows:
        by_name.setdefault(Path(r["source"]).name, []).append(r)
    return out, summary, by_name
