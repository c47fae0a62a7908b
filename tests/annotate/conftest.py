import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from videoforge.curate.manifest import write_manifest
from videoforge.pipelines.video_io import write_mp4
from videoforge.synthetic.camera_scenes import SceneSettings, render_clip

os.environ.setdefault("HF_HUB_OFFLINE", "1")

CLIP_LABELS = ("static", "pan_left", "zoom_in", "tilt_up", "static")


def _row(clip_id: str, kind: str, path: str, status: str = "kept", **extra) -> dict:
    row = dict(clip_id=clip_id, kind=kind, source=f"/raw/{clip_id}.mp4", start_frame=0, end_frame=15, fps=24.0,
               width=96, height=96, num_frames=16, status=status, path=path, score_aesthetic=5.123)
    row.update(extra)
    return row


@pytest.fixture(scope="session")
def _manifest_template(tmp_path_factory) -> Path:
    """A curation manifest folder with 5 kept rendered clips, 1 kept image and 1 dropped clip."""
    root = tmp_path_factory.mktemp("manifest_template")
    (root / "clips").mkdir()
    settings = SceneSettings(width=96, height=96, num_frames=16, crf=(0, 0))
    rows = []
    for i, label in enumerate(CLIP_LABELS):
        clip = render_clip(label, settings, np.random.default_rng(100 + i))
        write_mp4(clip.frames, root / f"clips/c{i}.mp4", fps=24.0, crf=18, preset="veryfast")
        rows.append(_row(f"c{i}", "video", f"clips/c{i}.mp4"))
    image = render_clip("static", settings, np.random.default_rng(99)).frames[0]
    cv2.imwrite(str(root / "clips/img.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    rows.append(_row("img", "image", "clips/img.png", start_frame=0, end_frame=0, fps=None, num_frames=1))
    rows.append(_row("drop", "video", "clips/c0.mp4", status="dropped", drop_stage="blur", drop_reason="blurry"))
    write_manifest(root, rows)
    return root


@pytest.fixture()
def manifest_dir(_manifest_template, tmp_path) -> Path:
    """A fresh copy of the template manifest folder for one test."""
    dst = tmp_path / "data"
    shutil.copytree(_manifest_template, dst)
    return dst
