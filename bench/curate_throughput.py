"""Curation throughput: decode once and share the frames across every scorer (what
`videoforge curate` does) against the naive layout where each stage decodes the video itself
(Open-Sora-style: one pass per scoring step). Same stages, same thresholds, same results
(checked); prints frames per CPU-second (= frames/s per core) and per wall-second, as ratios.

    python bench/curate_throughput.py [--width 640 --height 360 --shot 96 --repeats 1]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

import av
import cv2

from videoforge.curate.config import CurateConfig
from videoforge.curate.pipeline import InputProcessor
from videoforge.curate.stage import Clip, run_stage
from videoforge.curate.stages.shots import shot_spans, split_into_clips
from videoforge.curate.synthetic import make_raw_folder
from videoforge.curate.video_io import kind_of


class NaiveProcessor(InputProcessor):
    """The same stages, but every one of them decodes the input again (to the same analysis
    size) instead of sharing one decode."""

    def process_naive(self, source: str, out_dir: Path):
        whole = run_stage(self.probe, Clip(source=source, kind=kind_of(source)))  # the shot stage's decode
        if not whole.alive:
            return self.write(source, [whole], out_dir, Counter())
        whole = run_stage(self.shots, whole)
        clips = split_into_clips(whole, shot_spans(len(whole.frames), whole.cuts, self.cfg.shots), 0, self.cfg.shots)
        for stage in self.clip_stages:
            own = run_stage(self.probe, Clip(source=source, kind=kind_of(source)))  # this stage's own decode
            for clip in clips:
                frames = own.frames if clip.kind == "image" else own.frames[clip.start_frame:clip.end_frame + 1]
                if clip.frame_box:
                    x0, y0, x1, y1 = clip.frame_box
                    frames = frames[:, y0:y1, x0:x1]
                clip.frames = frames
                clip.cache.clear()
                run_stage(stage, clip)
        return self.write(source, clips, out_dir, Counter())


def source_frames(paths: list[Path]) -> int:
    total = 0
    for p in paths:
        try:
            with av.open(str(p)) as c:
                total += sum(1 for _ in c.decode(video=0))
        except av.error.FFmpegError:
            pass
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=360)
    ap.add_argument("--shot", type=int, default=96, help="frames per planted shot")
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cv2.setNumThreads(1)

    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw"
        make_raw_folder(raw, args.width, args.height, args.shot)
        inputs = sorted(str(p) for p in raw.iterdir() if p.suffix == ".mp4")
        frames = source_frames([Path(p) for p in inputs])
        cfg = CurateConfig()
        cfg.probe.chunk_frames = None  # the naive layout decodes whole videos; the shared one alike
        processor = NaiveProcessor(cfg)
        processor.setup()
        processor.process(inputs[-1], Path(tmp) / "warm")  # first-call model warm-up, untimed
        results = {}
        for mode in ("shared", "naive"):
            best = None
            for r in range(args.repeats):
                out = Path(tmp) / f"{mode}{r}"
                wall, cpu = time.perf_counter(), time.process_time()
                rows = []
                for src in inputs:
                    got, _ = processor.process(src, out) if mode == "shared" else processor.process_naive(src, out)
                    rows += got
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                best = (wall, cpu, rows) if best is None or cpu < best[1] else best
            results[mode] = best
        strip = [{k: v for k, v in r.items() if k != "thumbnail"} for r in results["shared"][2]]
        assert strip == [{k: v for k, v in r.items() if k != "thumbnail"} for r in results["naive"][2]], "modes disagree"

    print(f"{len(inputs)} videos, {frames} source frames at {args.width}x{args.height}; same rows in both modes")
    print(f"{'mode':8} {'wall s':>8} {'cpu s':>8} {'frames/s':>10} {'frames/cpu-s':>13}")
    for mode, (wall, cpu, _) in results.items():
        print(f"{mode:8} {wall:8.2f} {cpu:8.2f} {frames / wall:10.1f} {frames / cpu:13.1f}")
    (sw, sc, _), (nw, nc, _) = results["shared"], results["naive"]
    print(f"decode-once speed-up: {nc / sc:.2f}x per core (CPU time), {nw / sw:.2f}x wall")


if __name__ == "__main__":
    main()
