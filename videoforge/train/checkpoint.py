"""Training checkpoints with torch.distributed.checkpoint (DCP).

A checkpoint is a folder `step_XXXXXXXX/` holding the model, optimizer and EMA state by
parameter name (DCP stores global shapes, so a run resumes on any process count) plus the step.
It is written to `step_XXXXXXXX.tmp/` and renamed once every rank has finished, so a run killed
mid-write never leaves a folder that looks complete.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.optim import Optimizer

from videoforge.train.ema import EMA

PREFIX = "step_"


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def _rank() -> int:
    return dist.get_rank() if _distributed() else 0


def _barrier() -> None:
    if _distributed():
        dist.barrier()


Extra = dict[str, tuple[nn.Module, Optimizer]]  # more trained modules, e.g. the VAE's discriminator


def _state(model: nn.Module, optimizer: Optimizer, ema: EMA, extra: Extra | None) -> dict:
    state = {
        "model": get_model_state_dict(model),
        "optim": get_optimizer_state_dict(model, optimizer),
        "ema": dict(ema.state_dict()),
    }
    for name, (m, o) in (extra or {}).items():
        state[f"{name}.model"] = get_model_state_dict(m)
        state[f"{name}.optim"] = get_optimizer_state_dict(m, o)
    return state


def checkpoint_dirs(root: Path) -> list[Path]:
    """Complete checkpoints under root, oldest first."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and p.name[len(PREFIX) :].isdigit()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX) :]))


def save_checkpoint(
    root: Path, step: int, model: nn.Module, optimizer: Optimizer, ema: EMA, keep: int = 2, extra: Extra | None = None
) -> Path:
    """Write the state after `step` optimizer steps; keep the newest `keep` checkpoints."""
    final = root / f"{PREFIX}{step:08d}"
    tmp = root / f"{final.name}.tmp"
    if _rank() == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        root.mkdir(parents=True, exist_ok=True)
    _barrier()
    state = _state(model, optimizer, ema, extra)
    state["step"] = step
    with warnings.catch_warnings():  # single process: DCP warns that it is not distributed
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.save(state, checkpoint_id=str(tmp), no_dist=not _distributed())
    _barrier()
    if _rank() == 0:
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for old in checkpoint_dirs(root)[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    _barrier()
    return final


def is_checkpoint(path: Path) -> bool:
    """Whether `path` is a complete checkpoint folder (DCP writes `.metadata` last)."""
    return (path / ".metadata").is_file()


def require_checkpoint(path: Path) -> None:
    if not is_checkpoint(path):
        raise FileNotFoundError(f"{path} is not a complete checkpoint (no .metadata)")


def _load(path: Path, state: dict) -> None:
    """Fill `state` in place from the checkpoint; keys it does not ask for are not read."""
    require_checkpoint(path)
    state["step"] = -1
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.load(state, checkpoint_id=str(path), no_dist=not _distributed())


def load_weights(path: Path, model: nn.Module, ema: EMA) -> int:
    """Restore only the model and EMA weights (not the optimizer): enough to export a mid-run
    checkpoint. Returns the step it was taken at."""
    state = {"model": get_model_state_dict(model), "ema": dict(ema.state_dict())}
    _load(path, state)
    set_model_state_dict(model, state["model"])
    ema.load_state_dict(state["ema"])
    return int(state["step"])


def load_checkpoint(path: Path, model: nn.Module, optimizer: Optimizer, ema: EMA, extra: Extra | None = None) -> int:
    """Restore model, optimizer and EMA in place; returns the step the checkpoint was taken at."""
    state = _state(model, optimizer, ema, extra)
    _load(path, state)
    set_model_state_dict(model, state["model"])
    set_optimizer_state_dict(model, optimizer, state["optim"])
    ema.load_state_dict(state["ema"])
    for name, (m, o) in (extra or {}).items():
        set_model_state_dict(m, state[f"{name}.model"])
        set_optimizer_state_dict(m, o, state[f"{name}.optim"])
    return int(state["step"])
