"""LoRA for the DiT: training through `peft`, one-file save/load, and merging for inference.

Training injects peft adapters into the blocks' attention and MLP linears and freezes the rest.
A LoRA file is one safetensors file of low-rank pairs per linear. Two key schemes load:
  - PEFT/diffusers (what `save_lora` writes): "transformer.<module>.lora_A.weight" / "lora_B.weight",
    rank and alpha in the file's metadata;
  - kohya/musubi: "<prefix>_<module with _ for .>.lora_down.weight" / "lora_up.weight" / ".alpha"
    (prefix "lora_unet", or "Hunyuan_video_I2V_lora" in the release's own I2V LoRAs).
The update is W += scale * (alpha / rank) * up @ down; the release's I2V loader ignores the
stored alpha, so files with its prefix are merged the same way. Keys that match no linear of the
model are reported, never dropped silently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from videoforge.train.recipe import LoRASection

# The attention and MLP linears of the double- and single-stream blocks (not the modulation).
DEFAULT_TARGETS = ("img_attn_qkv", "img_attn_proj", "img_mlp.fc1", "img_mlp.fc2",
                   "txt_attn_qkv", "txt_attn_proj", "txt_mlp.fc1", "txt_mlp.fc2", "linear1", "linear2")
PEFT_PREFIXES = ("transformer.", "base_model.model.", "diffusion_model.", "model.")
RELEASE_I2V_PREFIX = "Hunyuan_video_I2V_lora_"


def target_modules(model: nn.Module, targets: list[str] | tuple[str, ...] | None = None) -> list[str]:
    """Full names of the block linears whose name ends with one of `targets`."""
    targets = tuple(targets or DEFAULT_TARGETS)
    names = [
        n for n, m in model.named_modules()
        if isinstance(m, nn.Linear) and n.startswith(("double_blocks.", "single_blocks."))
        and any(n == t or n.endswith("." + t) for t in targets)
    ]
    if not names:
        raise ValueError(f"LoRA targets {list(targets)} match no linear in the model's blocks")
    return names


def add_lora(model: nn.Module, cfg: LoRASection) -> nn.Module:
    """Inject peft LoRA adapters in place and make them the only trainable parameters."""
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, target_modules=target_modules(model, cfg.target_modules),
                        init_lora_weights=True)
    inject_adapter_in_model(config, model)
    for n, p in model.named_parameters():
        p.requires_grad_("lora_" in n)
    return model


def lora_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The adapter weights of a peft-injected model's state dict, under PEFT file names."""
    out = {}
    for n, t in state.items():
        if ".lora_A." in n or ".lora_B." in n:
            out["transformer." + n.replace(".default.", ".")] = t.detach().cpu().contiguous()
    if not out:
        raise ValueError("the state dict holds no LoRA adapter weights (lora_A / lora_B)")
    return out


def save_lora(state: dict[str, torch.Tensor], path: Path, cfg: LoRASection) -> None:
    meta = {"format": "peft", "rank": str(cfg.rank), "alpha": str(cfg.alpha),
            "target_modules": json.dumps(list(cfg.target_modules or DEFAULT_TARGETS))}
    save_file(state, str(path), metadata=meta)


@dataclass
class LoRAPair:
    down: torch.Tensor  # [rank, in]
    up: torch.Tensor  # [out, rank]
    alpha: float | None  # None: scale 1 (alpha = rank)

    @property
    def delta(self) -> torch.Tensor:
        scale = 1.0 if self.alpha is None else self.alpha / self.down.shape[0]
        return scale * (self.up.float() @ self.down.float())


@dataclass
class LoRAMatch:
    pairs: dict[str, LoRAPair] = field(default_factory=dict)  # model module name -> pair
    unmatched: list[str] = field(default_factory=list)  # file keys that fit no model linear


def _module_for(stem: str, linears: dict[str, str]) -> str | None:
    """Model module for a kohya key stem: the longest underscore-form module name it ends with."""
    best = None
    for flat, name in linears.items():
        if (stem == flat or stem.endswith("_" + flat)) and (best is None or len(flat) > len(best[0])):
            best = (flat, name)
    return best[1] if best else None


def read_lora(path: str | Path, model: nn.Module) -> LoRAMatch:
    """Read a LoRA file in either key scheme and match its pairs to the model's linears."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"LoRA file not found: {path}")
    linears = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    flat = {n.replace(".", "_"): n for n in linears}
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    peft_alpha = float(meta["alpha"]) if "alpha" in meta else None
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for k, t in tensors.items():
        for suffix in (".lora_A.weight", ".lora_B.weight", ".lora_down.weight", ".lora_up.weight", ".alpha"):
            if k.endswith(suffix):
                groups.setdefault(k[: -len(suffix)], {})[suffix] = t
                break
        else:
            groups.setdefault(k, {})["?"] = t
    match = LoRAMatch()
    for stem, parts in groups.items():
        if ".lora_A.weight" in parts and ".lora_B.weight" in parts:
            name = stem
            for p in PEFT_PREFIXES:
                if name.startswith(p) and name[len(p):] in linears:
                    name = name[len(p):]
            pair = LoRAPair(parts[".lora_A.weight"], parts[".lora_B.weight"], peft_alpha)
        elif ".lora_down.weight" in parts and ".lora_up.weight" in parts:
            name = _module_for(stem, flat)
            alpha = parts.get(".alpha")
            if stem.startswith(RELEASE_I2V_PREFIX) or alpha is None:
                alpha = None  # the release merges up @ down unscaled
            pair = LoRAPair(parts[".lora_down.weight"], parts[".lora_up.weight"], None if alpha is None else float(alpha))
        else:
            match.unmatched += [stem + s if s != "?" else stem for s in parts]
            continue
        if name not in linears:
            match.unmatched += [stem + s for s in parts]
            continue
        w = linears[name].weight
        if (pair.up.shape[0], pair.down.shape[1]) != tuple(w.shape):
            raise ValueError(
                f"{path.name}: LoRA for {name} is {pair.up.shape[0]}x{pair.down.shape[1]}, the weight is {tuple(w.shape)}"
            )
        match.pairs[name] = pair
    return match


@torch.no_grad()
def merge_lora(model: nn.Module, path: str | Path, scale: float = 1.0, strict: bool = True) -> LoRAMatch:
    """W += scale * delta for every matched linear. strict: unmatched keys are an error (listed);
    otherwise they are returned in the report for the caller to show."""
    match = read_lora(path, model)
    if strict and match.unmatched:
        shown = ", ".join(match.unmatched[:8]) + (" ..." if len(match.unmatched) > 8 else "")
        raise ValueError(f"{Path(path).name}: {len(match.unmatched)} key(s) match no linear of the model: {shown}")
    if not match.pairs:
        raise ValueError(f"{Path(path).name}: no LoRA pair matches the model")
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name, pair in match.pairs.items():
            w = modules[name].weight
            w += (scale * pair.delta).to(device=w.device, dtype=w.dtype)  # the file is read to the CPU
    return match


def attach_lora(model: nn.Module, path: str | Path, scale: float = 1.0) -> LoRAMatch:
    """Unmerged inference: inject peft adapters shaped like the file's pairs and load them
    (strict about unmatched keys, like `merge_lora`)."""
    from peft import LoraConfig, inject_adapter_in_model

    match = read_lora(path, model)
    if match.unmatched:
        raise ValueError(f"{Path(path).name}: {len(match.unmatched)} key(s) match no linear of the model: {match.unmatched[:8]}")
    ranks = {p.down.shape[0] for p in match.pairs.values()}
    if len(ranks) != 1:
        raise ValueError(f"{Path(path).name}: mixed LoRA ranks {sorted(ranks)}; merge it with merge_lora instead")
    rank = ranks.pop()
    inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=rank, target_modules=sorted(match.pairs)), model)
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name, pair in match.pairs.items():
            layer = modules[name]
            s = 1.0 if pair.alpha is None else pair.alpha / rank
            layer.lora_A["default"].weight.copy_(pair.down)
            layer.lora_B["default"].weight.copy_(pair.up * (s * scale))  # alpha/rank and scale folded into up
    return match
