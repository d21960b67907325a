"""Near-duplicate candidate pairs of one dataset's image summaries: fingerprints, patch sketches, an adaptive threshold.

The first of the two stages of :mod:`audit.checks.content`'s
``leakage.near_duplicate_image`` (see its documentation for the rule and the
measured figures): :func:`near_duplicates` links pairs of one BIDS suffix
whose fingerprints agree (also mirrored or turned) or whose voxel patches
are largely the same, under a per-suffix threshold that rises from its floor
only as far as the confirmation budget asks; the second stage
(:mod:`audit.images.confirmpairs`) decides them.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from audit.images import candidates
from audit.images.mutual import MUTUAL_K, mutual_pairs
from audit.images.spectrum import SP_NEIGHBOURS, SPECTRUM_MAX, SPECTRUM_MIN, neighbourhood_space, spectrum_pairs
from audit.images.summary import ImageSummary

__all__ = ["NearPair", "grid_map", "near_duplicates"]


@dataclass(frozen=True)
class NearPair:
    """Two images whose fingerprints agree, or whose voxel patches are largely the same."""

    a: ImageSummary
    b: ImageSummary
    similarity: float | None  # relative fingerprint similarity (None: not compared)
    size_difference: float | None  # largest |log ratio| of the principal spreads
    group: str  # the suffix whose mean was removed
    group_size: int
    patch_overlap: float | None = None  # share of the smaller patch set the other holds (None: no sketches)
    matched_by: tuple[str, ...] = ()  # "fingerprint", "fingerprint (mirrored)", "voxel patches"
    grid_map: dict[str, Any] | None = None  # mirrored or turned: the fingerprint grid's axis order and reversals
    spectrum_z: float | None = None  # the spectra's neighbourhood-scaled similarity, robust z (None: not linked)
    mutual_score: float | None = None  # mutual nearest neighbours: spectrum z + fingerprint z (None: not linked)


def near_duplicates(summaries: Iterable[ImageSummary], *, similarity: float, size_tolerance: float,
                    patch_overlap: float = 0.5, mirrors: bool = True, similarity_floor: float | None = None,
                    size_tolerance_floor: float | None = None, candidate_budget: int = 0,
                    candidate_budget_per_image: float = 0.0, spectrum_z: float | None = None,
                    spectrum_budget_fraction: float = 0.25, mutual_budget_per_image: float = 0.0,
                    **_: Any) -> tuple[list[NearPair], dict[str, Any]]:
    """Candidate pairs: images of different participants (and different content) that may be near-copies.

    Images are compared within their suffix (``T1w``, ``bold``...) in two
    ways: fingerprints, each group centred on its own mean fingerprint
    (:func:`audit.images.candidates.near_pairs`, and with ``mirrors`` also
    :func:`audit.images.candidates.mirror_pairs`; ``similarity`` and
    ``size_tolerance``), and patch sketches
    (:func:`audit.images.candidates.sketch_pairs`; ``patch_overlap``).
    Either is enough. Returns the pairs (sorted by path) and figures about
    the search. Other keyword arguments (the confirmation stage's settings)
    are ignored.

    Adaptive fingerprint threshold (with ``similarity_floor`` under
    ``similarity``): each group is searched at the floor (sizes within
    ``size_tolerance_floor``); when its fingerprint pairs number at most
    the group's budget, ``max(candidate_budget, candidate_budget_per_image
    x images)``, all are kept. Otherwise the group's threshold rises to the
    budget's boundary (the pairs above the (budget + 1)-th highest
    similarity are kept); when that boundary reaches ``similarity`` (the
    ceiling) the group falls back to ``similarity`` / ``size_tolerance``,
    so no pair the fixed rule finds is ever dropped. ``stats["thresholds"]``
    says, per group, where it was set and how many pairs were left over.

    Spectra (with ``spectrum_z``): each group's spectra are searched too
    (:func:`audit.images.spectrum.spectrum_pairs`: a pair that stands out of
    its two images' neighbourhoods by at least ``spectrum_z`` robust
    standard units), with a budget of their own (``spectrum_budget_fraction`` of the
    fingerprints'); they find what moves the fingerprint's frame (crops
    into the head, bias-field correction, translations). ``stats["spectrum"]``
    has the figures per group.

    Mutual nearest neighbours (with ``spectrum_z`` and
    ``mutual_budget_per_image`` > 0): pairs whose two images are each other's
    best by the sum of the spectrum and the fingerprint z scores, sizes
    within ``size_tolerance_floor``
    (:func:`audit.images.mutual.mutual_pairs`), at most
    ``mutual_budget_per_image`` x the group's images more (the highest
    scores first): copies that several transforms moved under both cuts (a
    flip, a turn and noise).
    ``stats["mutual"]`` has the figures per group.
    """
    groups: dict[str, list[ImageSummary]] = defaultdict(list)
    for s in summaries:
        if (s.fingerprint or s.patch_sketch or s.spectrum) and s.subject and s.status == "ok":
            groups[s.suffix or "?"].append(s)
    found: dict[tuple[str, str], dict[str, Any]] = {}
    stats: dict[str, Any] = {"groups": {}, "candidates": 0, "thresholds": {}, "spectrum": {}, "mutual": {}}
    adaptive = similarity_floor is not None and similarity_floor < similarity
    search_at = float(similarity_floor) if adaptive else similarity  # type: ignore[arg-type]
    tolerance_at = max(size_tolerance, size_tolerance_floor or 0.0) if adaptive else size_tolerance

    def keep(ma: ImageSummary, mb: ImageSummary) -> bool:
        return ma.subject != mb.subject and not (ma.content_hash and ma.content_hash == mb.content_hash)

    for suffix, members in sorted(groups.items()):
        members.sort(key=lambda s: s.path)
        stats["groups"][suffix] = len(members)
        fps = [m for m in members if m.fingerprint and m.fingerprint_spread]
        res = None
        if len(fps) >= candidates.MIN_GROUP:
            decoded = [m.fingerprint_vector() for m in fps]
            width = len(decoded[0])
            kept = [k for k, v in enumerate(decoded) if len(v) == width]  # one fingerprint version per group
            fps = [fps[k] for k in kept]
            vectors = np.empty((len(fps), width), dtype=np.float16)
            for row, k in enumerate(kept):
                vectors[row] = decoded[k]
            del decoded
            spread = np.log(np.array([m.fingerprint_spread for m in fps], dtype=np.float64))
            pi, pj, ps, info = candidates.near_pairs(vectors, search_at)
            stats["candidates"] += int(info["candidates"])
            searches: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]] = [
                ("fingerprint", pi, pj, ps, None)]
            if mirrors:
                mi, mj, ms, mk, minfo = candidates.mirror_pairs(vectors, search_at)
                searches.append(("fingerprint (mirrored or turned)", mi, mj, ms, mk))
                stats["candidates"] += int(minfo["candidates"])
            linked: dict[tuple[str, str], dict[str, Any]] = {}
            for how, i, j, sim, flip in searches:
                for n, (a, b, s) in enumerate(zip(i.tolist(), j.tolist(), sim.tolist())):
                    ma, mb = fps[a], fps[b]
                    if not keep(ma, mb) or (ma.path, mb.path) in linked:  # a plain match wins over a mirrored one
                        continue
                    diff = float(np.abs(spread[a] - spread[b]).max())
                    if diff > tolerance_at:
                        continue
                    linked[(ma.path, mb.path)] = {"a": ma, "b": mb, "similarity": round(float(s), 4), "_s": float(s),
                                                  "_diff": diff, "size_difference": round(diff, 4), "group": suffix,
                                                  "group_size": len(fps), "matched_by": [how],
                                                  "grid_map": None if flip is None else grid_map(int(flip[n]))}
            kept, where = _within_budget(linked, len(fps), similarity=similarity, size_tolerance=size_tolerance,
                                         search_at=search_at, tolerance_at=tolerance_at, adaptive=adaptive,
                                         budget=candidate_budget, per_image=candidate_budget_per_image)
            stats["thresholds"][suffix] = where
            for key, row in kept.items():
                row.pop("_s"), row.pop("_diff")
                found[key] = row
            res = (candidates.residuals(vectors), {m.path: k for k, m in enumerate(fps)}, spread)
        if spectrum_z is not None and spectrum_z > 0:
            budget = max(int(candidate_budget), math.ceil(candidate_budget_per_image * len(members)))
            stats["spectrum"][suffix], group = _spectrum_links(members, found, res, suffix, keep, float(spectrum_z),
                                                               math.ceil(spectrum_budget_fraction * budget))
            if mutual_budget_per_image > 0 and group is not None:
                stats["mutual"][suffix] = _mutual_links(group, found, res, suffix, keep,
                                                        math.ceil(mutual_budget_per_image * len(members)),
                                                        tolerance_at)
        sk = [m for m in members if m.patch_sketch and m.patch_count]
        if len(sk) >= 2:
            hashes = [m.sketch_hashes() for m in sk]
            i, j, share = candidates.sketch_pairs(hashes, [int(m.patch_count or 0) for m in sk], patch_overlap)
            for a, b, s in zip(i.tolist(), j.tolist(), share.tolist()):
                ma, mb = sk[a], sk[b]
                if not keep(ma, mb):
                    continue
                if ma.path > mb.path:
                    ma, mb = mb, ma
                row = found.get((ma.path, mb.path))
                if row is None:
                    row = found[(ma.path, mb.path)] = _new_row(ma, mb, suffix, len(members), res)
                row["patch_overlap"] = round(float(s), 4)
                row["matched_by"].append("voxel patches")
    pairs = [NearPair(r["a"], r["b"], r["similarity"], r["size_difference"], r["group"], r["group_size"],
                      r.get("patch_overlap"), tuple(r["matched_by"]), r.get("grid_map"), r.get("spectrum_z"),
                      r.get("mutual_score"))
             for r in found.values()]
    pairs.sort(key=lambda p: (p.a.path, p.b.path))
    stats["pairs"] = len(pairs)
    return pairs, stats


def _new_row(ma: ImageSummary, mb: ImageSummary, suffix: str, size: int, res: Any) -> dict[str, Any]:
    """A pair first linked by spectra, mutual neighbours or patches, with its fingerprint figures where known."""
    row: dict[str, Any] = {"a": ma, "b": mb, "similarity": None, "size_difference": None, "group": suffix,
                           "group_size": size, "matched_by": []}
    if res is not None and ma.path in res[1] and mb.path in res[1]:
        ra, rb = res[1][ma.path], res[1][mb.path]
        row["similarity"] = round(float(res[0].cosine(np.array([ra]), np.array([rb]))[0]), 4)
        row["size_difference"] = round(float(np.abs(res[2][ra] - res[2][rb]).max()), 4)
    return row


def _spectrum_links(members: list[ImageSummary], found: dict[tuple[str, str], dict[str, Any]], res: Any,
                    suffix: str, keep: Any, z_min: float, allowed: int) -> tuple[dict[str, Any], Any]:
    """Add one group's spectrum pairs to ``found`` (at most ``allowed`` new ones); figures about the search.

    Also returns ``(images, their neighbourhood space, participant labels)`` for the mutual rule (None when
    the group is not searched by its spectra).
    """
    sp = [m for m in members if m.spectrum]
    if not sp:
        return {"images": 0}, None
    decoded = [m.spectrum_vector() for m in sp]
    width = len(decoded[0])
    sp = [m for m, v in zip(sp, decoded) if len(v) == width]  # one spectrum version per group
    vectors = np.array([v for v in decoded if len(v) == width], dtype=np.float16)
    subjects = {s: k for k, s in enumerate(sorted({m.subject or "" for m in sp}))}
    labels = np.array([subjects[m.subject or ""] for m in sp])
    known = sum(1 for r in found.values() if r["group"] == suffix)
    space = neighbourhood_space(vectors) if max(SPECTRUM_MIN, SP_NEIGHBOURS + 2) <= len(sp) <= SPECTRUM_MAX else None
    i, j, z, info = spectrum_pairs(vectors, z_min=z_min, limit=allowed + known, labels=labels, space=space)
    added = _add_pairs(found, sp, i, j, z, res, suffix, keep, allowed, "spectrum_z", "spectrum")
    return {**info, "z_min": z_min, "budget": allowed, "pairs_added": added}, (
        None if space is None else (sp, space, labels))


def _add_pairs(found: dict[tuple[str, str], dict[str, Any]], sp: list[Any], i: np.ndarray, j: np.ndarray,
               scores: np.ndarray, res: Any, suffix: str, keep: Any, allowed: int, field: str, source: str) -> int:
    """Mark the pairs ``(sp[i], sp[j])`` that ``keep`` accepts as found by ``source`` (its score in ``field``).

    A pair not yet in ``found`` is added while fewer than ``allowed`` were; returns how many were added.
    """
    added = 0
    for a, b, score in zip(i.tolist(), j.tolist(), scores.tolist()):
        ma, mb = sorted((sp[a], sp[b]), key=lambda m: m.path)
        if not keep(ma, mb):
            continue
        row = found.get((ma.path, mb.path))
        if row is None:
            if added >= allowed:
                continue
            added += 1
            row = found[(ma.path, mb.path)] = _new_row(ma, mb, suffix, len(sp), res)
        row[field] = round(float(score), 3)
        row["matched_by"].append(source)
    return added


def _mutual_links(group: Any, found: dict[tuple[str, str], dict[str, Any]], res: Any, suffix: str, keep: Any,
                  allowed: int, size_tolerance: float) -> dict[str, Any]:
    """Add one group's mutual-nearest-neighbour pairs to ``found`` (at most ``allowed`` new ones); figures."""
    sp, space, labels = group
    fp_row = np.array([-1 if res is None else res[1].get(m.path, -1) for m in sp], dtype=np.int64)
    spreads = np.full((len(sp), 3), np.nan)
    if res is not None:
        spreads[fp_row >= 0] = res[2][fp_row[fp_row >= 0]]
    known = sum(1 for r in found.values() if r["group"] == suffix)
    i, j, score, _, info = mutual_pairs(space, None if res is None else res[0], fp_row, labels=labels,
                                        limit=allowed + known, k=MUTUAL_K, spreads=spreads,
                                        size_tolerance=size_tolerance)
    added = _add_pairs(found, sp, i, j, score, res, suffix, keep, allowed, "mutual_score", "mutual nearest neighbours")
    return {**info, "size_tolerance": size_tolerance, "budget": allowed, "pairs_added": added}


def _within_budget(linked: dict[tuple[str, str], dict[str, Any]], images: int, *, similarity: float,
                   size_tolerance: float, search_at: float, tolerance_at: float, adaptive: bool, budget: int,
                   per_image: float) -> tuple[dict[tuple[str, str], dict[str, Any]], dict[str, Any]]:
    """One group's fingerprint pairs kept for confirmation, and where its threshold was set (see near_duplicates)."""
    where: dict[str, Any] = {"images": images, "searched_at": search_at, "size_tolerance_searched": tolerance_at,
                             "pairs_at_floor": len(linked)}
    if not adaptive:
        where.update(threshold=similarity, size_tolerance=size_tolerance, rule="fixed", pairs_kept=len(linked),
                     over_budget=0)
        return linked, where
    allowed = max(int(budget), math.ceil(per_image * images))
    where["budget"] = allowed
    if len(linked) <= allowed:
        where.update(threshold=search_at, size_tolerance=tolerance_at, rule="floor (within the budget)",
                     pairs_kept=len(linked), over_budget=0)
        return linked, where
    boundary = sorted((r["_s"] for r in linked.values()), reverse=True)[allowed]  # the first pair left out
    if boundary >= similarity:  # the ceiling: the fixed rule, nothing it finds is lost
        kept = {k: r for k, r in linked.items() if r["_s"] >= similarity and r["_diff"] <= size_tolerance}
        where.update(threshold=similarity, size_tolerance=size_tolerance, rule="ceiling (over the budget)")
    else:
        kept = {k: r for k, r in linked.items() if r["_s"] > boundary}
        where.update(threshold=round(min(r["_s"] for r in kept.values()), 4) if kept else similarity,
                     size_tolerance=tolerance_at, rule="raised to the budget's boundary (over the budget)")
    where.update(pairs_kept=len(kept), over_budget=len(linked) - len(kept))
    return kept, where


def grid_map(code: int) -> dict[str, Any]:
    perm, rev = candidates.GRID_MAPS[code]
    swaps = sum(1 for i in range(3) for j in range(i + 1, 3) if perm[i] > perm[j])
    return {"code": code, "axis_order": list(perm), "reversed_axes": list(rev),
            "mirrored": (swaps + len(rev)) % 2 == 1}
