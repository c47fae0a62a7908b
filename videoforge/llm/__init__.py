"""LLM access shared by captioning and prompt rewriting."""

from videoforge.llm.openai_client import (
    LLMClientError,
    LLMHTTPError,
    LLMResponseError,
    LLMTimeoutError,
    LLMUnreachableError,
    OpenAICompatibleClient,
    image_part,
    text_part,
)

__all__ = [
    "LLMClientError",
    "LLMHTTPError",
    "LLMResponseError",
    "LLMTimeoutError",
    "LLMUnreachableError",
    "OpenAICompatibleClient",
    "image_part",
    "text_part",
]
