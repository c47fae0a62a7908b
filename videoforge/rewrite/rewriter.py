"""The prompt rewriter: translate if needed, rewrite, check, revise once, else keep the original.

    llm = make_llm("openai", "qwen", base_url="http://localhost:8000/v1")
    result = PromptRewriter(llm, mode="master").rewrite("一只猫在屋顶上睡觉")
    result.prompt          # what to generate from: the rewrite, or the original when it failed checks

`rewrite_prompts` / `rewrite_prompt` add a cache keyed by (prompt, mode, model) and are what the
`rewrite` and `generate --rewrite` commands call.
"""

from __future__ import annotations

import re
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

from videoforge.rewrite.backends import ChatLLM, OpenAIChatLLM, make_llm, model_id
from videoforge.rewrite.cache import RewriteCache
from videoforge.rewrite.fidelity import STOPWORDS, Embedder, FidelityReport, check_fidelity, minilm_embedder, words
from videoforge.rewrite.templates import (
    REVISION_REQUEST,
    SYSTEM_PROMPTS,
    TEMPLATE_VERSION,
    TRANSLATE_SYSTEM,
)

Mode = Literal["normal", "master"]
MODES: tuple[str, ...] = tuple(SYSTEM_PROMPTS)


@dataclass
class RewriteResult:
    prompt: str  # the prompt to use: the accepted rewrite, or the original
    original: str
    english: str  # the original, or its literal English translation
    rewritten: str | None  # the LLM's last rewrite, also when it was rejected
    kept_original: bool
    reason: str  # why the original was kept ("" when the rewrite was accepted)
    mode: str
    model: str
    attempts: int  # rewrite requests made (1, or 2 after a revision)
    similarity: float | None

    def sidecar_fields(self) -> dict[str, Any]:
        """What `generate --rewrite` records in the sidecar JSON."""
        return {
            "prompt_original": self.original,
            "prompt_rewritten": self.prompt,
            "rewrite_model": self.model,
            "rewrite_mode": self.mode,
            "rewrite_kept_original": self.kept_original,
            "rewrite_note": self.reason,
        }


def is_english(text: str) -> bool:
    """Heuristic: mostly ASCII letters and, from three words on, at least one English function word."""
    letters = [c for c in text if c.isalpha()]
    if letters and sum(c.isascii() for c in letters) / len(letters) < 0.9:
        return False
    tokens = words(text)
    return len(tokens) < 3 or any(t in STOPWORDS for t in tokens)


def clean_reply(text: str) -> str:
    """The prompt in an LLM reply: no reasoning block, label, quotes or line breaks."""
    text = re.sub(r"<think>.*?</think>", "", text, flags=re.S)
    text = re.sub(r"^\s*(rewritten prompt|prompt|rewrite|translation)\s*:\s*", "", text, flags=re.I)
    text = " ".join(text.split())
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'\u201c":
        text = text[1:-1].strip()
    return text.strip("\u201c\u201d").strip()


class PromptRewriter:
    """Rewrites prompts with `llm` in `mode`; keeps the original when the rewrite changes its meaning.

    `embedder`: the sentence-embedding slot of the similarity check ("minilm" = the packaged
    MiniLM encoder; None = explicit checks only). `threshold`: minimum cosine similarity.
    """

    def __init__(
        self,
        llm: ChatLLM,
        mode: Mode = "normal",
        embedder: Embedder | Literal["minilm"] | None = "minilm",
        threshold: float = 0.5,
    ) -> None:
        if mode not in SYSTEM_PROMPTS:
            raise ValueError(f"unknown rewrite mode {mode!r}; use one of {', '.join(MODES)}")
        self.llm, self.mode, self.threshold = llm, mode, threshold
        self._embedder = embedder

    @property
    def embedder(self) -> Embedder | None:
        if self._embedder == "minilm":
            self._embedder = minilm_embedder()
        return self._embedder

    def translate(self, prompt: str) -> str:
        reply = self.llm([{"role": "system", "content": TRANSLATE_SYSTEM}, {"role": "user", "content": prompt}])
        return clean_reply(reply)

    def rewrite(self, prompt: str) -> RewriteResult:
        original = " ".join(prompt.split())
        if not original:
            raise ValueError("the prompt is empty")
        english = original if is_english(original) else self.translate(original)
        if not english:
            return self._keep(original, english, None, 0, "the LLM's English translation is empty", None)
        messages = [{"role": "system", "content": SYSTEM_PROMPTS[self.mode]}, {"role": "user", "content": english}]
        rewritten, report = self._attempt(messages, english)
        attempts = 1
        if not report.ok:
            # One revision, with the mismatch spelled out.
            messages += [
                {"role": "assistant", "content": rewritten},
                {"role": "user", "content": REVISION_REQUEST.format(problems=report.describe(), original=english)},
            ]
            rewritten, report = self._attempt(messages, english)
            attempts = 2
        if not report.ok:
            reason = f"the rewrite changed the prompt's meaning: {report.describe()}"
            return self._keep(original, english, rewritten, attempts, reason, report.similarity)
        return RewriteResult(
            prompt=rewritten, original=original, english=english, rewritten=rewritten, kept_original=False,
            reason="", mode=self.mode, model=self.llm.name, attempts=attempts, similarity=report.similarity,
        )

    def _keep(self, original: str, english: str, rewritten: str | None, attempts: int, reason: str,
              similarity: float | None) -> RewriteResult:
        print(f"videoforge rewrite: warning: kept the original prompt, {reason}", file=sys.stderr)
        return RewriteResult(
            prompt=original, original=original, english=english, rewritten=rewritten, kept_original=True,
            reason=reason, mode=self.mode, model=self.llm.name, attempts=attempts, similarity=similarity,
        )

    def _attempt(self, messages: list[dict[str, Any]], english: str) -> tuple[str, FidelityReport]:
        rewritten = clean_reply(self.llm(messages))
        if not rewritten:
            return rewritten, FidelityReport(None, self.threshold, ["the rewrite is empty"])
        return rewritten, check_fidelity(english, rewritten, self.embedder, self.threshold)


def rewrite_prompts(
    prompts: Sequence[str],
    mode: Mode = "normal",
    *,
    backend: str | None = None,
    model: str | None = None,
    base_url: str | None = None,
    api_key_env: str | None = None,
    lora: str | Path | None = None,
    timeout: float = 60.0,
    llm: ChatLLM | None = None,
    embedder: Embedder | Literal["minilm"] | None = "minilm",
    threshold: float = 0.5,
    cache: RewriteCache | None | Literal["default"] = "default",
) -> list[RewriteResult]:
    """Rewrite many prompts with one backend, using and filling the rewrite cache.

    Pass the backend flags (as the CLI does) or a ready `llm`. Raises `LLMClientError` for a
    failing endpoint, `LocalModelError` for a model that cannot load, `ValueError` for bad flags.
    """
    if llm is None and not model:
        raise ValueError("--model is required: a local chat-model folder, or the model name the endpoint serves")
    if cache == "default":
        cache = RewriteCache.default()
    key_model = llm.name if llm is not None else model_id(model, lora)
    version = f"{TEMPLATE_VERSION};threshold={threshold}"  # a new template or threshold may decide otherwise
    results: list[RewriteResult | None] = [None] * len(prompts)
    for i, p in enumerate(prompts):
        hit = cache.get(p, mode, key_model, version) if cache else None
        results[i] = _from_cache(hit)
    todo = [i for i, r in enumerate(results) if r is None]
    if not todo:
        return results  # type: ignore[return-value]
    llm = llm or make_llm(backend, model, base_url, api_key_env, lora, timeout=timeout)
    rewriter = PromptRewriter(llm, mode, embedder=embedder, threshold=threshold)

    def run(i: int) -> None:
        results[i] = rewriter.rewrite(prompts[i])
        if cache:  # as each finishes, so a failure later in the batch keeps the earlier ones
            cache.put(prompts[i], mode, key_model, version, vars(results[i]))

    if len(todo) > 1 and isinstance(llm, OpenAIChatLLM):
        rewriter.embedder  # load it once, before the threads want it
        with ThreadPoolExecutor(max_workers=llm.client.concurrency) as pool:
            list(pool.map(run, todo))
    else:
        for i in todo:
            run(i)
    return results  # type: ignore[return-value]


def _from_cache(entry: dict[str, Any] | None) -> RewriteResult | None:
    try:
        return RewriteResult(**entry) if entry is not None else None
    except TypeError:  # written by a version with other fields: rewrite again
        return None


def rewrite_prompt(prompt: str, mode: Mode = "normal", **kwargs: Any) -> RewriteResult:
    """Rewrite one prompt; see `rewrite_prompts` for the arguments. `.prompt` is what to use,
    `.sidecar_fields()` what to record."""
    return rewrite_prompts([prompt], mode, **kwargs)[0]
