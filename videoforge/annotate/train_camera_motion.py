"""Train the camera-motion head on rendered clips and benchmark it on held-out renderer settings.

    python -m videoforge.annotate.train_camera_motion            # train, save the shipped head, benchmark
    python -m videoforge.annotate.train_camera_motion --bench-only

The benchmark settings use textures, speeds, frame sizes, frame rates, clip lengths, depths and
shake amplitudes that never occur in training (`TRAIN_SETTINGS` vs `BENCH_SETTINGS`). It prints
per-class precision/recall and writes a confusion-matrix PNG and a JSON report.
"""

from __future__ import annotations

import argparse
import json
import time
from multiprocessing import Pool
from pathlib import Path

import cv2
import numpy as np

from videoforge.annotate.camera_motion import HEAD_PATH, LABELS, MotionHead, clip_features
from videoforge.synthetic.camera_scenes import SceneSettings, render_clip

TRAIN_TEXTURES = ("noise", "blobs", "checker", "dots")
TRAIN_SETTINGS: tuple[SceneSettings, ...] = (
    SceneSettings(width=256, height=256, num_frames=24, fps=24.0, textures=TRAIN_TEXTURES, speed=(1.2, 2.4),
                  shake_px=(0.8, 1.8), background_depth=(8.0, 16.0), crf=(18, 28)),
    SceneSettings(width=320, height=240, num_frames=20, fps=24.0, textures=TRAIN_TEXTURES, speed=(3.6, 5.0),
                  shake_px=(2.2, 3.0), background_depth=(10.0, 20.0), crf=(18, 28)),
)
# Held out: textures, speeds (between and above the training ranges), sizes, fps, lengths.
BENCH_TEXTURES = ("stripes", "cells", "bricks")
BENCH_SETTINGS: tuple[SceneSettings, ...] = (
    SceneSettings(width=384, height=216, num_frames=33, fps=30.0, textures=BENCH_TEXTURES, speed=(2.5, 3.5),
                  shake_px=(1.8, 2.2), background_depth=(9.0, 18.0), crf=(22, 32)),
    SceneSettings(width=288, height=288, num_frames=25, fps=25.0, textures=BENCH_TEXTURES, speed=(5.0, 6.0),
                  shake_px=(3.0, 3.5), background_depth=(12.0, 22.0), crf=(22, 32)),
)

# Label maps of the augmentations: mirroring left-right or up-down, and playing time backwards.
_HFLIP = {"pan_left": "pan_right", "tilt_left": "tilt_right", "around_left": "around_right"}
_VFLIP = {"pan_up": "pan_down", "tilt_up": "tilt_down"}
_REVERSE = {**_HFLIP, **_VFLIP, "zoom_in": "zoom_out"}


def _swap(mapping: dict[str, str], label: str) -> str:
    inverse = {v: k for k, v in mapping.items()}
    return mapping.get(label, inverse.get(label, label))


def augmentations(frames: np.ndarray, label: str) -> list[tuple[np.ndarray, str]]:
    """The clip and its mirrored and time-reversed versions, with their labels."""
    return [
        (frames, label),
        (frames[:, :, ::-1], _swap(_HFLIP, label)),
        (frames[:, ::-1], _swap(_VFLIP, label)),
        (frames[::-1], _swap(_REVERSE, label)),
    ]


def _job(args: tuple[SceneSettings, str, tuple[int, ...], bool]) -> list[tuple[np.ndarray, int]]:
    settings, label, seed, augment = args
    clip = render_clip(label, settings, np.random.default_rng(seed))
    variants = augmentations(clip.frames, label) if augment else [(clip.frames, label)]
    return [(clip_features(np.ascontiguousarray(f), clip.fps), LABELS.index(lab)) for f, lab in variants]


def make_features(settings: tuple[SceneSettings, ...], clips_per_label: int, seed: int, augment: bool,
                  workers: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Render `clips_per_label` clips of every label, spread over `settings`; features and label ids."""
    jobs = [(settings[i % len(settings)], label, (seed, i, j), augment)
            for i in range(clips_per_label) for j, label in enumerate(LABELS)]
    with Pool(workers) as pool:
        results = [r for batch in pool.imap(_job, jobs, chunksize=4) for r in batch]
    x = np.stack([f for f, _ in results])
    y = np.array([lab for _, lab in results])
    return x, y


def train_head(x: np.ndarray, y: np.ndarray, hidden: int = 64, steps: int = 3000, lr: float = 3e-3,
               weight_decay: float = 1e-3, seed: int = 0) -> MotionHead:
    """Full-batch Adam on cross-entropy (with 0.05 label smoothing) for a one-hidden-layer MLP."""
    rng = np.random.default_rng(seed)
    mean, std = x.mean(0), x.std(0) + 1e-6
    xs = (x - mean) / std
    n, d = xs.shape
    k = len(LABELS)
    target = np.full((n, k), 0.05 / k)
    target[np.arange(n), y] += 0.95
    params = {"w1": rng.normal(0, np.sqrt(2 / d), (d, hidden)), "b1": np.zeros(hidden),
              "w2": rng.normal(0, np.sqrt(1 / hidden), (hidden, k)), "b2": np.zeros(k)}
    m = {p: np.zeros_like(v) for p, v in params.items()}
    v2 = {p: np.zeros_like(v) for p, v in params.items()}
    for step in range(1, steps + 1):
        h_pre = xs @ params["w1"] + params["b1"]
        h = np.maximum(h_pre, 0)
        z = h @ params["w2"] + params["b2"]
        z = np.exp(z - z.max(1, keepdims=True))
        prob = z / z.sum(1, keepdims=True)
        dz = (prob - target) / n
        dh = (dz @ params["w2"].T) * (h_pre > 0)
        grads = {"w2": h.T @ dz + weight_decay * params["w2"], "b2": dz.sum(0),
                 "w1": xs.T @ dh + weight_decay * params["w1"], "b1": dh.sum(0)}
        for p in params:
            m[p] = 0.9 * m[p] + 0.1 * grads[p]
            v2[p] = 0.999 * v2[p] + 0.001 * grads[p] ** 2
            params[p] -= lr * (m[p] / (1 - 0.9**step)) / (np.sqrt(v2[p] / (1 - 0.999**step)) + 1e-8)
    return MotionHead(mean=mean, std=std, **params)


def evaluate(head: MotionHead, x: np.ndarray, y: np.ndarray) -> dict:
    """Confusion matrix (rows = true label), per-class precision/recall, accuracy."""
    pred = head.predict_proba(x).argmax(1)
    k = len(LABELS)
    conf = np.zeros((k, k), int)
    np.add.at(conf, (y, pred), 1)
    recall = conf.diagonal() / np.maximum(conf.sum(1), 1)
    precision = conf.diagonal() / np.maximum(conf.sum(0), 1)
    return {
        "labels": list(LABELS),
        "confusion": conf.tolist(),
        "precision": dict(zip(LABELS, precision.round(4).tolist())),
        "recall": dict(zip(LABELS, recall.round(4).tolist())),
        "accuracy": float((pred == y).mean()),
        "macro_accuracy": float(recall.mean()),  # mean per-class recall
    }


def format_table(report: dict) -> str:
    lines = ["| label | precision | recall |", "|---|---|---|"]
    for label in LABELS:
        lines.append(f"| {label} | {report['precision'][label]:.3f} | {report['recall'][label]:.3f} |")
    lines.append(f"| **macro accuracy** | | **{report['macro_accuracy']:.3f}** |")
    return "\n".join(lines)


def confusion_png(report: dict, path: str | Path) -> None:
    """Draw the row-normalised confusion matrix with counts (cv2 only)."""
    conf = np.array(report["confusion"], float)
    k, cell, left, top = len(LABELS), 44, 130, 130
    img = np.full((top + k * cell + 40, left + k * cell + 20, 3), 255, np.uint8)
    norm = conf / np.maximum(conf.sum(1, keepdims=True), 1)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for i in range(k):
        for j in range(k):
            shade = int(255 - 200 * norm[i, j])
            x0, y0 = left + j * cell, top + i * cell
            colour = (shade, shade, 255) if i != j else (shade, 255, shade)
            cv2.rectangle(img, (x0, y0), (x0 + cell, y0 + cell), colour if conf[i, j] else (255, 255, 255), -1)
            cv2.rectangle(img, (x0, y0), (x0 + cell, y0 + cell), (200, 200, 200), 1)
            if conf[i, j]:
                cv2.putText(img, str(int(conf[i, j])), (x0 + 6, y0 + 28), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(img, LABELS[i], (6, top + i * cell + 28), font, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    header = np.full((top, k * cell, 3), 255, np.uint8)
    for j in range(k):  # column labels, written horizontally then rotated
        strip = np.full((cell, top), 255, np.uint8)
        cv2.putText(strip, LABELS[j], (4, 28), font, 0.42, 0, 1, cv2.LINE_AA)
        header[:, j * cell : (j + 1) * cell] = cv2.rotate(strip, cv2.ROTATE_90_COUNTERCLOCKWISE)[..., None]
    img[:top, left : left + k * cell] = header
    cv2.putText(img, f"true label (rows) vs predicted (columns); macro accuracy {report['macro_accuracy']:.3f}",
                (6, top + k * cell + 26), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.imwrite(str(path), img)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips-per-label", type=int, default=28, help="training clips per label (x4 with augmentation)")
    p.add_argument("--bench-clips-per-label", type=int, default=20)
    p.add_argument("--head", default=str(HEAD_PATH), help="where to write/read the head weights")
    p.add_argument("--docs", default="docs", help="folder for camera_motion_confusion.png and _benchmark.json")
    p.add_argument("--bench-only", action="store_true", help="evaluate the existing head only")
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)

    t0 = time.time()
    if not args.bench_only:
        x, y = make_features(TRAIN_SETTINGS, args.clips_per_label, seed=1, augment=True, workers=args.workers)
        print(f"training features {x.shape} in {time.time() - t0:.0f}s")
        head = train_head(x, y)
        print(f"train accuracy {evaluate(head, x, y)['accuracy']:.3f}")
        head.save(args.head, {"train_clips": len(y), "hidden": head.w1.shape[1]})
        print(f"wrote {args.head}")
    head = MotionHead.load(args.head)
    t1 = time.time()
    xb, yb = make_features(BENCH_SETTINGS, args.bench_clips_per_label, seed=2, augment=False, workers=args.workers)
    report = evaluate(head, xb, yb)
    report["bench_clips"] = len(yb)
    print(f"benchmark: {len(yb)} held-out clips in {time.time() - t1:.0f}s")
    print(format_table(report))
    docs = Path(args.docs)
    docs.mkdir(parents=True, exist_ok=True)
    confusion_png(report, docs / "camera_motion_confusion.png")
    (docs / "camera_motion_benchmark.json").write_text(json.dumps(report, indent=1))
    print(f"wrote {docs / 'camera_motion_confusion.png'} and {docs / 'camera_motion_benchmark.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
