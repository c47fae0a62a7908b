"""The run summary as one self-contained HTML file: score histograms (inline SVG, no plotting
dependency) with the stage thresholds drawn on them, counts per status, drop stage and tier, and
sample thumbnails of kept and dropped clips."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

import numpy as np

from videoforge.curate.config import CurateConfig
from videoforge.curate.manifest import SCORE_NAMES


def stage_thresholds(cfg: CurateConfig) -> dict[str, list[tuple[str, float]]]:
    """Per score, the (label, value) thresholds the stages apply to it."""
    t = {
        "sharpness": [("min_sharpness (per frame)", cfg.blur.min_sharpness)],
        "blur": [("max_blurred_fraction", cfg.blur.max_blurred_fraction)],
        "motion": [("min_motion", cfg.motion.min_motion), ("max_motion (flag)", cfg.motion.max_motion)],
        "text_area": [("max_text_area", cfg.ocr.max_text_area)],
        "quality": [("min_quality", cfg.quality.min_quality)],
        "aesthetic": [("min_aesthetic", cfg.quality.min_aesthetic)],
        "watermark": [("max_watermark", cfg.watermark.max_watermark)],
        "border": [("1 - min_content_fraction", 1.0 - cfg.borders.min_content_fraction)],
    }
    return {k: [(label, float(v)) for label, v in pairs if v is not None] for k, pairs in t.items()}


def histogram_svg(kept: list[float], dropped: list[float], thresholds: list[tuple[str, float]],
                  title: str, bins: int = 30, width: int = 420, height: int = 180) -> str:
    """A stacked histogram (kept green, dropped grey) with red threshold lines, as SVG."""
    values = kept + dropped + [v for _, v in thresholds]
    lo, hi = min(values), max(values)
    if hi <= lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, bins + 1)
    hk, _ = np.histogram(kept, edges)
    hd, _ = np.histogram(dropped, edges)
    top = max(1, int((hk + hd).max()))
    pad, plot_w, plot_h = 30, width - 40, height - 50
    bw = plot_w / bins

    def x(v: float) -> float:
        return pad + (v - lo) / (hi - lo) * plot_w

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">',
             f'<text x="{pad}" y="14" font-size="12" font-family="sans-serif">{html.escape(title)}</text>']
    for i in range(bins):
        yk = hk[i] / top * plot_h
        yd = hd[i] / top * plot_h
        base = 20 + plot_h
        parts.append(f'<rect x="{pad + i * bw:.1f}" y="{base - yk:.1f}" width="{bw - 1:.1f}" height="{yk:.1f}" fill="#4a4"/>')
        parts.append(f'<rect x="{pad + i * bw:.1f}" y="{base - yk - yd:.1f}" width="{bw - 1:.1f}" height="{yd:.1f}" fill="#aaa"/>')
    for label, v in thresholds:
        parts.append(f'<line x1="{x(v):.1f}" y1="20" x2="{x(v):.1f}" y2="{20 + plot_h}" stroke="red" stroke-width="2">'
                     f'<title>{html.escape(label)} = {v:g}</title></line>')
    parts.append(f'<text x="{pad}" y="{height - 14}" font-size="10" font-family="sans-serif">{lo:.3g}</text>')
    parts.append(f'<text x="{pad + plot_w - 30}" y="{height - 14}" font-size="10" font-family="sans-serif">{hi:.3g}</text>')
    parts.append(f'<text x="{pad}" y="{height - 2}" font-size="10" font-family="sans-serif">'
                 f'max bin {top}; red: {html.escape(", ".join(f"{lbl}={v:g}" for lbl, v in thresholds))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _table(title: str, counts: dict[str, int]) -> str:
    rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{v}</td></tr>" for k, v in counts.items())
    return f"<h2>{html.escape(title)}</h2><table border=1 cellpadding=3>{rows}</table>"


def _thumbs(title: str, rows: list[dict[str, Any]]) -> str:
    cells = []
    for r in rows:
        if not r.get("thumbnail"):
            continue
        src = "data:image/jpeg;base64," + base64.b64encode(r["thumbnail"]).decode()
        note = html.escape(r["drop_reason"] or ", ".join(r["tiers"] or []) or r["status"])
        cells.append(f'<figure style="display:inline-block;margin:4px;width:170px"><img src="{src}" width="160">'
                     f'<figcaption style="font-size:10px">{r["clip_id"]}<br>{note}</figcaption></figure>')
    return f"<h2>{html.escape(title)}</h2>{''.join(cells) or '<p>none</p>'}" if cells else ""


def write_report(path: Path, rows: list[dict[str, Any]], cfg: CurateConfig, summary: dict[str, Any],
                 samples: int = 12) -> None:
    thresholds = stage_thresholds(cfg)
    charts = []
    for name in SCORE_NAMES:
        col = f"score_{name}"
        kept = [r[col] for r in rows if r[col] is not None and r["status"] == "kept"]
        dropped = [r[col] for r in rows if r[col] is not None and r["status"] != "kept"]
        if kept or dropped:
            charts.append(histogram_svg(kept, dropped, thresholds.get(name, []), f"score_{name} (n={len(kept) + len(dropped)})"))
    body = ["<h1>videoforge curation report</h1>",
            _table("status", summary["status"]), _table("drop stage", summary["drop_stage"]),
            _table("tiers", summary["tiers"]),
            f"<p>near-duplicates removed: {summary['duplicates']}; k-means concepts: {summary['concepts']}</p>",
            "<h2>score histograms</h2><p>green: kept, grey: dropped or failed; red lines: thresholds</p>",
            "".join(f'<div style="display:inline-block">{c}</div>' for c in charts)]
    ordered = sorted(rows, key=lambda r: r["clip_id"])
    body.append(_thumbs("kept (sample)", [r for r in ordered if r["status"] == "kept"][:samples]))
    for stage in sorted({r["drop_stage"] for r in rows if r["drop_stage"]}):
        body.append(_thumbs(f"dropped by {stage} (sample)", [r for r in ordered if r["drop_stage"] == stage][:4]))
    failed = [r for r in ordered if r["status"] == "failed"]
    if failed:
        items = "".join(f"<li>{html.escape(r['source'])}: {html.escape(r['drop_reason'] or '')}</li>" for r in failed)
        body.append(f"<h2>failed inputs</h2><ul>{items}</ul>")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("<!doctype html><meta charset=utf-8><title>curation report</title><body>" + "".join(body))
    tmp.replace(path)
