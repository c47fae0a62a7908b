"""The Parquet manifest of SCHEMA.md: schema, atomic write, read; and the per-input part files
that make runs resumable (a part exists only once its input is completely processed)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

MANIFEST = "manifest.parquet"
PARTS_DIR = ".parts"

# score_<name> columns, in order; a stage's extra scores must be listed here to be kept.
SCORE_NAMES = ("sharpness", "blur", "motion", "fast_motion", "text_area", "quality", "aesthetic", "watermark", "border")

MANIFEST_SCHEMA = pa.schema(
    [
        ("clip_id", pa.string()), ("kind", pa.string()), ("source", pa.string()),
        ("start_frame", pa.int64()), ("end_frame", pa.int64()),
        ("start_time", pa.float64()), ("end_time", pa.float64()), ("fps", pa.float64()),
        ("width", pa.int64()), ("height", pa.int64()), ("num_frames", pa.int64()),
        ("status", pa.string()), ("drop_stage", pa.string()), ("drop_reason", pa.string()),
        ("crop", pa.list_(pa.int64())),
        *[(f"score_{n}", pa.float64()) for n in SCORE_NAMES],
        ("num_people", pa.int64()), ("start_frame_sharpest", pa.int64()),
        ("duplicate_of", pa.string()), ("concept", pa.int64()), ("tiers", pa.list_(pa.string())),
        ("path", pa.string()), ("caption", pa.string()), ("camera_motion", pa.string()),
        ("caption_error", pa.string()), ("caption_source", pa.string()),
    ]
)

# Part files carry what the global steps need beyond the manifest columns.
PART_SCHEMA = MANIFEST_SCHEMA.append(pa.field("embedding", pa.list_(pa.float32()))).append(
    pa.field("thumbnail", pa.binary()))


def flatten_row(row: dict[str, Any]) -> dict[str, Any]:
    """Worker row (scores as a dict) -> flat columns of PART_SCHEMA, missing ones null."""
    flat = {k: v for k, v in row.items() if k != "scores"}
    for name in SCORE_NAMES:
        flat[f"score_{name}"] = row.get("scores", {}).get(name)
    return {name: flat.get(name) for name in PART_SCHEMA.names}


def _write_atomic(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def part_path(out_dir: Path, config_hash: str, source: str) -> Path:
    """Where one input's rows go; keyed by the per-input config so a changed config recomputes."""
    key = hashlib.sha1(source.encode()).hexdigest()[:20]
    return out_dir / PARTS_DIR / config_hash / f"{key}.parquet"


def write_part(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(pa.Table.from_pylist([flatten_row(r) for r in rows], schema=PART_SCHEMA), path)


def read_parts(paths: list[Path]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for p in paths:
        rows += pq.read_table(p, schema=PART_SCHEMA).to_pylist()
    return rows


def write_manifest(out_dir: Path, rows: list[dict[str, Any]]) -> Path:
    """Write `manifest.parquet` (rows sorted by source, kind and span: the same rows always give
    the same file contents)."""
    rows = sorted(rows, key=lambda r: (r["source"], r["kind"], r["start_frame"] or 0, r["end_frame"] or 0))
    table = pa.Table.from_pylist([{n: r.get(n) for n in MANIFEST_SCHEMA.names} for r in rows], schema=MANIFEST_SCHEMA)
    path = out_dir / MANIFEST
    _write_atomic(table, path)
    return path


def read_manifest(path: str | Path) -> pa.Table:
    """Read a manifest, checking it has the SCHEMA.md columns."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST
    table = pq.read_table(path)
    missing = [n for n in MANIFEST_SCHEMA.names if n not in table.column_names]
    if missing:
        raise ValueError(f"{path} is not a curation manifest: missing columns {missing}")
    return table
