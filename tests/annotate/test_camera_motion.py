import math

import numpy as np
import pytest

from videoforge.annotate.camera_motion import (
    CONFIDENCE_THRESHOLD,
    LABELS,
    MotionHead,
    classify_camera_motion,
    clip_features,
    confident_label,
    load_head,
)
from videoforge.annotate.train_camera_motion import BENCH_TEXTURES, TRAIN_TEXTURES, augmentations, evaluate, train_head
from videoforge.cli import main
from videoforge.pipelines.video_io import write_mp4
from videoforge.synthetic.camera_scenes import (
    CameraPose,
    Layer,
    SceneSettings,
    camera_path,
    h264_round_trip,
    render_clip,
)

W = H = 200
FOCAL = 180.0


def image_motion(label: str, depth: float, x: float = 0.0, y: float = 0.0, subject_depth: float = 3.0) -> np.ndarray:
    """Where the world point (x, y, depth) moves in the image over one frame of `label`."""
    poses = camera_path(label, 2, 24.0, FOCAL, W, speed_px=4.0, shake_px=2.0, subject_depth=subject_depth,
                        ref_depth=10.0, rng=np.random.default_rng(0))
    pts = []
    for pose in poses:
        cam = pose.rotation @ (np.array([x, y, depth]) - pose.position)
        pts.append(np.array([pose.focal * cam[0] / cam[2] + W / 2, pose.focal * cam[1] / cam[2] + H / 2]))
    return pts[1] - pts[0]


def test_camera_conventions_follow_the_schema():
    # pan: camera translates; content moves opposite to the camera, near faster than far (parallax)
    near, far = image_motion("pan_left", 2.0), image_motion("pan_left", 20.0)
    assert near[0] > 0 and far[0] > 0 and near[0] > 5 * far[0] and abs(near[1]) < 1e-9
    assert image_motion("pan_up", 5.0)[1] > 0 and image_motion("pan_down", 5.0)[1] < 0
    # tilt: camera rotates in place; no parallax
    near, far = image_motion("tilt_up", 2.0), image_motion("tilt_up", 20.0)
    assert near[1] > 3 and np.allclose(near, far, atol=1e-6)
    assert image_motion("tilt_left", 5.0)[0] > 3 and image_motion("tilt_right", 5.0)[0] < -3
    # zoom: points move away from (in) / towards (out) the centre
    assert image_motion("zoom_in", 5.0, x=1.0)[0] > 0 and image_motion("zoom_out", 5.0, x=1.0)[0] < 0
    # orbit: the subject stays centred; around_left = the background slides left, nearer content right
    for label, sign in (("around_left", -1), ("around_right", 1)):
        assert np.allclose(image_motion(label, 3.0, subject_depth=3.0), 0, atol=1e-9)
        assert sign * image_motion(label, 12.0, subject_depth=3.0)[0] > 1
        assert sign * image_motion(label, 1.5, subject_depth=3.0)[0] < 0
    assert np.allclose(image_motion("static", 5.0), 0)


def test_layer_homography_matches_projection():
    rgba = np.zeros((50, 80, 4), np.uint8)
    layer = Layer(rgba, depth=6.0, center=(0.5, -0.2), texel=0.03)
    pose = CameraPose(np.array([0.3, -0.1, 0.5]), camera_path("tilt_right", 5, 24, FOCAL, W, 3, 1, 3, 10,
                                                               np.random.default_rng(0))[4].rotation, FOCAL)
    a, b = 17.0, 33.0
    world = np.array([0.5 + 0.03 * (a - 40), -0.2 + 0.03 * (b - 25), 6.0])
    cam = pose.rotation @ (world - pose.position)
    expect = [FOCAL * cam[0] / cam[2] + W / 2, FOCAL * cam[1] / cam[2] + H / 2]
    got = layer.homography(pose, W, H) @ [a, b, 1]
    assert np.allclose(got[:2] / got[2], expect, atol=1e-9)


def test_render_clip_and_h264_round_trip():
    clip = render_clip("pan_right", SceneSettings(width=128, height=96, num_frames=10, crf=(0, 0)), np.random.default_rng(1))
    assert clip.frames.shape == (10, 96, 128, 3) and clip.frames.dtype == np.uint8 and clip.label == "pan_right"
    assert clip.frames.std() > 20  # textured everywhere
    coded = h264_round_trip(clip.frames, 24.0, crf=20)
    mse = np.mean((coded.astype(float) - clip.frames) ** 2)
    assert coded.shape == clip.frames.shape and 10 * math.log10(255**2 / mse) > 22  # noisy textures: ~24 dB at crf 20
    with pytest.raises(ValueError, match="even frame size"):
        h264_round_trip(clip.frames[:, :95], 24.0)
    with pytest.raises(ValueError, match="unknown camera motion"):
        render_clip("dolly_zoom", SceneSettings(), np.random.default_rng(0))


def test_augmentation_labels():
    frames = np.zeros((3, 4, 4, 3), np.uint8)
    names = {label: [lab for _, lab in augmentations(frames, label)] for label in LABELS}
    assert names["pan_left"] == ["pan_left", "pan_right", "pan_left", "pan_right"]
    assert names["tilt_up"] == ["tilt_up", "tilt_up", "tilt_down", "tilt_down"]
    assert names["zoom_in"] == ["zoom_in", "zoom_in", "zoom_in", "zoom_out"]
    assert names["around_left"] == ["around_left", "around_right", "around_left", "around_right"]
    assert names["handheld"] == ["handheld"] * 4
    assert not set(TRAIN_TEXTURES) & set(BENCH_TEXTURES)


def test_train_head_learns_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 3, (len(LABELS), 6))
    y = np.repeat(np.arange(len(LABELS)), 20)
    x = centres[y] + rng.normal(0, 0.5, (len(y), 6))
    head = train_head(x, y, hidden=16, steps=300)
    assert evaluate(head, x, y)["macro_accuracy"] > 0.95
    head.save(tmp_path / "h.safetensors")
    again = MotionHead.load(tmp_path / "h.safetensors")
    assert np.allclose(again.predict_proba(x), head.predict_proba(x), atol=1e-5)
    with pytest.raises(FileNotFoundError, match="train them with"):
        MotionHead.load(tmp_path / "missing.safetensors")


# Held-out renderer settings (textures, size, fps, speed) unseen in training; one clip per label.
HELD_OUT = SceneSettings(width=192, height=144, num_frames=20, fps=30.0, textures=("stripes", "cells", "bricks"),
                         speed=(3.0, 3.2), shake_px=(2.0, 2.2), crf=(24, 24))


def test_classifier_on_held_out_clips():
    head = load_head()
    assert head.labels == LABELS
    correct = 0
    for i, label in enumerate(LABELS):
        clip = render_clip(label, HELD_OUT, np.random.default_rng([7, i]))
        pred, conf = classify_camera_motion(clip.frames, clip.fps)
        assert pred in LABELS and 0.0 <= conf <= 1.0
        correct += pred == label
    assert correct >= 12, f"{correct}/14 held-out clips right"


def test_classifier_input_errors_and_threshold():
    with pytest.raises(ValueError, match="uint8 RGB"):
        clip_features(np.zeros((4, 32, 32), np.uint8), 24.0)
    with pytest.raises(ValueError, match="at least 2 frames"):
        clip_features(np.zeros((1, 32, 32, 3), np.uint8), 24.0)
    with pytest.raises(ValueError, match="fps must be positive"):
        clip_features(np.zeros((4, 32, 32, 3), np.uint8), 0)
    # a blank clip still gets a label and a valid confidence
    label, conf = classify_camera_motion(np.full((6, 64, 64, 3), 128, np.uint8), 24.0)
    assert label in LABELS and 0 <= conf <= 1
    assert confident_label("pan_left", CONFIDENCE_THRESHOLD) == "pan_left"
    assert confident_label("pan_left", CONFIDENCE_THRESHOLD - 0.01) is None


def test_camera_motion_cli(tmp_path, capsys):
    clip = render_clip("zoom_in", HELD_OUT, np.random.default_rng(5))
    frames = np.concatenate([np.repeat(clip.frames[:1], 10, 0), clip.frames])  # 10 still frames, then the zoom
    path = tmp_path / "clip.mp4"
    write_mp4(frames, path, fps=30.0, crf=18, preset="veryfast")
    assert main(["camera-motion", str(path), "--start-frame", "10", "--end-frame", "33"]) == 0
    label, conf = capsys.readouterr().out.split()
    assert label == "zoom_in" and 0 <= float(conf) <= 1
    assert main(["camera-motion", str(path), "--start-frame", "40", "--end-frame", "50"]) == 1
    assert "fewer than the 2" in capsys.readouterr().err
    assert main(["camera-motion", str(tmp_path / "nope.mp4")]) == 1
    assert "no such file" in capsys.readouterr().err
