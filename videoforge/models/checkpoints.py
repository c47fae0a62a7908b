"""Loading and saving the DiT and the VAE in every layout we meet (`SCHEMA.md`, "The model folder").

What `load_dit` / `load_vae` accept, a file or a folder:
- the release's files: the DiT `.pt` (weights under "module" or "ema", or bare; or `.safetensors`),
  its FP8 variant (`*_fp8.pt` with `*_fp8_map.pt` scales beside it), the VAE `pytorch_model.pt`
  (bare, under "state_dict", or with `vae.`-prefixed keys), and the release's folders
  (`hunyuan-video-t2v-720p/`, its `transformers/` and `vae/`, or the `ckpts/` folder above them);
- a diffusers folder: `config.json` + `diffusion_pytorch_model.safetensors` (or shards with their
  `.index.json`); a diffusers pipeline folder (its `transformer/`, `vae/`);
- our layouts: `save_*(layout="official")` folders (`transformer.safetensors` / `vae.safetensors` +
  our `config.json`) and model folders (`transformer/`, `vae/` in diffusers layout).

A folder's `config.json` is told apart by its `_class_name`. Loading builds the model on the meta
device and assigns the (memory-mapped) file tensors cast one at a time, so a 13B checkpoint is never
held twice in memory.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm import tqdm

from videoforge.config import DiTConfig, VAEConfig, preset
from videoforge.models import convert

DIFFUSERS_WEIGHTS = "diffusion_pytorch_model.safetensors"
DIFFUSERS_INDEX = DIFFUSERS_WEIGHTS + ".index.json"
DIFFUSERS_VERSION = "0.42.1"  # the version our diffusers-layout config.json files are checked against
DEFAULT_SHARD_BYTES = 10 * 2**30  # diffusers' default shard size
RELEASE_FOLDERS = {"hunyuan-video-t2v-720p": "hunyuan-t2v-720p", "hunyuan-video-i2v-720p": "hunyuan-i2v-720p"}


class CheckpointError(ValueError):
    """A checkpoint that cannot be found, read, or matched to the model."""


@dataclass(frozen=True)
class _Kind:
    """What differs between loading a DiT and loading a VAE."""

    name: str  # "DiT" / "VAE"
    subfolder: str  # in model and diffusers pipeline folders
    official_file: str  # our official-layout weights file
    diffusers_class: str
    our_class: str
    official_class: str | None
    config_type: type


DIT = _Kind("DiT", "transformer", "transformer.safetensors", "HunyuanVideoTransformer3DModel", "videoforge.DiTConfig", None, DiTConfig)
VAE = _Kind("VAE", "vae", "vae.safetensors", "AutoencoderKLHunyuanVideo", "videoforge.VAEConfig", "AutoencoderKLCausal3D", VAEConfig)


def _class_names(kind: _Kind) -> set[str]:
    return {kind.diffusers_class, kind.our_class} | ({kind.official_class} if kind.official_class else set())


# ------------------------------------------------------------------------------------------------
# Finding the weights files and config.json


@dataclass
class _Source:
    files: list[Path]
    config: dict[str, Any] | None = None  # the config.json dict, if there is one
    preset_hint: str | None = None  # the release folder's model, when the path is inside one


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} is not valid JSON: {e}") from None


def _folder_config(folder: Path, kind: _Kind) -> dict[str, Any] | None:
    """The folder's config.json if it describes `kind`; an error if it describes something else."""
    path = folder / "config.json"
    if not path.is_file():
        return None
    config = _read_json(path)
    cls = config.get("_class_name")
    if cls in _class_names(kind):
        return config
    other = VAE if kind is DIT else DIT
    if cls in _class_names(other):
        raise CheckpointError(f"{folder} holds a {other.name} ({cls}), not a {kind.name}")
    known = ", ".join(sorted(_class_names(kind)))
    raise CheckpointError(f"{path}: unknown _class_name {cls!r} for a {kind.name} (expected one of {known})")


def _release_hint(path: Path) -> str | None:
    for part in (path, *path.parents):
        if part.name in RELEASE_FOLDERS:
            return RELEASE_FOLDERS[part.name]
    return None


def _resolve(path: str | Path, kind: _Kind) -> _Source:
    path = Path(path)
    if path.is_file():
        return _Source([path], _sibling_config(path, kind), _release_hint(path))
    if not path.is_dir():
        raise CheckpointError(f"no such file or folder: {path}")
    config = _folder_config(path, kind)
    if config is not None:
        return _Source(_weights_in(path, kind, config), config, _release_hint(path))
    if (path / kind.subfolder).is_dir():  # model folder, diffusers pipeline folder, release model folder (vae/)
        return _resolve(path / kind.subfolder, kind)
    if kind is DIT and (path / "transformers").is_dir():  # the release's model folder
        return _resolve(path / "transformers", kind)
    releases = [path / name for name in RELEASE_FOLDERS if (path / name).is_dir()]
    if len(releases) == 1:  # the release's ckpts/ folder
        return _resolve(releases[0], kind)
    if len(releases) > 1:
        raise CheckpointError(f"{path} holds several release models ({', '.join(p.name for p in releases)}); pass one of them")
    candidates = sorted(p for p in path.iterdir() if p.suffix in (".pt", ".pth", ".safetensors") and not p.stem.endswith("_map"))
    if kind is DIT:  # the release's transformers/ folder has the bf16 file and its fp8 variant
        full = [p for p in candidates if p.name == "mp_rank_00_model_states.pt"]
        candidates = full or candidates
    if len(candidates) == 1:
        return _Source(candidates, None, _release_hint(path))
    found = ", ".join(p.name for p in candidates) if candidates else "nothing"
    raise CheckpointError(
        f"no {kind.name} checkpoint recognised in {path} (found {found}); expected a config.json naming "
        f"{kind.diffusers_class} or {kind.our_class}, a {kind.subfolder}/ subfolder, or a single weights file"
    )


def _sibling_config(file: Path, kind: _Kind) -> dict[str, Any] | None:
    try:
        return _folder_config(file.parent, kind)
    except CheckpointError:
        return None  # a file passed directly does not depend on what else lies beside it


def _weights_in(folder: Path, kind: _Kind, config: dict[str, Any]) -> list[Path]:
    cls = config["_class_name"]
    if cls == kind.diffusers_class:
        if (folder / DIFFUSERS_INDEX).is_file():
            shards = sorted(set(_read_json(folder / DIFFUSERS_INDEX)["weight_map"].values()))
            missing = [s for s in shards if not (folder / s).is_file()]
            if missing:
                raise CheckpointError(f"{folder / DIFFUSERS_INDEX} names shards that are missing: {', '.join(missing)}")
            return [folder / s for s in shards]
        if (folder / DIFFUSERS_WEIGHTS).is_file():
            return [folder / DIFFUSERS_WEIGHTS]
        raise CheckpointError(f"{folder} has a diffusers config.json but no {DIFFUSERS_WEIGHTS} (or {DIFFUSERS_INDEX}); only safetensors weights are read")
    if cls == kind.our_class:
        if not (folder / kind.official_file).is_file():
            raise CheckpointError(f"{folder} has our config.json but no {kind.official_file}")
        return [folder / kind.official_file]
    # the release's VAE folder: pytorch_model.pt beside its config.json
    files = sorted(p for p in folder.iterdir() if p.suffix in (".pt", ".pth", ".safetensors"))
    preferred = [p for p in files if p.name == "pytorch_model.pt"] or files
    if len(preferred) != 1:
        raise CheckpointError(f"{folder}: expected pytorch_model.pt beside the {cls} config.json, found {[p.name for p in files]}")
    return preferred


# ------------------------------------------------------------------------------------------------
# Reading state dicts


def _load_pt_file(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as e:
        if "mmap" not in str(e):
            raise CheckpointError(f"cannot read {path}: {e}") from None
        return torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) file format
    except Exception as e:  # weights_only refuses pickled objects other than tensors and containers
        raise CheckpointError(f"cannot read {path} with torch.load(weights_only=True): {str(e).splitlines()[0]}") from None


def _read_file(path: Path) -> Any:
    if path.suffix == ".safetensors":
        try:
            return load_file(path)  # memory-mapped
        except Exception as e:
            raise CheckpointError(f"cannot read {path}: {e}") from None
    return _load_pt_file(path)


def _unwrap_dit(obj: Any) -> Any:
    # The release's loader takes "module" (its default --load-key) or "ema" when the file has them.
    for key in ("module", "ema"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            return obj[key]
    return obj


def _unwrap_vae(obj: Any) -> Any:
    # As the release's VAE loader: "state_dict" wrapper; "vae."-prefixed keys win over the rest.
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if isinstance(obj, dict) and any(k.startswith("vae.") for k in obj):
        obj = {k[len("vae."):]: v for k, v in obj.items() if k.startswith("vae.")}
    return obj


def _fp8_map_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}_map{path.suffix}")  # the release: "x_fp8.pt" -> "x_fp8_map.pt"


def _read_state_dict(source: _Source, kind: _Kind, fp8_dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The official-layout state dict of `source` (diffusers keys converted, FP8 dequantised)."""
    state: dict[str, torch.Tensor] = {}
    for path in source.files:
        obj = _read_file(path)
        obj = _unwrap_dit(obj) if kind is DIT else _unwrap_vae(obj)
        if not isinstance(obj, dict):
            raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a {kind.name} state dict")
        bad = [str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor)]
        if bad:
            raise CheckpointError(f"{path} is not a {kind.name} state dict (non-tensor entries: {_listing(bad)})")
        state.update(obj)
    if kind is DIT and any(k.startswith(("x_embedder.", "transformer_blocks.", "single_transformer_blocks.")) for k in state):
        state = convert.dit_diffusers_to_official(state)
    if any(t.dtype in (torch.float8_e4m3fn, torch.float8_e5m2) for t in state.values()):
        map_path = _fp8_map_path(source.files[0])
        if len(source.files) != 1 or not map_path.is_file():
            raise CheckpointError(f"{source.files[0]} holds float8 weights but its scale map {map_path.name} is missing")
        scales = _load_pt_file(map_path)
        state = convert.dequantize_fp8(state, scales, fp8_dtype)
    return state


# ------------------------------------------------------------------------------------------------
# Configs


def _config_from_json(kind: _Kind, d: dict[str, Any]) -> Any:
    cls = d["_class_name"]
    if "_videoforge" in d:  # our own diffusers-layout save: the exact config rides along
        return kind.config_type.from_dict(d["_videoforge"])
    if cls == kind.our_class:
        return kind.config_type.from_dict(d)
    if kind is DIT:
        return convert.dit_config_from_diffusers(d)
    return convert.vae_config_from_diffusers(d) if cls == kind.diffusers_class else convert.vae_config_from_official(d)


def _model_config(kind: _Kind, config: Any, source: _Source, state: Mapping[str, torch.Tensor], build: Callable) -> Any:
    if isinstance(config, str):
        return getattr(preset(config), "dit" if kind is DIT else "vae")
    if config is not None:
        if not isinstance(config, kind.config_type):
            raise TypeError(f"config must be a {kind.config_type.__name__}, a preset name or None, got {type(config).__name__}")
        return config
    if source.config is not None:
        return _config_from_json(kind, source.config)
    if source.preset_hint is not None:  # the release folder says which model it is (T2V and I2V share shapes)
        hinted = getattr(preset(source.preset_hint), "dit" if kind is DIT else "vae")
        if not _mismatch(build(hinted, device="meta"), state):
            return hinted
    return convert.infer_dit_config(state) if kind is DIT else convert.infer_vae_config(state)


# ------------------------------------------------------------------------------------------------
# Loading


def _listing(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def _mismatch(model: nn.Module, state: Mapping[str, torch.Tensor]) -> str:
    """'' when `state` fits `model` exactly, else what is missing, unexpected or wrongly shaped."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(
        f"{k} (checkpoint {list(state[k].shape)}, model {list(expected[k].shape)})"
        for k in set(expected) & set(state)
        if state[k].shape != expected[k].shape
    )
    parts = [
        f"{len(items)} {what}: {_listing(items)}"
        for what, items in (("missing keys", missing), ("unexpected keys", unexpected), ("wrongly shaped", wrong))
        if items
    ]
    return "; ".join(parts)


def _load(kind: _Kind, build: Callable, path: str | Path, config: Any, device: torch.device | str, dtype: torch.dtype | None) -> nn.Module:
    source = _resolve(path, kind)
    state = _read_state_dict(source, kind, fp8_dtype=dtype or torch.bfloat16)
    model_config = _model_config(kind, config, source, state, build)
    model = build(model_config, device="meta")
    problems = _mismatch(model, state)
    if problems:
        raise CheckpointError(f"{path} does not fit the {kind.name} config {model_config}: {problems}")
    for key in list(state):  # one tensor at a time: never a second full copy
        t = state[key]
        state[key] = t.to(device=device, dtype=dtype if dtype is not None and t.is_floating_point() else t.dtype)
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


def load_dit(path: str | Path, config: DiTConfig | str | None = None, device: torch.device | str = "cpu", dtype: torch.dtype | None = torch.float32) -> nn.Module:
    """Load a DiT from any layout in this module's docstring; returns it in eval mode.

    `config`: a DiTConfig, a preset name, or None (the folder's config.json, else the release folder's
    model, else inferred from the shapes). `dtype=None` keeps each tensor's stored dtype (FP8 weights
    are dequantised to bfloat16 then).
    """
    from videoforge.models.dit import build_dit

    return _load(DIT, build_dit, path, config, device, dtype)


def load_vae(path: str | Path, config: VAEConfig | str | None = None, device: torch.device | str = "cpu", dtype: torch.dtype | None = torch.float32) -> nn.Module:
    """Load the VAE from any layout in this module's docstring; same rules as `load_dit`."""
    from videoforge.models.vae import build_vae

    return _load(VAE, build_vae, path, config, device, dtype)


# ------------------------------------------------------------------------------------------------
# Saving


def _save_safetensors(tensors: Mapping[str, torch.Tensor], path: Path) -> None:
    # safetensors refuses tensors that share storage (the split q/k/v views): give those their own.
    seen: set[int] = set()
    owned = {}
    for key, t in tensors.items():
        t = t.detach().to("cpu")
        ptr = t.untyped_storage().data_ptr()
        if ptr in seen or not t.is_contiguous() or t.numel() != t.untyped_storage().nbytes() // t.element_size():
            t = t.clone(memory_format=torch.contiguous_format)
        seen.add(t.untyped_storage().data_ptr())
        owned[key] = t
    # Write beside and rename: a model loaded from `path` may still be memory-mapped from it.
    partial = path.with_name(path.name + ".partial")
    save_file(owned, str(partial), metadata={"format": "pt"})
    os.replace(partial, path)


def _save_diffusers_weights(state: Mapping[str, torch.Tensor], folder: Path, max_shard_bytes: int) -> list[Path]:
    """One file, or shards + index (written one shard at a time) when larger than `max_shard_bytes`."""
    for old in folder.glob("diffusion_pytorch_model*.safetensors*"):
        old.unlink()  # stale shards from an earlier save would otherwise mix with these
    shards: list[list[str]] = [[]]
    size = 0
    for key, t in state.items():
        nbytes = t.numel() * t.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(key)
        size += nbytes
    if len(shards) == 1:
        _save_safetensors(state, folder / DIFFUSERS_WEIGHTS)
        return [folder / DIFFUSERS_WEIGHTS]
    written, weight_map = [], {}
    for i, keys in enumerate(shards, start=1):
        name = f"diffusion_pytorch_model-{i:05d}-of-{len(shards):05d}.safetensors"
        _save_safetensors({k: state[k] for k in keys}, folder / name)
        weight_map.update({k: name for k in keys})
        written.append(folder / name)
    total = sum(t.numel() * t.element_size() for t in state.values())
    (folder / DIFFUSERS_INDEX).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2) + "\n")
    return written + [folder / DIFFUSERS_INDEX]


def _write_config(folder: Path, config: dict[str, Any]) -> Path:
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return folder / "config.json"


def _save(kind: _Kind, model: nn.Module, folder: str | Path, layout: str, max_shard_bytes: int) -> list[Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = model.config
    state = model.state_dict()
    if layout == "official":
        _save_safetensors(state, folder / kind.official_file)
        return [folder / kind.official_file, _write_config(folder, {"_class_name": kind.our_class, **config.to_dict()})]
    if layout != "diffusers":
        raise ValueError(f"layout must be 'diffusers' or 'official', got {layout!r}")
    if kind is DIT:
        diffusers_config, state = convert.dit_config_to_diffusers(config), convert.dit_official_to_diffusers(state)
    else:
        diffusers_config = convert.vae_config_to_diffusers(config)
    # `_videoforge` (ignored by diffusers, like every "_" key) keeps the fields diffusers has no name for.
    header = {"_class_name": kind.diffusers_class, "_diffusers_version": DIFFUSERS_VERSION, "_videoforge": config.to_dict()}
    files = _save_diffusers_weights(state, folder, max_shard_bytes)
    return files + [_write_config(folder, {**header, **diffusers_config})]


def save_dit(model: nn.Module, folder: str | Path, layout: str = "diffusers", max_shard_bytes: int = DEFAULT_SHARD_BYTES) -> list[Path]:
    """Write `config.json` + `diffusion_pytorch_model.safetensors` (shards above `max_shard_bytes`),
    loadable by diffusers' `HunyuanVideoTransformer3DModel.from_pretrained`; or with
    layout="official" the release's keys as `transformer.safetensors` + our `config.json`.
    Returns the files written."""
    return _save(DIT, model, folder, layout, max_shard_bytes)


def save_vae(model: nn.Module, folder: str | Path, layout: str = "diffusers", max_shard_bytes: int = DEFAULT_SHARD_BYTES) -> list[Path]:
    """As `save_dit`, for the VAE (`AutoencoderKLHunyuanVideo`; official: `vae.safetensors`)."""
    return _save(VAE, model, folder, layout, max_shard_bytes)


# ------------------------------------------------------------------------------------------------
# Converting between layouts (`videoforge convert`)

CONVERT_TARGETS = ("diffusers", "official", "model-folder")
TEXT_ENCODER_FOLDERS = ("text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2")
_KIND_KEY_PREFIXES = {
    "DiT": ("img_in.", "double_blocks.", "x_embedder.", "transformer_blocks."),
    "VAE": ("encoder.", "decoder.", "vae.encoder.", "vae.decoder."),
}


def _holds(path: Path, kind: _Kind) -> bool:
    """Whether `path` resolves to a checkpoint of `kind` (a bare weights file is judged by its keys)."""
    try:
        source = _resolve(path, kind)
    except CheckpointError:
        return False
    if source.config is not None:
        return True
    obj = _read_file(source.files[0])
    obj = _unwrap_dit(obj) if kind is DIT else _unwrap_vae(obj)
    return isinstance(obj, dict) and any(str(k).startswith(_KIND_KEY_PREFIXES[kind.name]) for k in obj)


def sha256_file(path: Path, chunk_bytes: int = 2**24) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def convert_checkpoint(src: str | Path, dst: str | Path, to: str, dtype: torch.dtype | None = None, ema: bool = False,
                       vae_src: str | Path | None = None) -> list[Path]:
    """Convert the DiT and/or VAE found at `src` into layout `to` under `dst`; returns the files written.

    - "diffusers": `config.json` + `diffusion_pytorch_model*.safetensors` (in `dst`, or in
      `dst/transformer` and `dst/vae` when `src` holds both);
    - "official": the release's keys as `transformer.safetensors` / `vae.safetensors` + our config.json
      (same folder rule);
    - "model-folder": `dst/transformer/`, `dst/vae/` (diffusers layout), the text encoder folders found
      in `src`, and `dst/videoforge.json` (`src`'s own, if any, with the weight files' sha256 hashes).
    `dtype=None` keeps the stored dtypes (FP8 weights become bfloat16). `ema` takes the DiT from
    `src/transformer_ema/` (a training run's `final/` folder) instead of `src/transformer/`.
    `vae_src` takes the VAE from there instead of `src`: e.g. a decoder fine-tuned after the DiT's run
    (its encoder frozen, so the DiT's latents still hold).
    """
    if to not in CONVERT_TARGETS:
        raise ValueError(f"--to must be one of {', '.join(CONVERT_TARGETS)}, got {to!r}")
    src, dst = Path(src), Path(dst)
    if not src.exists():
        raise CheckpointError(f"no such file or folder: {src}")
    dit_src = src / "transformer_ema" if ema else src
    if ema and not dit_src.is_dir():
        raise CheckpointError(f"--ema: {src} has no transformer_ema/ folder (only a training run's final/ has one)")
    vae_src = Path(vae_src) if vae_src is not None else src
    has_vae = _holds(vae_src, VAE)
    if vae_src != src and not has_vae:
        raise CheckpointError(f"--vae: found no VAE checkpoint in {vae_src}")
    if vae_src != src and _holds(src, VAE):
        _check_same_latents(src, vae_src)
    kinds = [kind for kind, held in ((DIT, _holds(dit_src, DIT)), (VAE, has_vae)) if held]
    if not kinds:
        raise CheckpointError(f"found no DiT or VAE checkpoint in {src}")
    written: list[Path] = []
    for kind in tqdm(kinds, desc="converting", unit="model", disable=len(kinds) == 1):
        model = load_dit(dit_src, dtype=dtype) if kind is DIT else load_vae(vae_src, dtype=dtype)
        folder = dst / kind.subfolder if to == "model-folder" or len(kinds) > 1 else dst
        layout = "official" if to == "official" else "diffusers"
        written += save_dit(model, folder, layout) if kind is DIT else save_vae(model, folder, layout)
        del model
    if to == "model-folder":
        written += _finish_model_folder(src, dst, written)
    return written


def read_vae_config(path: str | Path) -> VAEConfig | None:
    """The config of the VAE checkpoint at `path` (any layout `load_vae` reads), without its weights;
    None for a bare weights file that carries none."""
    config = _resolve(path, VAE).config
    return None if config is None else _config_from_json(VAE, config)


def latent_difference(trained_with: VAEConfig, vae: VAEConfig) -> str | None:
    """None where `vae`'s latents mean what `trained_with`'s did (mapped to the DiT's units alike by
    `latents_to_model`; both or neither carrying the pixel shortcut, folded alike), else what differs,
    in words that follow the VAE's name."""

    def scaling(c: VAEConfig) -> Any:
        return c.scaling_factor if c.latents_std is None else (c.latents_mean, c.latents_std)

    def scaling_words(c: VAEConfig) -> str:
        if c.latents_std is None:
            return f"scaling_factor {c.scaling_factor}"
        return f"per-channel latents_mean/latents_std (std {[round(v, 4) for v in c.latents_std]})"

    def fold(c: VAEConfig) -> str:
        return f"{c.pixel_shortcut_fold}x{c.pixel_shortcut_fold}"

    if scaling(trained_with) != scaling(vae):
        return f"scales latents by {scaling_words(vae)}, against {scaling_words(trained_with)}"
    if trained_with.pixel_shortcut != vae.pixel_shortcut:
        return "has a pixel shortcut, against none" if vae.pixel_shortcut else "has no pixel shortcut, against one"
    if vae.pixel_shortcut and trained_with.pixel_shortcut_fold != vae.pixel_shortcut_fold:
        return f"folds {fold(vae)} thumbnail cells into each latent position, against {fold(trained_with)}"
    return None


def _check_same_latents(src: Path, vae_src: Path) -> None:
    """The DiT at `src` was trained on latents made by `src`'s VAE: `--vae`'s must mean the same."""
    theirs, ours = read_vae_config(src), read_vae_config(vae_src)
    if theirs is None or ours is None:
        return  # a bare weights file: no config to compare
    difference = latent_difference(theirs, ours)
    if difference is not None:
        raise CheckpointError(
            f"--vae: {vae_src} {difference} (the VAE the DiT in {src} was trained with); "
            f"a VAE from a run started from {src}'s VAE (model.init) keeps its latents"
        )


def _finish_model_folder(src: Path, dst: Path, weights: list[Path]) -> list[Path]:
    written = []
    if src.is_dir():
        for name in TEXT_ENCODER_FOLDERS:
            if (src / name).is_dir() and not (dst / name).exists():
                shutil.copytree(src / name, dst / name)
                written.append(dst / name)
    meta = _read_json(src / "videoforge.json") if src.is_dir() and (src / "videoforge.json").is_file() else {}
    files = [p for p in weights if p.suffix == ".safetensors"]
    meta["hashes"] = {p.relative_to(dst).as_posix(): "sha256:" + sha256_file(p) for p in tqdm(files, desc="hashing", unit="file")}
    (dst / "videoforge.json").write_text(json.dumps(meta, indent=2) + "\n")
    return written + [dst / "videoforge.json"]
