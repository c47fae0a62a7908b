"""Caption backends: ask a vision-language model for the structured caption of a few frames.

A backend has `source` (what goes into `caption_source`) and
`ask(conversations, on_result) -> list[str | Exception]`, where a conversation is a list of
OpenAI-style chat messages whose first user message holds the prompt text and the frames. One
conversation format serves both backends, so the repair loop in `caption_run` is shared.

- `OpenAIBackend`: any OpenAI-compatible endpoint through the shared client
  (`videoforge.llm.openai_client`); frames go as base64 JPEG `image_url` parts.
- `LocalVLMBackend`: a local `transformers` LLaVA-style image-text model; the frames are tiled
  into one grid image, so single-image models caption clips too.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import cv2
import numpy as np

from videoforge.llm.openai_client import OpenAICompatibleClient, image_part, text_part

Conversation = list[dict[str, Any]]
OnResult = Callable[[int, "str | Exception"], None]


class CaptionBackendError(RuntimeError):
    """A backend that cannot be set up (missing model, unsupported processor); one-line message."""


def jpeg_bytes(frame: np.ndarray, quality: int = 90) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"could not JPEG-encode a frame of shape {frame.shape}")
    return buf.tobytes()


def frames_message(prompt: str, frames: Sequence[np.ndarray]) -> dict[str, Any]:
    """The user message: the prompt, then each frame as an image part."""
    return {"role": "user", "content": [text_part(prompt)] + [image_part(jpeg_bytes(f)) for f in frames]}


def frame_grid(frames: Sequence[np.ndarray]) -> np.ndarray:
    """Tile frames (same size) row-major into a near-square grid, black where a cell is empty."""
    n = len(frames)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    h, w = frames[0].shape[:2]
    grid = np.zeros((rows * h, cols * w, 3), np.uint8)
    for i, f in enumerate(frames):
        r, c = divmod(i, cols)
        grid[r * h : (r + 1) * h, c * w : (c + 1) * w] = f
    return grid


@dataclass
class OpenAIBackend:
    """Captions from an OpenAI-compatible chat endpoint (vLLM, SGLang, hosted)."""

    client: OpenAICompatibleClient
    temperature: float = 0.2
    max_tokens: int = 512

    @property
    def source(self) -> dict[str, str]:
        return {"backend": "openai", "model": self.client.model}

    def ask(self, conversations: Sequence[Conversation], on_result: OnResult | None = None) -> list[str | Exception]:
        return self.client.chat_many(conversations, on_result=on_result,
                                     temperature=self.temperature, max_tokens=self.max_tokens)


def _images_and_text(conversation: Conversation) -> tuple[list[np.ndarray], list[dict[str, Any]]]:
    """Decode the image parts back to frames and turn the conversation into text-only turns with
    one `{"type": "image"}` placeholder for the grid, as HF chat templates expect."""
    frames: list[np.ndarray] = []
    turns = []
    for message in conversation:
        content = message["content"]
        if isinstance(content, str):
            turns.append({"role": message["role"], "content": [{"type": "text", "text": content}]})
            continue
        parts = []
        for part in content:
            if part["type"] == "image_url":
                data = base64.b64decode(part["image_url"]["url"].split(",", 1)[1])
                frames.append(cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))
            else:
                parts.append({"type": "text", "text": part["text"]})
        turns.append({"role": message["role"], "content": parts})
    if frames:
        first_user = next(t for t in turns if t["role"] == "user")
        first_user["content"].insert(0, {"type": "image"})
    return frames, turns


def _needs_torchvision(error: BaseException) -> bool:
    return "torchvision" in str(error).lower()


class LocalVLMBackend:
    """A local transformers image-text-to-text model (LLaVA-style), greedy decoding.

    `model` is a folder (or a hub id already in the local cache; nothing is downloaded when
    HF_HUB_OFFLINE=1). Processors that only exist as torchvision-backed "fast" classes are
    refused with a clear error, because torchvision cannot be installed beside this torch.
    """

    def __init__(self, model: str, max_new_tokens: int = 384, device: str | None = None) -> None:
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.model_name = model
        self.max_new_tokens = max_new_tokens
        try:
            # the PIL image processors work without torchvision
            self.processor = AutoProcessor.from_pretrained(model, backend="pil")
        except (ImportError, ValueError, TypeError, AttributeError) as e:
            if _needs_torchvision(e):
                raise CaptionBackendError(
                    f"the processor of {model} needs torchvision, which is not installed (it breaks beside this "
                    "torch); use a model with a PIL image processor or --backend openai") from None
            raise CaptionBackendError(f"cannot load the processor of {model}: {type(e).__name__}: {e}") from None
        except OSError as e:
            raise CaptionBackendError(f"cannot load {model}: {' '.join(str(e).split())[:300]}") from None
        if getattr(self.processor, "image_processor", None) is None:
            raise CaptionBackendError(f"{model} has no image processor; it is not a vision-language model")
        try:
            self.model = AutoModelForImageTextToText.from_pretrained(model, dtype=torch.float32)
        except (OSError, ValueError) as e:
            raise CaptionBackendError(f"cannot load the model {model}: {' '.join(str(e).split())[:300]}") from None
        self.model.eval()
        if device:
            self.model.to(device)
        self._torch = torch

    @property
    def source(self) -> dict[str, str]:
        return {"backend": "local", "model": self.model_name}

    def _prompt(self, turns: list[dict[str, Any]]) -> str:
        if getattr(self.processor, "chat_template", None):
            return self.processor.apply_chat_template(turns, add_generation_prompt=True)
        # LLaVA-1.5 format for processors without a chat template.
        lines = []
        for t in turns:
            text = "".join("<image>\n" if p["type"] == "image" else p["text"] for p in t["content"])
            lines.append(f"{'USER' if t['role'] == 'user' else 'ASSISTANT'}: {text}")
        return " ".join(lines) + " ASSISTANT:"

    def caption_one(self, conversation: Conversation) -> str:
        frames, turns = _images_and_text(conversation)
        images = [frame_grid(frames)] if frames else None
        inputs = self.processor(text=self._prompt(turns), images=images, return_tensors="pt")
        inputs = inputs.to(self.model.device)
        with self._torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        new_tokens = out[0, inputs["input_ids"].shape[1] :]
        return self.processor.decode(new_tokens, skip_special_tokens=True)

    def ask(self, conversations: Sequence[Conversation], on_result: OnResult | None = None) -> list[str | Exception]:
        results: list[str | Exception] = []
        for i, conversation in enumerate(conversations):
            try:
                result: str | Exception = self.caption_one(conversation)
            except (RuntimeError, ValueError) as e:  # one bad clip must not stop the batch
                result = e
            results.append(result)
            if on_result is not None:
                on_result(i, result)
        return results


def make_backend(backend: str, model: str, base_url: str | None = None, api_key_env: str | None = None,
                 timeout: float = 120.0, concurrency: int = 4, max_retries: int = 3) -> OpenAIBackend | LocalVLMBackend:
    """The backend the `caption` command asks for."""
    if backend == "openai":
        if not base_url:
            raise CaptionBackendError("--backend openai needs --base-url (e.g. http://127.0.0.1:8000/v1)")
        return OpenAIBackend(OpenAICompatibleClient(base_url, model, api_key_env=api_key_env, timeout=timeout,
                                                    concurrency=concurrency, max_retries=max_retries))
    if backend == "local":
        return LocalVLMBackend(model)
    raise CaptionBackendError(f"unknown backend {backend!r}; expected 'local' or 'openai'")
