"""Synthetic data: procedurally rendered scenes with exact labels (camera motion, shapes world)."""
