"""Model code: nn.Modules only (no distribution, no file formats, no CLI).

Public API: `build_dit`, `build_vae`, `load_dit`, `load_vae`, `save_dit`, `save_vae`.
Imports are lazy so that `import videoforge.models` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "build_dit": "videoforge.models.dit",
    "HunyuanVideoDiT": "videoforge.models.dit",
    "build_vae": "videoforge.models.vae",
    "CausalVAE": "videoforge.models.vae",
    "load_dit": "videoforge.models.checkpoints",
    "load_vae": "videoforge.models.checkpoints",
    "save_dit": "videoforge.models.checkpoints",
    "save_vae": "videoforge.models.checkpoints",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'videoforge.models' has no attribute {name!r}")
