"""PromptRewriter through the OpenAI backend against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import time

import pytest

from videoforge.llm import LLMResponseError, LLMTimeoutError, OpenAICompatibleClient
from videoforge.llm.testing import ChatRequest, Raw, ScriptedChatServer
from videoforge.rewrite import OpenAIChatLLM, RewriteCache, rewrite_prompt
from videoforge.rewrite.templates import MASTER_SYSTEM, NORMAL_SYSTEM, TRANSLATE_SYSTEM

FOX = "a red fox runs through a snowy forest"
FOX_REWRITE = ("A red fox with a thick bushy tail runs through a snowy pine forest in the early morning. "
               "Soft winter light, wide shot, calm atmosphere; the camera pans slowly to follow the fox.")
NO_FOX = ("Snow falls softly over a quiet pine forest in the early morning. Soft winter light, wide shot, "
          "calm atmosphere; the camera pans slowly across the trees.")


def scripted(*rewrites: str, translation: str | None = None):
    """A reply function: the translation for translate requests, then the rewrites in order."""
    queue = list(rewrites)

    def reply(request: ChatRequest) -> str:
        system = request.messages[0]["content"]
        if system == TRANSLATE_SYSTEM:
            assert translation is not None, "unexpected translation request"
            return translation
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return reply


def _rewrite(server: ScriptedChatServer, prompt: str, **kw):
    kw = {"model": "scripted-llm", "base_url": server.base_url, "timeout": 2.0, **kw}
    return rewrite_prompt(prompt, **kw)


def test_faithful_rewrite_is_accepted_with_sidecar_fields():
    with ScriptedChatServer(scripted(FOX_REWRITE)) as server:
        result = _rewrite(server, FOX)
    assert result.prompt == FOX_REWRITE and not result.kept_original and result.attempts == 1
    assert result.similarity > 0.7
    (req,) = server.requests
    assert req.body["model"] == "scripted-llm"
    assert req.messages == [{"role": "system", "content": NORMAL_SYSTEM}, {"role": "user", "content": FOX}]
    assert result.sidecar_fields() == {
        "prompt_original": FOX, "prompt_rewritten": FOX_REWRITE, "rewrite_model": "scripted-llm",
        "rewrite_mode": "normal", "rewrite_kept_original": False, "rewrite_note": "",
    }


def test_master_mode_uses_the_master_instructions():
    with ScriptedChatServer(scripted(FOX_REWRITE)) as server:
        result = _rewrite(server, FOX, mode="master")
    assert result.mode == "master"
    assert server.requests[0].messages[0]["content"] == MASTER_SYSTEM


def test_dropped_subject_is_caught_revised_once_then_original_kept(capsys):
    with ScriptedChatServer(scripted(NO_FOX)) as server:
        result = _rewrite(server, FOX)
    assert result.kept_original and result.prompt == FOX and result.attempts == 2
    assert result.rewritten == NO_FOX
    assert "the noun 'fox' is missing" in result.reason and "the colour 'red' is missing" in result.reason
    # The second request carries the first rewrite and names the mismatch.
    revision = server.requests[1].messages
    assert revision[2] == {"role": "assistant", "content": NO_FOX}
    assert "the noun 'fox' is missing" in revision[3]["content"] and FOX in revision[3]["content"]
    err = capsys.readouterr().err
    assert "warning: kept the original prompt" in err and "fox" in err


def test_revision_that_fixes_the_rewrite_is_accepted():
    with ScriptedChatServer(scripted(NO_FOX, FOX_REWRITE)) as server:
        result = _rewrite(server, FOX)
    assert not result.kept_original and result.prompt == FOX_REWRITE and result.attempts == 2


def test_chinese_prompt_is_translated_then_rewritten_and_checked():
    zh = "一只红色的狐狸在雪林中奔跑"
    with ScriptedChatServer(scripted(FOX_REWRITE, translation=FOX)) as server:
        result = _rewrite(server, zh)
    assert [r.messages[0]["content"] for r in server.requests] == [TRANSLATE_SYSTEM, NORMAL_SYSTEM]
    assert server.requests[0].messages[1]["content"] == zh
    assert server.requests[1].messages[1]["content"] == FOX  # the rewrite works from the translation
    assert result.english == FOX and result.original == zh and result.prompt == FOX_REWRITE


def test_chinese_prompt_whose_rewrite_drops_the_subject_keeps_the_chinese_original():
    zh = "一只红色的狐狸在雪林中奔跑"
    with ScriptedChatServer(scripted(NO_FOX, translation=FOX)) as server:
        result = _rewrite(server, zh)
    assert result.kept_original and result.prompt == zh
    assert len(server.requests) == 3  # translate, rewrite, revision


def test_empty_translation_keeps_the_original(capsys):
    with ScriptedChatServer(scripted(FOX_REWRITE, translation="  ")) as server:
        result = _rewrite(server, "一只狐狸")
    assert result.kept_original and result.prompt == "一只狐狸" and result.attempts == 0
    assert len(server.requests) == 1 and "translation is empty" in capsys.readouterr().err


def test_endpoint_timeout_raises_in_bounded_time():
    with ScriptedChatServer(lambda r: Raw(delay=5.0)) as server:
        client = OpenAICompatibleClient(server.base_url, "m", timeout=0.3, max_retries=1, backoff=0.05)
        t0 = time.monotonic()
        with pytest.raises(LLMTimeoutError, match="after 2 attempts"):
            rewrite_prompt(FOX, llm=OpenAIChatLLM(client))
    assert time.monotonic() - t0 < 3.0


def test_malformed_http_body_raises():
    with ScriptedChatServer(lambda r: Raw(body=b'{"choices": [')) as server:
        with pytest.raises(LLMResponseError, match="not JSON"):
            _rewrite(server, FOX)


def test_cache_is_keyed_by_prompt_mode_and_model(tmp_path):
    cache = RewriteCache(tmp_path / "c.json")
    with ScriptedChatServer(scripted(FOX_REWRITE)) as server:
        first = _rewrite(server, FOX, cache=cache)
        again = _rewrite(server, FOX, cache=cache)
        assert len(server.requests) == 1 and again == first
        _rewrite(server, FOX, cache=cache, mode="master")
        _rewrite(server, FOX, cache=cache, model="another-llm")
        assert len(server.requests) == 3
    assert len(json.loads((tmp_path / "c.json").read_text())) == 3


def test_damaged_cache_is_set_aside_not_overwritten(tmp_path, capsys):
    path = tmp_path / "c.json"
    path.write_text("{not json")
    with ScriptedChatServer(scripted(FOX_REWRITE)) as server:
        _rewrite(server, FOX, cache=RewriteCache(path))
    assert (tmp_path / "c.json.damaged").read_text() == "{not json"
    assert len(json.loads(path.read_text())) == 1
    assert "was not a rewrite cache" in capsys.readouterr().err
