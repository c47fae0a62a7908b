"""Model slots: where users plug in weights the registry cannot ship (DOVER, CLIP aesthetic
heads, a watermark detector, a video embedder).

A slot is named `"package.module:factory"`; `factory(weights)` is called once per worker with
the configured weights path (or None) and returns a predictor `f(frames) -> value`, where
`frames` is RGB uint8 [N, H, W, 3] (a few frames of one clip, already cropped).
"""

from __future__ import annotations

import importlib
from typing import Any, Callable


def load_slot(spec: str, weights: str | None = None) -> Callable[[Any], Any]:
    """Import `module:factory` and build the predictor; a clear `ValueError` for a bad spec."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"model slot {spec!r} must look like 'package.module:factory'")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"model slot {spec!r} cannot be loaded: {e}") from e
    return factory(weights)
