"""Kill-and-resume: a run killed part way, re-run, redoes only the unfinished inputs and writes
the same manifest as one uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[2]


def _cli(raw: Path, out: Path, config: Path) -> list[str]:
    return [sys.executable, "-m", "videoforge.cli", "curate", str(raw), str(out), "--config", str(config),
            "--no-progress"]


def test_kill_and_resume_gives_the_same_manifest(raw, config_file, curated, tmp_path):
    root, _ = raw
    out = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(_cli(root, out, config_file), env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    parts_dir = out / ".parts"
    deadline = time.time() + 90
    while time.time() < deadline and proc.poll() is None and not list(parts_dir.rglob("*.parquet")):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert not (out / "manifest.parquet").exists()  # killed before the end
    done = {p: p.stat().st_mtime_ns for p in parts_dir.rglob("*.parquet")}
    assert 1 <= len(done) < 7

    result = subprocess.run(_cli(root, out, config_file), env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f'"processed_now": {7 - len(done)}' in result.stdout
    assert all(p.stat().st_mtime_ns == t for p, t in done.items())  # finished inputs not redone

    reference = pq.read_table(curated[0] / "manifest.parquet")
    resumed = pq.read_table(out / "manifest.parquet")
    assert resumed.equals(reference)
    kept_paths = sorted(p for p in resumed.column("path").to_pylist() if p)
    assert kept_paths == sorted(p.relative_to(out).as_posix() for d in ("clips", "images")
                                for p in (out / d).glob("*"))
    assert not list(out.rglob(".*.tmp*"))

    # Idempotent: a third run processes nothing and changes nothing.
    again = subprocess.run(_cli(root, out, config_file), env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and '"processed_now": 0' in again.stdout
    assert pq.read_table(out / "manifest.parquet").equals(reference)
