"""Our DiT forward against diffusers' HunyuanVideoTransformer3DModel, same weights and inputs.

Config (issue 2): hidden 512 = 4 heads x 128, RoPE dims 16/56/56, 2 double + 4 single blocks,
the release's text dims (4096 / 768), latents (1, 16, 9, 32, 32) -> 2304 video tokens, 64 text
tokens (48 valid). Prints median times, peak extra memory, and ours/diffusers ratios (< 1 is
better for us). Run: `.venv/bin/python bench/dit_forward.py [--repeats N]`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _measure import median_seconds, peak_memory_mb, timing_args  # noqa: E402

from videoforge.models import build_dit  # noqa: E402
from videoforge.models.convert import dit_config_from_diffusers, dit_diffusers_to_official  # noqa: E402


def main() -> None:
    args = timing_args(__doc__)

    from diffusers import HunyuanVideoTransformer3DModel

    torch.manual_seed(0)
    ref = HunyuanVideoTransformer3DModel(
        num_attention_heads=4, attention_head_dim=128, num_layers=2, num_single_layers=4, num_refiner_layers=2
    ).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(torch.randn_like(p) * 0.02)
    ours = build_dit(dit_config_from_diffusers(dict(ref.config))).eval()
    ours.load_state_dict(dit_diffusers_to_official(ref.state_dict()), strict=True)

    g = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 16, 9, 32, 32, generator=g)
    t = torch.tensor([700.0])
    text = torch.randn(1, 64, 4096, generator=g)
    mask = torch.ones(1, 64, dtype=torch.long)
    mask[:, 48:] = 0
    pooled = torch.randn(1, 768, generator=g)
    guidance = torch.tensor([6016.0])

    @torch.inference_mode()
    def run_ours():
        return ours(latents, t, text, mask, pooled, guidance)

    @torch.inference_mode()
    def run_ref():
        return ref(hidden_states=latents, timestep=t, encoder_hidden_states=text, encoder_attention_mask=mask,
                   pooled_projections=pooled, guidance=guidance, return_dict=False)[0]

    err = (run_ours() - run_ref()).abs().max().item()
    times = median_seconds({"ours": run_ours, "diffusers": run_ref}, repeats=args.repeats)
    mem = {"ours": peak_memory_mb(run_ours), "diffusers": peak_memory_mb(run_ref)}
    print(f"DiT forward, {torch.get_num_threads()} threads, latents (1,16,9,32,32), 64 text tokens; max |diff| {err:.2e}")
    print(f"{'':10s} {'time (s)':>10s} {'peak (MiB)':>11s}")
    for name in ("ours", "diffusers"):
        print(f"{name:10s} {times[name]:10.3f} {mem[name]:11.1f}")
    print(f"ratio ours/diffusers: time {times['ours'] / times['diffusers']:.2f}x, "
          f"peak memory {mem['ours'] / mem['diffusers']:.2f}x")


if __name__ == "__main__":
    main()
