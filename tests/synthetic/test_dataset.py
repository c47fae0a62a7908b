"""`videoforge synth` writes what curation's manifest reader and the trainer's dataset accept."""

import json

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from videoforge.annotate.captions import Caption, caption_to_text
from videoforge.cli import main
from videoforge.curate.manifest import MANIFEST_SCHEMA, read_manifest
from videoforge.pipelines.video_io import read_video
from videoforge.synthetic.dataset import SynthConfig, write_dataset
from videoforge.synthetic.shapes import HOLDOUT, SceneSpec, render
from videoforge.train.buckets import Bucket
from videoforge.train.datasets import caption_text, load_items, load_pixels, select_tiers


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    assert main(["synth", "--out", str(out), "--videos", "14", "--images", "6", "--seed", "3", "--size", "32",
                 "--frames", "9", "--camera-fraction", "0.3", "--quiet"]) == 0
    return out


def test_manifest_has_the_curation_schema_and_kept_rows(dataset):
    table = read_manifest(dataset)
    assert table.schema.equals(MANIFEST_SCHEMA)
    rows = table.to_pylist()
    assert len(rows) == 20 and {r["status"] for r in rows} == {"kept"}
    assert len({r["clip_id"] for r in rows}) == 20
    for r in rows:  # every caption passes the caption schema and becomes training text
        caption = Caption.from_dict(json.loads(r["caption"]))
        assert caption.short_description and caption_to_text(caption.to_dict(), np.random.default_rng(0))
        assert r["caption_source"] == "synthetic:shapes-v1"
    videos = [r for r in rows if r["kind"] == "video"]
    images = [r for r in rows if r["kind"] == "image"]
    assert len(videos) == 14 and len(images) == 6
    for r in videos:
        assert r["path"].startswith("clips/") and r["num_frames"] == 9 and r["fps"] == 8.0 and "video-32-9" in r["tiers"]
        assert r["camera_motion"] is not None
    camera = [r for r in videos if "camera-32-9" in r["tiers"]]
    assert camera and all(json.loads(r["caption"])["camera_motion"] == r["camera_motion"] for r in camera)
    assert all(r["camera_motion"] == "static" and "shapes-32" in r["tiers"] for r in videos if r not in camera)
    assert not any("shapes-32" in r["tiers"] for r in camera)
    for r in images:
        assert r["path"].startswith("images/") and r["tiers"] == ["image-32", "shapes-32"] and r["camera_motion"] is None


def test_clips_decode_to_the_rendered_ground_truth(dataset):
    truths = [json.loads(line) for line in (dataset / "ground_truth.jsonl").read_text().splitlines()]
    rows = {r["clip_id"]: r for r in read_manifest(dataset).to_pylist()}
    shapes = [t for t in truths if "objects" in t]
    assert len(shapes) >= 10
    for t in shapes[:4] + [t for t in shapes if t["kind"] == "image"][:2]:
        assert rows[t["clip_id"]]["path"] == t["path"]
        expected = render(SceneSpec.from_ground_truth(t))
        if t["kind"] == "video":
            frames, fps = read_video(dataset / t["path"])
            assert fps == 8.0
        else:
            frames = cv2.imread(str(dataset / t["path"]))[None, ..., ::-1]
        assert frames.shape == expected.shape
        err = np.abs(frames.astype(float) - expected).mean()
        assert err < (4.0 if t["kind"] == "video" else 1e-9), err  # lossless H.264 but 4:2:0 chroma at the edges; PNG exact


def test_training_reader_loads_tiers_with_text(dataset):
    everything = load_items(dataset / "manifest.parquet")
    items = [everything[i] for i in select_tiers([i.tiers for i in everything], ["video-32-9"])]
    assert len(items) == 14 and all(i.kind == "video" and i.frames == 9 for i in items)
    g = torch.Generator().manual_seed(0)
    pixels = load_pixels(items[0], Bucket(32, 32, 9), g)
    assert pixels.shape == (3, 9, 32, 32) and -1.0 <= pixels.min() and pixels.max() <= 1.0
    text = caption_text(items[0].caption, np.random.default_rng(0), dropout=0.0)
    assert isinstance(text, str) and len(text) > 10
    images = [everything[i] for i in select_tiers([i.tiers for i in everything], ["image-32"])]
    assert len(images) == 6 and load_pixels(images[0], Bucket(32, 32, 1), g).shape == (3, 1, 32, 32)


def test_same_seed_same_samples_whatever_the_count(dataset, tmp_path):
    write_dataset(SynthConfig(out=str(tmp_path), videos=5, images=2, seed=3, size=32, frames=9, camera_fraction=0.3), progress=False)
    small = [json.loads(x) for x in (tmp_path / "ground_truth.jsonl").read_text().splitlines()]
    big = {t["clip_id"]: t for t in map(json.loads, (dataset / "ground_truth.jsonl").read_text().splitlines())}
    assert all(big[t["clip_id"]] == t for t in small)
    ours = pq.read_table(tmp_path / "manifest.parquet").to_pylist()
    theirs = {r["clip_id"]: r for r in pq.read_table(dataset / "manifest.parquet").to_pylist()}
    assert all(theirs[r["clip_id"]]["caption"] == r["caption"] for r in ours)
    for r in [r for r in ours if r["kind"] == "video"][:3]:  # and the same decoded pixels
        assert np.array_equal(read_video(tmp_path / r["path"])[0], read_video(dataset / r["path"])[0])


def test_holdout_flag(tmp_path):
    for flag, name in (("--holdout", "on"), ("--no-holdout", "off")):
        out = tmp_path / name
        assert main(["synth", "--out", str(out), "--videos", "120", "--images", "0", "--size", "16", "--frames", "2",
                     "--camera-fraction", "0", "--two-objects", "0.5", flag, "--quiet"]) == 0
        combos = {(o["colour"], o["shape"], o["motion"])
                  for t in map(json.loads, (out / "ground_truth.jsonl").read_text().splitlines()) for o in t["objects"]}
        assert (combos & set(HOLDOUT) == set()) if name == "on" else (combos & set(HOLDOUT) != set())


def test_bad_arguments_and_existing_dataset_are_clear_errors(dataset, capsys):
    assert main(["synth", "--out", str(dataset), "--videos", "1", "--images", "0", "--quiet"]) == 1
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert main(["synth", "--out", str(dataset / "x"), "--size", "33", "--quiet"]) == 1
    assert "--size must be even" in capsys.readouterr().err
    assert main(["synth", "--out", str(dataset / "x"), "--videos", "0", "--images", "0", "--quiet"]) == 1
    assert "positive number" in capsys.readouterr().err
