"""Our VAE decode against diffusers' AutoencoderKLHunyuanVideo, same weights and latents.

Setup (issue 2): the release's channel widths (VAEConfig() defaults, 246M parameters), latents
(1, 16, 5, 32, 32) -> video (1, 3, 17, 256, 256), decoded untiled and tiled with 128-px tiles
(16-latent tiles at stride 12: a 3x3 grid, so tiling really happens; diffusers is given the same
tiles: min 128, stride 96).

Method:
- Weights: the parent builds diffusers' model once (seed 0) and saves its state dict; every
  worker loads that file into its own model (same keys), so both decode with identical weights.
  The parent checks that the two outputs agree.
- Each (implementation, tiling) variant runs in a FRESH subprocess, so the allocator state and
  peak memory of one variant cannot leak into another. Rounds are interleaved (ours untiled,
  diffusers untiled, ours tiled, diffusers tiled, then again) so changing load from other
  processes on this shared machine hits all variants alike; the table shows each variant's
  fastest run (all columns from that run).
- Time: wall clock of one decode, and the process CPU time over it; cores busy = CPU / wall.
- Peak memory: the extra resident memory at the decode's worst moment, measured by the kernel
  (bench/_measure.py: reset VmHWM via /proc/self/clear_refs, run, VmHWM - VmRSS before). It
  covers every allocation (oneDNN buffers, column buffers), not just torch's.

What we changed for speed and memory, and what we measured but dropped, is noted in
videoforge/models/vae.py (in-place SiLU/residual at inference, a one-copy upsampler, 1x1x1
convs as matmuls; folding the time padding and channels-last activations did not pay).

Run: `.venv/bin/python bench/vae_decode.py [--rounds N] [--latent 1,16,5,32,32] [--tile 128]`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _measure import peak_memory_mb  # noqa: E402

from videoforge.config import VAEConfig  # noqa: E402
from videoforge.models import build_vae  # noqa: E402

VARIANTS = [("ours", False), ("diffusers", False), ("ours", True), ("diffusers", True)]


def build_diffusers(meta: bool) -> torch.nn.Module:
    from diffusers import AutoencoderKLHunyuanVideo

    with torch.device("meta") if meta else torch.device("cpu"):
        return AutoencoderKLHunyuanVideo().eval()  # its defaults are the release config


def make_decoder(impl: str, tiled: bool, tile: int, weights: Path):
    """A zero-argument callable that decodes latents with the chosen implementation."""
    state = torch.load(weights, weights_only=True)
    if impl == "ours":
        model = build_vae(VAEConfig(), device="meta").eval()
        model.load_state_dict(state, assign=True, strict=True)
        if tiled:
            model.enable_tiling(tile_sample_min_size=tile)
        return model.decode
    model = build_diffusers(meta=True)
    model.load_state_dict(state, assign=True, strict=True)
    stride = tile - int(tile * 0.25)
    if tiled:
        model.enable_tiling(tile_sample_min_height=tile, tile_sample_min_width=tile, tile_sample_stride_height=stride,
                            tile_sample_stride_width=stride, tile_sample_min_num_frames=64, tile_sample_stride_num_frames=48)
    else:
        model.disable_tiling()
        model.use_framewise_decoding = False
    return lambda z: model.decode(z).sample


def worker(args: argparse.Namespace) -> None:
    decode = make_decoder(args.impl, args.tiled, args.tile, args.weights)
    latents = torch.load(args.latents, weights_only=True)
    timing: dict[str, float] = {}

    def run() -> torch.Tensor:
        t0, c0 = time.perf_counter(), time.process_time()
        with torch.no_grad():
            video = decode(latents)
        timing["wall"], timing["cpu"] = time.perf_counter() - t0, time.process_time() - c0
        torch.save(video, args.out)
        return video

    peak = peak_memory_mb(run)
    print(json.dumps({"wall": timing["wall"], "cpu": timing["cpu"], "peak_mb": peak, "threads": torch.get_num_threads()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=1, help="fresh-process runs per variant (table shows the fastest)")
    parser.add_argument("--latent", default="1,16,5,32,32", help="latent shape B,C,T,H,W")
    parser.add_argument("--tile", type=int, default=128, help="sample tile size in pixels for the tiled variants")
    parser.add_argument("--worker", nargs=2, metavar=("IMPL", "TILED"), help=argparse.SUPPRESS)
    parser.add_argument("--weights", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--latents", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.impl, args.tiled = args.worker[0], args.worker[1] == "tiled"
        return worker(args)

    shape = tuple(int(v) for v in args.latent.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        torch.manual_seed(0)
        torch.save(build_diffusers(meta=False).state_dict(), tmp / "weights.pt")
        torch.save(torch.randn(shape), tmp / "latents.pt")
        results: dict[tuple[str, bool], list[dict]] = {v: [] for v in VARIANTS}
        for round_ in range(args.rounds):
            for impl, tiled in VARIANTS:
                name = f"{impl} {'tiled' if tiled else 'untiled'}"
                cmd = [sys.executable, __file__, "--worker", impl, "tiled" if tiled else "untiled", "--weights", str(tmp / "weights.pt"),
                       "--latents", str(tmp / "latents.pt"), "--out", str(tmp / f"{impl}_{tiled}.pt"), "--tile", str(args.tile)]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode:
                    sys.exit(f"{name} failed:\n{proc.stderr[-3000:]}")
                results[(impl, tiled)].append(json.loads(proc.stdout.strip().splitlines()[-1]))
                r = results[(impl, tiled)][-1]
                print(f"round {round_ + 1} {name:18s} wall {r['wall']:7.2f}s  cpu {r['cpu']:7.2f}s  peak {r['peak_mb']:8.0f} MiB", flush=True)
        diffs = {t: (torch.load(tmp / f"ours_{t}.pt", weights_only=True) - torch.load(tmp / f"diffusers_{t}.pt", weights_only=True)).abs().max().item() for t in (False, True)}

    best = {v: min(rs, key=lambda r: r["wall"]) for v, rs in results.items()}  # each variant's fastest run
    print(f"\nlatents {shape} -> video, release widths, {results[VARIANTS[0]][0]['threads']} torch threads, "
          f"tiles {args.tile} px, fastest of {args.rounds} round(s)")
    print(f"{'variant':18s} {'wall s':>8s} {'cpu s':>8s} {'cores':>6s} {'peak MiB':>9s}")
    for (impl, tiled), b in best.items():
        print(f"{impl + (' tiled' if tiled else ' untiled'):18s} {b['wall']:8.2f} {b['cpu']:8.2f} {b['cpu'] / b['wall']:6.2f} {b['peak_mb']:9.0f}")
    print("\nratio                                   untiled   tiled")
    for label, key in (("time ours/diffusers (wall)", "wall"), ("cpu time ours/diffusers", "cpu"), ("peak memory ours/diffusers", "peak_mb")):
        print(f"{label:38s} {best[('ours', False)][key] / best[('diffusers', False)][key]:8.2f} "
              f"{best[('ours', True)][key] / best[('diffusers', True)][key]:7.2f}")
    for impl in ("ours", "diffusers"):
        print(f"peak memory tiled/untiled, {impl:10s} {best[(impl, True)]['peak_mb'] / best[(impl, False)]['peak_mb']:14.2f}")
    print(f"max |ours - diffusers|: untiled {diffs[False]:.2e}, tiled {diffs[True]:.2e}")


if __name__ == "__main__":
    main()
