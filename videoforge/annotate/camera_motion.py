"""Camera motion: one of 14 labels (SCHEMA.md) from dense optical flow and a small trained head.

Features (`clip_features`), from OpenCV DIS flow on frames downscaled to `FlowConfig.max_side`:
per frame pair, a RANSAC similarity fit (translation of the centre, zoom, roll) and a RANSAC
homography fit. A homography explains a rotating (tilt) or zooming camera exactly at any depth,
so what it leaves over measures parallax, which tells a translating camera (pan) from a rotating
one; the flow in the centre vs the border tells an orbit (subject fixed, background sliding) from
a pan; the sign changes and net-vs-path ratio of the per-pair motion over time tell zero-mean
hand shake from steady motion. The head (`MotionHead`, a one-hidden-layer MLP in numpy) maps the
features to label probabilities; its weights ship with the package (`camera_motion_head.safetensors`)
and are trained by `python -m videoforge.annotate.train_camera_motion` on rendered clips.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

LABELS: tuple[str, ...] = (
    "zoom_in", "zoom_out",
    "pan_up", "pan_down", "pan_left", "pan_right",
    "tilt_up", "tilt_down", "tilt_left", "tilt_right",
    "around_left", "around_right",
    "static", "handheld",
)  # fmt: skip

# Predictions below this confidence are not written to the manifest or the caption.
CONFIDENCE_THRESHOLD = 0.6
FEATURE_VERSION = "flow-v2"
HEAD_PATH = Path(__file__).with_name("camera_motion_head.safetensors")


@dataclass(frozen=True)
class FlowConfig:
    max_side: int = 160  # frames are downscaled so the longer side is this many pixels
    max_pairs: int = 16  # consecutive frame pairs sampled evenly over the clip
    grid_step: int = 4  # flow is sampled on this pixel grid for the robust fits
    ransac_px: float = 0.35  # inlier threshold of the fits, in downscaled pixels


def _gray_small(frame: np.ndarray, max_side: int) -> np.ndarray:
    h, w = frame.shape[:2]
    scale = max_side / max(h, w)
    size = (max(16, round(w * scale)), max(16, round(h * scale)))
    return cv2.resize(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), size, interpolation=cv2.INTER_AREA)


def _pair_indices(num_frames: int, max_pairs: int) -> np.ndarray:
    starts = np.linspace(0, num_frames - 2, min(max_pairs, num_frames - 1))
    return np.unique(np.round(starts).astype(int))


def _pair_features(flow: np.ndarray, cfg: FlowConfig) -> np.ndarray:
    """Features of one flow field (units: fraction of frame width per frame)."""
    h, w = flow.shape[:2]
    ys, xs = np.mgrid[cfg.grid_step // 2 : h : cfg.grid_step, cfg.grid_step // 2 : w : cfg.grid_step]
    src = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float32)
    vec = flow[ys.ravel(), xs.ravel()].astype(np.float32)
    dst = src + vec
    centre = np.array([w / 2, h / 2], np.float32)

    # Similarity: translation of the centre, log zoom, roll.
    sim, inl_s = cv2.estimateAffinePartial2D(src - centre, dst - centre, method=cv2.RANSAC,
                                             ransacReprojThreshold=cfg.ransac_px, maxIters=500, confidence=0.99)
    if sim is None:
        sim, inl_s = np.array([[1, 0, 0], [0, 1, 0]], np.float64), np.zeros((len(src), 1), np.uint8)
    a, b = sim[0, 0], sim[1, 0]
    tx, ty = sim[0, 2] / w, sim[1, 2] / w
    log_zoom, roll = np.log(max(np.hypot(a, b), 1e-6)), np.arctan2(b, a)
    sim_res = np.linalg.norm((src - centre) @ sim[:, :2].T + sim[:, 2] - (dst - centre), axis=1) / w

    # Homography: explains rotation and zoom at every depth; the rest is parallax or objects.
    hom, inl_h = cv2.findHomography(src, dst, cv2.RANSAC, cfg.ransac_px, maxIters=500, confidence=0.99)
    if hom is None:
        hom, inl_h = np.eye(3), np.zeros((len(src), 1), np.uint8)
    proj = cv2.perspectiveTransform(src[None], hom)[0]
    hom_res = np.linalg.norm(proj - dst, axis=1) / w

    mag = np.linalg.norm(vec, axis=1) / w
    t_norm = np.hypot(tx, ty)
    direction = np.array([tx, ty]) / t_norm if t_norm > 1e-9 else np.array([1.0, 0.0])
    along = (vec / w) @ direction
    q10, q50, q90 = np.percentile(along, [10, 50, 90])

    # Regions: centre box (middle 40%) and border ring (outer 20%).
    rel = np.abs(src - centre) / centre
    in_centre = (rel < 0.4).all(1)
    in_border = (rel > 0.6).any(1)
    c_med = np.median(vec[in_centre], 0) / w if in_centre.any() else np.zeros(2)
    b_med = np.median(vec[in_border], 0) / w if in_border.any() else np.zeros(2)
    left, right = src[:, 0] < centre[0], src[:, 0] >= centre[0]
    top, bottom = src[:, 1] < centre[1], src[:, 1] >= centre[1]
    divergence = (np.median(vec[right, 0]) - np.median(vec[left, 0]) + np.median(vec[bottom, 1]) - np.median(vec[top, 1])) / w

    med_mag = np.median(mag) + 1e-4
    return np.array([
        tx, ty, log_zoom, roll, divergence,
        inl_s.mean(), inl_h.mean(),
        np.median(sim_res), np.percentile(sim_res, 90), np.median(hom_res), np.percentile(hom_res, 75), np.percentile(hom_res, 90),
        q10, q50, q90, (q90 - q10) / (abs(q50) + 1e-4),
        c_med[0], c_med[1], b_med[0], b_med[1],
        np.linalg.norm(c_med) / (np.linalg.norm(b_med) + 1e-4),
        med_mag, np.percentile(mag, 90),
        np.percentile(hom_res, 75) / med_mag, np.percentile(sim_res, 75) / med_mag,
    ])  # fmt: skip


# Per-pair features that are motions (scaled by fps into "frame widths per second" and squashed).
_MOTION_IDX = [0, 1, 2, 3, 4, 7, 8, 9, 10, 11, 12, 13, 14, 16, 17, 18, 19, 21, 22]


def _squash(x: np.ndarray) -> np.ndarray:
    # asinh keeps the sign and compresses the range: 0.02 frame widths/s is where it bends.
    return np.arcsinh(x / 0.02)


def clip_features(frames: np.ndarray, fps: float, cfg: FlowConfig = FlowConfig()) -> np.ndarray:
    """The feature vector of one clip (uint8 RGB [T, H, W, 3], T >= 2)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 RGB [T, H, W, 3], got {frames.dtype} {frames.shape}")
    if len(frames) < 2:
        raise ValueError(f"camera motion needs at least 2 frames, got {len(frames)}")
    if not fps or fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    cv2.setRNGSeed(0)  # RANSAC samples from OpenCV's RNG: same clip, same features, in any process
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)  # FAST blurs parallax away
    per_pair = []
    for i in _pair_indices(len(frames), cfg.max_pairs):
        g0, g1 = _gray_small(frames[i], cfg.max_side), _gray_small(frames[i + 1], cfg.max_side)
        per_pair.append(_pair_features(dis.calc(g0, g1, None), cfg))
    p = np.stack(per_pair)
    p[:, _MOTION_IDX] *= fps  # per frame -> per second
    motion = _squash(p[:, _MOTION_IDX])
    other = p[:, [i for i in range(p.shape[1]) if i not in _MOTION_IDX]]

    # Over time: steady motion keeps its sign; hand shake flips it and goes nowhere on net.
    t = p[:, [0, 1, 3]]  # tx, ty, roll
    path = np.abs(t).sum(0) + 1e-6
    net_over_path = np.abs(t.sum(0)) / path
    signs = np.sign(t)
    flips = (signs[1:] * signs[:-1] < 0).mean(0) if len(t) > 1 else np.zeros(3)
    return np.concatenate([
        motion.mean(0), np.median(motion, 0), motion.std(0),
        np.log(other.mean(0) + 1e-3),
        net_over_path, flips,
        _squash(np.abs(t).mean(0)), _squash(t.std(0)),
    ]).astype(np.float32)  # fmt: skip


# --------------------------------------------------------------------------------------------
# The head


@dataclass
class MotionHead:
    """Standardise -> Linear -> ReLU -> Linear -> softmax over `labels`."""

    mean: np.ndarray
    std: np.ndarray
    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray
    labels: tuple[str, ...] = LABELS

    def logits(self, features: np.ndarray) -> np.ndarray:
        x = (np.atleast_2d(features) - self.mean) / self.std
        return np.maximum(x @ self.w1 + self.b1, 0) @ self.w2 + self.b2

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        z = self.logits(features)
        z = np.exp(z - z.max(1, keepdims=True))
        return z / z.sum(1, keepdims=True)

    def save(self, path: str | Path, metadata: dict | None = None) -> None:
        from safetensors.numpy import save_file

        tensors = {k: np.ascontiguousarray(getattr(self, k), np.float32) for k in ("mean", "std", "w1", "b1", "w2", "b2")}
        meta = {"labels": json.dumps(list(self.labels)), "feature_version": FEATURE_VERSION}
        meta.update({k: str(v) for k, v in (metadata or {}).items()})
        save_file(tensors, str(path), metadata=meta)

    @classmethod
    def load(cls, path: str | Path) -> "MotionHead":
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"camera-motion head weights not found at {path}; "
                                    "train them with `python -m videoforge.annotate.train_camera_motion`")
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            if meta.get("feature_version") != FEATURE_VERSION:
                raise ValueError(f"{path} was trained on features {meta.get('feature_version')!r}, "
                                 f"this code computes {FEATURE_VERSION!r}; retrain the head")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        return cls(labels=tuple(json.loads(meta["labels"])), **tensors)


@lru_cache(maxsize=4)
def load_head(path: str | None = None) -> MotionHead:
    """The shipped head (or one at `path`), loaded once."""
    return MotionHead.load(path or HEAD_PATH)


def classify_camera_motion(frames: np.ndarray, fps: float, head: MotionHead | None = None) -> tuple[str, float]:
    """(label, confidence) for a clip: label is always one of `LABELS`, confidence in [0, 1]."""
    head = head or load_head()
    proba = head.predict_proba(clip_features(frames, fps))[0]
    best = int(np.argmax(proba))
    return head.labels[best], float(proba[best])


def confident_label(label: str, confidence: float, threshold: float = CONFIDENCE_THRESHOLD) -> str | None:
    """The label to store (manifest column, caption key), or None when not confident enough."""
    return label if confidence >= threshold else None


def classify_video(path: str, start_frame: int | None = None, end_frame: int | None = None,
                   max_side: int = 256) -> tuple[str, float]:
    """Classify frames `start_frame..end_frame` (inclusive; default: the whole video) of a file."""
    from videoforge.curate.video_io import decode_video

    start = start_frame or 0
    if start < 0 or (end_frame is not None and end_frame < start):
        raise ValueError(f"need 0 <= start-frame <= end-frame, got {start_frame}..{end_frame}")
    video = decode_video(str(path), max_side, max_frames=None if end_frame is None else end_frame + 1)
    frames = video.frames[start : None if end_frame is None else end_frame + 1]
    if len(frames) < 2:
        raise ValueError(f"{path} has {len(video.frames)} decodable frames; frames {start}..{end_frame} "
                         "give fewer than the 2 that camera motion needs")
    return classify_camera_motion(frames, video.fps)
