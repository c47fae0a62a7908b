"""A model folder's generation defaults (`videoforge.json`, `SCHEMA.md` "The model folder").

Folders without one (a diffusers pipeline folder, the release's `ckpts/`) get the release's
defaults. Finding the weights in each layout is `load_dit` / `load_vae`'s and
`load_text_encoders`' job.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The release's default negative prompt (used only with true CFG, cfg_scale > 1).
RELEASE_NEGATIVE_PROMPT = (
    "Aerial view, aerial view, overexposed, low quality, deformation, a poor composition, bad hands, "
    "bad teeth, bad eyes, bad limbs, distortion"
)
META_FILE = "videoforge.json"


@dataclass
class GenerationDefaults:
    """What a `None` argument of the pipeline means; the release's values unless the folder says otherwise."""

    height: int = 720
    width: int = 1280
    num_frames: int = 129
    num_inference_steps: int = 50
    guidance_scale: float = 6.0
    cfg_scale: float = 1.0  # true classifier-free guidance (the release is guidance-distilled: off)
    flow_shift: float = 7.0
    fps: int = 24
    negative_prompt: str = RELEASE_NEGATIVE_PROMPT
    # the weight files' hashes, as recorded in videoforge.json (copied into sidecars, never recomputed)
    file_hashes: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> "GenerationDefaults":
        """Read the defaults from a `videoforge.json` dict: top-level keys or a `defaults` object."""
        src = {**meta, **meta.get("defaults", {})}
        if "steps" in src and "num_inference_steps" not in src:
            src["num_inference_steps"] = src["steps"]
        names = {f.name for f in dataclasses.fields(cls)} - {"file_hashes"}
        values = {k: src[k] for k in names if k in src}
        hashes = meta.get("hashes") or meta.get("files") or {}
        return cls(**values, file_hashes=dict(hashes))


def read_meta(model_dir: str | Path) -> dict[str, Any]:
    path = Path(model_dir) / META_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e
