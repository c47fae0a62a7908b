"""`videoforge generate`: run the text-to-video (or, with an image, the image-to-video) pipeline
for one prompt or a prompts file and write each result as an mp4 plus a JSON sidecar with
everything needed to reproduce it.

Optional, all recorded in the sidecar: prompts rewritten by the prompt rewriter first
(`rewrite=`), a LoRA merged into the DiT (`lora=`), and sequence parallelism across the
processes of `torchrun --nproc_per_node N -m videoforge generate ... --sp N` (every rank runs
the sampler on its share of the video tokens and gets the full output; rank 0 writes).
"""

from __future__ import annotations

import json
import os
import random
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, TypeVar

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from videoforge.pipelines.image_to_video import (
    I2V_NEGATIVE_PROMPT,
    I2V_SHIFT,
    I2V_STABILITY_SHIFT,
    ImageToVideoPipeline,
    closest_bucket,
    load_image,
    resolution_base,
    resolution_buckets,
)
from videoforge.pipelines.model_folder import GenerationDefaults, read_meta
from videoforge.pipelines.sizes import check_size, parse_size
from videoforge.pipelines.text_to_video import TextToVideoPipeline
from videoforge.pipelines.video_io import write_gif, write_mp4, write_png_frames

if TYPE_CHECKING:
    from videoforge.train.parallelize import ParallelDims

# Per-prompt settings: pipeline argument names, plus the CLI's short names as aliases.
JOB_FIELDS = ("prompt", "negative_prompt", "height", "width", "num_frames", "num_inference_steps",
              "guidance_scale", "cfg_scale", "flow_shift", "seed", "image", "resolution", "stability")
ALIASES = {"steps": "num_inference_steps", "frames": "num_frames", "guidance": "guidance_scale", "shift": "flow_shift"}


@dataclass
class Job:
    """One video to generate; `None` fields take the model folder's defaults."""

    prompt: str
    negative_prompt: str | None = None
    height: int | None = None
    width: int | None = None
    num_frames: int | None = None
    num_inference_steps: int | None = None
    guidance_scale: float | None = None
    cfg_scale: float | None = None
    flow_shift: float | None = None
    seed: int | None = None
    # image-to-video: the reference image, the bucket tier, the release's stability mode
    image: str | None = None
    resolution: str | int = "720p"
    stability: bool = False

    def merged(self, overrides: dict[str, Any]) -> "Job":
        """This job with per-prompt overrides (a prompts-file line) applied; unknown keys are an error."""
        values = asdict(self)
        for key, value in overrides.items():
            key = ALIASES.get(key, key)
            if key == "size":
                values["height"], values["width"] = parse_size(str(value))
            elif key in JOB_FIELDS:
                values[key] = value
            else:
                raise ValueError(f"unknown setting {key!r}; known: {', '.join(JOB_FIELDS + tuple(ALIASES) + ('size',))}")
        return Job(**values)


def read_prompts_file(path: str | Path, base: Job) -> list[Job]:
    """One prompt per line, or JSON objects (one per line) with "prompt" and per-prompt overrides.
    Blank lines and lines starting with '#' are skipped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prompts file {path} does not exist")
    jobs = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("{"):
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: not valid JSON: {e}") from e
            if not isinstance(entry.get("prompt"), str) or not entry["prompt"].strip():
                raise ValueError(f"{path}:{n}: a JSON line needs a non-empty \"prompt\" string")
            try:
                jobs.append(base.merged(entry))
            except ValueError as e:
                raise ValueError(f"{path}:{n}: {e}") from e
        else:
            jobs.append(base.merged({"prompt": line}))
    if not jobs:
        raise ValueError(f"prompts file {path} has no prompts")
    return jobs


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


def _slug(text: str, n: int = 40) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:n].strip("-") or "video"


def resolve(job: Job, d: GenerationDefaults) -> tuple[dict[str, Any], dict[str, Any]]:
    """The pipeline arguments for `job` with every default filled in and checked, and the record
    for the sidecar (the same plus the output size), so it holds the values actually used."""
    params = {
        "prompt": job.prompt,
        "negative_prompt": job.negative_prompt,
        "num_frames": _or(job.num_frames, d.num_frames),
        "num_inference_steps": _or(job.num_inference_steps, d.num_inference_steps),
        "guidance_scale": _or(job.guidance_scale, d.guidance_scale),
        "cfg_scale": _or(job.cfg_scale, d.cfg_scale),
        "flow_shift": _or(job.flow_shift, d.flow_shift),
        "seed": job.seed if job.seed is not None else random.SystemRandom().randrange(2**31),
    }
    if params["num_inference_steps"] < 1:
        raise ValueError(f"steps must be >= 1, got {params['num_inference_steps']}")
    if job.image is None:
        size = {"height": _or(job.height, d.height), "width": _or(job.width, d.width)}
        params.update(size)
        if params["cfg_scale"] > 1.0 and params["negative_prompt"] is None:
            params["negative_prompt"] = d.negative_prompt
    else:
        if job.height is not None or job.width is not None:
            raise ValueError("--size does not apply with --image: the video takes the resolution bucket closest to the image's aspect ratio")
        h, w = load_image(job.image).shape[:2]
        height, width = closest_bucket(h, w, resolution_buckets(resolution_base(job.resolution)))
        size = {"height": height, "width": width}
        shift = I2V_STABILITY_SHIFT if job.stability else I2V_SHIFT
        params.update(image=job.image, resolution=job.resolution, stability=job.stability,
                      flow_shift=_or(job.flow_shift, shift))
        if params["cfg_scale"] > 1.0 and params["negative_prompt"] is None:
            params["negative_prompt"] = I2V_NEGATIVE_PROMPT
    check_size(size["height"], size["width"], params["num_frames"])
    return params, {**params, **size}


def run_job(
    pipe: TextToVideoPipeline,
    params: dict[str, Any],
    record: dict[str, Any],
    out: Path,
    settings: dict[str, Any],
    png_frames: bool = False,
    gif: bool = False,
    progress: bool = True,
) -> Path:
    """Generate one video (resolved `params`) to `out` (.mp4) with its sidecar `out.with_suffix('.json')`."""
    d = pipe.defaults
    bar = tqdm(total=params["num_inference_steps"], desc="denoising", unit="step", disable=not progress)
    start = time.perf_counter()
    try:
        video = pipe(**params, callback=lambda _: bar.update(1), round_guidance_bf16=settings.get("round_guidance_bf16", False))
    finally:
        bar.close()
    elapsed = time.perf_counter() - start
    path = write_mp4(video.frames, out, fps=video.fps)
    if png_frames:
        write_png_frames(video.frames, out.with_suffix(""))
    if gif:
        write_gif(video.frames, out.with_suffix(".gif"), fps=video.fps)
    sidecar = {
        **record,
        "fps": video.fps,
        **settings,
        "model_files": d.file_hashes,
        "video": path.name,
        "seconds": round(elapsed, 3),
        "videoforge_version": _version(),
    }
    out.with_suffix(".json").write_text(json.dumps(sidecar, indent=2) + "\n")
    return path


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("videoforge")
    except PackageNotFoundError:
        return "unknown"


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
T = TypeVar("T")


def rewrite_jobs(resolved: list[tuple[dict[str, Any], dict[str, Any]]], options: dict[str, Any]) -> None:
    """Replace every job's prompt by its rewrite (`videoforge.rewrite.rewrite_prompts`, so through
    the (prompt, mode, model) cache) and record the rewriter's fields for the sidecar, in place."""
    from videoforge.rewrite import rewrite_prompts

    results = rewrite_prompts([params["prompt"] for params, _ in resolved], **options)
    for (params, record), result in zip(resolved, results):
        params["prompt"] = record["prompt"] = result.prompt
        record.update(result.sidecar_fields())


def on_rank0(world: int, rank: int, make: Callable[[], T]) -> T:
    """`make()` on rank 0 only and its result sent to every rank, so random seeds and LLM rewrites
    are the same everywhere. A failure on rank 0 is raised there and, as a ValueError, on the others."""
    if world == 1:
        return make()
    box: list[Any] = [None, None]
    error: Exception | None = None
    if rank == 0:
        try:
            box[0] = make()
        except Exception as e:  # noqa: BLE001 - any failure must reach the other ranks, or they wait forever
            error, box[1] = e, str(e)
    dist.broadcast_object_list(box, src=0)
    if error is not None:
        raise error
    if box[1] is not None:
        raise ValueError(f"rank 0: {box[1]}")
    return box[0]


def join_sequence_parallel(sp: int) -> ParallelDims:
    """Join the torchrun process group (NCCL on GPUs, gloo on CPU) with one sequence-parallel group
    over all processes: one video runs on all of them at once, so `sp` must equal WORLD_SIZE."""
    from videoforge.train.parallelize import setup_distributed

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if sp != world:
        raise ValueError(f"--sp {sp} with {world} process(es): generate shards one video over all processes, "
                         f"launch with torchrun --nproc_per_node {sp} -m videoforge generate ... --sp {sp}")
    return setup_distributed(sp)


def merge_lora_file(pipe: TextToVideoPipeline, path: str | Path, scale: float) -> dict[str, Any]:
    """Merge a LoRA file (PEFT/diffusers or kohya/musubi keys) into the pipeline's DiT; a key that
    fits no linear of the model is an error naming it. Returns the sidecar record of the LoRA."""
    from videoforge.models.checkpoints import sha256_file
    from videoforge.train.lora import merge_lora

    match = merge_lora(pipe.dit, path, scale)
    return {"lora": str(Path(path).resolve()), "lora_sha256": sha256_file(Path(path)), "lora_scale": scale,
            "lora_layers": len(match.pairs)}


def generate(
    model_dir: str | Path,
    jobs: list[Job],
    out: str | Path,
    many: bool,
    device: str | None = None,
    dtype: str | None = None,
    offload: str = "none",
    attention: str = "sdpa",
    vae_tiling: bool = True,
    png_frames: bool = False,
    gif: bool = False,
    round_guidance_bf16: bool = False,
    progress: bool = True,
    rewrite: dict[str, Any] | None = None,
    lora: str | Path | None = None,
    lora_scale: float = 1.0,
    sp: int = 1,
) -> list[Path]:
    """Load the model once and run every job. `many=True` treats `out` as a folder and writes
    numbered files (000_<prompt>.mp4 + .json, ...); else `out` is the mp4 path of the one job.

    `rewrite`: keyword arguments of `videoforge.rewrite.rewrite_prompts` (backend flags); each
    prompt is rewritten before generation. `lora`: a LoRA file merged into the DiT at `lora_scale`.
    `sp`: sequence-parallel degree, the number of torchrun processes (1: a plain run)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and device is not None:
        raise ValueError("under torchrun each process uses its own device (cuda:LOCAL_RANK, else cpu): leave out --device")
    dims = join_sequence_parallel(sp) if world > 1 or sp != 1 else None
    try:
        rank = dims.rank if dims is not None else 0
        device = str(dims.device) if dims is not None else device or default_device()
        dtype = dtype or ("bfloat16" if device.startswith("cuda") else "float32")
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        out = Path(out)
        if not many and out.suffix.lower() != ".mp4":
            raise ValueError(f"--out must be an .mp4 path for a single prompt, got {out}")
        if many and out.suffix:
            raise ValueError(f"with --prompts-file, --out is a folder for the numbered videos, got {out}")
        if lora is not None and not Path(lora).is_file():
            raise FileNotFoundError(f"LoRA file {lora} does not exist")
        image_jobs = sum(job.image is not None for job in jobs)
        if 0 < image_jobs < len(jobs):
            raise ValueError("mix of text-to-video and image-to-video prompts: one model serves one kind; give every prompt an image or none")
        # Check every job against the folder's defaults before loading anything; random seeds and
        # rewrites are decided once, on rank 0 (an unreachable endpoint fails before the load), and shared.
        defaults = GenerationDefaults.from_meta(read_meta(model_dir))
        resolved = on_rank0(world, rank, lambda: _resolve_all(jobs, defaults, rewrite))
        pipeline = ImageToVideoPipeline if image_jobs else TextToVideoPipeline
        if not progress or rank != 0:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        pipe = pipeline.from_pretrained(
            model_dir, dtype=DTYPES[dtype], device=device, offload=offload, attention=attention, vae_tiling=vae_tiling
        )
        settings = {
            "model_dir": str(Path(model_dir).resolve()),
            "device": device,
            "dtype": dtype,
            "offload": offload,
            "attention": attention,
            "vae_tiling": vae_tiling,
            "round_guidance_bf16": round_guidance_bf16,
        }
        if lora is not None:
            settings.update(merge_lora_file(pipe, lora, lora_scale))
        if dims is not None:
            from videoforge.train.parallelize import apply_sequence_parallel

            apply_sequence_parallel(pipe.dit, dims.sp_group)
            settings["sequence_parallel"] = sp
        paths = []
        for i, (params, record) in enumerate(resolved):
            name = record.get("prompt_original", params["prompt"])  # file names follow what the user typed
            target = out / f"{i:03d}_{_slug(name)}.mp4" if many else out
            if rank == 0:
                paths.append(run_job(pipe, params, record, target, settings, png_frames=png_frames, gif=gif, progress=progress))
            else:  # the other ranks only take part in the sampler's collectives; rank 0 decodes and writes
                pipe(**params, output_type="latent", round_guidance_bf16=round_guidance_bf16)
        return paths
    finally:
        if dims is not None and dims.owns_group:
            dist.destroy_process_group()


def _resolve_all(jobs: list[Job], defaults: GenerationDefaults, rewrite: dict[str, Any] | None) -> list:
    resolved = [resolve(job, defaults) for job in jobs]
    if rewrite is not None:
        rewrite_jobs(resolved, rewrite)
    return resolved
