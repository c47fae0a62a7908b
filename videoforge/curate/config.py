"""Curation config: one small options dataclass per stage plus the global steps and the tiers,
loaded from YAML (`configs/curate.yaml` documents every default). Unknown keys are errors."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from videoforge.curate.stages.blur import BlurOptions
from videoforge.curate.stages.borders import BorderOptions
from videoforge.curate.stages.embed import EmbedOptions
from videoforge.curate.stages.motion import MotionOptions
from videoforge.curate.stages.ocr import OCROptions
from videoforge.curate.stages.people import PeopleOptions
from videoforge.curate.stages.probe import ProbeOptions
from videoforge.curate.stages.quality import QualityOptions
from videoforge.curate.stages.shots import ShotOptions
from videoforge.curate.stages.start_frame import StartFrameOptions
from videoforge.curate.stages.watermark import WatermarkOptions


@dataclass
class WriteOptions:
    crf: int = 18
    preset: str = "veryfast"
    image_ext: str = ".png"


@dataclass
class DedupOptions:
    threshold: float = 0.95  # cosine similarity of embeddings at or above which clips are duplicates


@dataclass
class ConceptOptions:
    num_centroids: int = 10000  # capped at the number of kept clips
    niter: int = 20
    seed: int = 0
    max_train_points: int = 1_000_000  # k-means trains on a sample this large, then assigns all


@dataclass
class TierSpec:
    """A training tier: clips at least this large and long that pass these thresholds."""

    name: str
    kind: str = "video"  # video or image
    short_side: int = 256  # min(width, height) of the written clip
    num_frames: int = 1  # frames the trainer takes from a clip
    min_quality: float | None = None
    min_aesthetic: float | None = None  # ignored while `score_aesthetic` is null (no model)
    min_sharpness: float | None = None
    min_motion: float | None = None
    allow_fast_motion: bool = False  # include clips flagged too fast
    max_text_area: float | None = None
    max_watermark: float | None = None
    max_per_concept: int | None = None  # concept balance: at most this many clips per k-means concept


@dataclass
class FinetuneSpec:
    """The hand-pickable fine-tuning set: the top-ranked clips of one tier, exported for review."""

    from_tier: str | None = None  # None: every kept video
    size: int = 100
    min_people: int | None = None  # e.g. 1 for a portrait set


def _default_tiers() -> list[TierSpec]:
    return [
        TierSpec("video-256-65", short_side=256, num_frames=65, min_quality=0.4, min_motion=0.3),
        TierSpec("video-360-129", short_side=360, num_frames=129, min_quality=0.5, min_motion=0.5, max_text_area=0.02),
        TierSpec("video-540-129", short_side=540, num_frames=129, min_quality=0.6, min_motion=0.5, max_text_area=0.01),
        TierSpec("video-720-129", short_side=720, num_frames=129, min_quality=0.7, min_motion=0.5,
                 max_text_area=0.01, max_watermark=0.0),
        TierSpec("video-720-129-hq", short_side=720, num_frames=129, min_quality=0.8, min_aesthetic=0.5,
                 min_sharpness=60.0, min_motion=1.0, max_text_area=0.005, max_watermark=0.0, max_per_concept=50),
        TierSpec("image-1", kind="image", short_side=256, min_quality=0.4),
        TierSpec("image-2", kind="image", short_side=512, min_quality=0.6, max_text_area=0.01, max_watermark=0.0),
    ]


@dataclass
class CurateConfig:
    probe: ProbeOptions = field(default_factory=ProbeOptions)
    shots: ShotOptions = field(default_factory=ShotOptions)
    borders: BorderOptions = field(default_factory=BorderOptions)
    start_frame: StartFrameOptions = field(default_factory=StartFrameOptions)
    blur: BlurOptions = field(default_factory=BlurOptions)
    motion: MotionOptions = field(default_factory=MotionOptions)
    ocr: OCROptions = field(default_factory=OCROptions)
    quality: QualityOptions = field(default_factory=QualityOptions)
    watermark: WatermarkOptions = field(default_factory=WatermarkOptions)
    people: PeopleOptions = field(default_factory=PeopleOptions)
    embed: EmbedOptions = field(default_factory=EmbedOptions)
    write: WriteOptions = field(default_factory=WriteOptions)
    dedup: DedupOptions = field(default_factory=DedupOptions)
    concepts: ConceptOptions = field(default_factory=ConceptOptions)
    tiers: list[TierSpec] = field(default_factory=_default_tiers)
    finetune: FinetuneSpec = field(default_factory=FinetuneSpec)

    # Sections whose options change what a worker computes for one input (resume keys on them).
    PER_INPUT = ("probe", "shots", "borders", "start_frame", "blur", "motion", "ocr", "quality",
                 "watermark", "people", "embed", "write")

    def per_input_hash(self) -> str:
        data = {k: dataclasses.asdict(getattr(self, k)) for k in self.PER_INPUT}
        return hashlib.sha1(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; known: {sorted(names)}")
    return cls(**data)


def config_from_dict(data: dict[str, Any]) -> CurateConfig:
    """Build a config from nested dicts (missing sections and keys keep their defaults)."""
    base = CurateConfig()
    types = {f.name: type(getattr(base, f.name)) for f in dataclasses.fields(CurateConfig)}
    unknown = sorted(set(data) - set(types))
    if unknown:
        raise ValueError(f"curate config: unknown section(s) {unknown}; known: {sorted(types)}")
    kwargs: dict[str, Any] = {}
    for name, section in data.items():
        if name == "tiers":
            kwargs[name] = [_build(TierSpec, t, f"tiers[{i}]") for i, t in enumerate(section or [])]
        else:
            kwargs[name] = _build(types[name], section or {}, name)
    return CurateConfig(**kwargs)


def load_config(path: str | Path | None) -> CurateConfig:
    """Load a YAML config; None gives the defaults."""
    if path is None:
        return CurateConfig()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"curate config {path} not found")
    return config_from_dict(yaml.safe_load(path.read_text()) or {})
