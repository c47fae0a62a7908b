"""The shapes-world renderer: determinism, pixels that match the ground truth, captions."""

import math

import numpy as np
import pytest

from videoforge.annotate.captions import FIELDS, Caption, caption_to_text
from videoforge.synthetic.shapes import (
    BACKGROUNDS, COLOURS, EXTENT, HOLDOUT, MOTION_PARTICIPLES, MOTIONS, SHAPES, SceneConfig, SceneSpec, ShapeSpec,
    render, sample_scene, shapes_caption,
)  # fmt: skip

CFG = SceneConfig(width=64, height=64, num_frames=9)


def _object_mask(frame: np.ndarray, spec: SceneSpec, k: int) -> np.ndarray:
    """Soft coverage of object k (single-object scenes): fraction of the way from background to its colour."""
    bg = np.array(BACKGROUNDS[spec.background], np.float64)
    fg = np.array(COLOURS[spec.objects[k].colour], np.float64)
    return np.clip((frame.astype(np.float64) - bg) @ (fg - bg) / ((fg - bg) @ (fg - bg)), 0, 1)


def test_same_seed_same_pixels_and_caption_different_seed_differs():
    a = sample_scene(np.random.default_rng(7), CFG)
    b = sample_scene(np.random.default_rng(7), CFG)
    assert a == b
    assert np.array_equal(render(a), render(b))
    assert shapes_caption(a, np.random.default_rng(1)) == shapes_caption(b, np.random.default_rng(1))
    c = sample_scene(np.random.default_rng(8), CFG)
    assert c != a and not np.array_equal(render(c), render(a))


@pytest.mark.parametrize("seed", range(12))
def test_rendered_object_matches_ground_truth(seed):
    spec = sample_scene(np.random.default_rng(seed), CFG, exclude=(), num_objects=1)
    o = spec.objects[0]
    frames = render(spec)
    assert frames.shape == (9, 64, 64, 3) and frames.dtype == np.uint8
    for i in (0, 4, 8):
        x, y, r = o.at(i / 8)
        alpha = _object_mask(frames[i], spec, 0)
        area = alpha.sum()
        # every shape has the area of a circle of its radius (rasterisation adds at most ~10%)
        assert 1.0 <= area / (math.pi * r * r) <= 1.12
        yy, xx = np.mgrid[0:64, 0:64]
        cx, cy = (alpha * xx).sum() / area, (alpha * yy).sum() / area
        assert math.hypot(cx - x, cy - y) < 0.05 * r  # every shape's centroid is its centre
        assert tuple(frames[i][int(round(y)), int(round(x))]) == COLOURS[o.colour]  # the centre is solid colour
        # the whole object is inside the frame: the border is pure background
        border = np.concatenate([frames[i][0], frames[i][-1], frames[i][:, 0], frames[i][:, -1]])
        assert (border == BACKGROUNDS[spec.background]).all()


def test_motion_ground_truth_is_consistent():
    for seed in range(60):
        spec = sample_scene(np.random.default_rng(seed), CFG, exclude=(), num_objects=1)
        o = spec.objects[0]
        dx, dy = o.end[0] - o.start[0], o.end[1] - o.start[1]
        dr = o.radius[1] - o.radius[0]
        expected = {"right": dx > 10 and dy == 0, "left": dx < -10 and dy == 0, "down": dy > 10 and dx == 0,
                    "up": dy < -10 and dx == 0, "grow": dr > 0 and dx == dy == 0, "shrink": dr < 0 and dx == dy == 0,
                    "still": dx == dy == dr == 0}
        assert expected[o.motion], (o, expected)
        for t in (0.0, 1.0):
            x, y, r = o.at(t)
            m = EXTENT[o.shape] * r
            assert m <= x <= 64 - m and m <= y <= 64 - m


def test_two_objects_have_distinct_colours_and_never_overlap():
    for seed in range(30):
        spec = sample_scene(np.random.default_rng(seed), CFG, num_objects=2)
        a, b = spec.objects
        assert a.colour != b.colour
        for t in np.linspace(0, 1, 9):
            (ax, ay, ar), (bx, by, br) = a.at(t), b.at(t)
            assert math.hypot(ax - bx, ay - by) > EXTENT[a.shape] * ar + EXTENT[b.shape] * br


def test_holdout_is_excluded_and_images_are_still():
    held = set(HOLDOUT)
    seen = set()
    for seed in range(400):
        spec = sample_scene(np.random.default_rng(seed), CFG)
        for o in spec.objects:
            seen.add((o.colour, o.shape, o.motion))
    assert not seen & held
    assert {c for c, _, _ in seen} == set(COLOURS) and {s for _, s, _ in seen} == set(SHAPES)
    assert {m for _, _, m in seen} == set(MOTIONS)
    image = sample_scene(np.random.default_rng(0), SceneConfig(num_frames=1))
    assert all(o.motion == "still" for o in image.objects) and render(image).shape[0] == 1


def test_caption_follows_schema_and_names_the_content():
    phrasings = set()
    for seed in range(40):
        rng = np.random.default_rng(seed)
        spec = sample_scene(rng, CFG, num_objects=1)
        cap = shapes_caption(spec, rng)
        assert set(cap) <= set(FIELDS) and Caption.from_dict(cap).to_dict() == cap
        o = spec.objects[0]
        short = cap["short_description"].lower()
        assert any(p in short for p in MOTION_PARTICIPLES[o.motion])
        assert o.colour in short or (o.colour == "purple" and "violet" in short)
        assert cap["camera_motion"] == "static" and o.colour in cap["tags"] and o.shape in cap["tags"]
        assert f"{o.colour} {o.shape}" in cap["dense_description"]
        text = caption_to_text(cap, np.random.default_rng(seed))
        assert text and isinstance(text, str)
        phrasings.add(short.split(o.colour)[-1])
    assert len(phrasings) > 20  # varied wording, not one template
    image_cap = shapes_caption(sample_scene(np.random.default_rng(0), SceneConfig(num_frames=1)), np.random.default_rng(0))
    assert "camera_motion" not in image_cap


def test_bad_spec_is_refused():
    bad = SceneSpec(32, 32, 3, "gray", (ShapeSpec("hexagon", "red", "still", (16, 16), (16, 16), (5, 5)),))
    with pytest.raises(ValueError, match="unknown shape 'hexagon'"):
        render(bad)
    with pytest.raises(ValueError, match="unknown background"):
        render(SceneSpec(32, 32, 3, "plaid", ()))
