"""`videoforge synth`: a shapes-world dataset in the layout `curate` emits, so training reads it
the way it reads real data.

    DIR/manifest.parquet        SCHEMA.md columns (the curation writer), every row `kept`, captioned;
                                tiers video-S-F (all videos), camera-S-F (camera moves), image-S
                                (images) and shapes-S (every shapes image and video, no camera moves)
    DIR/clips/<clip_id>.mp4     H.264 videos: shapes, and camera moves over layered scenes
    DIR/images/<clip_id>.png    still images of shapes
    DIR/ground_truth.jsonl      per row: exactly what was drawn (objects, paths, camera label)

Sample i of each kind is a pure function of (seed, kind, i): the same seed gives the same files
whatever the dataset size or worker count. With `holdout` (the default) no video shows a
colour/shape/motion combination of `shapes.HOLDOUT`, which `videoforge eval shapes` asks for.
"""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np

from videoforge.curate.manifest import MANIFEST, write_manifest
from videoforge.curate.pipeline import CLIPS_DIR, IMAGES_DIR
from videoforge.curate.stage import make_clip_id
from videoforge.synthetic.shapes import HOLDOUT, SceneConfig, render, sample_scene, shapes_caption

CAPTION_SOURCE = "synthetic:shapes-v1"
GROUND_TRUTH = "ground_truth.jsonl"
_KIND_CODES = {"video": 0, "image": 1}

# How captions say each camera move (SCHEMA.md labels); pans/tilts name where the camera goes.
CAMERA_PHRASES: dict[str, tuple[str, ...]] = {
    "zoom_in": ("the camera zooms in", "zooming in"), "zoom_out": ("the camera zooms out", "zooming out"),
    "pan_up": ("the camera pans up", "the camera moves upward"), "pan_down": ("the camera pans down", "the camera moves downward"),
    "pan_left": ("the camera pans left", "the camera moves to the left"),
    "pan_right": ("the camera pans right", "the camera moves to the right"),
    "tilt_up": ("the camera tilts up", "tilting up"), "tilt_down": ("the camera tilts down", "tilting down"),
    "tilt_left": ("the camera turns left", "tilting left"), "tilt_right": ("the camera turns right", "tilting right"),
    "around_left": ("the camera orbits around the central object", "an orbiting camera, background sliding left"),
    "around_right": ("the camera orbits around the central object", "an orbiting camera, background sliding right"),
    "static": ("a static camera", "the camera does not move"), "handheld": ("a handheld, shaky camera", "handheld camera shake"),
}  # fmt: skip


@dataclass
class SynthConfig:
    out: str
    videos: int = 1000
    images: int = 1000
    seed: int = 0
    size: int = 64  # square frames, even (H.264 yuv420p)
    frames: int = 17
    fps: float = 8.0
    holdout: bool = True
    camera_fraction: float = 0.1  # share of the videos that are camera moves over layered scenes
    two_object_prob: float = 0.25
    crf: int = 0  # lossless: the decoded pixels are exactly the rendered ones after 4:2:0 (x264 lossy
    # coding decisions vary from run to run here, so lossy clips would not be reproducible)
    workers: int = 1
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.videos < 0 or self.images < 0 or self.videos + self.images == 0:
            raise ValueError(f"need a positive number of videos and/or images, got {self.videos} videos, {self.images} images")
        if self.size < 16 or self.size % 2:
            raise ValueError(f"--size must be even and >= 16 (H.264 yuv420p), got {self.size}")
        if self.frames < 2:
            raise ValueError(f"--frames must be >= 2 for videos, got {self.frames}")
        if not 0.0 <= self.camera_fraction <= 1.0:
            raise ValueError(f"--camera-fraction must be in [0, 1], got {self.camera_fraction}")

    @property
    def video_tier(self) -> str:
        return f"video-{self.size}-{self.frames}"

    @property
    def image_tier(self) -> str:
        return f"image-{self.size}"


def camera_caption(label: str, rng: np.random.Generator) -> dict[str, Any]:
    phrase = CAMERA_PHRASES[label][int(rng.integers(2))]
    what = ("layers of textured shapes in front of a textured backdrop", "a layered scene of patterned shapes")[int(rng.integers(2))]
    return {
        "short_description": f"{what[0].upper()}{what[1:]}, {phrase}.",
        "dense_description": f"Flat, textured shapes on several layers at different depths in front of a textured "
                             f"background; {phrase}.",
        "background": "a procedurally textured backdrop",
        "style": "abstract procedural textures",
        "shot_type": "wide shot",
        "lighting": "flat, even lighting",
        "atmosphere": "abstract",
        "camera_motion": label,
        "tags": ["synthetic", "camera", label],
    }  # fmt: skip


def _render_sample(cfg: SynthConfig, kind: str, index: int) -> dict[str, Any]:
    """Render and write one sample; returns its manifest row plus its ground truth."""
    rng = np.random.default_rng([cfg.seed, _KIND_CODES[kind], index])
    out = Path(cfg.out)
    source = f"synthetic:shapes/seed{cfg.seed}/{kind}{index:07d}"
    n = cfg.frames if kind == "video" else 1
    clip_id = make_clip_id(source, 0, n - 1)
    camera = kind == "video" and rng.random() < cfg.camera_fraction
    tiers = [cfg.video_tier] if kind == "video" else [cfg.image_tier]
    if camera:
        from videoforge.synthetic.camera_scenes import CAMERA_MOTION_LABELS, SceneSettings, render_clip

        label = CAMERA_MOTION_LABELS[int(rng.integers(len(CAMERA_MOTION_LABELS)))]
        settings = SceneSettings(width=cfg.size, height=cfg.size, num_frames=n, fps=cfg.fps, crf=(0, 0))
        clip = render_clip(label, settings, rng)
        frames, caption, truth = clip.frames, camera_caption(label, rng), {"camera_motion": label, **clip.params}
        tiers.append(f"camera-{cfg.size}-{cfg.frames}")
    else:
        scene_cfg = SceneConfig(width=cfg.size, height=cfg.size, num_frames=n, two_object_prob=cfg.two_object_prob)
        spec = sample_scene(rng, scene_cfg, exclude=HOLDOUT if cfg.holdout else ())
        frames, caption, truth = render(spec), shapes_caption(spec, rng), spec.ground_truth()
        tiers.append(f"shapes-{cfg.size}")  # images and videos of shapes together, for one-source recipes
        label = "static" if kind == "video" else None
    if kind == "video":
        from videoforge.pipelines.video_io import write_mp4

        path = f"{CLIPS_DIR}/{clip_id}.mp4"
        write_mp4(frames, out / path, fps=cfg.fps, crf=cfg.crf)
    else:
        path = f"{IMAGES_DIR}/{clip_id}.png"
        if not cv2.imwrite(str(out / path), frames[0][..., ::-1]):
            raise OSError(f"could not write {out / path}")
    row = {
        "clip_id": clip_id, "kind": kind, "source": source, "start_frame": 0, "end_frame": n - 1,
        "start_time": 0.0, "end_time": n / cfg.fps if kind == "video" else 0.0,
        "fps": cfg.fps if kind == "video" else None, "width": cfg.size, "height": cfg.size, "num_frames": n,
        "status": "kept", "start_frame_sharpest": 0, "tiers": tiers, "path": path,
        "caption": json.dumps(caption), "camera_motion": label, "caption_source": CAPTION_SOURCE,
    }  # fmt: skip
    return {"row": row, "truth": {"clip_id": clip_id, "kind": kind, "path": path, **truth}}


def _render_many(cfg: SynthConfig, jobs: list[tuple[str, int]]) -> list[dict[str, Any]]:
    return [_render_sample(cfg, kind, i) for kind, i in jobs]


def _iter_samples(cfg: SynthConfig) -> Iterator[dict[str, Any]]:
    jobs = [("video", i) for i in range(cfg.videos)] + [("image", i) for i in range(cfg.images)]
    if cfg.workers <= 1:
        for kind, i in jobs:
            yield _render_sample(cfg, kind, i)
        return
    chunks = [jobs[i : i + 64] for i in range(0, len(jobs), 64)]
    with ProcessPoolExecutor(cfg.workers) as pool:
        for results in pool.map(_render_many, [cfg] * len(chunks), chunks):
            yield from results


def write_dataset(cfg: SynthConfig, progress: bool = True) -> Path:
    """Render every sample, then write the manifest and ground truth; returns the manifest path."""
    from tqdm import tqdm

    out = Path(cfg.out)
    if (out / MANIFEST).exists():
        if not cfg.overwrite:
            raise FileExistsError(f"{out / MANIFEST} exists; pass --overwrite to replace the dataset")
        for sub in (CLIPS_DIR, IMAGES_DIR):
            shutil.rmtree(out / sub, ignore_errors=True)
    for sub in (CLIPS_DIR, IMAGES_DIR):
        (out / sub).mkdir(parents=True, exist_ok=True)
    rows, truths = [], []
    for sample in tqdm(_iter_samples(cfg), total=cfg.videos + cfg.images, desc="synth", unit="sample", disable=not progress):
        rows.append(sample["row"])
        truths.append(sample["truth"])
    (out / GROUND_TRUTH).write_text("".join(json.dumps(t) + "\n" for t in truths))
    return write_manifest(out, rows)
