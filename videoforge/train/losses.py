"""The VAE trainer's losses: LPIPS (our own module), a 3D patch discriminator, and the total
L1 + w_lpips * LPIPS + w_adv * adversarial + w_kl * KL.

LPIPS is VGG16's conv features at five depths, unit-normalised per channel, squared
differences weighted by learned 1x1 "linear heads", averaged over space and summed over
depths. The `lpips` package cannot be used here (it imports torchvision) and no weights can be
downloaded, so `LPIPS.from_file` loads a safetensors file the user supplies: VGG16 convs under
torchvision's `features.N.*` names and the heads as `lin{k}.weight` (or the lpips package's
`lin{k}.model.1.weight`). Without a file the module has random weights (tests only).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

# VGG16 "D" configuration; "M" is a 2x2 max-pool. LPIPS taps relu1_2, relu2_2, relu3_3, relu4_3, relu5_3.
VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
TAP_CHANNELS = (64, 128, 256, 512, 512)
# The input normalisation LPIPS applies to [-1, 1] images before VGG.
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)


class LPIPS(nn.Module):
    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        taps, c = [], 3
        for v in VGG16:
            if v == "M":
                taps.append(len(layers) - 1)  # the ReLU before each pool
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(inplace=False)]
                c = v
        taps.append(len(layers) - 1)
        self.features = nn.Sequential(*layers)  # indices match torchvision's vgg16().features
        self.taps = tuple(taps)
        for k, ch in enumerate(TAP_CHANNELS):
            self.add_module(f"lin{k}", nn.Conv2d(ch, 1, 1, bias=False))
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)

    @classmethod
    def from_file(cls, path: str | Path) -> "LPIPS":
        state = load_file(str(path))
        state = {k.replace(".model.1.", "."): v for k, v in state.items()}  # lpips package head names
        model = cls()
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(f"{path}: not VGG16 + LPIPS heads; missing {missing[:4]}, unexpected {unexpected[:4]}")
        return model.eval()

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                out.append(x)
        return out

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Perceptual distance per image, [N], for images [N, 3, H, W] in [-1, 1]."""
        fa = self._features((a - self.shift) / self.scale)
        fb = self._features((b - self.shift) / self.scale)
        total = 0.0
        for k, (x, y) in enumerate(zip(fa, fb)):
            x = x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            y = y / (y.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + getattr(self, f"lin{k}")((x - y).pow(2)).mean(dim=(1, 2, 3))
        return total


def video_lpips(lpips: LPIPS, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean LPIPS over the frames of videos [B, 3, F, H, W]."""
    flat = lambda v: v.transpose(1, 2).flatten(0, 1)  # noqa: E731 - [B*F, 3, H, W]
    return lpips(flat(a), flat(b)).mean()


class PatchDiscriminator3D(nn.Module):
    """A PatchGAN over space-time: strided Conv3d + GroupNorm + LeakyReLU, one logit per patch."""

    def __init__(self, channels: int = 32, layers: int = 3, groups: int = 8):
        super().__init__()
        mods: list[nn.Module] = [nn.Conv3d(3, channels, 3, stride=(1, 2, 2), padding=1), nn.LeakyReLU(0.2)]
        c = channels
        for _ in range(layers - 1):
            mods += [nn.Conv3d(c, 2 * c, 3, stride=(1, 2, 2), padding=1), nn.GroupNorm(groups, 2 * c), nn.LeakyReLU(0.2)]
            c *= 2
        mods.append(nn.Conv3d(c, 1, 3, padding=1))
        self.net = nn.Sequential(*mods)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.net(video)


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean())


def generator_adv_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    return -fake_logits.mean()
