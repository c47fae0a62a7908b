"""Image-to-video (HunyuanVideo-I2V, reference notes §8): the reference image becomes the first
latent frame, kept clean through sampling, and (for the release) also enters the MLLM.

    pipe = ImageToVideoPipeline.from_pretrained("ckpts", dtype=torch.bfloat16, device="cuda")
    video = pipe(image, "the cat turns its head", seed=42)

The output takes the size of the resolution bucket closest to the image's aspect ratio.
Conditioning follows the DiT's `i2v_condition_type`:
- "token_replace" (current release): latent frame 0 is the clean image latent before every model
  call and after every step; the model's velocity for it is discarded.
- "latent_concat" (first release): the model reads [noisy latents | image latent in frame 0 |
  frame-0 mask] on the channel axis; the first latent frame (4 decoded frames) is dropped at the end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from videoforge.diffusion.samplers import ModelFn, sample_euler
from videoforge.diffusion.schedules import flow_sigmas
from videoforge.models.text_encoders import HunyuanI2VTextEncoders, TextEmbeddings, TextEncoderSet
from videoforge.models.vae import latents_to_model
from videoforge.pipelines.sizes import check_size
from videoforge.pipelines.text_to_video import TextToVideoPipeline, VideoOutput, drop_common_padding, dit_model_fn
from videoforge.pipelines.video_io import to_uint8_frames

I2V_NEGATIVE_PROMPT = "deformation, a poor composition and deformed video, bad teeth, bad eyes, bad limbs"
RESOLUTION_BASES = {"720p": 960, "540p": 720, "360p": 480}
I2V_SHIFT, I2V_STABILITY_SHIFT = 17.0, 7.0  # the release's default, and its advice with stability mode


def resolution_buckets(base: int, step: int = 32, max_ratio: float = 4.0) -> list[tuple[int, int]]:
    """The release's (h, w) buckets: the staircase of maximal grids of `step`-px cells with at most
    (base/step)^2 cells and aspect ratio <= max_ratio, from tallest to widest."""
    cells = round((base / step) ** 2)
    buckets, rows, cols = [], cells, 1
    while rows > 0:
        if max(rows, cols) / min(rows, cols) <= max_ratio:
            buckets.append((rows * step, cols * step))
        if (cols + 1) * rows <= cells:
            cols += 1
        else:
            rows -= 1
    return buckets


def resolution_base(resolution: str | int) -> int:
    """"720p" | "540p" | "360p" (the release's tiers) or a base size in pixels (a multiple of 32)."""
    if isinstance(resolution, str) and resolution in RESOLUTION_BASES:
        return RESOLUTION_BASES[resolution]
    if isinstance(resolution, int) or (isinstance(resolution, str) and resolution.isdigit()):
        base = int(resolution)
        if base > 0 and base % 32 == 0:
            return base
    raise ValueError(
        f"resolution must be one of {', '.join(RESOLUTION_BASES)} or a base size in pixels that is a multiple of 32, got {resolution!r}"
    )


def closest_bucket(height: int, width: int, buckets: list[tuple[int, int]]) -> tuple[int, int]:
    """The bucket whose h/w is nearest the image's (the first one on ties, as the release's argmin)."""
    ratios = np.array([round(h / w, 5) for h, w in buckets])
    return buckets[int(np.abs(ratios - height / width).argmin())]


def load_image(image: Any) -> np.ndarray:
    """A path, a PIL image or an array -> uint8 RGB [H, W, 3]."""
    if isinstance(image, (str, Path)):
        import cv2

        arr = cv2.imread(str(image), cv2.IMREAD_COLOR)
        if arr is None:
            raise FileNotFoundError(f"cannot read an image from {image}")
        return np.ascontiguousarray(arr[..., ::-1])
    if hasattr(image, "convert"):  # PIL
        image = image.convert("RGB")
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image [H, W, 3], got {arr.dtype} {arr.shape}")
    return arr


def resize_center_crop(image: np.ndarray, height: int, width: int) -> torch.Tensor:
    """Scale to cover (height, width) (short side onto the bucket's), centre-crop -> [3, H, W] in [-1, 1]."""
    import cv2

    ih, iw = image.shape[:2]
    scale = max(height / ih, width / iw)
    rh, rw = max(height, round(ih * scale)), max(width, round(iw * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    resized = cv2.resize(image, (rw, rh), interpolation=interp) if (rh, rw) != (ih, iw) else image
    top, left = (rh - height) // 2, (rw - width) // 2
    crop = resized[top : top + height, left : left + width]
    return torch.from_numpy(np.array(crop)).permute(2, 0, 1).float() / 127.5 - 1.0


def latent_concat_model_fn(model_fn: ModelFn, cond: torch.Tensor) -> ModelFn:
    """The first I2V release's input: [x | cond | frame-0 mask] on channels, where `cond` holds the
    image latent in frame 0 and zeros after."""
    mask = torch.zeros_like(cond[:, :1])
    mask[:, :, 0] = 1

    def fn(x: torch.Tensor, sigma: torch.Tensor, **kw: Any) -> torch.Tensor:
        reps = x.shape[0] // cond.shape[0]  # CFG doubles the batch
        return model_fn(torch.cat([x, cond.repeat(reps, 1, 1, 1, 1), mask.repeat(reps, 1, 1, 1, 1)], 1), sigma, **kw)

    return fn


class ImageToVideoPipeline(TextToVideoPipeline):
    @staticmethod
    def load_text_encoders(model_dir: Path, dtype: torch.dtype, device: torch.device | str) -> TextEncoderSet:
        from videoforge.models.text_encoders import load_i2v_text_encoders

        return load_i2v_text_encoders(model_dir, dtype=dtype, device=device)

    def _encode(self, prompts: list[str], images: list[np.ndarray]) -> TextEmbeddings:
        if self.text_encoders is None:
            raise ValueError("this pipeline has no text encoders: pass prompt_embeds, prompt_attention_mask and pooled_prompt_embeds")
        with self._using(self.text_encoders):
            if isinstance(self.text_encoders, HunyuanI2VTextEncoders):
                return self.text_encoders.encode(prompts, images=images)
            return self.text_encoders.encode(prompts)  # a text-only encoder (the tiny model's)

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in [-1, 1] -> scaled clean latents [B, C, 1, H/8, W/8] (the posterior mean)."""
        vae_dtype = next(self.vae.parameters()).dtype
        with self._using(self.vae):
            z = self.vae.encode(pixels.unsqueeze(2).to(self.device, vae_dtype)).mode()
        return latents_to_model(z.float(), self.vae.config)

    @torch.no_grad()
    def __call__(  # type: ignore[override]
        self,
        image: Any,
        prompt: str | list[str] | None = None,
        negative_prompt: str | list[str] | None = None,
        resolution: str | int = "720p",
        num_frames: int | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        cfg_scale: float | None = None,
        flow_shift: float | None = None,
        stability: bool = False,
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
        """One video per prompt, all from `image` (or a list of images, one per prompt).

        `resolution`: "720p" | "540p" | "360p" or a bucket base in pixels. `stability` starts from
        0.999 noise + 0.001 image latent (the release's --i2v-stability). `flow_shift` defaults to
        17 (7 with stability). `output_type="latent"` returns the sampled latents (for
        latent_concat without the dropped first frame). Other arguments as `TextToVideoPipeline`.
        """
        d, cond_type = self.defaults, self.dit.config.i2v_condition_type
        if cond_type not in ("token_replace", "latent_concat"):
            raise ValueError("this DiT is not an image-to-video model (its config has no i2v_condition_type)")
        num_frames = d.num_frames if num_frames is None else num_frames
        steps = d.num_inference_steps if num_inference_steps is None else num_inference_steps
        guidance_scale = d.guidance_scale if guidance_scale is None else guidance_scale
        cfg_scale = d.cfg_scale if cfg_scale is None else cfg_scale
        flow_shift = (I2V_STABILITY_SHIFT if stability else I2V_SHIFT) if flow_shift is None else flow_shift
        if output_type not in ("video", "latent"):
            raise ValueError(f"output_type must be 'video' or 'latent', got {output_type!r}")
        if prompt is None and prompt_embeds is None:
            raise ValueError("give either prompt or prompt_embeds")
        single = isinstance(prompt, str)
        prompts = [prompt] if single else prompt
        batch = len(prompts) if prompts is not None else prompt_embeds.shape[0]
        images = [load_image(im) for im in image] if isinstance(image, (list, tuple)) else [load_image(image)] * batch
        if len(images) != batch:
            raise ValueError(f"got {len(images)} images for {batch} prompts")

        # 1. Image: bucket by aspect ratio, resize and crop, encode the first latent frame.
        height, width = closest_bucket(*images[0].shape[:2], resolution_buckets(resolution_base(resolution)))
        check_size(height, width, num_frames)
        pixels = torch.stack([resize_center_crop(im, height, width) for im in images])
        image_latents = self.encode_image(pixels)  # [B, C, 1, h, w]

        # 2. Text (the release's MLLM also reads the image; its negative branch a black image).
        dtype = next(self.dit.parameters()).dtype
        if prompt_embeds is not None:
            text = self._text(None, prompt_embeds, prompt_attention_mask, pooled_prompt_embeds, False, "prompt")
        else:
            text = self._encode(prompts, images)
        text = text.to(self.device, dtype)
        uncond = None
        if cfg_scale > 1.0:
            if negative_prompt_embeds is not None:
                uncond = self._text(None, negative_prompt_embeds, negative_prompt_attention_mask,
                                    negative_pooled_prompt_embeds, False, "negative_prompt")
            else:
                negative_prompt = I2V_NEGATIVE_PROMPT if negative_prompt is None else negative_prompt
                negatives = [negative_prompt] * batch if isinstance(negative_prompt, str) else negative_prompt
                uncond = self._encode(negatives, [np.zeros_like(im) for im in images])
            uncond = uncond.to(self.device, dtype)
        text, uncond = drop_common_padding(text, uncond)

        # 3. Noise and conditioning.
        shape = (batch, self.vae.config.latent_channels, *self.latent_shape(batch, height, width, num_frames)[2:])
        latents = self.initial_latents(shape, seed, latents)
        image_latents = image_latents.to(self.device)
        if stability:
            latents = 0.999 * latents + 0.001 * image_latents  # broadcast over frames
        model_fn, keep = dit_model_fn(self.dit), None
        if cond_type == "latent_concat":
            first = torch.zeros_like(latents)
            first[:, :, :1] = image_latents
            model_fn = latent_concat_model_fn(model_fn, first)
        else:
            frame0 = torch.zeros_like(latents, dtype=torch.bool)
            frame0[:, :, :1] = True
            keep = (frame0, image_latents.expand_as(latents))
        model_fn, cond = self.guided(model_fn, text, uncond, guidance_scale, cfg_scale, round_guidance_bf16)

        # 4. Sample and decode.
        with self._using(self.dit):
            latents = sample_euler(model_fn, latents, flow_sigmas(steps, flow_shift), extra_args=cond,
                                   callback=callback, keep=keep)
        if output_type == "latent":
            return latents[:, :, 1:] if cond_type == "latent_concat" else latents
        videos = self.decode(latents)
        if cond_type == "latent_concat":
            videos = videos[:, :, self.vae.config.time_compression_ratio :]
        outputs = [VideoOutput(to_uint8_frames(v), float(d.fps)) for v in videos]
        return outputs[0] if single else outputs
