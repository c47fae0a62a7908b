"""Prompt rewriting: a user's prompt, in any language, into the detailed English form the video
model was trained on, checked for faithfulness. Templates are constants; the LLM is a callable."""

from videoforge.rewrite.backends import LocalChatLLM, LocalModelError, OpenAIChatLLM, make_llm
from videoforge.rewrite.cache import RewriteCache
from videoforge.rewrite.rewriter import MODES, PromptRewriter, RewriteResult, rewrite_prompt, rewrite_prompts

__all__ = [
    "MODES",
    "LocalChatLLM",
    "LocalModelError",
    "OpenAIChatLLM",
    "PromptRewriter",
    "RewriteCache",
    "RewriteResult",
    "make_llm",
    "rewrite_prompt",
    "rewrite_prompts",
]
