"""Where the bundled tiny model lives inside the package."""

from __future__ import annotations

from pathlib import Path

BUNDLED_DIR = Path(__file__).parent / "assets" / "tiny-shapes"


def bundled_model_dir() -> Path | None:
    """The bundled model folder, or None when this build ships none."""
    return BUNDLED_DIR if (BUNDLED_DIR / "videoforge.json").is_file() else None
