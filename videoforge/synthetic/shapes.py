"""The shapes world: short videos and images of one or two flat shapes on a plain background,
each moving left/right/up/down, growing, shrinking or still, with exact ground truth and a
structured caption (SCHEMA.md) in varied plain-English phrasings.

    spec = sample_scene(np.random.default_rng(0), SceneConfig(width=64, height=64, num_frames=17))
    frames = render(spec)                 # uint8 [T, H, W, 3], anti-aliased, sub-pixel positions
    caption = shapes_caption(spec, rng)   # {"short_description": "a red circle moving to the right", ...}

Everything is a pure function of the spec (and the rng for sampling and phrasing), so a seed
always gives the same pixels and words. `HOLDOUT` lists colour/shape/motion combinations that
training datasets leave out and the evaluation asks for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

# Well-separated saturated colours (hue ~0, 30, 55, 130, 225, 285 degrees); backgrounds are
# low-saturation so the foreground is always told apart from it and its colour is unambiguous.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 35),
    "orange": (250, 140, 20),
    "yellow": (245, 215, 30),
    "green": (40, 170, 60),
    "blue": (35, 80, 225),
    "purple": (145, 55, 190),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "black": (12, 12, 12),
    "dark gray": (64, 64, 64),
    "gray": (128, 128, 128),
    "light gray": (196, 196, 196),
    "white": (245, 245, 245),
    "beige": (232, 222, 198),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star")
MOTIONS: tuple[str, ...] = ("left", "right", "up", "down", "grow", "shrink", "still")

# (colour, shape, motion) combinations never shown in training videos; every colour, shape and
# motion still appears in many other combinations. The evaluation prompts include all of them.
HOLDOUT: tuple[tuple[str, str, str], ...] = (
    ("red", "star", "left"),
    ("blue", "triangle", "up"),
    ("green", "circle", "shrink"),
    ("yellow", "square", "grow"),
    ("orange", "triangle", "right"),
    ("purple", "circle", "down"),
    ("red", "square", "still"),
    ("green", "star", "right"),
)

# Every shape has the area of a circle of its `radius` (so sizes read the same across shapes);
# EXTENT is the farthest point from the centre in units of that radius (for keeping it in frame).
STAR_INNER = 0.45  # inner/outer radius of the five-pointed star
_SQUARE_HALF = math.sqrt(math.pi) / 2  # half side
_TRIANGLE_R = math.sqrt(math.pi / (3 * math.sqrt(3) / 4))  # circumradius
_STAR_R = math.sqrt(math.pi / (5 * STAR_INNER * math.sin(math.radians(36))))  # outer radius
EXTENT: dict[str, float] = {"circle": 1.0, "square": _SQUARE_HALF * math.sqrt(2), "triangle": _TRIANGLE_R, "star": _STAR_R}
_SUPERSAMPLE = 4  # drawing resolution per output pixel (each axis)
_AA_SHIFT = 4  # OpenCV fractional bits of vertex coordinates


@dataclass(frozen=True)
class ShapeSpec:
    """One object: centre (x, y) in pixels and radius at the first and last frame, linearly between."""

    shape: str
    colour: str
    motion: str
    start: tuple[float, float]
    end: tuple[float, float]
    radius: tuple[float, float]
    angle: float = 0.0  # degrees, fixed over the clip

    def at(self, t: float) -> tuple[float, float, float]:
        """(x, y, radius) at clip fraction t in [0, 1]."""
        x = self.start[0] + (self.end[0] - self.start[0]) * t
        y = self.start[1] + (self.end[1] - self.start[1]) * t
        return x, y, self.radius[0] + (self.radius[1] - self.radius[0]) * t


@dataclass(frozen=True)
class SceneSpec:
    width: int
    height: int
    num_frames: int
    background: str
    objects: tuple[ShapeSpec, ...]

    def ground_truth(self) -> dict:
        """JSON-ready description of everything drawn."""
        return {
            "width": self.width, "height": self.height, "num_frames": self.num_frames, "background": self.background,
            "objects": [
                {"shape": o.shape, "colour": o.colour, "motion": o.motion, "start": list(o.start), "end": list(o.end),
                 "radius": list(o.radius), "angle": o.angle}
                for o in self.objects
            ],
        }  # fmt: skip

    @classmethod
    def from_ground_truth(cls, truth: dict) -> "SceneSpec":
        """The inverse of `ground_truth` (extra keys, e.g. a dataset's clip_id, are ignored)."""
        objects = tuple(
            ShapeSpec(o["shape"], o["colour"], o["motion"], tuple(o["start"]), tuple(o["end"]), tuple(o["radius"]), o["angle"])
            for o in truth["objects"]
        )
        return cls(truth["width"], truth["height"], truth["num_frames"], truth["background"], objects)


@dataclass
class SceneConfig:
    """What `sample_scene` draws from."""

    width: int = 64
    height: int = 64
    num_frames: int = 17  # 1 for an image (every object still)
    two_object_prob: float = 0.25
    travel: tuple[float, float] = (0.35, 0.55)  # translation over the clip, fraction of the frame side
    # Objects span about 2x2 DiT tokens (16x16 px each at 64x64): a star's points must survive a
    # VAE that keeps one latent pixel per 8x8; at radius 0.10-0.16 the scorer read 64% of a trained
    # VAE's star round trips as circles.
    radius: tuple[float, float] = (0.15, 0.23)  # fraction of the short side (moving and still objects)
    grow_radius: tuple[float, float] = (0.10, 0.13)  # start radius of growing shapes (end of shrinking)
    two_object_scale: float = 0.7  # both radius ranges, when two objects share the frame
    grow_factor: tuple[float, float] = (1.7, 2.1)
    max_angle: float = 10.0  # degrees of random tilt


# --------------------------------------------------------------------------------------------
# Drawing


def shape_polygon(shape: str, x: float, y: float, radius: float, angle: float = 0.0) -> np.ndarray:
    """Vertices (float [N, 2]) of a square, upright triangle or upright five-pointed star."""
    if shape == "square":
        r, offset = _SQUARE_HALF * math.sqrt(2) * radius, 45.0
        angles = [offset + 90.0 * k for k in range(4)]
        radii = [r] * 4
    elif shape == "triangle":
        angles, radii = [-90.0 + 120.0 * k for k in range(3)], [_TRIANGLE_R * radius] * 3
    elif shape == "star":
        angles = [-90.0 + 36.0 * k for k in range(10)]
        radii = [_STAR_R * radius * (1.0 if k % 2 == 0 else STAR_INNER) for k in range(10)]
    else:
        raise ValueError(f"no polygon for shape {shape!r}; polygons: square, triangle, star")
    a = np.radians(np.asarray(angles) + angle)
    return np.stack([x + np.asarray(radii) * np.cos(a), y + np.asarray(radii) * np.sin(a)], axis=1)


def coverage(shape: str, x: float, y: float, radius: float, angle: float, width: int, height: int) -> np.ndarray:
    """Fraction of each pixel the shape covers, float32 [height, width] in [0, 1].

    Drawn at 4x4 supersampling (1/16-pixel vertex precision) and box-filtered down: exact-area
    anti-aliasing (OpenCV's LINE_AA fill grows shapes by up to a pixel and shifts them). Pixel
    centres are at integer coordinates."""
    ss, sub = _SUPERSAMPLE, 1 << _AA_SHIFT
    big = np.zeros((height * ss, width * ss), np.uint8)
    to_big = lambda v: (v + 0.5) * ss - 0.5  # noqa: E731  low-res -> high-res coordinate
    if shape == "circle":
        centre = (int(round(to_big(x) * sub)), int(round(to_big(y) * sub)))
        cv2.circle(big, centre, int(round(radius * ss * sub)), 255, -1, cv2.LINE_8, _AA_SHIFT)
    else:
        pts = shape_polygon(shape, to_big(x), to_big(y), radius * ss, angle)
        cv2.fillPoly(big, [np.round(pts * sub).astype(np.int32)], 255, cv2.LINE_8, _AA_SHIFT)
    return cv2.resize(big, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def render(spec: SceneSpec) -> np.ndarray:
    """All frames of a scene: uint8 [T, H, W, 3] (RGB); objects drawn in order (later on top)."""
    _check_spec(spec)
    frames = np.empty((spec.num_frames, spec.height, spec.width, 3), np.uint8)
    for i in range(spec.num_frames):
        t = i / (spec.num_frames - 1) if spec.num_frames > 1 else 0.0
        img = np.empty((spec.height, spec.width, 3), np.float32)
        img[:] = BACKGROUNDS[spec.background]
        for o in spec.objects:
            alpha = coverage(o.shape, *o.at(t), o.angle, spec.width, spec.height)[..., None]
            img += alpha * (np.asarray(COLOURS[o.colour], np.float32) - img)
        frames[i] = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    return frames


def _check_spec(spec: SceneSpec) -> None:
    if spec.background not in BACKGROUNDS:
        raise ValueError(f"unknown background {spec.background!r}; expected one of {list(BACKGROUNDS)}")
    for o in spec.objects:
        for value, known, what in ((o.shape, SHAPES, "shape"), (o.colour, COLOURS, "colour"), (o.motion, MOTIONS, "motion")):
            if value not in known:
                raise ValueError(f"unknown {what} {value!r}; expected one of {list(known)}")
    if spec.num_frames < 1 or spec.width < 8 or spec.height < 8:
        raise ValueError(f"scene must be at least 8x8 with >= 1 frame, got {spec.width}x{spec.height}x{spec.num_frames}")


# --------------------------------------------------------------------------------------------
# Sampling


def sample_object(rng: np.random.Generator, cfg: SceneConfig, shape: str, colour: str, motion: str,
                  scale: float = 1.0) -> ShapeSpec:
    """Place one object, its radius ranges times `scale`, so that its whole path stays inside the frame."""
    w, h, side = cfg.width, cfg.height, min(cfg.width, cfg.height)
    angle = float(rng.uniform(-cfg.max_angle, cfg.max_angle))
    # the largest radius that fits the frame's short side, and leaves room for the travel
    fit = (side / 2 - 1.0) / EXTENT[shape]
    if motion in ("left", "right", "up", "down"):
        length = w if motion in ("left", "right") else h
        fit = min(fit, ((1 - cfg.travel[0]) * length / 2 - 1.0) / EXTENT[shape])
    if motion in ("grow", "shrink"):
        r0 = rng.uniform(*cfg.grow_radius) * side * scale
        r1 = r0 * rng.uniform(*cfg.grow_factor)
        r0, r1 = r0 * min(1.0, fit / r1), min(r1, fit)
        radius = (r0, r1) if motion == "grow" else (r1, r0)
    else:
        r = min(rng.uniform(*cfg.radius) * side * scale, fit)
        radius = (r, r)
    m = EXTENT[shape] * max(radius) + 1.0  # margin: centre-to-edge distance that keeps it whole
    if motion in ("left", "right", "up", "down"):
        horizontal = motion in ("left", "right")
        length = w if horizontal else h
        travel = min(rng.uniform(*cfg.travel) * length, length - 2 * m)
        a = m + rng.uniform(0.0, max(0.0, length - 2 * m - travel))
        along = (a, a + travel) if motion in ("right", "down") else (a + travel, a)
        across = rng.uniform(m, (h if horizontal else w) - m)
        start, end = ((along[0], across), (along[1], across)) if horizontal else ((across, along[0]), (across, along[1]))
    else:
        start = end = (rng.uniform(m, w - m), rng.uniform(m, h - m))
    as_float = lambda p: (float(p[0]), float(p[1]))  # noqa: E731
    return ShapeSpec(shape, colour, motion, as_float(start), as_float(end), (float(radius[0]), float(radius[1])), angle)


def _apart(a: ShapeSpec, b: ShapeSpec, num_frames: int) -> bool:
    """True when the two objects' bounding circles never touch (with a 2 px gap)."""
    for t in np.linspace(0.0, 1.0, max(num_frames, 2)):
        ax, ay, ar = a.at(t)
        bx, by, br = b.at(t)
        if math.hypot(ax - bx, ay - by) < EXTENT[a.shape] * ar + EXTENT[b.shape] * br + 2.0:
            return False
    return True


def sample_scene(rng: np.random.Generator, cfg: SceneConfig, exclude: tuple[tuple[str, str, str], ...] = HOLDOUT,
                 num_objects: int | None = None) -> SceneSpec:
    """A random scene: 1 or 2 objects (2 with `cfg.two_object_prob`) of different colours that never
    overlap, no (colour, shape, motion) in `exclude`. Images (`num_frames == 1`) are always still."""
    excluded = set(exclude)
    n = num_objects if num_objects is not None else (2 if rng.random() < cfg.two_object_prob else 1)
    background = str(rng.choice(list(BACKGROUNDS)))
    for _ in range(100):
        objects: list[ShapeSpec] = []
        colours = rng.choice(list(COLOURS), size=n, replace=False)
        for colour in colours:
            shape = str(rng.choice(SHAPES))
            motion = "still" if cfg.num_frames == 1 else str(rng.choice(MOTIONS))
            if (str(colour), shape, motion) in excluded:
                break
            objects.append(sample_object(rng, cfg, shape, str(colour), motion, cfg.two_object_scale if n == 2 else 1.0))
        if len(objects) == n and (n == 1 or _apart(objects[0], objects[1], cfg.num_frames)):
            return SceneSpec(cfg.width, cfg.height, cfg.num_frames, background, tuple(objects))
    raise ValueError(f"could not place {n} non-overlapping objects in {cfg.width}x{cfg.height}; use a larger frame")


# --------------------------------------------------------------------------------------------
# Captions: varied phrasings, so plain-language prompts match what the model saw.

SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "circle", "circle", "disc", "ball", "round dot"),
    "square": ("square", "square", "square", "box", "square block"),
    "triangle": ("triangle", "triangle", "triangle", "triangular shape"),
    "star": ("star", "star", "star", "five-pointed star"),
}
COLOUR_WORDS: dict[str, tuple[str, ...]] = {c: (c,) for c in COLOURS} | {
    "purple": ("purple", "purple", "violet"), "gray": ("gray", "grey")}
MOTION_PARTICIPLES: dict[str, tuple[str, ...]] = {
    "right": ("moving to the right", "moving right", "sliding to the right", "going right",
              "travelling from left to right", "drifting rightward", "moving towards the right edge"),
    "left": ("moving to the left", "moving left", "sliding to the left", "going left",
             "travelling from right to left", "drifting leftward", "moving towards the left edge"),
    "up": ("moving up", "moving upward", "rising", "going up", "floating upwards", "travelling from bottom to top",
           "moving towards the top"),
    "down": ("moving down", "moving downward", "falling", "going down", "sinking", "travelling from top to bottom",
             "moving towards the bottom"),
    "grow": ("growing", "getting bigger", "expanding", "growing larger", "increasing in size", "scaling up",
             "growing bigger"),
    "shrink": ("shrinking", "getting smaller", "contracting", "growing smaller", "decreasing in size", "scaling down",
               "becoming smaller"),
    "still": ("staying still", "standing still", "not moving", "resting in place", "motionless", "sitting still",
              "holding still"),
}
MOTION_SENTENCES: dict[str, str] = {
    "right": "starts near the left side of the frame and moves steadily to the right",
    "left": "starts near the right side of the frame and moves steadily to the left",
    "up": "starts low in the frame and moves steadily upward",
    "down": "starts high in the frame and moves steadily downward",
    "grow": "stays in place and grows steadily larger",
    "shrink": "stays in place and shrinks steadily",
    "still": "stays in the same place and keeps its size for the whole clip",
}
_SHORT_TEMPLATES = ("{objs}", "{objs}", "{Objs}.", "{Objs} on a plain {bg} background.", "{objs} against a {bg} backdrop",
                    "A simple animation of {objs}.", "{objs}, flat 2D graphics")
_IMAGE_TEMPLATES = ("{objs}", "{Objs} on a plain {bg} background.", "a picture of {objs}", "{objs} on {bg}",
                    "A flat illustration of {objs}.")
STYLES = ("flat 2D graphics", "simple vector animation", "minimalist motion graphics", "clean flat shapes")
ATMOSPHERES = ("calm and minimal", "simple and clean", "plain and abstract")


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def with_article(word: str) -> str:
    """"an orange", "a red"."""
    return f"{'an' if word[0] in 'aeiou' else 'a'} {word}"


def _where(x: float, y: float, w: int, h: int) -> str:
    words = [p for p in (("upper", "", "lower")[min(2, int(3 * y / h))], ("left", "", "right")[min(2, int(3 * x / w))]) if p]
    return f"in the {' '.join(words)} part of the frame" if words else "in the centre of the frame"


def _noun_phrase(o: ShapeSpec, rng: np.random.Generator, moving: bool) -> str:
    colour, shape = _pick(rng, COLOUR_WORDS[o.colour]), _pick(rng, SHAPE_WORDS[o.shape])
    phrase = f"{with_article(colour)} {shape}"
    return f"{phrase} {_pick(rng, MOTION_PARTICIPLES[o.motion])}" if moving else phrase


def shapes_caption(spec: SceneSpec, rng: np.random.Generator) -> dict:
    """The structured caption (SCHEMA.md keys) of a shapes scene, phrased at random."""
    video = spec.num_frames > 1
    bg = _pick(rng, COLOUR_WORDS.get(spec.background, (spec.background,)))
    objs = " and ".join(_noun_phrase(o, rng, video) for o in spec.objects)
    short = _pick(rng, _SHORT_TEMPLATES if video else _IMAGE_TEMPLATES).format(objs=objs, Objs=objs[0].upper() + objs[1:], bg=bg)
    sentences = []
    for k, o in enumerate(spec.objects):
        x, y, _ = o.at(0.0)
        lead = f"{'' if k == 0 else 'Beside it, '}{with_article(o.colour)} {o.shape}"
        lead = lead[0].upper() + lead[1:]
        if not video:
            sentences.append(f"{lead} sits {_where(x, y, spec.width, spec.height)}")
        elif o.motion in ("left", "right", "up", "down"):
            sentences.append(f"{lead} {MOTION_SENTENCES[o.motion]}")
        else:
            sentences.append(f"{lead} {_where(x, y, spec.width, spec.height)} {MOTION_SENTENCES[o.motion]}")
    sentences[-1] += f", on a plain {spec.background} background"
    dense = ". ".join(sentences) + "." + (" The camera does not move." if video else "")
    caption = {
        "short_description": short[0].upper() + short[1:] if rng.random() < 0.5 else short,
        "dense_description": dense,
        "background": f"a plain {spec.background} background",
        "style": _pick(rng, STYLES),
        "shot_type": "static wide shot" if video else "flat graphic, full frame",
        "lighting": "flat, even lighting with no shadows",
        "atmosphere": _pick(rng, ATMOSPHERES),
        "tags": ["synthetic", "shapes", *(w for o in spec.objects for w in (o.colour, o.shape, o.motion)), spec.background],
    }
    if video:
        caption["camera_motion"] = "static"
    return caption


__all__ = [
    "BACKGROUNDS", "COLOURS", "EXTENT", "HOLDOUT", "MOTIONS", "SHAPES", "SceneConfig", "SceneSpec", "ShapeSpec",
    "coverage", "render", "sample_object", "sample_scene", "shape_polygon", "shapes_caption", "with_article",
]  # fmt: skip
