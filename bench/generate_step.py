"""Per-step latency and peak memory of our text-to-video sampling loop against diffusers'
HunyuanVideoPipeline, on the same tiny-but-not-trivial random weights and inputs.

    .venv/bin/python bench/generate_step.py [--device cpu|cuda] [--steps 6] [--dtype float32] [--threads N]

Each side runs in its own subprocess (fresh allocator, so peak memory is its own): the weights are
a random diffusers HunyuanVideoTransformer3DModel saved once and loaded by both (ours through
`load_dit`); text embeddings, initial noise and embedded guidance are identical. Latency is the
median over steps after one warm-up step; memory is the peak during sampling above the level
before it (CUDA: max_memory_allocated; CPU: peak RSS sampled every millisecond). Ratios are
ours / diffusers: below 1 is better.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

MODEL = dict(
    in_channels=16, out_channels=16, num_attention_heads=4, attention_head_dim=64, num_layers=2, num_single_layers=4,
    num_refiner_layers=1, patch_size=2, patch_size_t=1, text_embed_dim=256, pooled_projection_dim=128,
    rope_axes_dim=(16, 24, 24), guidance_embeds=True,
)
VIDEO = dict(height=128, width=128, num_frames=17)  # latent 5 x 16 x 16 -> 320 image tokens
TEXT_LEN = 64


class PeakRSS:
    """Peak resident memory of this process while inside the block, above the level at entry."""

    def __enter__(self) -> "PeakRSS":
        self.base = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(0.001)

    @property
    def delta(self) -> int:
        return self.peak - self.base


def inputs(valid: float, batch: int = 1):
    g = torch.Generator().manual_seed(0)
    states = torch.randn(batch, TEXT_LEN, MODEL["text_embed_dim"], generator=g)
    mask = torch.ones(batch, TEXT_LEN, dtype=torch.long)
    mask[:, max(1, round(TEXT_LEN * valid)) :] = 0  # right padding, as the tokenizers produce
    pooled = torch.randn(batch, MODEL["pooled_projection_dim"], generator=g)
    shape = (batch, 16, (VIDEO["num_frames"] - 1) // 4 + 1, VIDEO["height"] // 8, VIDEO["width"] // 8)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    return states, mask, pooled, noise


def run_side(side: str, weights: Path, device: str, dtype: torch.dtype, steps: int, valid: float) -> dict:
    states, mask, pooled, noise = inputs(valid)
    stamps: list[float] = []

    def stamp() -> None:
        if device == "cuda":
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())

    common = dict(prompt_embeds=states.to(device), prompt_attention_mask=mask.to(device),
                  pooled_prompt_embeds=pooled.to(device), num_inference_steps=steps, guidance_scale=6.0,
                  output_type="latent", **VIDEO)
    if side == "ours":
        from videoforge.config import VAEConfig
        from videoforge.models import build_vae, load_dit
        from videoforge.pipelines.text_to_video import TextToVideoPipeline

        dit = load_dit(weights, device=device, dtype=dtype).eval()
        pipe = TextToVideoPipeline(dit, build_vae(VAEConfig(block_out_channels=(8, 8, 8, 8), norm_num_groups=4)),
                                   device=device)
        call = lambda: pipe(latents=noise, flow_shift=7.0, callback=lambda _: stamp(), **common)  # noqa: E731
    else:
        from diffusers import FlowMatchEulerDiscreteScheduler, HunyuanVideoPipeline, HunyuanVideoTransformer3DModel

        ref = HunyuanVideoTransformer3DModel.from_pretrained(weights, torch_dtype=dtype).to(device).eval()
        pipe = HunyuanVideoPipeline(text_encoder=None, tokenizer=None, transformer=ref, vae=None,
                                    scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0), text_encoder_2=None,
                                    tokenizer_2=None)
        pipe.set_progress_bar_config(disable=True)

        def on_step(p, i, t, kw):
            stamp()
            return {}

        call = lambda: pipe(latents=noise.to(device), callback_on_step_end=on_step, **common).frames  # noqa: E731

    with torch.no_grad():
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        with PeakRSS() as rss:
            stamp()
            out = call()
        peak = torch.cuda.max_memory_allocated() - base if device == "cuda" else rss.delta
    per_step = [b - a for a, b in zip(stamps, stamps[1:])]
    return {"step_s": statistics.median(per_step[1:]), "peak_bytes": peak, "latents": out.float().cpu().tolist()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--threads", type=int, help="torch CPU threads in each side (default: torch's)")
    ap.add_argument("--text-valid", type=float, default=0.5,
                    help="fraction of the text tokens that are real, the rest padding (default: %(default)s); "
                    "1.0 compares the DiT alone, lower values also count our pipeline dropping padding")
    ap.add_argument("--side", choices=["ours", "diffusers"], help=argparse.SUPPRESS)
    ap.add_argument("--weights", help=argparse.SUPPRESS)
    args = ap.parse_args()
    dtype = getattr(torch, args.dtype)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.side:  # child process: one side, result as JSON on the last line
        print(json.dumps(run_side(args.side, Path(args.weights), args.device, dtype, args.steps, args.text_valid)))
        return

    from diffusers import HunyuanVideoTransformer3DModel

    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        ref = HunyuanVideoTransformer3DModel(**MODEL)
        with torch.no_grad():
            for p in ref.parameters():
                p.normal_(0, 0.02)
        ref.save_pretrained(Path(tmp) / "transformer")
        n_params = sum(p.numel() for p in ref.parameters())
        del ref
        results = {}
        for side in ("diffusers", "ours", "diffusers", "ours"):  # interleaved; keep each side's best run
            cmd = [sys.executable, __file__, "--side", side, "--weights", str(Path(tmp) / "transformer"),
                   "--device", args.device, "--dtype", args.dtype, "--steps", str(args.steps), "--text-valid", str(args.text_valid)]
            cmd += ["--threads", str(args.threads)] if args.threads else []
            r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
            if side not in results or r["step_s"] < results[side]["step_s"]:
                results[side] = r

    ours, ref = results["ours"], results["diffusers"]
    diff = (torch.tensor(ours["latents"]) - torch.tensor(ref["latents"])).abs().max().item()
    tokens = (VIDEO["num_frames"] - 1) // 4 + 1
    tokens *= (VIDEO["height"] // 16) * (VIDEO["width"] // 16)
    print(f"device {args.device} ({torch.get_num_threads()} threads), {args.dtype}, DiT {n_params / 1e6:.1f}M params, {tokens} image + {TEXT_LEN} text tokens "
          f"({round(TEXT_LEN * args.text_valid)} valid), "
          f"{args.steps} steps")
    print(f"{'':10s} {'step ms':>10s} {'peak MiB':>10s}")
    for name, r in (("ours", ours), ("diffusers", ref)):
        print(f"{name:10s} {r['step_s'] * 1e3:10.2f} {r['peak_bytes'] / 2**20:10.2f}")
    print(f"ratio ours/diffusers: step time {ours['step_s'] / ref['step_s']:.3f}, "
          f"peak memory {ours['peak_bytes'] / max(ref['peak_bytes'], 1):.3f}")
    print(f"max |latents ours - diffusers| after {args.steps} steps: {diff:.2e}")


if __name__ == "__main__":
    main()
