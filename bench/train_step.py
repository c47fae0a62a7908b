"""One DiT training step (forward + backward + AdamW) in tokens/s and estimated MFU, for the tiny
and a small config, with and without activation checkpointing.

MFU = model FLOPs per step / step time / peak. Model FLOPs are counted once per config with
torch's FlopCounterMode on a plain forward + backward (so recomputation under activation
checkpointing is *not* credited: it shows up as lower MFU, as it should). The peak is measured
here: the best float32 matmul rate of this machine over a few sizes. Tokens are the video
latent tokens of the batch. Prints a table, the AC/no-AC time ratios, and the time ratio of a
tiny batch whose text is padded from 11 to 48 positions against the 11-position batch (~1.0: the
forward drops padding shared by the whole batch), and the shapes DiT's clips per second at batch
4, 8 and 16 (17-frame 64x64 clips, 80 tokens each; blocks compiled as in training), as ratios
against batch 16: the batch at which this machine trains most samples per second.
Run: `.venv/bin/python bench/train_step.py [--repeats N] [--threads N]`.
"""

from __future__ import annotations

import copy
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).parent))
from _measure import median_seconds, timing_args  # noqa: E402

from videoforge.config import DiTConfig, preset  # noqa: E402
from videoforge.models import build_dit  # noqa: E402
from videoforge.train.parallelize import apply_activation_checkpointing, apply_compile  # noqa: E402

CONFIGS = {
    # name: (DiT config, batch, latent [C, T, H, W], text tokens)
    "tiny": (preset("tiny").dit, 8, (16, 3, 8, 8), 32),
    "small": (DiTConfig(hidden_size=512, heads_num=8, mm_double_blocks_depth=4, mm_single_blocks_depth=8,
                        rope_dim_list=(16, 24, 24), text_states_dim=384, text_states_dim_2=384, refiner_depth=1),
              2, (16, 5, 16, 16), 64),
}


def matmul_peak_flops(seconds: float = 1.0) -> float:
    """Best sustained float32 matmul FLOP/s over a few square sizes."""
    best = 0.0
    for n in (256, 512, 1024):
        a, b = torch.randn(n, n), torch.randn(n, n)
        a @ b
        reps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / 3:
            a @ b
            reps += 1
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t0))
    return best


def make_step(cfg: DiTConfig, batch: int, latent: tuple[int, ...], text: int, ac: bool, real_text: int | None = None):
    """A training step's closure; with `real_text`, only the first that many text positions are
    valid and the rest padding."""
    torch.manual_seed(0)
    model = build_dit(cfg)
    if ac:
        apply_activation_checkpointing(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch, *latent)
    mask = torch.ones(batch, text, dtype=torch.long)
    if real_text is not None:
        mask[:, real_text:] = 0
    inputs = (x, torch.rand(batch) * 1000, torch.randn(batch, text, cfg.text_states_dim),
              mask, torch.randn(batch, cfg.text_states_dim_2),
              torch.full((batch,), 6000.0))
    target = torch.randn_like(x)

    def step() -> None:
        loss = (model(*inputs) - target).pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return model, inputs, target, step


def model_flops(cfg: DiTConfig, batch: int, latent: tuple[int, ...], text: int) -> float:
    model, inputs, target, _ = make_step(cfg, batch, latent, text, ac=False)
    with FlopCounterMode(display=False) as counter:
        (model(*inputs) - target).pow(2).mean().backward()
    return float(counter.get_total_flops())


def main() -> None:
    args = timing_args(__doc__)

    peak = matmul_peak_flops()
    print(f"threads {args.threads}; measured float32 matmul peak {peak / 1e9:.1f} GFLOP/s")
    print(f"{'config':<8}{'AC':<5}{'params':>10}{'tokens':>8}{'step s':>9}{'tokens/s':>10}{'GFLOP/step':>12}{'MFU':>8}")
    for name, (cfg, batch, latent, text) in CONFIGS.items():
        flops = model_flops(cfg, batch, latent, text)
        c, t, h, w = latent
        pt, ph, pw = cfg.patch_size
        tokens = batch * (t // pt) * (h // ph) * (w // pw)
        steps = {ac: make_step(cfg, batch, latent, text, ac)[3] for ac in (False, True)}
        times = median_seconds({f"ac={ac}": fn for ac, fn in steps.items()}, repeats=args.repeats, warmup=1)
        params = sum(p.numel() for p in build_dit(cfg, device="meta").parameters())
        for ac in (False, True):
            s = times[f"ac={ac}"]
            print(f"{name:<8}{'on' if ac else 'off':<5}{params / 1e6:>9.2f}M{tokens:>8}{s:>9.3f}{tokens / s:>10.0f}"
                  f"{flops / 1e9:>12.2f}{flops / s / peak:>8.1%}")
        print(f"{name}: activation checkpointing costs {times['ac=True'] / times['ac=False']:.2f}x step time")
    # The tiny model pads text to 48 positions and its prompts have ~11 tokens: the forward drops
    # positions that are padding in every row, so the padded batch should cost what the short one does.
    cfg, batch, latent, _ = CONFIGS["tiny"]
    padded, short = (make_step(cfg, batch, latent, text, ac=False, real_text=11)[3] for text in (48, 11))
    times = median_seconds({"padded": padded, "short": short}, repeats=args.repeats, warmup=1)
    print(f"tiny: text padded from 11 to 48 positions costs {times['padded'] / times['short']:.2f}x step time")
    # configs/shapes-dit.yaml's DiT (3 + 3 blocks) on 17-frame clips with 24 text positions, its
    # blocks compiled as `run.compile` does: eager steps rank the batches otherwise (batch 8 at 0.86x
    # batch 16's clips per second, where compiled training ran it at 1.13x). Each batch gets kernels
    # of its own: a fresh compile state, measured alone.
    shapes = replace(cfg, mm_double_blocks_depth=3, mm_single_blocks_depth=3)
    rate, seconds = {}, {}
    for b in (4, 8, 16):
        torch._dynamo.reset()
        model, *_, step = make_step(shapes, b, (16, 5, 8, 8), 24, ac=False)
        apply_compile(model)
        seconds[b] = median_seconds({"step": step}, repeats=args.repeats, warmup=2)["step"]
        rate[b] = b / seconds[b]
    print("shapes DiT, compiled, clips per second by batch: " + "; ".join(
        f"batch {b}: {rate[b]:.0f} ({rate[b] / rate[16]:.2f}x batch 16's, step {seconds[b]:.3f} s)" for b in rate))


if __name__ == "__main__":
    main()
