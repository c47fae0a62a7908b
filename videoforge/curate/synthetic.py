"""Synthetic raw footage with planted events, for the curation tests and benchmark: textured
shots with moving objects, hard cuts, and segments that each filter must catch (static, blurred,
degraded, burned-in text, letterbox bars, a persistent logo)."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np


def textured_background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Random coloured rectangles and lines: sharp edges everywhere, distinct per seed."""
    img = np.empty((h, w, 3), np.uint8)
    img[:] = rng.integers(40, 200, 3)
    for _ in range(40):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = x0 + int(rng.integers(8, w // 3)), y0 + int(rng.integers(8, h // 3))
        cv2.rectangle(img, (x0, y0), (x1, y1), tuple(int(c) for c in rng.integers(0, 256, 3)), -1)
    for _ in range(20):
        p0 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.line(img, p0, p1, tuple(int(c) for c in rng.integers(0, 256, 3)), 2)
    return img


def moving_shot(seed: int, n: int, w: int, h: int, speed: float = 3.0, logo: bool = False) -> np.ndarray:
    """n frames: a textured background panning slowly (diagonally, so no edge stays put), with
    bouncing discs on top."""
    rng = np.random.default_rng(seed)
    bg = textured_background(rng, w + n, h + n // 2)
    discs = [(rng.uniform(20, w - 20), rng.uniform(20, h - 20), rng.uniform(-speed, speed), rng.uniform(-speed, speed),
              int(rng.integers(8, 18)), tuple(int(c) for c in rng.integers(0, 256, 3))) for _ in range(4)]
    frames = np.empty((n, h, w, 3), np.uint8)
    for t in range(n):
        f = np.ascontiguousarray(bg[t // 2:t // 2 + h, t:t + w])
        for x, y, vx, vy, r, color in discs:
            px = (x + vx * t) % (2 * (w - 2 * r))
            py = (y + vy * t) % (2 * (h - 2 * r))
            px = px if px < w - 2 * r else 2 * (w - 2 * r) - px
            py = py if py < h - 2 * r else 2 * (h - 2 * r) - py
            cv2.circle(f, (int(px + r), int(py + r)), r, color, -1)
            cv2.circle(f, (int(px + r), int(py + r)), r, (0, 0, 0), 1)
        if logo:  # a channel logo: same pixels in every frame
            cv2.rectangle(f, (w - 44, 6), (w - 8, 26), (255, 255, 255), 2)
            cv2.putText(f, "TV", (w - 38, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1)
        frames[t] = f
    return frames


def static_shot(seed: int, n: int, w: int, h: int) -> np.ndarray:
    return np.repeat(moving_shot(seed, 1, w, h), n, axis=0)


def blurred(frames: np.ndarray, sigma: float = 5.0) -> np.ndarray:
    return np.stack([cv2.GaussianBlur(f, (0, 0), sigma) for f in frames])


def degraded(frames: np.ndarray, block: int = 16, seed: int = 0) -> np.ndarray:
    """Washed-out, blocky, noisy: what a badly over-compressed upload looks like."""
    rng = np.random.default_rng(seed)
    out = []
    for f in frames:
        h, w = f.shape[:2]
        low = cv2.resize(f, (w // block, h // block), interpolation=cv2.INTER_AREA)
        f = cv2.resize(low, (w, h), interpolation=cv2.INTER_NEAREST).astype(np.float32)
        f = 110 + (f - 128) * 0.2 + rng.normal(0, 3, f.shape)
        out.append(np.clip(f, 0, 255).astype(np.uint8))
    return np.stack(out)


def with_text(frames: np.ndarray, text: str = "BREAKING NEWS", scale: float = 1.1) -> np.ndarray:
    out = frames.copy()
    h, w = frames.shape[1:3]
    for f in out:
        cv2.rectangle(f, (4, h // 2 - 30), (w - 4, h // 2 + 34), (20, 20, 20), -1)
        cv2.putText(f, text, (10, h // 2 + 12), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 3)
    return out


def draw_face(img: np.ndarray, cx: int, cy: int, size: int) -> None:
    """A cartoon frontal face (skin oval, dark eyes and brows, nose, mouth): enough for a
    Haar face detector, so the people count has something to count."""
    s = size
    cv2.ellipse(img, (cx, cy), (int(s * 0.8), s), 0, 0, 360, (220, 180, 150), -1)
    for dx in (-1, 1):
        cv2.ellipse(img, (cx + int(dx * s * 0.35), cy - int(s * 0.25)), (int(s * 0.18), int(s * 0.09)), 0, 0, 360,
                    (40, 40, 40), -1)
        cv2.line(img, (cx + int(dx * s * 0.15), cy - int(s * 0.45)), (cx + int(dx * s * 0.55), cy - int(s * 0.45)),
                 (30, 30, 30), max(1, s // 12))
    cv2.line(img, (cx, cy - int(s * 0.1)), (cx, cy + int(s * 0.2)), (160, 120, 100), max(1, s // 15))
    cv2.ellipse(img, (cx, cy + int(s * 0.5)), (int(s * 0.3), int(s * 0.08)), 0, 0, 360, (140, 60, 60), -1)


def with_subtitle(frames: np.ndarray, text: str = "we met at noon") -> np.ndarray:
    """A small white subtitle line at the bottom of every frame."""
    out = frames.copy()
    h = frames.shape[1]
    for f in out:
        cv2.putText(f, text, (20, h - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2)
    return out


def letterboxed(frames: np.ndarray, bar: int) -> np.ndarray:
    """Content squeezed between black bars of `bar` rows at top and bottom."""
    n, h, w = frames.shape[:3]
    out = np.zeros_like(frames)
    for i, f in enumerate(frames):
        out[i, bar:h - bar] = cv2.resize(f, (w, h - 2 * bar), interpolation=cv2.INTER_AREA)
    return out


def write_video(path: Path, frames: np.ndarray, fps: int = 24, crf: int = 16) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast"}
        for f in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        out.mux(stream.encode())
    return path


def make_raw_folder(root: Path, w: int = 256, h: int = 144, shot: int = 48) -> dict:
    """Write the planted-event inputs under `root`; returns the ground truth."""
    root.mkdir(parents=True, exist_ok=True)
    shots = {
        "moving": moving_shot(1, shot, w, h),
        "static": static_shot(2, shot, w, h),
        "blurred": blurred(moving_shot(3, shot, w, h)),
        "degraded": degraded(moving_shot(4, shot, w, h)),
        "text": with_text(moving_shot(5, shot, w, h)),
        "letterbox": letterboxed(moving_shot(6, shot, w, h), bar=20),
    }
    write_video(root / "main.mp4", np.concatenate(list(shots.values())))
    scene = moving_shot(7, shot, w, h, logo=True)
    write_video(root / "scene.mp4", scene)
    (root / "scene_copy.mp4").write_bytes((root / "scene.mp4").read_bytes())
    near = np.clip(scene.astype(np.int16) + 12, 0, 255).astype(np.uint8)
    write_video(root / "scene_reencoded.mp4", near, crf=30)
    (root / "corrupt.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    img = moving_shot(8, 1, 320, 240)[0]
    cv2.imwrite(str(root / "photo.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(root / "photo_blurred.png"), cv2.cvtColor(blurred(img[None], 6.0)[0], cv2.COLOR_RGB2BGR))
    return {"shot_names": list(shots), "cuts": [shot * i for i in range(1, len(shots))], "letterbox_bar": 20,
            "width": w, "height": h, "shot": shot}
