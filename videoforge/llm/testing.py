"""A scripted OpenAI-compatible chat server on 127.0.0.1, for tests and offline demos.

Real HTTP and real JSON, so the client under test runs its production code path. A `reply`
function decides each answer from the parsed request:

    def reply(request: ChatRequest) -> str | Raw:
        return "a red fox runs"                      # a normal chat completion with that content
        return Raw(status=500, body=b"overloaded")   # any status / body
        return Raw(delay=5.0)                        # answer late (client timeouts)
        return Raw(raw=b"garbage")                   # bytes that are not HTTP at all
        return Raw(drop=True)                        # close the connection without answering

    with ScriptedChatServer(reply) as server:
        client = OpenAICompatibleClient(server.base_url, "m")
        ...
        server.requests   # every ChatRequest received, in arrival order
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable


@dataclass
class ChatRequest:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.body.get("messages", [])

    @property
    def last_user_text(self) -> str:
        """The text of the last user message (text parts joined)."""
        for m in reversed(self.messages):
            if m.get("role") == "user":
                c = m.get("content", "")
                return c if isinstance(c, str) else " ".join(p.get("text", "") for p in c if p.get("type") == "text")
        return ""


@dataclass
class Raw:
    status: int = 200
    body: bytes = b""
    delay: float = 0.0
    raw: bytes | None = None
    drop: bool = False
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})


def completion_body(content: str, model: str = "scripted") -> bytes:
    """A minimal, valid chat-completions response body."""
    return json.dumps({
        "id": "chatcmpl-scripted",
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
    }).encode()


class ScriptedChatServer:
    def __init__(self, reply: Callable[[ChatRequest], str | Raw]) -> None:
        self.reply = reply
        self.requests: list[ChatRequest] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False  # a handler sleeping to provoke a timeout must not block shutdown
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> "ScriptedChatServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop answering; later connections are refused."""
        self._httpd.shutdown()
        self._httpd.server_close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                request = ChatRequest(self.path, dict(self.headers.items()), body)
                with server._lock:
                    server.requests.append(request)
                answer = server.reply(request)
                if isinstance(answer, str):
                    answer = Raw(body=completion_body(answer, body.get("model", "scripted")))
                if answer.delay:
                    time.sleep(answer.delay)
                if answer.drop:
                    self.close_connection = True
                    return
                if answer.raw is not None:
                    self.wfile.write(answer.raw)
                    self.close_connection = True
                    return
                self.send_response(answer.status)
                for k, v in answer.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                try:
                    self.wfile.write(answer.body)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
                    pass

        return Handler
