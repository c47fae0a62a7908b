"""The global steps, run over all rows once every input is processed: near-duplicate removal,
k-means concepts (faiss) and the tiers. Pure functions of the rows, so a resumed run gives the
same result as an uninterrupted one."""

from __future__ import annotations

from typing import Any

import numpy as np

from videoforge.curate.config import ConceptOptions, DedupOptions, FinetuneSpec, TierSpec

Row = dict[str, Any]


def _rank_key(r: Row) -> tuple:
    """Best first: highest quality, then the stable clip id."""
    return (-(r["score_quality"] if r["score_quality"] is not None else -1.0), r["clip_id"])


def remove_duplicates(rows: list[Row], o: DedupOptions) -> int:
    """Drop kept clips whose embedding has cosine >= threshold with a better-ranked kept clip
    (`drop_stage` dedup, `duplicate_of` set). Returns how many were dropped."""
    import faiss

    dropped = 0
    for kind in ("video", "image"):
        cand = sorted((r for r in rows if r["status"] == "kept" and r["kind"] == kind and r["embedding"]), key=_rank_key)
        if len(cand) < 2:
            continue
        x = np.ascontiguousarray(np.array([r["embedding"] for r in cand], np.float32))
        index = faiss.IndexFlatIP(x.shape[1])
        index.add(x)
        lims, sims, ids = index.range_search(x, o.threshold - 1e-6)
        kept: set[int] = set()
        for i, r in enumerate(cand):
            neighbours = sorted(int(j) for j in ids[lims[i]:lims[i + 1]] if j != i and j in kept)
            if neighbours:
                j = neighbours[0]
                sim = float(x[i] @ x[j])
                r.update(status="dropped", drop_stage="dedup", duplicate_of=cand[j]["clip_id"],
                         drop_reason=f"near-duplicate of {cand[j]['clip_id']} (cosine {sim:.3f} >= {o.threshold})")
                dropped += 1
            else:
                kept.add(i)
    return dropped


def assign_concepts(rows: list[Row], o: ConceptOptions) -> int:
    """k-means over the kept clips' embeddings; sets `concept`. Returns the number of centroids."""
    import faiss

    kept = sorted((r for r in rows if r["status"] == "kept" and r["embedding"]), key=lambda r: r["clip_id"])
    if not kept:
        return 0
    x = np.ascontiguousarray(np.array([r["embedding"] for r in kept], np.float32))
    k = max(1, min(o.num_centroids, len(kept)))
    if k == 1:
        labels = np.zeros(len(kept), np.int64)
    else:
        rng = np.random.default_rng(o.seed)
        train = x if len(x) <= o.max_train_points else x[rng.choice(len(x), o.max_train_points, replace=False)]
        km = faiss.Kmeans(x.shape[1], k, niter=o.niter, seed=o.seed, verbose=False,
                          min_points_per_centroid=1, max_points_per_centroid=1 << 30)
        km.train(train)
        labels = km.index.search(x, 1)[1][:, 0]
    for r, c in zip(kept, labels):
        r["concept"] = int(c)
    return k


def _qualifies(r: Row, t: TierSpec) -> bool:
    def below(score: str, minimum: float | None) -> bool:
        return minimum is not None and r[score] is not None and r[score] < minimum

    def above(score: str, maximum: float | None) -> bool:
        return maximum is not None and r[score] is not None and r[score] > maximum

    if r["status"] != "kept" or r["kind"] != t.kind or min(r["width"], r["height"]) < t.short_side:
        return False
    if t.kind == "video" and (r["num_frames"] < t.num_frames or (not t.allow_fast_motion and r["score_fast_motion"])):
        return False
    return not (below("score_quality", t.min_quality) or below("score_aesthetic", t.min_aesthetic)
                or below("score_sharpness", t.min_sharpness) or below("score_motion", t.min_motion)
                or above("score_text_area", t.max_text_area) or above("score_watermark", t.max_watermark))


def assign_tiers(rows: list[Row], tiers: list[TierSpec], finetune: FinetuneSpec) -> dict[str, int]:
    """Set each row's `tiers` list; returns the count per tier (including `finetune`)."""
    members: dict[str, list[Row]] = {}
    for t in tiers:
        chosen = sorted((r for r in rows if _qualifies(r, t)), key=_rank_key)
        if t.max_per_concept is not None:  # concept balance: cap each k-means cluster
            per: dict[Any, int] = {}
            balanced = []
            for r in chosen:
                per[r["concept"]] = per.get(r["concept"], 0) + 1
                if per[r["concept"]] <= t.max_per_concept:
                    balanced.append(r)
            chosen = balanced
        members[t.name] = chosen
    if finetune.from_tier is not None and finetune.from_tier not in members:
        raise ValueError(f"finetune.from_tier {finetune.from_tier!r} is not a tier name: {sorted(members)}")
    pool = members[finetune.from_tier] if finetune.from_tier else [r for r in rows if r["status"] == "kept" and r["kind"] == "video"]
    if finetune.min_people is not None:
        pool = [r for r in pool if (r["num_people"] or 0) >= finetune.min_people]
    members["finetune"] = sorted(pool, key=lambda r: (-(r["score_aesthetic"] if r["score_aesthetic"] is not None else -1.0),
                                                      *_rank_key(r)))[: finetune.size]
    for r in rows:
        r["tiers"] = []
    for name, chosen in members.items():
        for r in chosen:
            r["tiers"].append(name)
    return {name: len(chosen) for name, chosen in members.items()}
