"""Clip embedding for near-duplicate removal and concept clustering. The offline default needs
no weights: mean-centred 16x9 colour thumbnails of a few frames, concatenated and L2-normalised
(cosine ~1 for re-encodes and copies, low for different content). A video-embedder slot
(CLIP/SigLIP/InternVideo2 weights) replaces it when configured. Also makes the report thumbnail."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from videoforge.curate.slots import load_slot
from videoforge.curate.stage import Clip, Stage
from videoforge.curate.video_io import jpeg_thumbnail


@dataclass
class EmbedOptions:
    frames: int = 4
    model: str | None = None  # embedder slot "module:factory" -> 1-D vector
    weights: str | None = None


def thumbnail_embedding(frames: np.ndarray, picks: np.ndarray) -> np.ndarray:
    parts = []
    for i in picks:
        t = cv2.resize(frames[i], (16, 9), interpolation=cv2.INTER_AREA).astype(np.float32)
        parts.append((t - t.mean()).ravel())
    v = np.concatenate(parts)
    return (v / (np.linalg.norm(v) + 1e-6)).astype(np.float32)


class EmbedStage(Stage):
    name = "embed"
    drop_stage = "dedup"

    def __init__(self, options: EmbedOptions) -> None:
        self.options = options
        self.model = None

    def setup(self) -> None:
        self.model = load_slot(self.options.model, self.options.weights) if self.options.model else None

    def process(self, clip: Clip) -> Clip:
        t = len(clip.frames)
        first = (clip.start_frame_sharpest or clip.start_frame) - clip.start_frame
        clip.thumbnail = jpeg_thumbnail(clip.frames[first])
        # Always the same number of picks, so every clip's vector has the same length.
        picks = np.linspace(0, t - 1, self.options.frames).round().astype(int)
        if self.model is not None:
            v = np.asarray(self.model(clip.frames[np.unique(picks)]), np.float32).ravel()
            clip.embedding = v / (np.linalg.norm(v) + 1e-6)
        else:
            clip.embedding = thumbnail_embedding(clip.frames, picks)
        return clip
