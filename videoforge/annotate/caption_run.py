"""Caption the kept rows of a curation manifest, resumably.

Every finished row (a valid caption, or a `caption_error` after the repair attempts) is appended
to a journal next to the manifest (`.caption_journal.jsonl`, flushed and fsynced per row) the
moment it finishes. The manifest itself is rewritten atomically (temp file + rename) at the end, or
when the run stops early; a run that was killed starts by folding the journal back in, so no
finished caption is lost and finished rows are not asked again. Transport failures (endpoint
down, timeouts after the client's retries) leave a row uncaptioned for the next run rather than
marking it as failed.

API keys never reach this module: the backend's client reads them from the environment.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np
from tqdm import tqdm

from videoforge.annotate.camera_motion import CONFIDENCE_THRESHOLD, classify_camera_motion, confident_label
from videoforge.annotate.captions import (
    MAX_CAPTION_TOKENS,
    PROMPT_TEMPLATE,
    PROMPT_VERSION,
    Caption,
    CaptionValidationError,
    build_prompt,
    count_caption_tokens,
    parse_vlm_reply,
)
from videoforge.annotate.vlm import Conversation, frames_message
from videoforge.curate.manifest import MANIFEST, read_manifest, write_manifest
from videoforge.curate.video_io import decode_image, decode_video, resize_max_side

JOURNAL = ".caption_journal.jsonl"
RESULT_KEYS = ("caption", "caption_error", "caption_source", "camera_motion")


class Backend(Protocol):
    source: dict[str, str]

    def ask(self, conversations: Sequence[Conversation], on_result: Any = None) -> list[str | Exception]: ...


@dataclass
class CaptionRunConfig:
    frames_per_clip: int = 4  # frames sampled evenly from a clip and shown to the VLM
    frame_max_side: int = 384  # frames are decoded at most this large
    repair_attempts: int = 2  # extra asks after an invalid reply, quoting the error
    batch_size: int = 16  # rows sent to the backend together
    camera_motion: bool = True
    motion_threshold: float = CONFIDENCE_THRESHOLD
    only_missing: bool = False  # only rows without a caption (rows with a caption_error are retried)
    limit: int | None = None
    prompt_template: str = PROMPT_TEMPLATE
    prompt_version: str = PROMPT_VERSION


@dataclass
class CaptionRunSummary:
    captioned: int = 0
    failed: int = 0  # caption_error written
    unreached: int = 0  # left for the next run (transport errors)
    resumed: int = 0  # taken from the journal of an earlier, interrupted run
    over_budget: int = 0  # captions longer than MAX_CAPTION_TOKENS (kept, flagged in caption_source)
    errors: list[str] = field(default_factory=list)


def manifest_file(path: str | Path) -> Path:
    path = Path(path)
    path = path / MANIFEST if path.is_dir() else path
    if path.name != MANIFEST:
        raise ValueError(f"expected a {MANIFEST} (or the folder holding it), got {path}")
    if not path.is_file():
        raise FileNotFoundError(f"no manifest at {path}")
    return path


def read_journal(path: Path) -> dict[str, dict[str, Any]]:
    """clip_id -> result; a torn last line (the run was killed mid-write) is ignored."""
    entries: dict[str, dict[str, Any]] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            entries[entry["clip_id"]] = {k: entry.get(k) for k in RESULT_KEYS}
    return entries


class _Journal:
    def __init__(self, path: Path) -> None:
        self._file = open(path, "a", encoding="utf-8")

    def append(self, clip_id: str, result: dict[str, Any]) -> None:
        self._file.write(json.dumps({"clip_id": clip_id, **result}, ensure_ascii=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


def sample_indices(num_frames: int, k: int) -> np.ndarray:
    """k indices spread evenly over the clip, centred in k equal segments."""
    k = max(1, min(k, num_frames))
    return np.unique(((np.arange(k) + 0.5) * num_frames / k).astype(int))


def _load(row: dict[str, Any], root: Path, cfg: CaptionRunConfig) -> tuple[list[np.ndarray], np.ndarray | None, float]:
    """Frames for the VLM, all frames for camera motion (videos only), fps."""
    path = str(root / row["path"])
    if row["kind"] == "image":
        return [resize_max_side(decode_image(path), cfg.frame_max_side)], None, 0.0
    video = decode_video(path, cfg.frame_max_side)
    return [video.frames[i] for i in sample_indices(len(video.frames), cfg.frames_per_clip)], video.frames, video.fps


def _metadata_tags(row: dict[str, Any]) -> list[str]:
    # Quality scores as tags (SCHEMA.md): training text can then condition on them.
    return [f"{name}:{row[f'score_{name}']:.2f}" for name in ("aesthetic", "quality") if row.get(f"score_{name}") is not None]


def caption_manifest(manifest: str | Path, backend: Backend, cfg: CaptionRunConfig = CaptionRunConfig(),
                     progress: bool = True) -> CaptionRunSummary:
    """Caption the manifest's kept rows in place (see the module docstring)."""
    path = manifest_file(manifest)
    root = path.parent
    rows = read_manifest(path).to_pylist()
    journal_path = root / JOURNAL
    summary = CaptionRunSummary()
    by_id = {r["clip_id"]: r for r in rows}
    done = read_journal(journal_path)
    for clip_id, result in done.items():
        if clip_id in by_id:
            by_id[clip_id].update(result)
            summary.resumed += 1

    todo = [r for r in rows if r["status"] == "kept" and r["clip_id"] not in done
            and not (cfg.only_missing and r["caption"])]
    if cfg.limit is not None:
        todo = todo[: cfg.limit]
    source = json.dumps({**backend.source, "prompt": cfg.prompt_version})
    journal = _Journal(journal_path)
    bar = tqdm(total=len(todo), desc="caption", unit="clip", disable=not progress)

    def finish(row: dict[str, Any], result: dict[str, Any]) -> None:
        row.update(result)
        journal.append(row["clip_id"], result)
        bar.update(1)

    try:
        for start in range(0, len(todo), cfg.batch_size):
            batch = todo[start : start + cfg.batch_size]
            reached = _caption_batch(batch, root, backend, cfg, source, finish, summary)
            if not reached:  # every request failed to reach the endpoint: stop, resume later
                summary.unreached += len(todo) - start - len(batch)
                break
    finally:
        bar.close()
        journal.close()
        write_manifest(root, rows)
    journal_path.unlink(missing_ok=True)  # everything in it is now in the manifest
    return summary


def _caption_batch(batch: list[dict[str, Any]], root: Path, backend: Backend, cfg: CaptionRunConfig, source: str,
                   finish: Callable[[dict[str, Any], dict[str, Any]], None], summary: CaptionRunSummary) -> bool:
    """Caption one batch; returns False when no request reached the backend."""
    pending: dict[int, tuple[Conversation, dict[str, Any]]] = {}  # index -> conversation, partial result
    for i, row in enumerate(batch):
        try:
            frames, all_frames, fps = _load(row, root, cfg)
        except (OSError, ValueError) as e:  # unreadable clip: recorded, not raised
            summary.failed += 1
            finish(row, {"caption": None, "caption_error": f"cannot read {row['path']}: {e}",
                         "caption_source": source, "camera_motion": None})
            continue
        motion = None
        if cfg.camera_motion and all_frames is not None and len(all_frames) >= 2:
            motion = confident_label(*classify_camera_motion(all_frames, fps), cfg.motion_threshold)
        prompt = build_prompt(row["kind"], len(frames), cfg.prompt_template)
        pending[i] = ([frames_message(prompt, frames)], {"camera_motion": motion, "caption_source": source})

    reached = not pending
    for attempt in range(cfg.repair_attempts + 1):
        if not pending:
            break
        order = list(pending)
        retry: dict[int, tuple[Conversation, dict[str, Any]]] = {}

        def handle(j: int, reply: str | Exception) -> None:
            # Called as each reply arrives, so finished rows reach the journal before the batch ends.
            nonlocal reached
            i = order[j]
            conversation, partial = pending[i]
            row = batch[i]
            if isinstance(reply, Exception):
                # transport failure after the client's own retries: leave the row for the next run
                summary.unreached += 1
                summary.errors.append(f"{row['clip_id']}: {reply}")
                return
            reached = True
            try:
                caption = parse_vlm_reply(reply)
            except CaptionValidationError as e:
                if attempt < cfg.repair_attempts:
                    retry[i] = (conversation + [
                        {"role": "assistant", "content": reply},
                        {"role": "user", "content": f"That reply is not valid: {e}. Reply again with only the JSON "
                                                    "object, using the keys listed above."}], partial)
                else:
                    summary.failed += 1
                    finish(row, {**partial, "caption": None,
                                 "caption_error": f"invalid VLM reply after {attempt + 1} attempts: {e}"})
                return
            finish(row, _accept(caption, row, partial, summary))

        backend.ask([pending[i][0] for i in order], on_result=handle)
        pending = retry
    return reached


def _accept(caption: Caption, row: dict[str, Any], partial: dict[str, Any], summary: CaptionRunSummary) -> dict[str, Any]:
    if partial["camera_motion"]:  # the classifier's label wins over the VLM's free text
        caption.camera_motion = partial["camera_motion"]
    caption.tags = caption.tags + [t for t in _metadata_tags(row) if t not in caption.tags]
    tokens = count_caption_tokens(caption)
    source = {**json.loads(partial["caption_source"]), "tokens": tokens}
    if tokens > MAX_CAPTION_TOKENS:
        source["over_token_budget"] = True
        summary.over_budget += 1
    summary.captioned += 1
    return {**partial, "caption": caption.to_json(), "caption_error": None, "caption_source": json.dumps(source)}

