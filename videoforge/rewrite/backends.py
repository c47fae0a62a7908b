"""LLM backends for the rewriter. Each is a callable `messages -> reply text` with a `name`.

- `LocalChatLLM`: any `transformers` causal LM with a chat template, from a local folder (or the
  local Hugging Face cache; nothing is downloaded), optionally with a peft LoRA adapter folder
  such as `videoforge rewrite-tune` writes.
- `OpenAIChatLLM`: any OpenAI-compatible endpoint through the shared `videoforge.llm` client.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, Sequence

import torch

from videoforge.llm.openai_client import Message, OpenAICompatibleClient


class ChatLLM(Protocol):
    name: str  # identifies the model in sidecars and cache keys

    def __call__(self, messages: Sequence[Message]) -> str: ...


class LocalModelError(Exception):
    """A local model or adapter folder that cannot be loaded; one-line message."""


def load_causal_lm(model: str | Path, dtype: torch.dtype = torch.float32) -> tuple[Any, Any]:
    """(model, tokenizer) from a local folder or the local HF cache, never the network."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(model), local_files_only=True)
        lm = AutoModelForCausalLM.from_pretrained(str(model), local_files_only=True, dtype=dtype)
    except (OSError, ValueError) as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise LocalModelError(f"cannot load local model {model}: {first_line}") from None
    if tokenizer.chat_template is None:
        raise LocalModelError(f"the tokenizer of {model} has no chat template; use an instruction-tuned chat model")
    return lm, tokenizer


def render_chat(tokenizer: Any, messages: Sequence[Message], add_generation_prompt: bool) -> str:
    """The chat template applied as text. Templates that refuse a system turn (some chat models
    have none) get the instructions folded into the first user turn instead."""
    from jinja2.exceptions import TemplateError

    try:
        return tokenizer.apply_chat_template(list(messages), add_generation_prompt=add_generation_prompt, tokenize=False)
    except TemplateError:
        if not messages or messages[0]["role"] != "system" or len(messages) < 2:
            raise
        system, first, *rest = messages
        folded = {**first, "content": f"{system['content']}\n\n{first['content']}"}
        return tokenizer.apply_chat_template([folded, *rest], add_generation_prompt=add_generation_prompt, tokenize=False)


class LocalChatLLM:
    """Greedy generation from a local chat model (deterministic, so rewrites cache cleanly)."""

    def __init__(
        self,
        model: str | Path,
        lora: str | Path | None = None,
        max_new_tokens: int | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        lm, self.tokenizer = load_causal_lm(model, dtype)
        if lora is not None:
            lm = load_lora(lm, lora)
        self.model = lm.to(device).eval()
        # Unset: the model folder's own generation_config.max_new_tokens, else 256.
        self.max_new_tokens = max_new_tokens or getattr(self.model.generation_config, "max_new_tokens", None) or 256
        self.name = model_id(model, lora)

    @torch.no_grad()
    def __call__(self, messages: Sequence[Message]) -> str:
        prompt = render_chat(self.tokenizer, messages, add_generation_prompt=True)
        tokens = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(self.model.device)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        out = self.model.generate(
            **tokens, max_new_tokens=self.max_new_tokens, do_sample=False,
            eos_token_id=self.tokenizer.eos_token_id, pad_token_id=pad,
        )
        return self.tokenizer.decode(out[0, tokens["input_ids"].shape[1]:], skip_special_tokens=True)


def model_id(model: str | Path, lora: str | Path | None = None) -> str:
    """How a rewriter model is named in sidecars and cache keys (a LoRA adapter makes another model)."""
    return str(model) + (f"+lora:{Path(lora).resolve()}" if lora is not None else "")


def load_lora(model: Any, adapter_dir: str | Path) -> Any:
    """Wrap a causal LM with the peft LoRA adapter saved in `adapter_dir`."""
    from peft import PeftModel

    if not (Path(adapter_dir) / "adapter_config.json").is_file():
        raise LocalModelError(f"{adapter_dir} is not a LoRA adapter folder (no adapter_config.json)")
    return PeftModel.from_pretrained(model, str(adapter_dir))


class OpenAIChatLLM:
    def __init__(self, client: OpenAICompatibleClient, temperature: float = 0.0, max_tokens: int = 512) -> None:
        self.client = client
        self.params = {"temperature": temperature, "max_tokens": max_tokens}
        self.name = client.model

    def __call__(self, messages: Sequence[Message]) -> str:
        return self.client.chat(messages, **self.params)


def make_llm(
    backend: str | None,
    model: str | None,
    base_url: str | None = None,
    api_key_env: str | None = None,
    lora: str | Path | None = None,
    timeout: float = 60.0,
    max_retries: int = 2,
    concurrency: int = 4,
) -> ChatLLM:
    """The backend the command-line flags describe: `--base-url` implies `openai`."""
    backend = backend or ("openai" if base_url else "local")
    if not model:
        raise ValueError("--model is required: a local chat-model folder, or the model name the endpoint serves")
    if backend == "openai":
        if not base_url:
            raise ValueError("--backend openai needs --base-url (including the version path, e.g. http://host:8000/v1)")
        if lora is not None:
            raise ValueError("--lora applies to the local backend only")
        client = OpenAICompatibleClient(
            base_url, model, api_key_env=api_key_env, timeout=timeout, max_retries=max_retries, concurrency=concurrency
        )
        return OpenAIChatLLM(client)
    if backend == "local":
        if base_url:
            raise ValueError("--base-url is for --backend openai; drop it or --backend local")
        return LocalChatLLM(model, lora=lora)
    raise ValueError(f"unknown backend {backend!r}; use 'local' or 'openai'")

