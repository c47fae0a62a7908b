"""OpenAICompatibleClient against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import logging
import socket
import threading
import time

import pytest

from videoforge.llm import (
    LLMClientError,
    LLMHTTPError,
    LLMResponseError,
    LLMTimeoutError,
    LLMUnreachableError,
    OpenAICompatibleClient,
    image_part,
    text_part,
)
from videoforge.llm.testing import Raw, ScriptedChatServer

USER = [{"role": "user", "content": "hello"}]


def _client(server: ScriptedChatServer, **kw) -> OpenAICompatibleClient:
    kw = {"timeout": 2.0, "max_retries": 2, "backoff": 0.05, **kw}
    return OpenAICompatibleClient(server.base_url, "test-model", **kw)


def test_normal_reply_sends_openai_request():
    with ScriptedChatServer(lambda r: f"echo: {r.last_user_text}") as server:
        out = _client(server).chat(USER, temperature=0.2, max_tokens=17)
    assert out == "echo: hello"
    (req,) = server.requests
    assert req.path == "/v1/chat/completions"
    assert req.body["model"] == "test-model"
    assert req.body["messages"] == USER
    assert req.body["temperature"] == 0.2 and req.body["max_tokens"] == 17


def test_image_parts_travel_as_base64_data_urls():
    png = b"\x89PNG\r\n\x1a\nfake"
    msgs = [{"role": "user", "content": [text_part("describe"), image_part(png, "image/png")]}]
    with ScriptedChatServer(lambda r: "ok") as server:
        _client(server).chat(msgs)
    part = server.requests[0].body["messages"][0]["content"][1]
    assert part == {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgpmYWtl"}}


def test_timeout_is_retried_then_reported_in_bounded_time():
    with ScriptedChatServer(lambda r: Raw(delay=3.0, body=b"{}")) as server:
        client = _client(server, timeout=0.3, max_retries=1)
        t0 = time.monotonic()
        with pytest.raises(LLMTimeoutError) as err:
            client.chat(USER)
        elapsed = time.monotonic() - t0
    assert elapsed < 2.0, elapsed
    assert len(server.requests) == 2
    assert "did not answer within 0.3 s" in str(err.value) and "after 2 attempts" in str(err.value)
    assert "\n" not in str(err.value)


def test_max_total_time_bounds_all_retries():
    with ScriptedChatServer(lambda r: Raw(status=503, body=b"busy")) as server:
        client = _client(server, max_retries=50, backoff=0.2, max_total_time=1.0)
        t0 = time.monotonic()
        with pytest.raises(LLMHTTPError):
            client.chat(USER)
    assert time.monotonic() - t0 < 1.5
    assert 2 <= len(server.requests) < 10


def test_malformed_json_body_fails_without_retry():
    with ScriptedChatServer(lambda r: Raw(body=b"<html>not json</html>")) as server:
        with pytest.raises(LLMResponseError, match="body is not JSON: '<html>not json</html>'"):
            _client(server).chat(USER)
    assert len(server.requests) == 1  # a bad body would come back the same


def test_malformed_http_response_is_a_response_error():
    with ScriptedChatServer(lambda r: Raw(raw=b"this is not HTTP at all\r\n\r\n")) as server:
        with pytest.raises(LLMResponseError, match="malformed HTTP response"):
            _client(server).chat(USER)


def test_json_without_choices_is_a_response_error():
    with ScriptedChatServer(lambda r: Raw(body=b'{"error": "oops"}')) as server:
        with pytest.raises(LLMResponseError, match=r"no choices\[0\].message.content"):
            _client(server).chat(USER)


def test_500_then_success_is_retried():
    calls = []

    def reply(r):
        calls.append(1)
        return Raw(status=500, body=b"internal\nerror") if len(calls) == 1 else "recovered"

    with ScriptedChatServer(reply) as server:
        assert _client(server).chat(USER) == "recovered"
    assert len(server.requests) == 2


def test_4xx_is_not_retried_and_message_is_one_line():
    with ScriptedChatServer(lambda r: Raw(status=404, body=b'{"error":\n "no such model"}')) as server:
        with pytest.raises(LLMHTTPError) as err:
            _client(server).chat(USER)
    assert err.value.status == 404 and len(server.requests) == 1
    assert str(err.value).startswith("HTTP 404 from http://127.0.0.1:")
    assert "no such model" in str(err.value) and "\n" not in str(err.value)


def test_unreachable_endpoint():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = OpenAICompatibleClient(f"http://127.0.0.1:{port}/v1", "m", timeout=1.0, max_retries=1, backoff=0.01)
    with pytest.raises(LLMUnreachableError, match="cannot reach .*connection refused"):
        client.chat(USER)


def test_server_dropping_the_connection_is_unreachable_and_retried():
    with ScriptedChatServer(lambda r: Raw(drop=True)) as server:
        with pytest.raises(LLMUnreachableError):
            _client(server, max_retries=1).chat(USER)
    assert len(server.requests) == 2


def test_no_authorization_header_without_a_set_key(monkeypatch):
    monkeypatch.delenv("VF_TEST_KEY", raising=False)
    with ScriptedChatServer(lambda r: "ok") as server:
        _client(server).chat(USER)
        _client(server, api_key_env="VF_TEST_KEY").chat(USER)
    assert all("Authorization" not in r.headers for r in server.requests)


def test_api_key_sent_but_never_logged_or_shown(monkeypatch, caplog):
    secret = "sk-very-secret-123"
    monkeypatch.setenv("VF_TEST_KEY", secret)
    caplog.set_level(logging.DEBUG)
    with ScriptedChatServer(lambda r: Raw(status=500, body=b"down")) as server:
        client = _client(server, api_key_env="VF_TEST_KEY", max_retries=1)
        with pytest.raises(LLMHTTPError) as err:
            client.chat(USER)
    assert server.requests[0].headers["Authorization"] == f"Bearer {secret}"
    assert secret not in str(err.value) and secret not in repr(client) and secret not in str(vars(client))
    assert caplog.records and all(secret not in r.getMessage() for r in caplog.records)


def test_chat_many_keeps_order_limits_concurrency_and_isolates_failures():
    active, peak, lock = [0], [0], threading.Lock()

    def reply(r):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.1)
        with lock:
            active[0] -= 1
        text = r.last_user_text
        return Raw(status=400, body=b"bad") if text == "3" else f"re:{text}"

    convs = [[{"role": "user", "content": str(i)}] for i in range(8)]
    seen = []
    with ScriptedChatServer(reply) as server:
        out = _client(server, concurrency=3).chat_many(convs, on_result=lambda i, r: seen.append(i))
    assert peak[0] == 3
    assert [o for i, o in enumerate(out) if i != 3] == [f"re:{i}" for i in range(8) if i != 3]
    assert isinstance(out[3], LLMHTTPError) and isinstance(out[3], LLMClientError)
    assert sorted(seen) == list(range(8))


def test_base_url_must_be_http():
    with pytest.raises(ValueError, match="http:// or https://"):
        OpenAICompatibleClient("localhost:8000/v1", "m")
