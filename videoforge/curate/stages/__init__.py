"""Curation stages, one module each. `build_clip_stages` gives the per-clip ones in order."""
