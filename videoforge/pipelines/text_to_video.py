"""Text-to-video: encode the prompt -> seeded noise -> Euler sampling of the flow -> VAE decode.

    pipe = TextToVideoPipeline.from_pretrained("ckpts", dtype=torch.bfloat16, device="cuda")
    video = pipe("a cat walks on the grass", seed=42)      # VideoOutput(frames [T, H, W, 3], fps)

Every `None` argument takes the model folder's default (`videoforge.json`, else the release's:
720x1280, 129 frames, 50 steps, shift 7.0, embedded guidance 6.0).
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from videoforge.diffusion.guidance import classifier_free_guidance, embedded_guidance
from videoforge.diffusion.samplers import sample_euler
from videoforge.diffusion.schedules import flow_sigmas
from videoforge.models.vae import latents_from_model
from videoforge.models.text_encoders import TextEmbeddings, TextEncoderSet
from videoforge.pipelines.model_folder import GenerationDefaults, read_meta
from videoforge.pipelines.sizes import check_size
from videoforge.pipelines.video_io import to_uint8_frames

OFFLOAD_MODES = ("none", "model")


@dataclass
class VideoOutput:
    frames: np.ndarray  # uint8 [T, H, W, 3]
    fps: float


def dit_model_fn(dit: nn.Module) -> Callable[..., torch.Tensor]:
    """The DiT as a sampler model function: (x, sigma[B], text..., guidance) -> velocity.

    The model sees its own dtype and time 1000*sigma; the sampler keeps the state in float32."""
    dtype = next(dit.parameters()).dtype

    def velocity(
        x: torch.Tensor,
        sigma: torch.Tensor,
        text_states: torch.Tensor,
        text_mask: torch.Tensor,
        text_pooled: torch.Tensor,
        guidance: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return dit(x.to(dtype), sigma * 1000.0, text_states, text_mask, text_pooled, guidance)

    return velocity


def drop_common_padding(
    text: TextEmbeddings, uncond: TextEmbeddings | None
) -> tuple[TextEmbeddings, TextEmbeddings | None]:
    """Cut the text positions that are padding in every sample (both branches): padded tokens are
    masked out of every attention and of the refiner's pooling, so they cost time and change nothing."""
    keep = int(text.mask.sum(1).max())
    if uncond is not None:
        keep = max(keep, int(uncond.mask.sum(1).max()))

    def cut(e: TextEmbeddings) -> TextEmbeddings:
        if bool(e.mask[:, keep:].any()):  # left padding or holes: keep everything
            return e
        return TextEmbeddings(e.states[:, :keep], e.mask[:, :keep], e.pooled)

    return cut(text), (cut(uncond) if uncond is not None else None)


class TextToVideoPipeline:
    def __init__(
        self,
        dit: nn.Module,
        vae: nn.Module,
        text_encoders: TextEncoderSet | None = None,
        defaults: GenerationDefaults | None = None,
        device: torch.device | str | None = None,
        offload: str = "none",
        vae_tiling: bool = True,
    ):
        """`offload="model"`: components stay on the CPU and visit `device` only while they run
        (text encoders, then the DiT, then the VAE), for GPUs that cannot hold all of them.
        `vae_tiling`: decode in overlapping tiles, which only engages above the tile size
        (256 px, 64 frames), as the release does by default."""
        if offload not in OFFLOAD_MODES:
            raise ValueError(f"offload must be one of {', '.join(OFFLOAD_MODES)}, got {offload!r}")
        self.dit, self.vae, self.text_encoders = dit, vae, text_encoders
        self.defaults = defaults or GenerationDefaults()
        self.device = torch.device(device) if device is not None else next(dit.parameters()).device
        self.offload = offload
        if vae_tiling and hasattr(vae, "enable_tiling"):
            vae.enable_tiling()
        home = torch.device("cpu") if offload == "model" else self.device
        for module in (dit, vae, text_encoders):
            if module is not None:
                module.to(home)

    @classmethod
    def from_pretrained(
        cls,
        model_dir: str | Path,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        offload: str = "none",
        attention: str | None = None,
        with_text_encoders: bool = True,
        vae_tiling: bool = True,
    ) -> "TextToVideoPipeline":
        """Load a model folder (ours, diffusers' or the release's `ckpts/`) in `dtype`.

        `attention`: "sdpa" or "flash" (flash-attn, when installed) for every attention module."""
        from videoforge.models import load_dit, load_vae
        from videoforge.models.attention import set_attention_backend

        model_dir = Path(model_dir)
        if not model_dir.is_dir():
            raise FileNotFoundError(f"model folder {model_dir} does not exist")
        if attention is not None:
            set_attention_backend(attention)
        load_device = "cpu" if offload == "model" else device
        dit = load_dit(model_dir, device=load_device, dtype=dtype).eval()
        vae = load_vae(model_dir, device=load_device, dtype=dtype).eval()
        encoders = cls.load_text_encoders(model_dir, dtype=dtype, device=load_device) if with_text_encoders else None
        defaults = GenerationDefaults.from_meta(read_meta(model_dir))
        return cls(dit, vae, encoders, defaults, device=device, offload=offload, vae_tiling=vae_tiling)

    @staticmethod
    def load_text_encoders(model_dir: Path, dtype: torch.dtype, device: torch.device | str) -> TextEncoderSet:
        from videoforge.models.text_encoders import load_text_encoders

        return load_text_encoders(model_dir, dtype=dtype, device=device)

    @contextlib.contextmanager
    def _using(self, module: nn.Module) -> Iterator[None]:
        """Run `module` on the execution device; with model offload, send it back afterwards."""
        if self.offload != "model":
            yield
            return
        module.to(self.device)
        try:
            yield
        finally:
            module.to("cpu")
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

    def encode_prompt(self, prompts: list[str], single_frame: bool = False) -> TextEmbeddings:
        if self.text_encoders is None:
            raise ValueError("this pipeline has no text encoders: pass prompt_embeds, prompt_attention_mask and pooled_prompt_embeds")
        with self._using(self.text_encoders):
            return self.text_encoders.encode(prompts, single_frame=single_frame)

    def latent_shape(self, batch: int, height: int, width: int, num_frames: int) -> tuple[int, ...]:
        vc = self.vae.config
        t, s = vc.time_compression_ratio, vc.spatial_compression_ratio
        return (batch, self.dit.config.in_channels, (num_frames - 1) // t + 1, height // s, width // s)

    def _text(
        self,
        prompts: list[str] | None,
        embeds: torch.Tensor | None,
        mask: torch.Tensor | None,
        pooled: torch.Tensor | None,
        single_frame: bool,
        what: str,
    ) -> TextEmbeddings:
        if embeds is not None:
            if mask is None or pooled is None:
                raise ValueError(f"{what}_embeds needs {what}_attention_mask and pooled_{what}_embeds too")
            return TextEmbeddings(embeds, mask, pooled)
        if prompts is None:
            raise ValueError(f"give either {what} or {what}_embeds")
        return self.encode_prompt(prompts, single_frame=single_frame)

    def initial_latents(self, shape: tuple[int, ...], seed: int | None, latents: torch.Tensor | None) -> torch.Tensor:
        """float32 noise from a seeded CPU generator (so a seed means the same video on any device),
        or the given `latents` after a shape check."""
        if latents is None:
            seed = random.SystemRandom().randrange(2**31) if seed is None else seed
            latents = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed), dtype=torch.float32)
        elif tuple(latents.shape) != shape:
            raise ValueError(f"latents must have shape {shape}, got {tuple(latents.shape)}")
        return latents.to(self.device, torch.float32)

    def guided(
        self,
        model_fn: Callable[..., torch.Tensor],
        text: TextEmbeddings,
        uncond: TextEmbeddings | None,
        guidance_scale: float,
        cfg_scale: float,
        round_guidance_bf16: bool,
    ) -> tuple[Callable[..., torch.Tensor], dict[str, Any]]:
        """The sampler's model function and its keyword inputs: text, embedded guidance (for a
        guidance-distilled DiT) and, with an unconditional branch, true CFG around it all."""
        cond: dict[str, Any] = {"text_states": text.states, "text_mask": text.mask, "text_pooled": text.pooled}
        if self.dit.config.guidance_embed:
            batch = text.states.shape[0]
            cond["guidance"] = embedded_guidance(guidance_scale, batch, self.device, round_bf16=round_guidance_bf16)
        if uncond is not None:
            negative = {"text_states": uncond.states, "text_mask": uncond.mask, "text_pooled": uncond.pooled}
            if "guidance" in cond:
                negative["guidance"] = cond["guidance"]
            model_fn = classifier_free_guidance(model_fn, cfg_scale, negative)
        return model_fn, cond

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        negative_prompt: str | list[str] | None = None,
        height: int | None = None,
        width: int | None = None,
        num_frames: int | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        cfg_scale: float | None = None,
        flow_shift: float | None = None,
        seed: int | None = None,
        latents: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        prompt_attention_mask: torch.Tensor | None = None,
        pooled_prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        negative_prompt_attention_mask: torch.Tensor | None = None,
        negative_pooled_prompt_embeds: torch.Tensor | None = None,
        output_type: str = "video",
        callback: Callable[[dict[str, Any]], None] | None = None,
        round_guidance_bf16: bool = False,
    ) -> VideoOutput | list[VideoOutput] | torch.Tensor:
        """Generate one video per prompt (or per row of `prompt_embeds`).

        Returns a `VideoOutput` for a single string prompt, a list of them otherwise; with
        `output_type="latent"` the sampled latents [B, C, T, H/8, W/8] (float32) as the DiT sees
        them, before the division by the VAE's scaling factor and decoding.
        `seed` seeds a CPU generator that draws the float32 initial noise (same noise on any
        device); `latents` replaces that noise. `callback` gets a dict per step
        (i, x, sigma, sigma_next, velocity). `round_guidance_bf16` reproduces the release's
        bf16-rounded guidance input (6.0 -> 6016).
        """
        d = self.defaults
        height = d.height if height is None else height
        width = d.width if width is None else width
        num_frames = d.num_frames if num_frames is None else num_frames
        steps = d.num_inference_steps if num_inference_steps is None else num_inference_steps
        guidance_scale = d.guidance_scale if guidance_scale is None else guidance_scale
        cfg_scale = d.cfg_scale if cfg_scale is None else cfg_scale
        flow_shift = d.flow_shift if flow_shift is None else flow_shift
        if output_type not in ("video", "latent"):
            raise ValueError(f"output_type must be 'video' or 'latent', got {output_type!r}")
        check_size(height, width, num_frames)
        single = isinstance(prompt, str)
        prompts = [prompt] if single else prompt
        single_frame = num_frames == 1

        # 1. Text.
        text = self._text(prompts, prompt_embeds, prompt_attention_mask, pooled_prompt_embeds, single_frame, "prompt")
        batch = text.states.shape[0]
        dtype = next(self.dit.parameters()).dtype
        text = text.to(self.device, dtype)
        uncond = None
        if cfg_scale > 1.0:
            if negative_prompt_embeds is None and negative_prompt is None:
                negative_prompt = d.negative_prompt
            negatives = [negative_prompt] * batch if isinstance(negative_prompt, str) else negative_prompt
            if negatives is not None and len(negatives) != batch:
                raise ValueError(f"got {len(negatives)} negative prompts for {batch} prompts")
            uncond = self._text(
                negatives, negative_prompt_embeds, negative_prompt_attention_mask, negative_pooled_prompt_embeds,
                single_frame, "negative_prompt",
            ).to(self.device, dtype)

        text, uncond = drop_common_padding(text, uncond)

        # 2. Initial noise, then sample.
        latents = self.initial_latents(self.latent_shape(batch, height, width, num_frames), seed, latents)
        model_fn, cond = self.guided(dit_model_fn(self.dit), text, uncond, guidance_scale, cfg_scale, round_guidance_bf16)
        with self._using(self.dit):
            latents = sample_euler(model_fn, latents, flow_sigmas(steps, flow_shift), extra_args=cond, callback=callback)
        if output_type == "latent":
            return latents

        # 3. Decode.
        videos = self.decode(latents)
        fps = float(d.fps)
        outputs = [VideoOutput(to_uint8_frames(v), fps) for v in videos]
        return outputs[0] if single else outputs

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Unscaled final latents -> video [B, 3, F, H, W] in about [-1, 1] (float32, on the CPU)."""
        vae_dtype = next(self.vae.parameters()).dtype
        with self._using(self.vae):
            z = latents_from_model(latents, self.vae.config).to(self.device, vae_dtype)
            return self.vae.decode(z).float().cpu()
