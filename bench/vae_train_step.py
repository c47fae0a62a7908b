"""One VAE training step (forward + backward + AdamW, L1 + L2 reconstruction) on a batch of images,
with CausalConv3d's one-frame path (the kernel summed over time, a 2D conv) against the plain 3D
conv over the replicate-padded frame, in the same process on the same weights and pixels.

Setup: the shapes VAE's widths (configs/shapes-vae.yaml: 16/32/64/64, 8 groups), 64x64 images,
batch 4, the image stage of that recipe. The two paths must give the same loss (checked before
timing); the table shows the median step time of each and the ratio.
Run: `.venv/bin/python bench/vae_train_step.py [--repeats N] [--threads N]`.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from _measure import median_seconds, timing_args  # noqa: E402

from videoforge.config import preset  # noqa: E402
from videoforge.models.vae import CausalConv3d, build_vae  # noqa: E402


def conv3d_always(self: CausalConv3d, x: torch.Tensor) -> torch.Tensor:
    """The reference: CausalConv3d without its one-frame path."""
    if self.pointwise:
        return F.conv3d(x, self.conv.weight, self.conv.bias)
    return self.conv(F.pad(x, self.padding, mode="replicate"))


def make_step(pixels: torch.Tensor, reference: bool):
    torch.manual_seed(0)
    cfg = replace(preset("tiny").vae, block_out_channels=(16, 32, 64, 64), norm_num_groups=8)
    vae = build_vae(cfg)
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-4)
    fast_forward = CausalConv3d.forward

    def loss() -> torch.Tensor:
        if reference:
            CausalConv3d.forward = conv3d_always
        try:
            recon = vae.decode(vae.encode(pixels).mean)
        finally:
            CausalConv3d.forward = fast_forward
        return (recon - pixels).abs().mean() + (recon - pixels).square().mean()

    def step() -> float:
        value = loss()
        value.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(value.detach())

    return loss, step


def main() -> None:
    args = timing_args(__doc__)
    pixels = torch.rand(4, 3, 1, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    made = {name: make_step(pixels, reference=name == "conv3d") for name in ("conv3d", "folded 2d")}
    with torch.no_grad():
        losses = {name: float(loss()) for name, (loss, _) in made.items()}
    if abs(losses["conv3d"] - losses["folded 2d"]) > 1e-5 * abs(losses["conv3d"]):
        raise SystemExit(f"the two paths disagree: {losses}")
    times = median_seconds({name: step for name, (_, step) in made.items()}, repeats=args.repeats, warmup=1)
    print(f"threads {args.threads}; VAE 16/32/64/64, batch 4 x 64x64 images; same loss {losses['conv3d']:.6f}")
    for name, s in times.items():
        print(f"{name:<10} {s * 1000:8.1f} ms/step  {4 / s:6.1f} images/s")
    print(f"one-frame path: {times['conv3d'] / times['folded 2d']:.2f}x faster")


if __name__ == "__main__":
    main()
