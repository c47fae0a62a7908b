"""Exponential moving average of the trainable weights.

The shadow copies have the same type and placement as the parameters they follow (plain
tensors, or DTensor shards under FSDP), so the EMA costs one more copy of each shard and is
checkpointed and resharded exactly like the weights.
"""

from __future__ import annotations

import torch
from torch import nn

# Wrappers that parallelize.py may put between a block and its parameters.
_WRAPPER_NAMES = ("._checkpoint_wrapped_module", "._orig_mod")


def clean_name(name: str) -> str:
    """A parameter's name in the bare model (without activation-checkpoint/compile wrappers)."""
    for w in _WRAPPER_NAMES:
        name = name.replace(w, "")
    return name


class EMA:
    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.shadow = {clean_name(n): p.detach().clone().float() for n, p in model.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for n, p in model.named_parameters():
            n = clean_name(n)
            if n in self.shadow:
                self.shadow[n].lerp_(p.detach().float(), 1.0 - self.decay)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = set(self.shadow) - set(state)
        if missing:
            raise KeyError(f"EMA state lacks {len(missing)} weight(s), e.g. {sorted(missing)[:3]}")
        with torch.no_grad():
            for n, t in self.shadow.items():
                t.copy_(state[n])
