"""People: a face count for the portrait fine-tuning set. OpenCV's Haar frontal-face cascade
(bundled with opencv-python-headless 4.x, offline) on a few frames; the count is the maximum
over them. Counts only, unless `min_people`/`max_people` are set."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from videoforge.curate.stage import Clip, Stage


@dataclass
class PeopleOptions:
    enabled: bool = True
    frames: int = 3
    min_face: int = 20  # smallest face side, analysis pixels
    min_neighbors: int = 5
    min_people: int | None = None  # drop clips with fewer (null: count only)
    max_people: int | None = None  # drop clips with more


class PeopleStage(Stage):
    name = "people"
    drop_stage = "people"
    skip_dropped = True

    def __init__(self, options: PeopleOptions) -> None:
        self.options = options
        self.cascade = None

    def setup(self) -> None:
        if self.options.enabled:
            path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
            self.cascade = cv2.CascadeClassifier(path)
            if self.cascade.empty():
                raise RuntimeError(f"cannot load the face cascade {path} (OpenCV 5 removed them; pin <5)")

    def process(self, clip: Clip) -> Clip:
        o = self.options
        if self.cascade is None:
            return clip
        gray = clip.gray()
        picks = np.unique(np.linspace(0, len(gray) - 1, min(o.frames, len(gray))).round().astype(int))
        count = max(len(self.cascade.detectMultiScale(gray[i], 1.1, o.min_neighbors, minSize=(o.min_face, o.min_face)))
                    for i in picks)
        clip.num_people = int(count)
        if o.min_people is not None and count < o.min_people:
            clip.drop("people", f"{count} people < min_people {o.min_people}")
        elif o.max_people is not None and count > o.max_people:
            clip.drop("people", f"{count} people > max_people {o.max_people}")
        return clip
