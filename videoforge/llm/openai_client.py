"""One client for OpenAI-compatible chat endpoints (vLLM, SGLang, llama.cpp, hosted APIs).

Captioning and prompt rewriting both talk to LLMs through this module, so timeouts, retries,
concurrency and API-key handling live in exactly one place.

- `base_url` includes the version path: requests go to `{base_url}/chat/completions`.
- The API key is read from the environment variable *named* by `api_key_env` at request time.
  It is never stored on the client, never put in an error message, a log line or a repr.
  Without a set variable no `Authorization` header is sent (local servers need none).
- Timeouts, connection errors, HTTP 429 and 5xx are retried with exponential backoff; the time
  one call can take is bounded (`max_total_time`). Other 4xx and malformed bodies fail at once:
  retrying them would only repeat the same answer.
- Every failure is an `LLMClientError` subclass whose message is one line.

Standard library only (urllib), so it works wherever Python does.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import os
import socket
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any, Callable, Sequence

log = logging.getLogger(__name__)

Message = dict[str, Any]


class LLMClientError(Exception):
    """Base of every error this client raises; `str(e)` is one line."""

    retryable = False

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))  # one line, whatever went in


class LLMUnreachableError(LLMClientError):
    """The endpoint could not be connected to (refused, DNS, reset before a reply)."""

    retryable = True


class LLMTimeoutError(LLMClientError):
    """No complete reply within the timeout."""

    retryable = True


class LLMHTTPError(LLMClientError):
    """The endpoint answered with a non-2xx status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = status == 429 or status >= 500


class LLMResponseError(LLMClientError):
    """The endpoint answered 2xx but the body is not a chat completion we can read."""


def text_part(text: str) -> dict[str, Any]:
    """A text content part for a multi-part user message."""
    return {"type": "text", "text": text}


def image_part(image: bytes, mime: str = "image/jpeg") -> dict[str, Any]:
    """An image content part: encoded image bytes (JPEG/PNG) sent inline as a base64 data URL."""
    data = base64.b64encode(image).decode("ascii")
    return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{data}"}}


class OpenAICompatibleClient:
    """Chat completions against `{base_url}/chat/completions`.

    Args:
        base_url: endpoint root including the version path, e.g. `http://localhost:8000/v1`.
        model: the `model` field sent with every request.
        api_key_env: name of the environment variable holding the API key (not the key itself).
        timeout: seconds one attempt may take (connect + full reply).
        max_retries: extra attempts after the first, for retryable failures only.
        concurrency: requests in flight at once in `chat_many`.
        backoff: seconds before the first retry; doubles each retry, capped at `backoff_max`.
        max_total_time: hard bound on one `chat` call including retries and waits
            (default: what `timeout`, `max_retries` and the backoff schedule allow).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 3,
        concurrency: int = 4,
        backoff: float = 1.0,
        backoff_max: float = 16.0,
        max_total_time: float | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        if concurrency < 1 or max_retries < 0 or timeout <= 0:
            raise ValueError("need concurrency >= 1, max_retries >= 0 and timeout > 0")
        self.base_url = base_url.rstrip("/")
        self.url = f"{self.base_url}/chat/completions"
        self.model = model
        self.api_key_env = api_key_env
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.concurrency = int(concurrency)
        self.backoff = float(backoff)
        self.backoff_max = float(backoff_max)
        waits = sum(self._backoff_delay(i) for i in range(self.max_retries))
        self.max_total_time = (
            float(max_total_time) if max_total_time is not None
            else self.timeout * (self.max_retries + 1) + waits
        )
        if api_key_env and not os.environ.get(api_key_env):
            log.warning("environment variable %s is not set; sending no Authorization header", api_key_env)

    def __repr__(self) -> str:
        return f"OpenAICompatibleClient(base_url={self.base_url!r}, model={self.model!r}, api_key_env={self.api_key_env!r})"

    # ---- public API ----

    def chat(self, messages: Sequence[Message], **params: Any) -> str:
        """Send one conversation; return the assistant reply's text content.

        `params` go into the request body as-is (temperature, max_tokens, response_format, ...).
        """
        body = json.dumps({"model": self.model, "messages": list(messages), **params}).encode()
        start = time.monotonic()
        attempt = 0
        while True:
            remaining = self.max_total_time - (time.monotonic() - start)
            try:
                return _reply_content(self._post(body, min(self.timeout, max(remaining, 0.01))), self.url)
            except LLMClientError as e:
                delay = self._backoff_delay(attempt)
                out_of_time = time.monotonic() - start + delay >= self.max_total_time
                if not e.retryable or attempt >= self.max_retries or out_of_time:
                    if attempt:
                        raise type(e)(f"{e} (after {attempt + 1} attempts)", *_extra_args(e)) from None
                    raise
                log.info("retrying %s in %.1f s: %s", self.url, delay, e)
                time.sleep(delay)
                attempt += 1

    def chat_many(
        self,
        conversations: Sequence[Sequence[Message]],
        on_result: Callable[[int, str | Exception], None] | None = None,
        **params: Any,
    ) -> list[str | Exception]:
        """Send many conversations, at most `concurrency` at a time.

        Returns one entry per conversation, in input order: the reply text, or the
        `LLMClientError` that request ended with (one failure does not stop the others).
        `on_result(index, result)` is called in the caller's thread as each one finishes,
        so a caller can persist finished work before the batch ends.
        """
        results: list[str | Exception] = [LLMClientError("not run")] * len(conversations)
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="llm") as pool:
            futures = {pool.submit(self.chat, msgs, **params): i for i, msgs in enumerate(conversations)}
            for fut in as_completed(futures):
                i = futures[fut]
                try:
                    results[i] = fut.result()
                except LLMClientError as e:
                    results[i] = e
                if on_result is not None:
                    on_result(i, results[i])
        return results

    # ---- one HTTP attempt ----

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _post(self, body: bytes, timeout: float) -> bytes:
        request = urllib.request.Request(self.url, data=body, headers=self._headers(), method="POST")
        deadline = time.monotonic() + timeout
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                # Read in chunks so a server that trickles bytes cannot hold us past the deadline.
                chunks = []
                while chunk := response.read(1 << 16):
                    chunks.append(chunk)
                    if time.monotonic() > deadline:
                        raise TimeoutError
                return b"".join(chunks)
        except urllib.error.HTTPError as e:
            detail = _snippet(_read_quietly(e))
            raise LLMHTTPError(f"HTTP {e.code} from {self.url}" + (f": {detail}" if detail else ""), e.code) from None
        except urllib.error.URLError as e:
            if isinstance(e.reason, (TimeoutError, socket.timeout)):
                raise LLMTimeoutError(f"{self.url} did not answer within {timeout:.1f} s") from None
            raise LLMUnreachableError(f"cannot reach {self.url}: {_reason(e.reason)}") from None
        except (TimeoutError, socket.timeout):
            raise LLMTimeoutError(f"{self.url} did not answer within {timeout:.1f} s") from None
        except (ConnectionError, OSError) as e:  # reset / closed mid-reply, RemoteDisconnected
            raise LLMUnreachableError(f"connection to {self.url} failed: {_reason(e)}") from None
        except http.client.HTTPException as e:  # garbled status line, headers or truncated body
            raise LLMResponseError(f"malformed HTTP response from {self.url}: {type(e).__name__} {e}") from None

    def _backoff_delay(self, attempt: int) -> float:
        return min(self.backoff * (2**attempt), self.backoff_max)


def _reply_content(raw: bytes, url: str) -> str:
    """The first choice's message content from a chat-completions body."""
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise LLMResponseError(f"malformed response from {url}: body is not JSON: {_snippet(raw)!r}") from None
    try:
        content = body["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise LLMResponseError(
            f"malformed response from {url}: no choices[0].message.content in {_snippet(raw)!r}"
        ) from None
    if isinstance(content, list):  # some servers return content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if not isinstance(content, str):
        raise LLMResponseError(f"malformed response from {url}: message content is {type(content).__name__}")
    return content


def _extra_args(e: LLMClientError) -> tuple:
    return (e.status,) if isinstance(e, LLMHTTPError) else ()


def _read_quietly(e: urllib.error.HTTPError) -> bytes:
    try:
        return e.read()
    except Exception:  # the error body is a courtesy; the status already says what happened
        return b""


def _snippet(raw: bytes, limit: int = 160) -> str:
    text = raw.decode("utf-8", errors="replace")
    text = " ".join(text.split())
    return text[:limit] + ("..." if len(text) > limit else "")


def _reason(reason: object) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    return str(reason) or type(reason).__name__
