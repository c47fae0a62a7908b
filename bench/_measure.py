"""Measurement helpers shared by the benchmarks: wall time and peak resident memory.

Peak memory on the CPU: Linux keeps a high-water mark of the resident set (VmHWM); writing 5 to
/proc/self/clear_refs resets it to the current RSS. So peak(fn) = HWM after fn - RSS before fn,
the extra memory fn touched at its worst moment, in this same process. (On CUDA we would use
torch.cuda.max_memory_allocated instead.)
"""

from __future__ import annotations

import argparse
import gc
import re
import statistics
import time
from pathlib import Path
from typing import Callable

_STATUS = Path("/proc/self/status")


def _status_mb(field: str) -> float:
    return int(re.search(rf"{field}:\s+(\d+)", _STATUS.read_text()).group(1)) / 1024


def peak_memory_mb(fn: Callable[[], object]) -> float:
    """Extra resident memory (MiB) at the peak of one call of fn."""
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_mb("VmRSS")
    result = fn()
    peak = _status_mb("VmHWM") - before
    del result
    gc.collect()
    return peak


def median_seconds(fns: dict[str, Callable[[], object]], repeats: int = 5, warmup: int = 1) -> dict[str, float]:
    """Median wall time of each fn; the fns are interleaved so drifts in machine load hit all alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def timing_args(doc: str | None) -> argparse.Namespace:
    """--repeats and --threads for a timing benchmark; sets torch's CPU thread count."""
    import torch

    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    return args
