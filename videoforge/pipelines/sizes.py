"""Video sizes the models accept: the release's resolution buckets and the general rule.

The latent grid is (F-1)/4+1 frames of H/8 x W/8, patchified 1x2x2 by the DiT, so H and W must be
multiples of 16 and F of the form 4k+1. The release lists the sizes below as supported (reference
notes §5.2); other sizes that follow the rule work but were not what the model was tuned on.
"""

from __future__ import annotations

SIZE_MULTIPLE = 16
FRAME_STRIDE = 4

# (height, width) per tier and aspect ratio, as released.
RELEASE_SIZES: dict[str, dict[str, tuple[int, int]]] = {
    "540p": {"9:16": (544, 960), "16:9": (960, 544), "4:3": (624, 832), "3:4": (832, 624), "1:1": (720, 720)},
    "720p": {"9:16": (720, 1280), "16:9": (1280, 720), "4:3": (1104, 832), "3:4": (832, 1104), "1:1": (960, 960)},
}


def release_sizes() -> list[tuple[int, int]]:
    return [hw for tier in RELEASE_SIZES.values() for hw in tier.values()]


def nearest_release_size(height: int, width: int) -> tuple[int, int]:
    """The release bucket closest in aspect ratio, then in pixel count."""
    return min(release_sizes(), key=lambda hw: (abs(hw[0] / hw[1] - height / width), abs(hw[0] * hw[1] - height * width)))


def _nearest_multiple(x: int, m: int) -> int:
    return max(m, m * round(x / m))


def check_size(height: int, width: int, num_frames: int) -> None:
    """Raise ValueError naming the nearest valid values when (height, width, num_frames) cannot be generated."""
    problems = []
    if height <= 0 or width <= 0 or height % SIZE_MULTIPLE or width % SIZE_MULTIPLE:
        h, w = _nearest_multiple(height, SIZE_MULTIPLE), _nearest_multiple(width, SIZE_MULTIPLE)
        rh, rw = nearest_release_size(max(height, 1), max(width, 1))
        problems.append(
            f"height and width must be positive multiples of {SIZE_MULTIPLE}, got {height}x{width}: "
            f"nearest valid size {h}x{w} (nearest released size {rh}x{rw})"
        )
    if num_frames < 1 or (num_frames - 1) % FRAME_STRIDE:
        below = max(1, num_frames - (num_frames - 1) % FRAME_STRIDE)
        above = below + FRAME_STRIDE if num_frames > 1 else 1 + FRAME_STRIDE
        problems.append(f"num_frames must be {FRAME_STRIDE}k+1 (1, 5, 9, ..., 129), got {num_frames}: use {below} or {above}")
    if problems:
        raise ValueError("; ".join(problems))


def parse_size(text: str) -> tuple[int, int]:
    """'720x1280' (height x width) -> (720, 1280)."""
    parts = text.lower().replace("*", "x").split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"size must be HEIGHTxWIDTH, e.g. 720x1280, got {text!r}")
    return int(parts[0]), int(parts[1])
