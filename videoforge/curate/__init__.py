"""Data curation: raw videos and images -> scored single-shot clips, dedup, concept balance and
training tiers, with a Parquet manifest (SCHEMA.md). Entry point: `curate(raw, out_dir, cfg)`."""

from videoforge.curate.config import CurateConfig, load_config
from videoforge.curate.manifest import read_manifest
from videoforge.curate.runner import curate, discover_inputs

__all__ = ["CurateConfig", "curate", "discover_inputs", "load_config", "read_manifest"]
