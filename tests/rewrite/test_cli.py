"""`videoforge rewrite`: stdout carries only the final prompt(s); errors are one line, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from videoforge.cli import main
from videoforge.llm.testing import Raw, ScriptedChatServer
from videoforge.testing import free_port

FOX = "a red fox runs through a snowy forest"
FOX_REWRITE = ("A red fox with a thick bushy tail runs through a snowy pine forest in the early morning. "
               "Soft winter light, wide shot; the camera pans slowly to follow the fox.")
DOGS = "two dogs play with a ball on the beach"
DOGS_REWRITE = "Two brown dogs play with a yellow ball on a sandy beach at sunset, warm light, medium shot."


def test_prints_only_the_rewrite_on_stdout(capsys):
    with ScriptedChatServer(lambda r: FOX_REWRITE) as server:
        code = main(["rewrite", FOX, "--base-url", server.base_url, "--model", "m"])
    out = capsys.readouterr()
    assert code == 0
    assert out.out == FOX_REWRITE + "\n"
    assert "rewrite [normal, m]: similarity" in out.err


def test_kept_original_still_exits_zero_and_says_why(capsys):
    with ScriptedChatServer(lambda r: "A quiet empty meadow under a grey sky.") as server:
        code = main(["rewrite", FOX, "--base-url", server.base_url, "--model", "m", "--mode", "master"])
    out = capsys.readouterr()
    assert code == 0 and out.out == FOX + "\n"
    assert "kept the original" in out.err and "the noun 'fox' is missing" in out.err


def test_prompts_file_rewrites_each_line_in_order(tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(f"{FOX}\n\n{DOGS}\n")
    with ScriptedChatServer(lambda r: FOX_REWRITE if "fox" in r.last_user_text else DOGS_REWRITE) as server:
        code = main(["rewrite", "--prompts-file", str(prompts), "--base-url", server.base_url, "--model", "m"])
    assert code == 0
    assert capsys.readouterr().out.splitlines() == [FOX_REWRITE, DOGS_REWRITE]


def test_user_errors_are_one_line(capsys, tmp_path):
    assert main(["rewrite", FOX]) == 1
    assert capsys.readouterr().err.strip() == (
        "videoforge rewrite: error: --model is required: a local chat-model folder, or the model name the endpoint serves")
    assert main(["rewrite", "--prompts-file", str(tmp_path / "nope.txt"), "--model", "m"]) == 1
    assert "cannot read" in capsys.readouterr().err
    assert main(["rewrite", FOX, "--backend", "local", "--model", str(tmp_path / "missing-model")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("videoforge rewrite: error: cannot load local model") and err.count("\n") == 1


def test_malformed_endpoint_reply_fails_with_one_line(capsys):
    with ScriptedChatServer(lambda r: Raw(body=b"<html>502 bad gateway</html>")) as server:
        code = main(["rewrite", FOX, "--base-url", server.base_url, "--model", "m"])
    out = capsys.readouterr()
    assert code == 1 and out.out == ""
    assert out.err.startswith("videoforge rewrite: error: malformed response from") and out.err.count("\n") == 1


def test_unreachable_endpoint_exits_nonzero_fast_without_traceback(tmp_path):
    env = {**os.environ, "VIDEOFORGE_REWRITE_CACHE": "off", "HF_HUB_OFFLINE": "1"}
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "videoforge.cli", "rewrite", FOX, "--base-url", f"http://127.0.0.1:{free_port()}/v1",
         "--model", "m", "--timeout", "2"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    elapsed = time.monotonic() - t0
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith("videoforge rewrite: error: cannot reach http://127.0.0.1:")
    assert "connection refused (after 3 attempts)" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    assert elapsed < 60, elapsed  # retries back off 1 s then 2 s; the rest is interpreter start-up


def test_rewriter_flags_with_a_prefix_for_generate():
    import argparse

    from videoforge.cli import add_rewriter_arguments, rewriter_options

    p = argparse.ArgumentParser()
    add_rewriter_arguments(p, prefix="rewrite-")
    args = p.parse_args(["--rewrite-mode", "master", "--rewrite-base-url", "http://h:1/v1", "--rewrite-model", "q",
                         "--rewrite-api-key-env", "KEY"])
    assert rewriter_options(args, "rewrite-") == {
        "mode": "master", "backend": None, "model": "q", "base_url": "http://h:1/v1", "api_key_env": "KEY",
        "lora": None, "timeout": 60.0}
