"""LoRA for the DiT: training through `peft`, one-file save/load, and merging for inference.

Training injects peft adapters into the blocks' attention and MLP linears and freezes the rest.
A LoRA file is one safetensors file of low-rank pairs per linear. Two key schemes load:
  - PEFT (what `save_lora` writes): "transformer.<module>.lora_A.weight" / "lora_B.weight", rank
    and alpha in the file's metadata. <module> is ours (the release's names) or diffusers' (what
    diffusers and finetrainers write): a LoRA on diffusers' split to_q / to_k / to_v (and the single
    blocks' proj_mlp) becomes one exact LoRA on the fused linear, its pairs side by side in rank;
  - kohya/musubi: "<prefix>_<module with _ for .>.lora_down.weight" / "lora_up.weight" / ".alpha"
    (prefix "lora_unet", or "Hunyuan_video_I2V_lora" in the release's own I2V LoRAs).
The update is W += scale * (alpha / rank) * up @ down; the release's I2V loader ignores the
stored alpha, so files with its prefix are merged the same way. Keys that match no linear of the
model are reported, never dropped silently.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from videoforge.models.convert import OfficialPart, fused_part_rows, official_part
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
    def scale(self) -> float:
        return 1.0 if self.alpha is None else self.alpha / self.down.shape[0]

    @property
    def delta(self) -> torch.Tensor:
        return self.scale * (self.up.float() @ self.down.float())


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


def _peft_names(stem: str) -> list[str]:
    """A PEFT key stem as it is and without each wrapper prefix it starts with."""
    return [stem] + [stem[len(p):] for p in PEFT_PREFIXES if stem.startswith(p)]


def _in_our_layout(stem: str) -> OfficialPart | None:
    """Where a PEFT key stem in diffusers' module names lives in our layout; None if it is not one."""
    return next((place for name in _peft_names(stem) if (place := official_part(name)) is not None), None)


def _fuse_parts(module: str, weight_shape: tuple[int, ...], parts: int, pieces: dict[int, LoRAPair]) -> LoRAPair:
    """One LoRA on a fused linear from LoRAs on some of its row blocks: the downs stacked in rank,
    each up (its alpha/rank folded in) in its own rows and rank columns, zeros elsewhere. Exact:
    up @ down is the parts' updates stacked in rows; absent parts get none."""
    rows, hidden = weight_shape
    sizes = fused_part_rows(rows, hidden, parts)
    down = torch.cat([pieces[i].down.float() for i in sorted(pieces)])
    up = torch.zeros(rows, down.shape[0])
    col = 0
    for i in sorted(pieces):
        p, start, rank = pieces[i], sum(sizes[:i]), pieces[i].down.shape[0]
        if (p.up.shape[0], p.down.shape[1]) != (sizes[i], hidden):
            raise ValueError(f"LoRA for part {i} of {module} is {p.up.shape[0]}x{p.down.shape[1]}, the part is {sizes[i]}x{hidden}")
        up[start : start + sizes[i], col : col + rank] = p.scale * p.up.float()
        col += rank
    return LoRAPair(down, up, None)


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
    found: list[tuple[str | None, LoRAPair, list[str]]] = []  # (our module, pair, its file keys)
    split: dict[str, tuple[int, dict[int, LoRAPair], list[str]]] = {}  # ours <- diffusers' row blocks
    for stem, parts in groups.items():
        keys = [stem + s if s != "?" else stem for s in parts]
        if ".lora_A.weight" in parts and ".lora_B.weight" in parts:
            name = next((n for n in _peft_names(stem) if n in linears), stem)
            pair = LoRAPair(parts[".lora_A.weight"], parts[".lora_B.weight"], peft_alpha)
            place = _in_our_layout(stem) if name not in linears else None
            if place is None:
                found.append((name, pair, keys))
                continue
            if place.halves_swapped:  # diffusers' (scale, shift) output rows -> our (shift, scale)
                pair = LoRAPair(pair.down, torch.cat(pair.up.chunk(2)[::-1]), pair.alpha)
            entry = split.setdefault(place.module, (place.parts, {}, []))
            entry[1][place.part] = pair
            entry[2].extend(keys)
        elif ".lora_down.weight" in parts and ".lora_up.weight" in parts:
            alpha = parts.get(".alpha")
            if stem.startswith(RELEASE_I2V_PREFIX) or alpha is None:
                alpha = None  # the release merges up @ down unscaled
            pair = LoRAPair(parts[".lora_down.weight"], parts[".lora_up.weight"], None if alpha is None else float(alpha))
            found.append((_module_for(stem, flat), pair, keys))
        else:
            match.unmatched += keys
    for name, (count, pieces, keys) in split.items():
        if name not in linears:
            match.unmatched += keys
        else:
            found.append((name, pieces[0] if count == 1 else _fuse_parts(name, tuple(linears[name].weight.shape), count, pieces), keys))
    for name, pair, keys in found:
        if name not in linears or name in match.pairs:  # no such linear, or given twice (in both layouts)
            match.unmatched += keys
            continue
        w = linears[name].weight
        if (pair.up.shape[0], pair.down.shape[1]) != tuple(w.shape):
            raise ValueError(
                f"{path.name}: LoRA for {name} is {pair.up.shape[0]}x{pair.down.shape[1]}, the weight is {tuple(w.shape)}"
            )
        match.pairs[name] = pair
    return match


def _all_matched(path: str | Path, match: LoRAMatch) -> None:
    if match.unmatched:
        shown = ", ".join(match.unmatched[:8]) + (" ..." if len(match.unmatched) > 8 else "")
        raise ValueError(f"{Path(path).name}: {len(match.unmatched)} key(s) match no linear of the model: {shown}")


@torch.no_grad()
def merge_lora(model: nn.Module, path: str | Path, scale: float = 1.0, strict: bool = True) -> LoRAMatch:
    """W += scale * delta for every matched linear. strict: unmatched keys are an error (listed);
    otherwise they are returned in the report for the caller to show."""
    match = read_lora(path, model)
    if strict:
        _all_matched(path, match)
    if not match.pairs:
        raise ValueError(f"{Path(path).name}: no LoRA pair matches the model")
    modules = dict(model.named_modules())
    for name, pair in match.pairs.items():
        w = modules[name].weight
        w += (scale * pair.delta).to(device=w.device, dtype=w.dtype)  # the file is read to the CPU
    return match


def attach_lora(model: nn.Module, path: str | Path, scale: float = 1.0) -> LoRAMatch:
    """Unmerged inference: inject peft adapters shaped like the file's pairs and load them
    (strict about unmatched keys, like `merge_lora`). Ranks may differ between linears (a
    diffusers-layout q/k/v LoRA fuses to three times the rank)."""
    from peft import LoraConfig, inject_adapter_in_model

    match = read_lora(path, model)
    _all_matched(path, match)
    ranks = {name: p.down.shape[0] for name, p in match.pairs.items()}
    rank = max(set(ranks.values()), key=list(ranks.values()).count)
    # alpha = rank everywhere (peft's scale 1): each pair's alpha/rank is folded into its up
    pattern = {re.escape(name): r for name, r in ranks.items() if r != rank}
    config = LoraConfig(r=rank, lora_alpha=rank, target_modules=sorted(match.pairs), rank_pattern=pattern, alpha_pattern=pattern)
    inject_adapter_in_model(config, model)
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name, pair in match.pairs.items():
            layer = modules[name]
            layer.lora_A["default"].weight.copy_(pair.down)
            layer.lora_B["default"].weight.copy_(pair.up * (pair.scale * scale))
    return match
