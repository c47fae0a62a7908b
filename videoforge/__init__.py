"""videoforge: an open, full-stack PyTorch implementation of the HunyuanVideo framework."""

__version__ = "0.1.0"
