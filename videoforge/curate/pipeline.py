"""One input through every per-input stage: probe + decode once, split into shots, score and
filter each clip on the shared frames, write the kept clips. Rows come back for the manifest."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from videoforge.curate.config import CurateConfig
from videoforge.curate.stage import Clip, Stage, applies, run_stage
from videoforge.curate.stages.blur import BlurStage
from videoforge.curate.stages.borders import BorderStage
from videoforge.curate.stages.embed import EmbedStage
from videoforge.curate.stages.motion import MotionStage
from videoforge.curate.stages.ocr import OCRStage
from videoforge.curate.stages.people import PeopleStage
from videoforge.curate.stages.probe import ProbeStage
from videoforge.curate.stages.quality import QualityStage
from videoforge.curate.stages.shots import ShotStage, shot_spans, split_into_clips
from videoforge.curate.stages.start_frame import StartFrameStage
from videoforge.curate.stages.watermark import WatermarkStage
from videoforge.curate.video_io import ClipSpec, decode_image, kind_of, write_clips, write_image

CLIPS_DIR = "clips"
IMAGES_DIR = "images"


def build_clip_stages(cfg: CurateConfig) -> list[Stage]:
    """The per-clip stages in order (border first: every later score sees the cropped picture)."""
    return [
        BorderStage(cfg.borders), StartFrameStage(cfg.start_frame), BlurStage(cfg.blur),
        MotionStage(cfg.motion), OCRStage(cfg.ocr), QualityStage(cfg.quality),
        WatermarkStage(cfg.watermark), PeopleStage(cfg.people), EmbedStage(cfg.embed),
    ]


class InputProcessor:
    """Holds the stages of one worker (models loaded once in `setup`) and processes inputs."""

    def __init__(self, cfg: CurateConfig) -> None:
        self.cfg = cfg
        self.probe = ProbeStage(cfg.probe)
        self.shots = ShotStage(cfg.shots)
        self.clip_stages = build_clip_stages(cfg)
        self.stage_names = [self.probe.name, self.shots.name] + [s.name for s in self.clip_stages] + ["write"]

    def setup(self) -> None:
        for stage in [self.probe, self.shots, *self.clip_stages]:
            stage.setup()

    def analyse(self, source: str) -> tuple[list[Clip], Counter]:
        """Decode once and run every stage; returns the clips and how many each stage saw.

        Videos arrive in chunks: the shots of each chunk are scored and their frames released,
        except the last shot, which may go on in the next chunk and is carried over to it. A
        decode error after the first chunk ends the input there (what was decoded is kept).
        """
        counts: Counter = Counter()
        whole = run_stage(self.probe, Clip(source=source, kind=kind_of(source)))
        counts["probe"] += 1
        if not whole.alive:
            whole.frames = None
            return [whole], counts
        clips: list[Clip] = []
        buffer, offset = whole.frames, 0
        try:
            while True:
                whole.frames = buffer
                whole = run_stage(self.shots, whole)
                counts["shot"] += 1
                if not whole.alive:
                    return clips + [whole], counts
                spans = shot_spans(len(buffer), whole.cuts, self.cfg.shots)
                more = self._next_chunk(whole)
                batch = split_into_clips(whole, spans if len(more) == 0 else spans[:-1], offset, self.cfg.shots)
                for stage in self.clip_stages:
                    for clip in batch:
                        counts[stage.name] += applies(stage, clip)
                        run_stage(stage, clip)
                for clip in batch:  # scored: release the frames
                    clip.frames = None
                    clip.cache.clear()
                clips += batch
                if len(more) == 0:
                    return clips, counts
                carry = spans[-1][0]
                buffer, offset = np.concatenate([buffer[carry:], more]), offset + carry
        finally:
            if whole.decoder is not None:
                whole.decoder.close()
                whole.decoder = None

    def _next_chunk(self, whole: Clip) -> np.ndarray:
        """The next chunk of analysis frames, or an empty array at the end of the input."""
        if whole.decoder is None:
            return np.empty((0,), np.uint8)
        try:
            more = whole.decoder.read(self.cfg.probe.chunk_frames)
        except Exception:  # noqa: BLE001 - a truncated file ends here; its decoded part stays usable
            more = np.empty((0,), np.uint8)
        if len(more) == 0:
            whole.decoder.close()
            whole.decoder = None
        return more

    def process(self, source: str, out_dir: Path) -> tuple[list[dict[str, Any]], Counter]:
        """Analyse one input, write its kept clips under `out_dir`, return its manifest rows."""
        clips, counts = self.analyse(source)
        return self.write(source, clips, out_dir, counts)

    def write(self, source: str, clips: list[Clip], out_dir: Path,
              counts: Counter) -> tuple[list[dict[str, Any]], Counter]:
        """Write the kept clips (one more decode pass, at source resolution) and make the rows."""
        keep = [c for c in clips if c.alive]
        try:
            if keep and keep[0].kind == "image":
                path = Path(IMAGES_DIR) / f"{keep[0].clip_id}{self.cfg.write.image_ext}"
                (out_dir / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
                write_image(decode_image(source), keep[0].crop, out_dir / path)
                keep[0].path = path.as_posix()
            elif keep:
                (out_dir / CLIPS_DIR).mkdir(parents=True, exist_ok=True)
                specs = []
                for c in keep:
                    c.path = (Path(CLIPS_DIR) / f"{c.clip_id}.mp4").as_posix()
                    w, h = c.out_size
                    crop = c.crop or [0, 0, w, h]
                    specs.append(ClipSpec(c.start_frame_sharpest, c.end_frame, crop, out_dir / c.path))
                write_clips(source, specs, self.cfg.write.crf, self.cfg.write.preset)
            counts["write"] += len(keep)
        except Exception as e:  # noqa: BLE001 - recorded on the clips, the run goes on
            for c in keep:
                c.path = None
                c.fail("write", "probe", f"write failed: {type(e).__name__}: {e}")
        return [clip_row(c) for c in clips], counts


def clip_row(c: Clip) -> dict[str, Any]:
    """A manifest row (plus the worker-only `embedding` and `thumbnail`) for one clip."""
    w, h = c.out_size
    video = c.kind == "video"
    start = c.start_frame_sharpest if c.start_frame_sharpest is not None else c.start_frame
    return {
        "clip_id": c.clip_id, "kind": c.kind, "source": c.source,
        "start_frame": c.start_frame, "end_frame": c.end_frame,
        "start_time": (c.start_frame / c.fps if c.fps else None) if video else 0.0,
        "end_time": ((c.end_frame + 1) / c.fps if c.fps else None) if video else 0.0,
        "fps": c.fps if video else None,
        "width": w if c.source_width else None, "height": h if c.source_height else None,
        "num_frames": (c.end_frame - start + 1 if c.fps else None) if video else 1,
        "status": c.status, "drop_stage": c.drop_stage, "drop_reason": c.drop_reason,
        "crop": c.crop, "scores": dict(c.scores), "num_people": c.num_people,
        "start_frame_sharpest": c.start_frame_sharpest, "path": c.path,
        "embedding": None if c.embedding is None else c.embedding.tolist(),
        "thumbnail": c.thumbnail,
    }
