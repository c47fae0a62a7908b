"""Training data: a curated manifest (one tier) or a folder of media with same-named captions.

Items are listed once with their shapes (for bucketing); a sample is decoded on demand at its
bucket's size: frames at a random stride from a random start, resized to cover the bucket and
centre-cropped, in [-1, 1]. The caption becomes text through `caption_to_text` (structured
captions: random field dropout and order), or the empty prompt with `caption_dropout`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from videoforge.annotate.captions import CaptionMix, caption_to_text
from videoforge.train.buckets import Bucket, ItemShape

VIDEO_EXTS = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


@dataclass
class MediaItem:
    path: Path
    kind: str  # "video" or "image"
    height: int
    width: int
    frames: int
    caption: str | dict[str, Any]
    tiers: list[str] | None = None  # manifest tiers; None for a plain folder (no tiers)

    @property
    def shape(self) -> ItemShape:
        return ItemShape(self.height, self.width, self.frames, self.kind)


def probe(path: Path) -> tuple[str, int, int, int]:
    """(kind, height, width, frames) of a video or image file."""
    if path.suffix.lower() in IMAGE_EXTS:
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"cannot read image {path}")
        return "image", img.shape[0], img.shape[1], 1
    import av

    try:
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            n = s.frames or sum(1 for _ in c.decode(video=0))
            return "video", s.codec_context.height, s.codec_context.width, n
    except (av.error.FFmpegError, IndexError) as e:
        raise ValueError(f"cannot read video {path}: {e}") from None


def _read_caption(media: Path) -> str | dict[str, Any] | None:
    js, txt = media.with_suffix(".json"), media.with_suffix(".txt")
    if js.is_file():
        try:
            return json.loads(js.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{js}: not valid JSON ({e})") from None
    if txt.is_file():
        return txt.read_text().strip()
    return None


def scan_folder(folder: Path) -> list[MediaItem]:
    """Every video/image in `folder` (recursively) with a same-named .json or .txt caption."""
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_EXTS + IMAGE_EXTS)
    if not files:
        raise ValueError(f"{folder}: no videos ({', '.join(VIDEO_EXTS)}) or images ({', '.join(IMAGE_EXTS)}) found")
    items, uncaptioned = [], []
    for p in files:
        caption = _read_caption(p)
        if caption is None:
            uncaptioned.append(p.name)
            continue
        items.append(MediaItem(p, *probe(p), caption))
    if uncaptioned:
        raise ValueError(
            f"{folder}: {len(uncaptioned)} file(s) without a same-named .txt or .json caption, e.g. {uncaptioned[:3]}"
        )
    return items


def read_manifest(path: Path) -> list[MediaItem]:
    """Kept, captioned rows of a curation manifest (SCHEMA.md), with their tiers."""
    import pyarrow.parquet as pq

    table = pq.read_table(path).to_pylist()
    missing = {"kind", "status", "path", "width", "height", "num_frames", "caption", "tiers"} - set(table[0] if table else {})
    if table and missing:
        raise ValueError(f"{path}: manifest lacks column(s) {sorted(missing)} (see SCHEMA.md)")
    items = []
    for row in table:
        if row["status"] != "kept" or row["caption"] is None:
            continue
        caption = json.loads(row["caption"])
        items.append(MediaItem(path.parent / row["path"], row["kind"], row["height"], row["width"], row["num_frames"],
                               caption, list(row["tiers"] or [])))
    if not items:
        raise ValueError(f"{path}: no kept, captioned rows")
    return items


def select_tiers(item_tiers: Sequence[list[str] | None], tiers: Sequence[str] | None) -> list[int]:
    """Indices of the items in any of `tiers` (all items when tiers is None or items carry none)."""
    if tiers is None:
        return list(range(len(item_tiers)))
    chosen = [i for i, t in enumerate(item_tiers) if t is None or set(t) & set(tiers)]
    if not chosen:
        raise ValueError(f"no training item is in tier(s) {list(tiers)}")
    return chosen


def load_items(path: str | Path) -> list[MediaItem]:
    """A manifest (.parquet) or a folder of media with captions."""
    path = Path(path)
    if path.is_dir():
        return scan_folder(path)
    if path.suffix == ".parquet" and path.is_file():
        return read_manifest(path)
    raise ValueError(f"training data must be a manifest .parquet or a folder, got {path}")


def resize_crop(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize (keeping aspect) to cover height x width, then centre-crop to it."""
    h, w = frame.shape[:2]
    scale = max(height / h, width / w)
    nh, nw = max(height, round(h * scale)), max(width, round(w * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    frame = cv2.resize(frame, (nw, nh), interpolation=interp)
    y, x = (nh - height) // 2, (nw - width) // 2
    return frame[y : y + height, x : x + width]


def frame_window(item_frames: int, want: int, stride_range: Sequence[int], g: torch.Generator) -> tuple[int, int]:
    """(start, stride): a random stride in range that fits, then a random start."""
    lo, hi = stride_range
    hi = max(lo, min(hi, (item_frames - 1) // max(1, want - 1))) if want > 1 else lo
    stride = int(torch.randint(lo, hi + 1, (), generator=g))
    span = (want - 1) * stride + 1
    if span > item_frames:
        raise ValueError(f"a {want}-frame window at stride {stride} does not fit {item_frames} frames")
    start = int(torch.randint(0, item_frames - span + 1, (), generator=g))
    return start, stride


def read_frames(path: Path, indices: Sequence[int]) -> list[np.ndarray]:
    """RGB uint8 frames at the given (sorted) indices of a video."""
    import av

    wanted, frames = set(indices), {}
    with av.open(str(path)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i in wanted:
                frames[i] = f.to_ndarray(format="rgb24")
            if i >= indices[-1]:
                break
    if len(frames) != len(wanted):
        raise ValueError(f"{path}: expected frames {indices[0]}..{indices[-1]}, decoded {len(frames)} of them")
    return [frames[i] for i in indices]


def load_pixels(item: MediaItem, bucket: Bucket, g: torch.Generator, stride_range: Sequence[int] = (1, 1)) -> torch.Tensor:
    """The item at the bucket's size and length: [3, F, H, W] float32 in [-1, 1]."""
    if item.kind == "image":
        img = cv2.imread(str(item.path), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"cannot read image {item.path}")
        frames = [cv2.cvtColor(img, cv2.COLOR_BGR2RGB)] * bucket.frames
    else:
        start, stride = frame_window(item.frames, bucket.frames, stride_range, g)
        frames = read_frames(item.path, [start + k * stride for k in range(bucket.frames)])
    arr = np.stack([resize_crop(f, bucket.height, bucket.width) for f in frames])  # F, H, W, 3
    return torch.from_numpy(arr).permute(3, 0, 1, 2).float().div(127.5).sub(1.0)


def caption_text(caption: str | dict[str, Any], rng: np.random.Generator, dropout: float,
                 mix: CaptionMix = CaptionMix()) -> str:
    """Training text: "" with probability `dropout`, else the caption (structured: varied by
    `caption_to_text` with `mix`)."""
    if rng.random() < dropout:
        return ""
    if isinstance(caption, dict):
        return caption_to_text(caption, rng, mix)
    return caption
