"""The `videoforge` command line: parses arguments and delegates to one typed function each.

Each subcommand has an `_add_<name>(subparsers)` function that declares its arguments and sets
`func` to a small adapter calling into the package. Keep the work itself out of this file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Sequence


DEMO_PROMPT = "a red circle moving to the right"


class CLIError(Exception):
    """An error the user can fix; printed as one line, without a traceback."""


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="generate a video with the bundled tiny model (what `make demo` runs)",
                       description="Generate one video on the CPU with the bundled shapes-world model "
                       "(videoforge/assets/tiny-shapes, see its MODEL_CARD.md), at the model's own size, length and steps.")
    p.add_argument("--prompt", default=DEMO_PROMPT, help="the text prompt (default: %(default)r)")
    p.add_argument("--out", default="out/demo.mp4", help="where to write the mp4; a GIF preview goes beside it (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default: %(default)s)")

    def run(args: argparse.Namespace) -> int:
        import time

        from videoforge.bundled import BUNDLED_DIR, bundled_model_dir

        if bundled_model_dir() is None:
            raise CLIError(f"this build has no bundled model ({BUNDLED_DIR} is missing); install from a full checkout")
        start = time.perf_counter()
        rc = main(["generate", "--prompt", args.prompt, "--out", args.out, "--seed", str(args.seed), "--gif"])
        if rc == 0:
            gif = Path(args.out).with_suffix(".gif")  # where generate --gif writes it
            print(f"demo: done in {time.perf_counter() - start:.1f} s; open {args.out} (or the preview {gif})")
        return rc

    p.set_defaults(func=run)


def _add_generate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate",
        help="text-to-video (image-to-video with --image): an mp4 + a JSON sidecar with every setting per prompt",
        description="Generate videos from text. Unset options take the model folder's defaults "
        "(videoforge.json; the release: 720x1280, 129 frames, 50 steps, shift 7, guidance 6).",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", help="the text prompt")
    src.add_argument("--prompts-file", help="one prompt per line, or JSON lines with \"prompt\" and per-prompt "
                     "overrides (seed, size, frames, steps, guidance, cfg_scale, negative_prompt, flow_shift); "
                     "--out is then a folder of numbered videos")
    p.add_argument("--model-dir", help="model folder (ours, diffusers' or the release's ckpts/); default: the bundled tiny model")
    p.add_argument("--out", help="output mp4 (default out/video.mp4), or a folder with --prompts-file (default out/)")
    p.add_argument("--seed", type=int, help="seed for the initial noise (default: random, recorded in the sidecar)")
    p.add_argument("--steps", type=int, help="denoising steps")
    p.add_argument("--size", help="HEIGHTxWIDTH, multiples of 16, e.g. 720x1280")
    p.add_argument("--frames", type=int, help="number of frames, 4k+1 (e.g. 65, 129)")
    p.add_argument("--guidance", type=float, help="embedded guidance scale of the guidance-distilled model")
    p.add_argument("--cfg-scale", type=float, help="true classifier-free guidance; > 1 runs a negative branch "
                   "(default: the model folder's; off for the release, which is guidance-distilled)")
    p.add_argument("--negative-prompt", help="negative prompt for --cfg-scale > 1 (default: the model folder's; the release's for the release)")
    p.add_argument("--flow-shift", type=float, help="time shift of the sampling schedule (image-to-video: 17, or 7 with --stability)")
    p.add_argument("--image", help="image-to-video from this reference image (needs an I2V model); the size follows its aspect ratio")
    p.add_argument("--i2v-resolution", default="720p", help="image-to-video size tier: 720p, 540p, 360p, or a bucket base in pixels (multiple of 32) (default: %(default)s)")
    p.add_argument("--stability", action="store_true", help="image-to-video: start from 0.999 noise + 0.001 image latent (the release's --i2v-stability)")
    p.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], help="weights dtype (default: bfloat16 on GPU, float32 on CPU)")
    p.add_argument("--offload", choices=["none", "model"], default="none", help="'model': keep components on the CPU and move each to the device only while it runs")
    p.add_argument("--attention", choices=["sdpa", "flash"], default="sdpa", help="attention kernel (flash needs flash-attn)")
    p.add_argument("--no-vae-tiling", action="store_true", help="decode in one piece (more memory; tiling only engages above 256 px / 64 frames)")
    p.add_argument("--png-frames", action="store_true", help="also write every frame as PNG into a folder beside the mp4")
    p.add_argument("--gif", action="store_true", help="also write an animated GIF preview")
    p.add_argument("--round-guidance-bf16", action="store_true", help="feed guidance rounded through bf16 like the release (6.0 -> 6016)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--lora", metavar="FILE", help="LoRA .safetensors (PEFT/diffusers or kohya/musubi keys) merged into the DiT; "
                   "a key that matches no layer is an error")
    p.add_argument("--lora-scale", type=float, default=1.0, help="strength of --lora (0: no effect) (default: %(default)s)")
    p.add_argument("--sp", type=int, default=1, metavar="N", help="sequence parallelism over N processes: "
                   "torchrun --nproc_per_node N -m videoforge generate ... --sp N (rank 0 writes the files)")
    p.add_argument("--rewrite", action="store_true", help="rewrite each prompt with the prompt rewriter first (cached by "
                   "prompt, mode and model); the sidecar records prompt_original and prompt_rewritten")
    add_rewriter_arguments(p, prefix="rewrite-")

    def run(args: argparse.Namespace) -> int:
        from videoforge.bundled import bundled_model_dir
        from videoforge.llm import LLMClientError
        from videoforge.pipelines.generate import Job, generate, read_prompts_file
        from videoforge.pipelines.sizes import parse_size
        from videoforge.rewrite import LocalModelError

        model_dir = args.model_dir or bundled_model_dir()
        if model_dir is None:
            raise CLIError("no bundled model in this build: pass --model-dir DIR (a model folder, a diffusers folder or the release's ckpts/)")
        if args.rewrite and not args.rewrite_model:
            raise CLIError("--rewrite needs --rewrite-model: a local chat-model folder, or the model name the endpoint serves")
        if not args.rewrite and (args.rewrite_model or args.rewrite_base_url):
            raise CLIError("--rewrite-model / --rewrite-base-url given without --rewrite")
        try:
            height, width = parse_size(args.size) if args.size else (None, None)
            base = Job(prompt=args.prompt or "", negative_prompt=args.negative_prompt, height=height, width=width,
                       num_frames=args.frames, num_inference_steps=args.steps, guidance_scale=args.guidance,
                       cfg_scale=args.cfg_scale, flow_shift=args.flow_shift, seed=args.seed, image=args.image,
                       resolution=args.i2v_resolution, stability=args.stability)
            jobs = read_prompts_file(args.prompts_file, base) if args.prompts_file else [base]
            many = bool(args.prompts_file)
            paths = generate(model_dir, jobs, args.out or ("out" if many else "out/video.mp4"), many=many,
                             device=args.device, dtype=args.dtype, offload=args.offload, attention=args.attention,
                             vae_tiling=not args.no_vae_tiling, png_frames=args.png_frames, gif=args.gif,
                             round_guidance_bf16=args.round_guidance_bf16, progress=not args.quiet,
                             rewrite=rewriter_options(args, "rewrite-") if args.rewrite else None,
                             lora=args.lora, lora_scale=args.lora_scale, sp=args.sp)
        except (ValueError, FileNotFoundError, LLMClientError, LocalModelError) as e:
            raise CLIError(str(e)) from e
        for path in paths:
            print(path)
        return 0

    p.set_defaults(func=run)


def add_rewriter_arguments(p: argparse.ArgumentParser, prefix: str = "") -> None:
    """The prompt-rewriter flags, shared by `rewrite` and `generate --rewrite` (there with prefix "rewrite-")."""
    g = p.add_argument_group("prompt rewriter")
    g.add_argument(f"--{prefix}mode", choices=["normal", "master"], default="normal",
                   help="normal: faithful and concise; master: richer cinematography (default: %(default)s)")
    g.add_argument(f"--{prefix}backend", choices=["local", "openai"],
                   help="local transformers chat model, or an OpenAI-compatible endpoint (default: openai when --base-url is given, else local)")
    g.add_argument(f"--{prefix}model", help="local chat-model folder, or the model name the endpoint serves")
    g.add_argument(f"--{prefix}base-url", help="endpoint including the version path, e.g. http://localhost:8000/v1 (implies --backend openai)")
    g.add_argument(f"--{prefix}api-key-env", metavar="VAR", help="environment variable holding the API key (the key itself is never logged)")
    g.add_argument(f"--{prefix}lora", metavar="DIR", help="LoRA adapter folder from `videoforge rewrite-tune` (local backend)")
    g.add_argument(f"--{prefix}timeout", type=float, default=60.0, help="seconds per request; 2 retries (default: %(default)s)")


def rewriter_options(args: argparse.Namespace, prefix: str = "") -> dict:
    """The keyword arguments of `videoforge.rewrite.rewrite_prompt(s)` from `add_rewriter_arguments` flags."""
    get = lambda name: getattr(args, (prefix + name).replace("-", "_"))  # noqa: E731
    return {"mode": get("mode"), "backend": get("backend"), "model": get("model"), "base_url": get("base-url"),
            "api_key_env": get("api-key-env"), "lora": get("lora"), "timeout": get("timeout")}


def _add_rewrite(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "rewrite", help="rewrite prompts into the detailed English form the video model was trained on",
        description="Rewrite a prompt (any language) with an LLM, check that the rewrite kept its colours, numbers, "
        "negations, main nouns and meaning, revise once, else keep the original. Prints only the final prompt(s) "
        "on stdout, one per line; details go to stderr. Rewrites are cached by (prompt, mode, model) in "
        "~/.cache/videoforge/rewrites.json (env VIDEOFORGE_REWRITE_CACHE: another file, or 'off').",
    )
    p.add_argument("prompt", nargs="?", help="the prompt to rewrite")
    p.add_argument("--prompts-file", metavar="F", help="rewrite every non-empty line of F instead")
    p.add_argument("--threshold", type=float, default=0.5, help="minimum semantic similarity (default: %(default)s)")
    add_rewriter_arguments(p)

    def run(args: argparse.Namespace) -> int:
        from videoforge.llm import LLMClientError
        from videoforge.rewrite import LocalModelError, rewrite_prompts

        if (args.prompt is None) == (args.prompts_file is None):
            raise CLIError("give either a prompt or --prompts-file")
        if args.prompts_file:
            try:
                prompts = [ln for ln in Path(args.prompts_file).read_text(encoding="utf-8").splitlines() if ln.strip()]
            except OSError as e:
                raise CLIError(f"cannot read {args.prompts_file}: {e.strerror}") from None
        else:
            prompts = [args.prompt]
        try:
            results = rewrite_prompts(prompts, threshold=args.threshold, **rewriter_options(args))
        except (LLMClientError, LocalModelError, ValueError) as e:
            raise CLIError(str(e)) from None
        for r in results:
            note = "kept the original prompt" if r.kept_original else (  # the rewriter's warning said why
                f"similarity {r.similarity:.2f}" if r.similarity is not None else "accepted")
            print(f"rewrite [{r.mode}, {r.model}]: {note}", file=sys.stderr)
            print(r.prompt)
        return 0

    p.set_defaults(func=run)


def _add_rewrite_tune(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "rewrite-tune", help="LoRA fine-tuning of a local rewriter model on prompt pairs",
        description='Train a LoRA adapter for a local chat model on JSONL lines {"original": ..., "rewritten": ...}. '
        "The output folder works with `videoforge rewrite --lora DIR`.",
    )
    p.add_argument("pairs", metavar="PAIRS.jsonl")
    p.add_argument("--model", required=True, help="local chat-model folder to adapt")
    p.add_argument("--out", required=True, metavar="DIR", help="where to write the adapter")
    p.add_argument("--steps", type=int, default=200, help="optimizer steps (default: %(default)s)")
    p.add_argument("--lr", type=float, default=2e-4, help="learning rate (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=4, help="pairs per step (default: %(default)s)")
    p.add_argument("--rank", type=int, default=8, help="LoRA rank (default: %(default)s)")
    p.add_argument("--mode", choices=["normal", "master"], default="normal", help="the instructions the pairs follow")
    p.add_argument("--device", default="cpu", help="torch device (default: %(default)s)")

    def run(args: argparse.Namespace) -> int:
        from videoforge.rewrite import LocalModelError
        from videoforge.rewrite.tune import TuneConfig, tune_rewriter

        config = TuneConfig(steps=args.steps, lr=args.lr, batch_size=args.batch_size, rank=args.rank,
                            alpha=2 * args.rank, mode=args.mode)
        try:
            losses = tune_rewriter(args.pairs, args.model, args.out, config, device=args.device).losses
        except FileNotFoundError as e:
            raise CLIError(f"cannot read {e.filename}") from None
        except (LocalModelError, ValueError) as e:
            raise CLIError(str(e)) from None
        k = max(1, len(losses) // 10)
        print(f"loss {sum(losses[:k]) / k:.4f} -> {sum(losses[-k:]) / k:.4f} over {len(losses)} steps; "
              f"adapter in {args.out}", file=sys.stderr)
        return 0

    p.set_defaults(func=run)


def _add_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="convert DiT/VAE checkpoints between the release's, diffusers' and our layouts",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""Convert the DiT and/or VAE found at SRC into another layout under DST.

SRC may be any layout load_dit/load_vae read:
  official       the release's files: transformers/mp_rank_00_model_states.pt (weights under
                 "module"/"ema" or bare; or .safetensors), its *_fp8.pt + *_fp8_map.pt (dequantised),
                 vae/pytorch_model.pt + config.json; the release's hunyuan-video-*-720p/ or ckpts/ folder;
                 or our official-layout folder (transformer.safetensors / vae.safetensors + config.json)
  diffusers      config.json (HunyuanVideoTransformer3DModel / AutoencoderKLHunyuanVideo) +
                 diffusion_pytorch_model*.safetensors (sharded with its .index.json); or a pipeline
                 folder with transformer/ and vae/
  model folder   ours (SCHEMA.md): videoforge.json, transformer/, vae/ (diffusers layout)
  checkpoint     a training run's mid-run checkpoint RUN/checkpoints/step_N/ (`videoforge train`): read
                 as the run's final/ folder would be (architecture from RUN/recipe.json, the VAE the
                 recipe names), so --ema takes its EMA weights. To sample or evaluate step N:
                   videoforge convert RUN/checkpoints/step_00020000 m20k --to model-folder --ema
                 A LoRA run's checkpoint gives DST/lora.safetensors (for generate --lora), a VAE
                 run's its VAE (e.g. to screen a run early: `eval shapes --vae DST/vae`; its latent
                 scaling factor is fitted only at the end, so compare distances within one VAE).

--to:
  diffusers      config.json + diffusion_pytorch_model.safetensors (shards above 10 GiB), loadable by
                 diffusers' from_pretrained
  official       the release's key names as transformer.safetensors / vae.safetensors + our config.json
  model-folder   DST/transformer/ and DST/vae/ in diffusers layout, the text encoder folders found in SRC,
                 and DST/videoforge.json (SRC's, if any) with the weight files' sha256 hashes
When SRC holds both models, diffusers/official write DST/transformer/ and DST/vae/.""",
    )
    p.add_argument("src", metavar="SRC", help="checkpoint file or folder")
    p.add_argument("dst", metavar="DST", help="output folder")
    p.add_argument("--to", required=True, choices=["diffusers", "official", "model-folder"], help="target layout")
    p.add_argument("--dtype", choices=["keep", "float32", "bfloat16", "float16"], default="keep",
                   help="cast the weights (default: keep the stored dtypes; FP8 weights become bfloat16)")
    p.add_argument("--ema", action="store_true", help="take the EMA weights (SRC/transformer_ema/ of a DiT run's final/ folder, or a run's checkpoint)")
    p.add_argument("--vae", metavar="PATH", help="take the VAE from PATH instead of SRC (e.g. a decoder-only fine-tune's "
                   "final/vae_ema, whose frozen encoder keeps the DiT's latents valid)")

    def run(args: argparse.Namespace) -> int:
        import torch

        from videoforge.models.checkpoints import CheckpointError, convert_checkpoint
        from videoforge.train.checkpoint import is_checkpoint
        from videoforge.train.export import convert_run_checkpoint

        convert = convert_run_checkpoint if is_checkpoint(Path(args.src)) else convert_checkpoint
        dtype = None if args.dtype == "keep" else getattr(torch, args.dtype)
        try:
            written = convert(args.src, args.dst, args.to, dtype=dtype, ema=args.ema, vae_src=args.vae)
        except (CheckpointError, ValueError, OSError) as e:
            raise CLIError(str(e)) from None
        for path in written:
            print(path)
        return 0

    p.set_defaults(func=run)


def _add_synth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "synth", help="write a synthetic shapes-world dataset (manifest.parquet + clips, like `curate`)",
        description="Render short videos and images of coloured shapes (circle, square, triangle, star) moving "
        "left/right/up/down, growing, shrinking or still on plain backgrounds, plus camera moves over layered "
        "scenes, each with a structured caption and its ground truth. Writes DIR/manifest.parquet (SCHEMA.md, "
        "tiers video-SIZE-FRAMES, camera-SIZE-FRAMES, image-SIZE and shapes-SIZE), DIR/clips/*.mp4, DIR/images/*.png and "
        "DIR/ground_truth.jsonl. The same seed always gives the same dataset.",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--videos", type=int, default=1000, help="number of videos (default: %(default)s)")
    p.add_argument("--images", type=int, default=1000, help="number of images (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="dataset seed (default: %(default)s)")
    p.add_argument("--size", type=int, default=64, help="frame side in pixels, even (default: %(default)s)")
    p.add_argument("--frames", type=int, default=17, help="frames per video (default: %(default)s)")
    p.add_argument("--fps", type=float, default=8.0, help="frame rate written to the clips (default: %(default)s)")
    p.add_argument("--camera-fraction", type=float, default=0.1,
                   help="share of videos that are camera moves over layered scenes (default: %(default)s)")
    p.add_argument("--two-objects", type=float, default=0.25, help="probability of two shapes in a sample (default: %(default)s)")
    p.add_argument("--holdout", action=argparse.BooleanOptionalAction, default=True,
                   help="leave out the held-out colour/shape/motion combinations that `eval shapes` tests (default: on)")
    p.add_argument("--workers", type=int, default=1, help="render processes (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset in DIR")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    def run(args: argparse.Namespace) -> int:
        from videoforge.synthetic.dataset import SynthConfig, write_dataset

        try:
            cfg = SynthConfig(out=args.out, videos=args.videos, images=args.images, seed=args.seed, size=args.size,
                              frames=args.frames, fps=args.fps, holdout=args.holdout, camera_fraction=args.camera_fraction,
                              two_object_prob=args.two_objects, workers=args.workers, overwrite=args.overwrite)
            print(write_dataset(cfg, progress=not args.quiet))
        except (ValueError, FileExistsError) as e:
            raise CLIError(str(e)) from None
        return 0

    p.set_defaults(func=run)


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a model (`eval shapes`: the shapes-world model, scored with classical vision)")
    kinds = p.add_subparsers(dest="eval_kind", metavar="KIND", required=True)
    s = kinds.add_parser(
        "shapes", help="colour/shape/motion accuracy of generated videos, and the VAE's reconstruction PSNR",
        description="Generate a video for each of a fixed set of plain-language prompts (\"a red circle moving to "
        "the right\"), including colour/shape/motion combinations held out of `synth` datasets, score colour, "
        "shape and motion direction on the frames with classical vision (per attribute, and per asked value with "
        "what the misses were read as), and measure the VAE's reconstruction "
        "PSNR on fresh renders, how far apart it keeps the palette colours in latent space (a DiT confuses "
        "colours that sit close) and, per colour, a star from a circle (a DiT draws a faintly coded colour's shapes "
        "worse). --check-scorer instead measures the scorer itself on rendered ground truth.",
    )
    s.add_argument("--model-dir", help="model folder (default: the bundled tiny model)")
    s.add_argument("--out", metavar="DIR", help="write report.json and the generated videos here")
    s.add_argument("--seed", type=int, default=0, help="noise seed (default: %(default)s)")
    s.add_argument("--seeds", type=int, default=1, metavar="N",
                   help="generate every prompt with N noise seeds (--seed, --seed+1, ...) and pool them; one seed's "
                        "held-out accuracy swings by several points (one of 24 videos is 4), so compare models on "
                        "several (default: %(default)s)")
    s.add_argument("--steps", type=int, help="denoising steps (default: the model folder's)")
    s.add_argument("--cfg-scale", type=float, help="classifier-free guidance scale (default: the model folder's)")
    s.add_argument("--flow-shift", type=float, help="sampling schedule shift (default: the model folder's)")
    s.add_argument("--batch-size", type=int, default=4, help="prompts per generation batch (default: %(default)s)")
    s.add_argument("--prompts", type=int, default=28, help="in-distribution prompts besides the held-out ones (default: %(default)s)")
    s.add_argument("--repeats", type=int, default=1,
                   help="generate every prompt this many times (other noise, alternating phrasings) (default: %(default)s)")
    s.add_argument("--psnr-samples", type=int, default=8, help="fresh clips for the VAE PSNR; 0 skips it (default: %(default)s)")
    s.add_argument("--device", default="cpu", help="torch device (default: %(default)s)")
    s.add_argument("--check-scorer", type=int, metavar="N", help="score N rendered clips (no model) and print the scorer's accuracy")
    s.add_argument("--vae", metavar="DIR",
                   help="measure only this VAE (any layout `convert` reads, e.g. a training run's final/vae_ema): PSNR and "
                        "the scorer on --psnr-samples round trips of 64x64x17 clips, and its colour and per-colour shape "
                        "separations; no generation, no DiT")
    s.add_argument("--latent-noise", metavar="F[,F...]",
                   help="with --vae: also decode one-object clips from their latents plus Gaussian noise of these stds "
                        "(fractions of the latents' spread, e.g. 0.3,0.5,0.8) and score them: how much imprecision in a "
                        "DiT's samples the decoder forgives")
    s.add_argument("--noise-samples", type=int, default=24, help="one-object clips for --latent-noise (default: %(default)s)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")

    def run(args: argparse.Namespace) -> int:
        import json

        from videoforge.synthetic import evaluate

        if args.check_scorer is not None:
            if args.check_scorer < 1:
                raise CLIError("--check-scorer needs N >= 1")
            for crf in (None, 17):
                acc = evaluate.scorer_accuracy(args.check_scorer, seed=args.seed, crf=crf)
                print(f"scorer on {args.check_scorer} rendered clips" + (f" (H.264 crf {crf})" if crf else "") + ": "
                      + json.dumps({k: round(v, 4) for k, v in acc.items()}))
            return 0
        noise_levels: tuple[float, ...] = ()
        if args.latent_noise is not None:
            if args.vae is None:
                raise CLIError("--latent-noise measures a VAE: pass --vae DIR (a model folder's VAE is DIR/vae)")
            try:
                noise_levels = tuple(float(f) for f in args.latent_noise.split(","))
            except ValueError:
                raise CLIError(f"--latent-noise wants comma-separated numbers, e.g. 0.3,0.5; got {args.latent_noise!r}") from None
            if any(f < 0 for f in noise_levels) or args.noise_samples < 1:
                raise CLIError("--latent-noise levels must be >= 0 and --noise-samples >= 1")
        if args.vae is not None:
            if args.model_dir is not None:
                raise CLIError("--vae measures a VAE alone; --model-dir evaluates a whole model: pass one of them")
            try:
                report = evaluate.evaluate_vae(args.vae, args.out, seed=args.seed, psnr_samples=args.psnr_samples,
                                               noise_levels=noise_levels, noise_samples=args.noise_samples, device=args.device)
            except (ValueError, FileNotFoundError) as e:
                raise CLIError(str(e)) from None
            print("\n".join(evaluate.format_vae_report(report)))
            return 0
        from videoforge.bundled import bundled_model_dir

        model_dir = args.model_dir or bundled_model_dir()
        if model_dir is None:
            raise CLIError("no bundled model in this build: pass --model-dir DIR")
        try:
            report = evaluate.evaluate_model(model_dir, args.out, seed=args.seed, steps=args.steps, cfg_scale=args.cfg_scale,
                                             flow_shift=args.flow_shift, batch_size=args.batch_size,
                                             psnr_samples=args.psnr_samples, num_in_distribution=args.prompts, repeats=args.repeats,
                                             device=args.device, progress=not args.quiet, num_seeds=args.seeds)
        except (ValueError, FileNotFoundError) as e:
            raise CLIError(str(e)) from None
        print(evaluate.format_report(report))
        return 0

    s.set_defaults(func=run)


def _add_caption(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "caption", help="structured JSON captions + camera-motion labels for a curation manifest",
        description="Caption the kept rows of a curation manifest with a vision-language model (structured JSON, "
        "SCHEMA.md) and label each clip's camera motion (14 classes; written only when confident). Finished rows "
        "are journaled as they complete, so a killed or failed run resumes where it stopped when run again.",
    )
    p.add_argument("manifest", help="manifest.parquet, or the folder holding it")
    p.add_argument("--backend", choices=("openai", "local"), default="openai",
                   help="openai: an OpenAI-compatible endpoint (vLLM, SGLang, hosted); local: a transformers "
                   "LLaVA-style model folder (default: %(default)s)")
    p.add_argument("--model", required=True, help="model name at the endpoint, or the local model folder")
    p.add_argument("--base-url", help="endpoint root including /v1, e.g. http://127.0.0.1:8000/v1 (openai backend)")
    p.add_argument("--api-key-env", metavar="VAR", help="name of the environment variable holding the API key")
    p.add_argument("--only-missing", action="store_true", help="only rows without a caption (retries caption errors)")
    p.add_argument("--limit", type=int, metavar="N", help="caption at most N rows")
    p.add_argument("--frames", type=int, default=4, help="frames sampled per clip (default: %(default)s)")
    p.add_argument("--concurrency", type=int, default=4, help="requests in flight (openai; default: %(default)s)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per request (default: %(default)s)")
    p.add_argument("--retries", type=int, default=3, help="retries per request, with backoff (default: %(default)s)")
    p.add_argument("--prompt-file", metavar="F", help="an edited caption prompt template (see annotate/captions.py)")
    p.add_argument("--no-camera-motion", action="store_true", help="skip the camera-motion classifier")

    def run(args: argparse.Namespace) -> int:
        from videoforge.annotate.caption_run import CaptionRunConfig, caption_manifest, manifest_file
        from videoforge.annotate.captions import load_prompt_template
        from videoforge.annotate.vlm import CaptionBackendError, make_backend

        try:
            manifest_file(args.manifest)
            cfg = CaptionRunConfig(frames_per_clip=args.frames, only_missing=args.only_missing, limit=args.limit,
                                   camera_motion=not args.no_camera_motion)
            if args.prompt_file:
                cfg.prompt_template, cfg.prompt_version = load_prompt_template(args.prompt_file)
            backend = make_backend(args.backend, args.model, args.base_url, args.api_key_env, args.timeout,
                                   args.concurrency, args.retries)
            s = caption_manifest(args.manifest, backend, cfg)
        except (CaptionBackendError, FileNotFoundError, ValueError) as e:
            raise CLIError(str(e)) from None
        print(f"captioned {s.captioned}, caption errors {s.failed}, resumed {s.resumed}, over the token budget "
              f"{s.over_budget}, not reached {s.unreached}", file=sys.stderr)
        if s.unreached:
            print(f"first transport error: {s.errors[0]}; run the same command again to resume", file=sys.stderr)
            return 1
        return 0

    p.set_defaults(func=run)


def _add_camera_motion(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "camera-motion", help="print the camera motion of a video (one of 14 labels) and its confidence",
        description="Classify the camera motion of a video (or frames A..B of it, inclusive) from optical flow: "
        "zoom_in/out, pan_up/down/left/right (camera translates), tilt_up/down/left/right (camera rotates), "
        "around_left/right (orbit), static, handheld. Prints `LABEL CONFIDENCE`.",
    )
    p.add_argument("video", help="a video file")
    p.add_argument("--start-frame", type=int, metavar="A", help="first frame (default: 0)")
    p.add_argument("--end-frame", type=int, metavar="B", help="last frame, inclusive (default: the last)")

    def run(args: argparse.Namespace) -> int:
        from videoforge.annotate.camera_motion import classify_video

        if not Path(args.video).is_file():
            raise CLIError(f"no such file: {args.video}")
        try:
            label, confidence = classify_video(args.video, args.start_frame, args.end_frame)
        except (OSError, ValueError) as e:
            raise CLIError(str(e)) from None
        print(f"{label} {confidence:.3f}")
        return 0

    p.set_defaults(func=run)


def _add_curate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "curate", help="raw videos/images -> scored single-shot clips, dedup, training tiers, manifest.parquet",
        description="Curate RAW (a folder, a file, or a .txt list of paths/URIs) into OUT: shot splitting, "
        "sharpest start frame, border/blur/motion/OCR/quality/watermark/people scores on frames decoded once, "
        "near-duplicate removal, k-means concepts and tiers. Writes OUT/clips/*.mp4, OUT/images/, "
        "OUT/manifest.parquet, OUT/finetune.csv and OUT/report.html. Re-running resumes: finished inputs "
        "are not redone.",
    )
    p.add_argument("raw", help="folder of raw videos/images, one file, or a .txt list of paths/URIs")
    p.add_argument("out", help="output folder")
    p.add_argument("--config", help="YAML thresholds and tiers (default: built-in, as in configs/curate.yaml)")
    p.add_argument("--workers", type=int, default=1, help="worker processes / Ray actors (default: %(default)s)")
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local process pool, or Ray Data (`ray start` on the nodes first) (default: %(default)s)")
    p.add_argument("--ray-address", help="Ray cluster address (e.g. auto); default: start a local instance")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")

    def run(args: argparse.Namespace) -> int:
        import json

        from videoforge.curate import curate, load_config

        if args.workers < 1:
            raise CLIError("--workers must be at least 1")
        try:
            cfg = load_config(args.config)
            summary = curate(args.raw, args.out, cfg, workers=args.workers, engine=args.engine,
                             ray_address=args.ray_address, progress=not args.no_progress)
        except (FileNotFoundError, ValueError, RuntimeError, TypeError) as e:
            raise CLIError(str(e)) from None
        print(json.dumps(summary, indent=1))
        return 0

    p.set_defaults(func=run)


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train the DiT (flow matching) or the VAE from a recipe; the same under torchrun",
        description="Train from a YAML recipe (configs/*.yaml). Writes DIR/metrics.jsonl, DIR/checkpoints/ and, "
        "at the end, DIR/final/ (a model folder: transformer/ raw weights, transformer_ema/ EMA). "
        "Multi-process: torchrun --nproc_per_node N -m videoforge train ... (FSDP2; --sp for sequence parallel).",
    )
    p.add_argument("--config", required=True, help="training recipe YAML, e.g. configs/tiny-t2v.yaml")
    p.add_argument("--data", help="manifest .parquet, folder of media with same-named .txt/.json captions, or a `videoforge cache` folder (default: the recipe's)")
    p.add_argument("--out", default="runs/train", help="run folder (default: %(default)s)")
    p.add_argument("--max-steps", type=int, help="stop at this global step (an absolute cap; schedules still follow the recipe)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in OUT/checkpoints")
    p.add_argument("--sp", type=int, default=1, help="sequence-parallel degree (Ulysses; divides the process count)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    def run(args: argparse.Namespace) -> int:
        from videoforge.train.recipe import load_recipe

        try:
            recipe = load_recipe(args.config)
            if recipe.task == "vae":
                from videoforge.train.vae_trainer import RunOptions, train_vae as train
            else:
                from videoforge.train.trainer import RunOptions, train
            opts = RunOptions(out=Path(args.out), data=args.data, max_steps=args.max_steps, resume=args.resume,
                              sp=args.sp, progress=not args.no_progress)
            summary = train(recipe, opts)
        except (ValueError, FileNotFoundError) as e:
            raise CLIError(str(e)) from None
        if summary.get("loss") is not None:
            print(f"step {summary['step']}: loss {summary['loss']:.4f}; run folder {summary['out']}")
        return 0

    p.set_defaults(func=run)


def _add_cache(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cache",
        help="pre-encode training clips (VAE) and prompts (text encoders) into safetensors shards",
        description="Encode every clip of a recipe's data at the buckets its stages use, once; "
        "`train --data CACHE_DIR` then reads the shards instead of decoding and encoding each step.",
    )
    p.add_argument("--config", required=True, help="training recipe YAML (its model, VAE, text encoder and stages)")
    p.add_argument("--data", help="manifest .parquet or folder of media with captions (default: the recipe's data.path)")
    p.add_argument("--out", required=True, help="cache folder to write")
    p.add_argument("--caption-variants", type=int, default=4, help="encoded dropout/permutation draws per structured caption (default: %(default)s)")

    def run(args: argparse.Namespace) -> int:
        from videoforge.train.cache import cache_dataset

        try:
            index = cache_dataset(args.config, args.data, Path(args.out), args.caption_variants)
        except (ValueError, FileNotFoundError) as e:
            raise CLIError(str(e)) from None
        print(f"wrote {index}")
        return 0

    p.set_defaults(func=run)


# Subcommands, in the order `--help` lists them. Each area adds its `_add_*` function here.
COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_generate,
    _add_demo,
    _add_convert,
    _add_curate,
    _add_caption,
    _add_camera_motion,
    _add_rewrite,
    _add_rewrite_tune,
    _add_train,
    _add_cache,
    _add_synth,
    _add_eval,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="videoforge",
        description="HunyuanVideo-style video generation, curation, captioning and training.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except CLIError as e:
        print(f"videoforge {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
