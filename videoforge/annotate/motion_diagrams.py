"""Draw one picture per camera-motion label for the docs: a rendered frame with its optical flow.

    python -m videoforge.annotate.motion_diagrams docs/camera_motion

Each picture is the first frame of a rendered clip (desaturated), with arrows showing where the
content moves over the next 3 frames (DIS flow, exaggerated 1.5x), so the conventions of SCHEMA.md
can be seen: for pans near content moves faster than far content, tilts move everything alike,
orbits keep the subject still while the background slides.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from videoforge.annotate.camera_motion import LABELS
from videoforge.synthetic.camera_scenes import SceneSettings, render_clip

SETTINGS = SceneSettings(width=192, height=192, num_frames=4, fps=24.0, speed=(3.0, 3.0), shake_px=(3.0, 3.0),
                         sprite_prob=0.0, num_sprites=(2, 2), crf=(0, 0), textures=("blobs", "cells", "bricks"))


def flow_diagram(frames: np.ndarray, label: str, step: int = 16, gain: float = 1.5) -> np.ndarray:
    """BGR image: the first frame, desaturated, with flow arrows from frame 0 to the last frame."""
    g0, g1 = (cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in (frames[0], frames[-1]))
    flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(g0, g1, None)
    # faded and smoothed, so the arrows stand out (and the PNG stays small)
    img = cv2.cvtColor(cv2.GaussianBlur(g0, (5, 5), 0), cv2.COLOR_GRAY2BGR)
    img = (0.4 * (img // 16 * 16) + 0.6 * 255).astype(np.uint8)
    h, w = g0.shape
    for y in range(step // 2, h, step):
        for x in range(step // 2, w, step):
            dx, dy = flow[y, x] * gain
            if abs(dx) + abs(dy) < 1.0:
                cv2.circle(img, (x, y), 1, (60, 60, 60), -1, cv2.LINE_AA)
                continue
            cv2.arrowedLine(img, (x, y), (int(round(x + dx)), int(round(y + dy))), (20, 20, 200), 1, cv2.LINE_AA,
                            tipLength=0.3)
    cv2.rectangle(img, (0, 0), (w, 22), (255, 255, 255), -1)
    cv2.putText(img, label, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return img


def write_diagrams(folder: str | Path, seed: int = 3) -> list[Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, label in enumerate(LABELS):
        clip = render_clip(label, SETTINGS, np.random.default_rng([seed, i]))
        path = folder / f"{label}.png"
        cv2.imwrite(str(path), flow_diagram(clip.frames, label), [cv2.IMWRITE_PNG_COMPRESSION, 9])
        paths.append(path)
    return paths


if __name__ == "__main__":
    for p in write_diagrams(sys.argv[1] if len(sys.argv) > 1 else "docs/camera_motion"):
        print(p)
