"""A layered-scene renderer with a real pinhole camera, for camera-motion labels.

The world is a stack of fronto-parallel textured planes (an opaque background, RGBA layers of
shapes in front of it, optionally a subject at the centre). A plane at depth Z maps to the image
by an exact homography `K R (M - C e3^T)`, so translating the camera (pan) gives parallax (near
layers move faster), rotating it (tilt) and changing its focal length (zoom) give none, and an
orbit around the subject keeps the subject fixed while the background slides. Screen-space sprites
move independently of the camera (moving objects in static shots). Clips can go through an H.264
round trip (PyAV) so classifiers see codec artefacts.

Conventions (SCHEMA.md): image y points down; pan/tilt directions name where the camera goes, so
content moves the opposite way; around_left means the background slides left in the frame.

    clip = render_clip("pan_left", SceneSettings(width=256, height=256), np.random.default_rng(0))
    clip.frames  # uint8 [T, H, W, 3]
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from videoforge.annotate.camera_motion import LABELS as CAMERA_MOTION_LABELS
from videoforge.curate.video_io import decode_video
from videoforge.pipelines.video_io import write_mp4

TEXTURE_KINDS: tuple[str, ...] = ("noise", "blobs", "checker", "stripes", "cells", "bricks", "dots")


# --------------------------------------------------------------------------------------------
# Textures


def make_texture(kind: str, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A procedural RGB texture, uint8 [height, width, 3]; every kind has detail at all positions."""
    h, w = height, width
    palette = rng.integers(20, 236, size=(6, 3)).astype(np.float32)
    if kind == "noise":  # multi-octave value noise
        img = np.zeros((h, w, 3), np.float32)
        for octave, amp in ((8, 1.0), (24, 0.5), (64, 0.3)):
            small = rng.random((max(2, h // octave), max(2, w // octave), 3)).astype(np.float32)
            img += amp * cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        img = (img - img.min()) / (np.ptp(img) + 1e-6)
        out = palette[0] * (1 - img) + palette[1] * img
    elif kind == "blobs":
        out = np.full((h, w, 3), palette[0], np.float32)
        for _ in range(int(h * w / 900) + 4):
            c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            cv2.circle(out, c, int(rng.integers(4, 28)), palette[rng.integers(1, 6)].tolist(), -1)
    elif kind == "checker":
        cell = int(rng.integers(10, 28))
        yy, xx = np.mgrid[0:h, 0:w]
        mask = ((yy // cell + xx // cell) % 2).astype(np.float32)[..., None]
        out = palette[0] * mask + palette[1] * (1 - mask)
    elif kind == "stripes":  # warped diagonal stripes
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        angle, period = rng.uniform(0, math.pi), rng.uniform(10, 30)
        phase = (xx * math.cos(angle) + yy * math.sin(angle)) / period
        phase += 0.8 * np.sin(yy / rng.uniform(20, 60)) + 0.8 * np.sin(xx / rng.uniform(20, 60))
        t = (0.5 + 0.5 * np.sin(2 * math.pi * phase))[..., None]
        out = palette[0] * t + palette[1] * (1 - t)
    elif kind == "cells":  # Voronoi cells with dark borders
        n = int(h * w / 1200) + 8
        seeds = np.full((h, w), 255, np.uint8)
        seeds[rng.integers(0, h, n), rng.integers(0, w, n)] = 0
        # every pixel gets the label of its nearest seed: the Voronoi partition
        _, labels = cv2.distanceTransformWithLabels(seeds, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_CCOMP)
        colours = rng.integers(20, 236, size=(labels.max() + 1, 3)).astype(np.float32)
        out = colours[labels]
        edge = np.zeros((h, w), bool)
        edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
        edge[1:] |= labels[1:] != labels[:-1]
        out[cv2.dilate(edge.astype(np.uint8), np.ones((2, 2), np.uint8)) > 0] = 10
    elif kind == "bricks":
        bh, bw = int(rng.integers(8, 18)), int(rng.integers(20, 44))
        yy, xx = np.mgrid[0:h, 0:w]
        row = yy // bh
        xs = xx + (row % 2) * (bw // 2)
        brick = row * 1000 + xs // bw
        shade = (np.sin(brick * 12.9898) * 43758.5453) % 1.0
        out = palette[0] * (0.7 + 0.3 * shade[..., None])
        mortar = (yy % bh < 2) | (xs % bw < 2)
        out[mortar] = palette[1]
    elif kind == "dots":
        out = np.full((h, w, 3), palette[0], np.float32)
        step = int(rng.integers(10, 20))
        for y in range(0, h, step):
            for x in range(0, w, step):
                jx, jy = rng.integers(-3, 4, 2)
                cv2.circle(out, (x + int(jx), y + int(jy)), int(rng.integers(2, 5)), palette[rng.integers(1, 6)].tolist(), -1)
    else:
        raise ValueError(f"unknown texture kind {kind!r}; expected one of {TEXTURE_KINDS}")
    # Fine grain so flat areas still have trackable detail.
    out = out + rng.normal(0, 6, size=out.shape).astype(np.float32)
    return np.clip(out, 0, 255).astype(np.uint8)


def make_shapes_mask(height: int, width: int, coverage: float, max_radius: int, rng: np.random.Generator) -> np.ndarray:
    """A binary mask (uint8 0/255) of random ellipses and rectangles covering about `coverage`."""
    mask = np.zeros((height, width), np.uint8)
    target = coverage * height * width
    while np.count_nonzero(mask) < target:
        c = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        a, b = int(rng.integers(max_radius // 3, max_radius + 1)), int(rng.integers(max_radius // 3, max_radius + 1))
        if rng.random() < 0.5:
            cv2.ellipse(mask, c, (a, b), float(rng.uniform(0, 180)), 0, 360, 255, -1)
        else:
            cv2.rectangle(mask, (c[0] - a, c[1] - b), (c[0] + a, c[1] + b), 255, -1)
    return mask


# --------------------------------------------------------------------------------------------
# Camera and layers


@dataclass
class CameraPose:
    """Pinhole camera: centre `position` (world), `rotation` world->camera, focal length in px."""

    position: np.ndarray
    rotation: np.ndarray
    focal: float


@dataclass
class Layer:
    """A fronto-parallel RGBA plane at world depth `depth`, its texture centred at `center` (x, y),
    `texel` world units per texture pixel."""

    rgba: np.ndarray
    depth: float
    center: tuple[float, float]
    texel: float

    def homography(self, pose: CameraPose, width: int, height: int) -> np.ndarray:
        """Texture pixel -> image pixel for this pose."""
        h, w = self.rgba.shape[:2]
        s = self.texel
        m = np.array([[s, 0, self.center[0] - s * w / 2], [0, s, self.center[1] - s * h / 2], [0, 0, self.depth]])
        m[:, 2] -= pose.position
        k = np.array([[pose.focal, 0, width / 2], [0, pose.focal, height / 2], [0, 0, 1.0]])
        return k @ pose.rotation @ m


def rot_yaw(angle: float) -> np.ndarray:
    """Camera-to-world rotation turning the camera right by `angle` radians (about +y, y down)."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def rot_pitch(angle: float) -> np.ndarray:
    """Camera-to-world rotation turning the camera up by `angle` radians."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def rot_roll(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def plane_footprint(poses: list[CameraPose], depth: float, width: int, height: int) -> tuple[float, float, float, float]:
    """World (x0, y0, x1, y1) of everything any pose sees on the plane Z = depth."""
    corners = np.array([[0, 0, 1], [width, 0, 1], [0, height, 1], [width, height, 1], [width / 2, height / 2, 1]], float)
    pts = []
    for pose in poses:
        k_inv = np.linalg.inv(np.array([[pose.focal, 0, width / 2], [0, pose.focal, height / 2], [0, 0, 1.0]]))
        rays = (pose.rotation.T @ k_inv @ corners.T).T
        lam = (depth - pose.position[2]) / rays[:, 2]
        pts.append(pose.position[None, :2] + lam[:, None] * rays[:, :2])
    pts = np.concatenate(pts)
    return float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max())


@dataclass
class Sprite:
    """A screen-space RGBA object moving at constant velocity (px/frame), independent of the camera."""

    rgba: np.ndarray
    start: tuple[float, float]
    velocity: tuple[float, float]


def _over(dst: np.ndarray, rgba: np.ndarray) -> None:
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    dst *= 1 - alpha
    dst += alpha * rgba[..., :3]


def render_frames(layers: list[Layer], poses: list[CameraPose], width: int, height: int, sprites: list[Sprite] = ()) -> np.ndarray:
    """Composite far-to-near layers (then sprites) for every pose: uint8 [T, H, W, 3]."""
    order = sorted(layers, key=lambda layer: -layer.depth)
    frames = np.empty((len(poses), height, width, 3), np.uint8)
    for t, pose in enumerate(poses):
        img = np.zeros((height, width, 3), np.float32)
        for layer in order:
            warped = cv2.warpPerspective(layer.rgba, layer.homography(pose, width, height), (width, height),
                                         flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            _over(img, warped)
        for sp in sprites:
            x, y = sp.start[0] + sp.velocity[0] * t, sp.start[1] + sp.velocity[1] * t
            shift = np.array([[1, 0, x - sp.rgba.shape[1] / 2], [0, 1, y - sp.rgba.shape[0] / 2]])
            _over(img, cv2.warpAffine(sp.rgba, shift, (width, height), borderMode=cv2.BORDER_CONSTANT, borderValue=0))
        frames[t] = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    return frames


def h264_round_trip(frames: np.ndarray, fps: float, crf: int = 23) -> np.ndarray:
    """Encode with libx264 (yuv420p) into memory and decode back; same shape."""
    buf = io.BytesIO()
    write_mp4(frames, buf, fps, crf, preset="veryfast")
    buf.seek(0)
    return decode_video(buf, max_side=None).frames


# --------------------------------------------------------------------------------------------
# Scenes and trajectories


@dataclass
class SceneSettings:
    """What a family of clips looks like. Ranges are (low, high), sampled uniformly per clip."""

    width: int = 256
    height: int = 256
    num_frames: int = 24
    fps: float = 24.0
    textures: tuple[str, ...] = TEXTURE_KINDS
    speed: tuple[float, float] = (1.5, 5.0)  # image motion, px/frame at 256 px width
    background_depth: tuple[float, float] = (8.0, 20.0)
    near_depth: tuple[float, float] = (1.5, 4.0)  # depth of the nearest shape layer
    num_shape_layers: tuple[int, int] = (1, 3)
    shake_px: tuple[float, float] = (1.0, 3.0)  # handheld shake amplitude at 256 px width
    num_sprites: tuple[int, int] = (1, 3)  # moving objects in static shots
    sprite_prob: float = 0.3  # chance of moving objects in the other shots
    crf: tuple[int, int] = (18, 30)  # (0, 0) skips the H.264 round trip
    fov_deg: tuple[float, float] = (45.0, 65.0)


@dataclass
class Clip:
    frames: np.ndarray  # uint8 [T, H, W, 3]
    label: str
    fps: float
    params: dict = field(default_factory=dict)


def _shake(num_frames: int, fps: float, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean hand shake in [-1, 1]-ish: a few random sinusoids at 1.5-7 Hz, per frame."""
    t = np.arange(num_frames) / fps
    out = np.zeros(num_frames)
    for _ in range(3):
        out += rng.uniform(0.3, 1.0) * np.sin(2 * math.pi * rng.uniform(1.5, 7.0) * t + rng.uniform(0, 2 * math.pi))
    out -= out.mean()
    return out / (np.abs(out).max() + 1e-9)


def camera_path(label: str, num_frames: int, fps: float, focal: float, width: int, speed_px: float,
                shake_px: float, subject_depth: float, ref_depth: float, rng: np.random.Generator) -> list[CameraPose]:
    """Poses for `label`. `speed_px` is image motion per frame (at `ref_depth` for pans, at the
    background for orbits); `shake_px` the shake amplitude for handheld."""
    if label not in CAMERA_MOTION_LABELS:
        raise ValueError(f"unknown camera motion {label!r}; expected one of {CAMERA_MOTION_LABELS}")
    poses = []
    t = np.arange(num_frames, dtype=float)
    shakes = [_shake(num_frames, fps, rng) for _ in range(4)] if label == "handheld" else None
    for i in t:
        pos, rot, f = np.zeros(3), np.eye(3), focal
        if label.startswith("pan_"):
            step = speed_px * ref_depth / focal * i  # world units so ref_depth moves speed_px/frame
            direction = {"pan_left": (-1, 0), "pan_right": (1, 0), "pan_up": (0, -1), "pan_down": (0, 1)}[label]
            pos = np.array([direction[0] * step, direction[1] * step, 0.0])
        elif label.startswith("tilt_"):
            angle = speed_px / focal * i
            rot = {"tilt_left": rot_yaw(-angle), "tilt_right": rot_yaw(angle),
                   "tilt_up": rot_pitch(angle), "tilt_down": rot_pitch(-angle)}[label].T
        elif label.startswith("zoom_"):
            rate = speed_px / (width / 2)  # the frame edge moves speed_px per frame
            f = focal * math.exp((rate if label == "zoom_in" else -rate) * i)
        elif label.startswith("around_"):
            # Camera on a circle of radius subject_depth around the subject, always facing it.
            # theta increasing moves the camera right and turns it left: the background slides right.
            bg_rate = speed_px / focal / (1 - subject_depth / ref_depth)
            theta = (bg_rate if label == "around_right" else -bg_rate) * i
            pos = np.array([subject_depth * math.sin(theta), 0.0, subject_depth * (1 - math.cos(theta))])
            rot = rot_yaw(-theta).T
        elif label == "handheld":
            k = int(i)
            amp = shake_px / focal
            rot = (rot_yaw(amp * shakes[0][k]) @ rot_pitch(amp * shakes[1][k]) @ rot_roll(0.3 * amp * shakes[2][k])).T
            pos = np.array([0.3 * amp * ref_depth * shakes[3][k], 0.0, 0.0])
        poses.append(CameraPose(pos, rot, f))
    return poses


def _rgba(texture: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    alpha = np.full(texture.shape[:2], 255, np.uint8) if mask is None else mask
    return np.dstack([texture, alpha])


def _layer_for(poses: list[CameraPose], depth: float, width: int, height: int, focal: float, kind: str,
               rng: np.random.Generator, coverage: float | None = None, max_radius: int = 40) -> Layer:
    """A layer at `depth` whose texture covers everything the poses see of it (opaque without `coverage`)."""
    x0, y0, x1, y1 = plane_footprint(poses, depth, width, height)
    texel = depth / focal  # about one texel per pixel at the start
    # Fast long tilts see the plane at grazing angles, where the footprint explodes: coarsen the
    # texture there rather than allocate gigapixels (only such extreme clips are affected).
    texel *= max(1.0, math.sqrt((x1 - x0) * (y1 - y0) / texel**2) / 3000)
    tw, th = int((x1 - x0) / texel) + 16, int((y1 - y0) / texel) + 16
    tex = make_texture(kind, th, tw, rng)
    mask = None if coverage is None else make_shapes_mask(th, tw, coverage, max_radius, rng)
    return Layer(_rgba(tex, mask), depth, ((x0 + x1) / 2, (y0 + y1) / 2), texel)


def render_clip(label: str, settings: SceneSettings, rng: np.random.Generator) -> Clip:
    """One labelled clip drawn from `settings`."""
    s = settings
    w, h, n = s.width, s.height, s.num_frames
    scale = w / 256  # speeds and shake are given at 256 px width
    fov = math.radians(rng.uniform(*s.fov_deg))
    focal = (w / 2) / math.tan(fov / 2)
    bg_depth = rng.uniform(*s.background_depth)
    near = rng.uniform(*s.near_depth)
    n_layers = int(rng.integers(s.num_shape_layers[0], s.num_shape_layers[1] + 1))
    # the nearest shape layer is always at `near`, so translating cameras show clear parallax
    depths = [near] + sorted(np.exp(rng.uniform(math.log(near), math.log(bg_depth * 0.7), n_layers - 1)))
    subject_depth = rng.uniform(min(near, bg_depth * 0.25), min(near * 2.0, bg_depth * 0.4)) if label.startswith("around_") else near
    ref_depth = math.sqrt(depths[0] * bg_depth)  # pans: the speed is the motion at this depth
    if label.startswith("around_"):
        ref_depth = bg_depth
        depths = [d for d in depths if d > subject_depth * 1.5] or [bg_depth * 0.6]
    speed = rng.uniform(*s.speed) * scale
    shake = rng.uniform(*s.shake_px) * scale
    poses = camera_path(label, n, s.fps, focal, w, speed, shake, subject_depth, ref_depth, rng)

    kinds = list(s.textures)
    layers = [_layer_for(poses, bg_depth, w, h, focal, kinds[rng.integers(len(kinds))], rng)]
    for d in depths:
        cov = rng.uniform(0.15, 0.4)
        layers.append(_layer_for(poses, d, w, h, focal, kinds[rng.integers(len(kinds))], rng, cov, int(rng.integers(15, 45))))
    if label.startswith("around_"):
        # the subject: one opaque shape at the orbit centre, ~30-45% of the frame wide
        radius_px = rng.uniform(0.15, 0.22) * w
        size = int(2 * radius_px * 1.6)
        tex = make_texture(kinds[rng.integers(len(kinds))], size, size, rng)
        mask = np.zeros((size, size), np.uint8)
        cv2.ellipse(mask, (size // 2, size // 2), (int(radius_px), int(radius_px * rng.uniform(1.0, 1.5))), 0, 0, 360, 255, -1)
        layers.append(Layer(_rgba(tex, mask), subject_depth, (0.0, 0.0), subject_depth / focal))

    sprites = []
    n_sprites = int(rng.integers(s.num_sprites[0], s.num_sprites[1] + 1)) if label == "static" or rng.random() < s.sprite_prob else 0
    for _ in range(n_sprites):
        r = int(rng.uniform(0.06, 0.14) * w)
        tex = make_texture(kinds[rng.integers(len(kinds))], 2 * r + 2, 2 * r + 2, rng)
        mask = np.zeros((2 * r + 2, 2 * r + 2), np.uint8)
        cv2.circle(mask, (r + 1, r + 1), r, 255, -1)
        v = rng.uniform(1.0, 4.0) * scale
        a = rng.uniform(0, 2 * math.pi)
        sprites.append(Sprite(_rgba(tex, mask), (rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h), (v * math.cos(a), v * math.sin(a))))

    frames = render_frames(layers, poses, w, h, sprites)
    frames = np.clip(frames + rng.normal(0, 2.0, frames.shape), 0, 255).astype(np.uint8)
    crf = int(rng.integers(s.crf[0], s.crf[1] + 1)) if s.crf[1] > 0 else 0
    if crf:
        frames = h264_round_trip(frames, s.fps, crf)
    params = dict(speed_px=speed, shake_px=shake, focal=focal, background_depth=bg_depth, layer_depths=[float(d) for d in depths],
                  subject_depth=subject_depth, crf=crf, sprites=n_sprites)
    return Clip(frames, label, s.fps, params)


__all__ = [
    "CAMERA_MOTION_LABELS", "TEXTURE_KINDS", "CameraPose", "Clip", "Layer", "SceneSettings", "Sprite",
    "camera_path", "h264_round_trip", "make_shapes_mask", "make_texture", "plane_footprint",
    "render_clip", "render_frames",
]  # fmt: skip
