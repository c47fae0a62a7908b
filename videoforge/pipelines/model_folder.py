"""Reading a model folder for inference: generation defaults and where each component lives.

Three layouts are accepted (`SCHEMA.md`, "The model folder"): ours (`videoforge.json`,
`transformer/`, `vae/`, text encoders), a diffusers pipeline folder (`transformer/`, `vae/`,
`text_encoder*/`, `tokenizer*/`), and the release's `ckpts/` folder
(`hunyuan-video-t2v-720p/transformers/mp_rank_00_model_states.pt`, `.../vae/`, `text_encoder/`,
`text_encoder_2/`).
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
RELEASE_SUBDIRS = ("hunyuan-video-t2v-720p", "hunyuan-video-i2v-720p")


@dataclass
class GenerationDefaults:
    """What a `None` argument of the pipeline means; the release's values unless the folder says otherwise."""

    height: int = 720
    width: int = 1280
    num_frames: int = 129
    num_inference_steps: int = 50
    guidance_scale: float = 6.0
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


def _release_dir(model_dir: Path) -> Path | None:
    for name in RELEASE_SUBDIRS:
        if (model_dir / name).is_dir():
            return model_dir / name
    return None


def dit_path(model_dir: str | Path) -> Path:
    """The transformer's weights in any of the accepted layouts (a folder or a file for `load_dit`)."""
    model_dir = Path(model_dir)
    if (model_dir / "transformer").is_dir():
        return model_dir / "transformer"
    release = _release_dir(model_dir)
    if release is not None:
        files = sorted((release / "transformers").glob("mp_rank_00_model_states*.pt"))
        if files:
            return files[0]
    raise FileNotFoundError(
        f"no transformer weights in {model_dir}: expected transformer/ (our or diffusers layout) or "
        f"hunyuan-video-t2v-720p/transformers/mp_rank_00_model_states.pt (release layout)"
    )


def vae_path(model_dir: str | Path) -> Path:
    model_dir = Path(model_dir)
    if (model_dir / "vae").is_dir():
        return model_dir / "vae"
    release = _release_dir(model_dir)
    if release is not None and (release / "vae").is_dir():
        return release / "vae"
    raise FileNotFoundError(f"no VAE in {model_dir}: expected vae/ or hunyuan-video-t2v-720p/vae/")
