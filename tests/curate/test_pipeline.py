"""End to end on synthetic footage with planted events: every filter catches its event, the
rest comes through intact, and the outputs match SCHEMA.md."""

from __future__ import annotations

import av
import numpy as np
import pyarrow.parquet as pq

from videoforge.curate.manifest import MANIFEST_SCHEMA

SCHEMA_MD_COLUMNS = [
    "clip_id", "kind", "source", "start_frame", "end_frame", "start_time", "end_time", "fps", "width", "height",
    "num_frames", "status", "drop_stage", "drop_reason", "crop", "score_sharpness", "score_blur", "score_motion",
    "score_text_area", "score_quality", "score_aesthetic", "score_watermark", "num_people", "start_frame_sharpest",
    "duplicate_of", "concept", "tiers", "path", "caption", "camera_motion", "caption_error", "caption_source",
]


def _main_shots(curated, truth):
    rows = sorted(curated[2]["main.mp4"], key=lambda r: r["start_frame"])
    assert len(rows) == len(truth["shot_names"])
    return dict(zip(truth["shot_names"], rows))


def test_cuts_found_within_two_frames(curated, raw):
    _, truth = raw
    rows = sorted(curated[2]["main.mp4"], key=lambda r: r["start_frame"])
    starts = [r["start_frame"] for r in rows[1:]]
    assert len(starts) == len(truth["cuts"])
    for found, planted in zip(starts, truth["cuts"]):
        assert abs(found - planted) <= 2, (starts, truth["cuts"])
    assert rows[-1]["end_frame"] == truth["shot"] * len(truth["shot_names"]) - 1


def test_each_planted_segment_dropped_by_its_stage(curated, raw):
    shots = _main_shots(curated, raw[1])
    expected = {"static": "motion", "blurred": "blur", "degraded": "quality", "text": "ocr"}
    for name, stage in expected.items():
        r = shots[name]
        assert (r["status"], r["drop_stage"]) == ("dropped", stage), (name, r["drop_reason"])
        assert r["path"] is None and r["tiers"] == []
    assert shots["static"]["score_motion"] < 0.3 <= shots["moving"]["score_motion"]
    assert shots["blurred"]["score_blur"] > 0.5 and shots["moving"]["score_blur"] == 0.0
    assert shots["text"]["score_text_area"] > 0.05 > shots["moving"]["score_text_area"]
    assert shots["degraded"]["score_quality"] < 0.35 < shots["moving"]["score_quality"]


def test_letterbox_cropped_and_written(curated, raw):
    out, _, _ = curated
    truth = raw[1]
    r = _main_shots(curated, truth)["letterbox"]
    bar = truth["letterbox_bar"]
    assert r["status"] == "kept"
    assert r["crop"] == [0, bar, truth["width"], truth["height"] - bar]
    assert (r["width"], r["height"]) == (truth["width"], truth["height"] - 2 * bar)
    with av.open(str(out / r["path"])) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert frames[0].shape == (truth["height"] - 2 * bar, truth["width"], 3)
    assert len(frames) == r["num_frames"] == r["end_frame"] - r["start_frame_sharpest"] + 1
    # No black bar left in the written clip.
    assert min(f[:2].max() for f in frames) > 24 and min(f[-2:].max() for f in frames) > 24


def test_duplicates_removed(curated):
    out, _, by_name = curated
    group = [by_name[n][0] for n in ("scene.mp4", "scene_copy.mp4", "scene_reencoded.mp4")]
    kept = [r for r in group if r["status"] == "kept"]
    assert len(kept) == 1
    for r in group:
        if r is not kept[0]:
            assert (r["status"], r["drop_stage"], r["duplicate_of"]) == ("dropped", "dedup", kept[0]["clip_id"])
            assert r["path"] is None
    # Distinct kept clips are far from the dedup threshold.
    emb = pq.read_table(out / "embeddings.parquet").to_pylist()
    x = np.array([e["embedding"] for e in emb])
    sims = x @ x.T - 2 * np.eye(len(x))
    assert sims.max() < 0.8


def test_corrupt_file_failed_and_run_went_on(curated):
    (r,) = curated[2]["corrupt.mp4"]
    assert (r["status"], r["drop_stage"]) == ("failed", "probe")
    assert "InvalidData" in r["drop_reason"]
    assert curated[1]["status"]["kept"] >= 4


def test_kept_clips_intact(curated, raw):
    out, summary, by_name = curated
    truth = raw[1]
    shots = _main_shots(curated, truth)
    moving = shots["moving"]
    assert moving["status"] == "kept" and moving["crop"] is None
    assert (moving["width"], moving["height"], moving["fps"]) == (truth["width"], truth["height"], 24.0)
    assert moving["start_frame"] <= moving["start_frame_sharpest"] < moving["start_frame"] + 5
    with av.open(str(out / moving["path"])) as c:
        n = sum(1 for _ in c.decode(video=0))
    assert n == moving["num_frames"]
    kept = [r for rows in by_name.values() for r in rows if r["status"] == "kept"]
    assert all((out / r["path"]).is_file() for r in kept)
    assert all(r["concept"] is not None and r["drop_stage"] is None and r["drop_reason"] is None for r in kept)
    assert len(list((out / "clips").glob("*.mp4"))) == sum(r["kind"] == "video" for r in kept)
    # Watermark fallback: the planted logo is flagged, the clip kept.
    scene = next(r for n in ("scene.mp4", "scene_copy.mp4", "scene_reencoded.mp4") for r in by_name[n] if r["status"] == "kept")
    assert scene["score_watermark"] > 0.01 and moving["score_watermark"] == 0.0
    # Images: the sharp photo is kept in the image tier, the blurred one dropped.
    (photo,) = by_name["photo.png"]
    (soft,) = by_name["photo_blurred.png"]
    assert photo["status"] == "kept" and photo["tiers"] == ["image-1"] and photo["num_frames"] == 1
    assert (soft["status"], soft["drop_stage"]) == ("dropped", "blur")
    assert (out / photo["path"]).is_file()


def test_tiers_finetune_and_report(curated):
    out, summary, by_name = curated
    shots = sorted(by_name["main.mp4"], key=lambda r: r["start_frame"])
    moving, letterbox = shots[0], shots[-1]
    # 104-pixel-high cropped clip: in the 96px tier, not in the 140px one.
    assert "video-small" in letterbox["tiers"] and "video-wide" not in letterbox["tiers"]
    assert "video-wide" in moving["tiers"]
    assert summary["tiers"]["finetune"] == 2
    assert len((out / "finetune.csv").read_text().strip().splitlines()) == 3
    html = (out / "report.html").read_text()
    assert html.count("<svg") >= 6 and "data:image/jpeg;base64," in html
    assert 'stroke="red"' in html and "min_motion" in html and "video-small" in html
    assert "corrupt.mp4" in html


def test_manifest_schema_matches_schema_md(curated):
    out = curated[0]
    table = pq.read_table(out / "manifest.parquet")
    assert table.schema.equals(MANIFEST_SCHEMA)
    names = table.column_names
    assert [c for c in names if c in SCHEMA_MD_COLUMNS] == SCHEMA_MD_COLUMNS
    extra = [c for c in names if c not in SCHEMA_MD_COLUMNS]
    assert all(c.startswith("score_") for c in extra)
    assert set(table.column("drop_stage").to_pylist()) - {None} <= {
        "probe", "shot", "length", "border", "blur", "motion", "ocr", "quality", "watermark", "people", "dedup"}
