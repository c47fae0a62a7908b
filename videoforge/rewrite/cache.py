"""A JSON file of finished rewrites keyed by (prompt, mode, model, template version).

Default location `$XDG_CACHE_HOME/videoforge/rewrites.json` (`~/.cache/...`); the environment
variable VIDEOFORGE_REWRITE_CACHE names another file, or turns the cache off when set to
"off" or "". Writes go through a temporary file and a rename, so a killed run never leaves a
half-written cache; entries other processes added meanwhile are merged, not overwritten.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

CACHE_ENV = "VIDEOFORGE_REWRITE_CACHE"


class RewriteCache:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    @classmethod
    def default(cls) -> "RewriteCache | None":
        """The cache the environment asks for, or None when it is turned off."""
        env = os.environ.get(CACHE_ENV)
        if env is not None:
            return None if env.strip().lower() in ("", "off") else cls(env)
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        return cls(root / "videoforge" / "rewrites.json")

    @staticmethod
    def key(prompt: str, mode: str, model: str, version: str) -> str:
        return hashlib.sha256(json.dumps([prompt, mode, model, version]).encode()).hexdigest()

    def get(self, prompt: str, mode: str, model: str, version: str) -> dict[str, Any] | None:
        with self._lock:
            return self._read().get(self.key(prompt, mode, model, version))

    def put(self, prompt: str, mode: str, model: str, version: str, entry: dict[str, Any]) -> None:
        with self._lock:
            entries = self._read()
            entries[self.key(prompt, mode, model, version)] = entry
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".rewrites-", suffix=".json")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump(entries, f, ensure_ascii=False, indent=1)
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (json.JSONDecodeError, UnicodeDecodeError):
            data = None
        if not isinstance(data, dict):
            # Set the damaged file aside (never overwrite it) and start afresh.
            aside = self.path.with_name(self.path.name + ".damaged")
            os.replace(self.path, aside)
            print(f"videoforge rewrite: warning: {self.path} was not a rewrite cache; moved it to {aside}", file=sys.stderr)
            return {}
        return data
