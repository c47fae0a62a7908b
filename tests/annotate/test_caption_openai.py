"""Captioning a manifest through a real OpenAI-compatible HTTP server on 127.0.0.1."""

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq

from videoforge.annotate.caption_run import JOURNAL, CaptionRunConfig, caption_manifest, read_journal
from videoforge.annotate.camera_motion import LABELS
from videoforge.annotate.captions import PROMPT_VERSION, Caption
from videoforge.annotate.vlm import OpenAIBackend
from videoforge.llm.openai_client import OpenAICompatibleClient
from videoforge.llm.testing import Raw, ScriptedChatServer

KEY_ENV = "VF_TEST_CAPTION_KEY"
SECRET = "sk-test-secret-do-not-store-9731"


def good_reply(text: str = "A textured scene") -> str:
    return json.dumps({"short_description": text, "dense_description": f"{text}, seen up close.",
                       "camera_motion": "slow drift", "tags": ["synthetic"]})


def clip_of(request) -> str:
    """Which clip a request is about: the test server tags replies by the frames' hash."""
    parts = request.messages[0]["content"]
    return str(hash(tuple(p["image_url"]["url"][-64:] for p in parts if p["type"] == "image_url")))


def backend_for(server, timeout=5.0, max_retries=1):
    client = OpenAICompatibleClient(server.base_url, "test-vlm", api_key_env=KEY_ENV, timeout=timeout,
                                    max_retries=max_retries, backoff=0.05, concurrency=2)
    return OpenAIBackend(client)


def rows(manifest_dir: Path) -> dict:
    return {r["clip_id"]: r for r in pq.read_table(manifest_dir / "manifest.parquet").to_pylist()}


def test_captions_from_openai_server(manifest_dir, monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    with ScriptedChatServer(lambda req: "```json\n" + good_reply() + "\n```") as server:
        summary = caption_manifest(manifest_dir, backend_for(server), CaptionRunConfig(frames_per_clip=3), progress=False)
    assert (summary.captioned, summary.failed, summary.unreached) == (6, 0, 0)
    out = rows(manifest_dir)
    assert out["drop"]["caption"] is None  # dropped rows are not captioned
    for clip_id in ("c0", "c1", "c2", "c3", "c4", "img"):
        row = out[clip_id]
        caption = Caption.from_dict(json.loads(row["caption"]))
        assert caption.short_description == "A textured scene"
        assert "aesthetic:5.12" in caption.tags
        source = json.loads(row["caption_source"])
        assert source["backend"] == "openai" and source["model"] == "test-vlm" and source["prompt"] == PROMPT_VERSION
        assert row["caption_error"] is None
        # the classifier's confident label wins over the VLM's free text; else the free text stays
        if row["camera_motion"] is not None:
            assert row["camera_motion"] in LABELS and caption.camera_motion == row["camera_motion"]
        else:
            assert caption.camera_motion == "slow drift"
    assert out["img"]["camera_motion"] is None
    # real requests: the key went in the header, frames as base64 JPEG image_url parts
    video_requests = [r for r in server.requests if "3 frames" in r.last_user_text]
    assert len(server.requests) == 6 and len(video_requests) == 5
    for req in server.requests:
        assert req.headers["Authorization"] == f"Bearer {SECRET}"
        images = [p for p in req.messages[0]["content"] if p["type"] == "image_url"]
        data = base64.b64decode(images[0]["image_url"]["url"].split("base64,", 1)[1])
        frame = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        assert frame.shape == (96, 96, 3)
    assert all(len([p for p in r.messages[0]["content"] if p["type"] == "image_url"]) == 3 for r in video_requests)
    # the key is never written anywhere
    for path in manifest_dir.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    assert not (manifest_dir / JOURNAL).exists()


def test_malformed_replies_are_repaired_or_marked(manifest_dir):
    # One request at a time, so first-round requests arrive in manifest order: c0, c1, c2, ...
    order: list[str] = []

    def reply(req):
        key = clip_of(req)
        if len(req.messages) == 1:
            order.append(key)
        clip = f"c{order.index(key)}"
        if clip == "c0":
            return "I am sorry, I cannot describe videos."  # never valid -> caption_error
        if clip == "c2" and len(req.messages) == 1:
            return '{"short_description": "broken'  # invalid once, then repaired
        return good_reply("repaired" if clip == "c2" else "fine")

    cfg = CaptionRunConfig(frames_per_clip=2, camera_motion=False, repair_attempts=2)
    server = ScriptedChatServer(reply)
    with server:
        backend = backend_for(server)
        backend.client.concurrency = 1
        summary = caption_manifest(manifest_dir, backend, cfg, progress=False)
    assert (summary.captioned, summary.failed, summary.unreached) == (5, 1, 0)
    out = rows(manifest_dir)
    assert out["c0"]["caption"] is None
    assert out["c0"]["caption_error"].startswith("invalid VLM reply after 3 attempts: reply is not a JSON object")
    assert json.loads(out["c2"]["caption"])["short_description"] == "repaired"
    assert json.loads(out["c1"]["caption"])["short_description"] == "fine"
    c2_requests = [r for r in server.requests if clip_of(r) == order[2]]
    assert len(c2_requests) == 2
    assert c2_requests[1].messages[1] == {"role": "assistant", "content": '{"short_description": "broken'}
    assert "not valid: reply is not a JSON object: invalid JSON" in c2_requests[1].messages[2]["content"]
    assert len([r for r in server.requests if clip_of(r) == order[0]]) == 3


def test_timeouts_leave_rows_for_the_next_run(manifest_dir):
    slow = {"key": None}

    def reply(req):
        if slow["key"] is None:
            slow["key"] = clip_of(req)  # the first clip asked is the slow one
        return Raw(delay=1.5) if clip_of(req) == slow["key"] else good_reply()

    cfg = CaptionRunConfig(frames_per_clip=2, camera_motion=False, batch_size=3)
    with ScriptedChatServer(reply) as server:
        summary = caption_manifest(manifest_dir, backend_for(server, timeout=0.5, max_retries=1), cfg, progress=False)
    assert (summary.captioned, summary.failed, summary.unreached) == (5, 0, 1)
    assert "did not answer within" in summary.errors[0]
    out = rows(manifest_dir)
    missing = [k for k, r in out.items() if r["status"] == "kept" and r["caption"] is None]
    assert len(missing) == 1 and out[missing[0]]["caption_error"] is None  # not marked as failed
    before = {k: r["caption"] for k, r in out.items()}
    with ScriptedChatServer(lambda req: good_reply("second run")) as server2:
        summary2 = caption_manifest(manifest_dir, backend_for(server2), CaptionRunConfig(
            frames_per_clip=2, camera_motion=False, only_missing=True), progress=False)
    assert summary2.captioned == 1 and len(server2.requests) == 1
    after = rows(manifest_dir)
    assert json.loads(after[missing[0]]["caption"])["short_description"] == "second run"
    assert all(after[k]["caption"] == v for k, v in before.items() if v is not None)


def test_server_dying_mid_batch_loses_nothing_and_resumes(manifest_dir):
    answered = []
    lock = threading.Lock()

    def reply(req):
        with lock:
            if len(answered) >= 3:
                return Raw(drop=True)  # the server is gone: connections close without an answer
            answered.append(clip_of(req))
        return good_reply("first server")

    cfg = CaptionRunConfig(frames_per_clip=2, camera_motion=False, batch_size=2)
    with ScriptedChatServer(reply) as server:
        summary = caption_manifest(manifest_dir, backend_for(server, max_retries=0), cfg, progress=False)
    assert summary.captioned == 3 and summary.unreached == 3 and summary.failed == 0
    first = {k: r["caption"] for k, r in rows(manifest_dir).items() if r["caption"]}
    assert len(first) == 3
    with ScriptedChatServer(lambda req: good_reply("second server")) as server2:
        summary2 = caption_manifest(manifest_dir, backend_for(server2), CaptionRunConfig(
            frames_per_clip=2, camera_motion=False, only_missing=True), progress=False)
    assert summary2.captioned == 3 and len(server2.requests) == 3
    out = rows(manifest_dir)
    assert all(out[k]["caption"] == v for k, v in first.items())  # finished captions untouched
    assert sum(r["caption"] is not None for r in out.values()) == 6


_KILLED_RUN = """
import sys
from videoforge.annotate.caption_run import CaptionRunConfig, caption_manifest
from videoforge.annotate.vlm import OpenAIBackend
from videoforge.llm.openai_client import OpenAICompatibleClient
client = OpenAICompatibleClient(sys.argv[2], "test-vlm", timeout=60, max_retries=0, concurrency=1)
caption_manifest(sys.argv[1], OpenAIBackend(client), CaptionRunConfig(frames_per_clip=2, camera_motion=False, batch_size=6), progress=False)
"""


def test_killed_run_resumes_from_the_journal(manifest_dir):
    count = {"n": 0}

    def reply(req):
        count["n"] += 1
        if count["n"] > 2:
            return Raw(delay=30)  # hang: the run gets killed while waiting
        return good_reply("before the kill")

    with ScriptedChatServer(reply) as server:
        proc = subprocess.Popen([sys.executable, "-c", _KILLED_RUN, str(manifest_dir), server.base_url],
                                env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
        journal = manifest_dir / JOURNAL
        deadline = time.time() + 60
        while time.time() < deadline and len(read_journal(journal)) < 2:
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert len(read_journal(journal)) == 2
    assert all(r["caption"] is None for r in rows(manifest_dir).values())  # the manifest was never rewritten
    with ScriptedChatServer(lambda req: good_reply("after the kill")) as server2:
        summary = caption_manifest(manifest_dir, backend_for(server2), CaptionRunConfig(
            frames_per_clip=2, camera_motion=False), progress=False)
    assert summary.resumed == 2 and summary.captioned == 4 and len(server2.requests) == 4
    texts = [json.loads(r["caption"])["short_description"] for r in rows(manifest_dir).values() if r["caption"]]
    assert sorted(texts) == ["after the kill"] * 4 + ["before the kill"] * 2
    assert not journal.exists()


def test_caption_cli(manifest_dir, monkeypatch, capsys):
    from videoforge.cli import main

    monkeypatch.setenv(KEY_ENV, SECRET)
    prompt = manifest_dir / "prompt.txt"
    prompt.write_text("Describe {kind_description} as JSON with short_description.")
    with ScriptedChatServer(lambda req: good_reply("from the cli")) as server:
        code = main(["caption", str(manifest_dir), "--model", "m", "--base-url", server.base_url,
                     "--api-key-env", KEY_ENV, "--limit", "2", "--no-camera-motion", "--prompt-file", str(prompt)])
    assert code == 0
    assert "captioned 2, caption errors 0" in capsys.readouterr().err
    assert server.requests[0].last_user_text.startswith("Describe a video clip, shown as 4 frames")
    done = [r for r in rows(manifest_dir).values() if r["caption"]]
    assert len(done) == 2 and json.loads(done[0]["caption_source"])["prompt"].startswith("custom-")
    assert main(["caption", str(manifest_dir), "--model", "m"]) == 1
    assert "needs --base-url" in capsys.readouterr().err
    assert main(["caption", str(manifest_dir / "nope" / "manifest.parquet"), "--model", "m", "--base-url", "http://x/v1"]) == 1
    assert "no manifest at" in capsys.readouterr().err
    # a dead endpoint: nothing is lost, the run says how to resume and exits non-zero
    with ScriptedChatServer(lambda req: good_reply()) as dead:
        url = dead.base_url
    assert main(["caption", str(manifest_dir), "--model", "m", "--base-url", url, "--only-missing",
                 "--timeout", "2", "--retries", "0", "--no-camera-motion"]) == 1
    assert "run the same command again to resume" in capsys.readouterr().err
    assert len([r for r in rows(manifest_dir).values() if r["caption"]]) == 2


def test_long_captions_are_flagged_not_dropped(manifest_dir):
    long_reply = json.dumps({"short_description": "A scene", "dense_description": " ".join(["detail"] * 300)})
    with ScriptedChatServer(lambda req: long_reply) as server:
        summary = caption_manifest(manifest_dir, backend_for(server), CaptionRunConfig(
            frames_per_clip=2, camera_motion=False, limit=1), progress=False)
    assert summary.captioned == 1 and summary.over_budget == 1
    row = next(r for r in rows(manifest_dir).values() if r["caption"])
    source = json.loads(row["caption_source"])
    assert source["over_token_budget"] is True and source["tokens"] > 256
    assert len(json.loads(row["caption"])["dense_description"].split()) == 300
