"""Runs curation: finds inputs, skips those already done (resume), processes the rest on a local
process pool or as Ray Data over a cluster (the same `InputProcessor` either way), then runs the
global steps and writes the manifest, the fine-tuning list and the HTML report."""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from videoforge.curate.config import CurateConfig, config_from_dict
from videoforge.curate.manifest import part_path, read_parts, write_manifest, write_part
from videoforge.curate.pipeline import CLIPS_DIR, IMAGES_DIR, InputProcessor, clip_row
from videoforge.curate.report import write_report
from videoforge.curate.selection import assign_concepts, assign_tiers, remove_duplicates
from videoforge.curate.stage import Clip
from videoforge.curate.video_io import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

ENGINES = ("local", "ray")


def discover_inputs(raw: str | Path | list[str]) -> list[str]:
    """Inputs from a folder (recursive, by extension), a single file, a `.txt` list of paths/URIs
    (one per line, `#` comments), or a Python list. Local paths become absolute; sorted."""
    if isinstance(raw, list):
        items = raw
    else:
        p = Path(raw)
        if p.is_dir():
            exts = VIDEO_EXTENSIONS | IMAGE_EXTENSIONS
            items = [str(f) for f in p.rglob("*") if f.is_file() and f.suffix.lower() in exts]
        elif p.is_file() and p.suffix.lower() == ".txt":
            items = [s.strip() for s in p.read_text().splitlines() if s.strip() and not s.strip().startswith("#")]
            items = [s if "://" in s or Path(s).is_absolute() else str(p.parent / s) for s in items]
        elif p.is_file() or "://" in str(raw):
            items = [str(raw)]
        else:
            raise FileNotFoundError(f"raw input {raw} is not a folder, a file, or a URI")
    return sorted({s if "://" in s else str(Path(s).resolve()) for s in items})


def _process_safely(processor: InputProcessor, source: str, out_dir: Path, part: Path) -> tuple[str, Counter]:
    """Process one input and write its part file; an unexpected error becomes a failed row."""
    try:
        rows, counts = processor.process(source, out_dir)
    except Exception as e:  # noqa: BLE001 - one input never stops the run
        clip = Clip(source=source)
        clip.fail("pipeline", "probe", f"{type(e).__name__}: {e}")
        rows, counts = [clip_row(clip)], Counter()
    write_part(part, rows)
    return source, counts


# --- local engine -------------------------------------------------------------------------------
_WORKER: InputProcessor | None = None
_WORKER_ERROR: str | None = None


def _init_worker(cfg_dict: dict[str, Any]) -> None:
    import cv2

    global _WORKER, _WORKER_ERROR
    cv2.setNumThreads(1)  # one core per worker process
    try:
        _WORKER = InputProcessor(config_from_dict(cfg_dict))
        _WORKER.setup()
    except Exception as e:  # noqa: BLE001 - a pool respawns workers whose initializer raises, forever
        _WORKER_ERROR = f"worker setup failed: {type(e).__name__}: {e}"


def _work(job: tuple[str, str, str]) -> tuple[str, Counter]:
    if _WORKER_ERROR:
        raise RuntimeError(_WORKER_ERROR)
    source, out_dir, part = job
    return _process_safely(_WORKER, source, Path(out_dir), Path(part))


def _run_local(cfg: CurateConfig, jobs: list[tuple[str, str, str]], workers: int) -> Iterator[tuple[str, Counter]]:
    if workers <= 1:  # in-process: no pickling, deterministic order
        processor = InputProcessor(cfg)
        processor.setup()
        for source, out_dir, part in jobs:
            yield _process_safely(processor, source, Path(out_dir), Path(part))
        return
    ctx = multiprocessing.get_context("spawn")  # no forked onnxruntime/OpenCV thread state
    with ctx.Pool(workers, initializer=_init_worker, initargs=(cfg.to_dict(),)) as pool:
        yield from pool.imap_unordered(_work, jobs)


# --- Ray engine ---------------------------------------------------------------------------------
class _RayWorker:
    """A Ray Data actor: one InputProcessor per actor, models loaded once."""

    def __init__(self, cfg_dict: dict[str, Any]) -> None:
        self.processor = InputProcessor(config_from_dict(cfg_dict))
        self.processor.setup()

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        done = [_process_safely(self.processor, s, Path(o), Path(p))
                for s, o, p in zip(batch["source"], batch["out_dir"], batch["part"])]
        return {"source": [s for s, _ in done], "counts": [json.dumps(c) for _, c in done]}


def _run_ray(cfg: CurateConfig, jobs: list[tuple[str, str, str]], workers: int,
             address: str | None) -> Iterator[tuple[str, Counter]]:
    try:
        import ray
    except ImportError as e:
        raise RuntimeError("--engine ray needs Ray: pip install 'videoforge[ray]'") from e
    if not ray.is_initialized():
        # address=None starts a local instance; "auto" joins the cluster `ray start` made.
        ray.init(address=address, num_cpus=None if address else workers, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    items = [{"source": s, "out_dir": o, "part": p} for s, o, p in jobs]
    ds = ray.data.from_items(items, override_num_blocks=max(1, len(items))).map_batches(
        _RayWorker, fn_constructor_args=(cfg.to_dict(),), batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=max(1, workers)), num_cpus=1)
    for row in ds.iter_rows():
        yield row["source"], Counter(json.loads(row["counts"]))


# --- the run ------------------------------------------------------------------------------------
def _remove_stale_temporaries(out_dir: Path) -> None:
    """Half-written files of a killed run (the writers rename only complete files)."""
    for f in out_dir.rglob(".*.tmp*"):
        f.unlink(missing_ok=True)


def curate(raw: str | Path | list[str], out_dir: str | Path, cfg: CurateConfig | None = None, *,
           workers: int = 1, engine: str = "local", ray_address: str | None = None,
           progress: bool = True) -> dict[str, Any]:
    """Curate `raw` into `out_dir`; returns a summary (counts per status, drop stage and tier).

    Resumable: inputs whose part file exists (for the same per-input config) are not redone.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; expected one of {ENGINES}")
    cfg = cfg or CurateConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(out_dir)
    inputs = discover_inputs(raw)
    if not inputs:
        raise ValueError(f"no videos or images found in {raw}")
    config_hash = cfg.per_input_hash()
    parts = {s: part_path(out_dir, config_hash, s) for s in inputs}
    jobs = [(s, str(out_dir), str(parts[s])) for s in inputs if not parts[s].exists()]

    names = InputProcessor(cfg).stage_names  # building stages loads no models (setup does)
    bars = {"inputs": tqdm(total=len(inputs), initial=len(inputs) - len(jobs), desc=f"{'inputs':>11}",
                           unit="input", disable=not progress, position=0)}
    for i, n in enumerate(names):
        bars[n] = tqdm(desc=f"{n:>11}", unit="input" if n in ("probe", "shot") else "clip",
                       disable=not progress, position=i + 1)
    runner = _run_local(cfg, jobs, workers) if engine == "local" else _run_ray(cfg, jobs, workers, ray_address)
    for _, counts in runner:
        bars["inputs"].update(1)
        for n, c in counts.items():
            if n in bars:
                bars[n].update(c)
    for bar in bars.values():
        bar.close()

    rows = read_parts([parts[s] for s in inputs])
    summary = finalize(rows, out_dir, cfg, progress)
    summary["inputs"], summary["processed_now"] = len(inputs), len(jobs)
    return summary


def finalize(rows: list[dict[str, Any]], out_dir: Path, cfg: CurateConfig, progress: bool = False) -> dict[str, Any]:
    """The global steps and the outputs: dedup, concepts, tiers, manifest, lists, report."""
    steps = tqdm(total=4, desc=f"{'global':>11}", disable=not progress)
    dropped = remove_duplicates(rows, cfg.dedup)
    for r in rows:  # duplicates were written by their worker before dedup could know; removed below
        if r["drop_stage"] == "dedup":
            r["path"] = None
    steps.update(1)
    num_concepts = assign_concepts(rows, cfg.concepts)
    steps.update(1)
    tier_counts = assign_tiers(rows, cfg.tiers, cfg.finetune)
    steps.update(1)
    _remove_unreferenced_outputs(out_dir, rows)
    manifest = write_manifest(out_dir, rows)
    _write_embeddings(out_dir, rows)
    _write_finetune_list(out_dir, rows)
    summary = {
        "manifest": str(manifest),
        "status": dict(Counter(r["status"] for r in rows)),
        "drop_stage": dict(Counter(r["drop_stage"] for r in rows if r["drop_stage"])),
        "tiers": tier_counts, "duplicates": dropped, "concepts": num_concepts,
    }
    write_report(out_dir / "report.html", rows, cfg, summary)
    steps.update(1)
    steps.close()
    return summary


def _remove_unreferenced_outputs(out_dir: Path, rows: list[dict[str, Any]]) -> None:
    """Clips and images no row points at (duplicates, leftovers of a run with another config):
    the output folders hold exactly the manifest's kept files."""
    referenced = {r["path"] for r in rows if r["path"]}
    for sub in (CLIPS_DIR, IMAGES_DIR):
        if (out_dir / sub).is_dir():
            for f in (out_dir / sub).iterdir():
                if f.is_file() and f"{sub}/{f.name}" not in referenced:
                    f.unlink()


def _write_embeddings(out_dir: Path, rows: list[dict[str, Any]]) -> None:
    kept = sorted((r for r in rows if r["status"] == "kept" and r["embedding"]), key=lambda r: r["clip_id"])
    table = pa.table({"clip_id": [r["clip_id"] for r in kept], "embedding": [r["embedding"] for r in kept]},
                     schema=pa.schema([("clip_id", pa.string()), ("embedding", pa.list_(pa.float32()))]))
    tmp = out_dir / ".embeddings.parquet.tmp"
    pq.write_table(table, tmp)
    os.replace(tmp, out_dir / "embeddings.parquet")


def _write_finetune_list(out_dir: Path, rows: list[dict[str, Any]]) -> None:
    """`finetune.csv`: the fine-tuning candidates, best first, for a person to review and prune."""
    chosen = [r for r in rows if "finetune" in r["tiers"]]
    chosen.sort(key=lambda r: (-(r["score_aesthetic"] or -1.0), -(r["score_quality"] or -1.0), r["clip_id"]))
    cols = ["clip_id", "path", "source", "start_time", "end_time", "width", "height", "num_frames",
            "score_quality", "score_aesthetic", "score_motion", "num_people"]
    with open(out_dir / "finetune.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(cols)
        for r in chosen:
            writer.writerow([r[c] for c in cols])
