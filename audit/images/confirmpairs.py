"""The confirmation stage over a dataset: read the images of the candidate pairs once and judge every pair.

The candidate search (:mod:`audit.images.candidates`) links pairs by coarse
summaries; as a group grows, distinct people cross any fixed threshold on
one coarse score. :func:`confirm_candidates` decides each candidate pair
with a second, independent comparison at full resolution
(:func:`audit.images.confirm.confirm_pair`) and a threshold set by the
pair's *group* (one BIDS suffix):

1. *The group's distinct pairs* (its null): only for a group with at least
   one candidate whose verdict the null can change (a pair scored under the
   ``cap`` without exact shared voxel blocks: each candidate is confirmed
   first), ``null_pairs`` random pairs of images of *different
   participants*, drawn from the images outside every candidate pair (while
   enough remain), are confirmed too (seeded by the group's name: the same
   dataset gives the same pairs). Their scores are kept across audits by
   the two images' content hashes (:mod:`audit.images.nullcache`): an
   unchanged dataset audited again pays for none of them.
2. *Thresholds*: with ``m`` the group's candidate pairs, the Gaussian fit
   of the null scores (mean ``mu``, sd ``sigma``) puts the score a distinct
   pair exceeds with probability ``alpha / m`` at
   ``tail = mu + sigma * z(1 - alpha / m)`` (Bonferroni: at most ``alpha``
   chance of *one* false confirmation among the ``m`` comparisons, whatever
   the number of images). The confirmation threshold is
   :func:`audit.images.confirm.group_threshold`: ``tail`` clipped to
   ``[floor, cap]`` (``floor``: calibrated on 100 real people, where distinct
   pairs score at most 0.29; ``cap``: what an unresampled copy still
   reaches, for groups without individual detail, such as smooth phantoms).
3. *Verdicts*: ``copy`` when the two images share exact voxel blocks
   (patch-sketch containment at least the patch threshold: independent,
   exact-value evidence) or the score reaches the threshold with enough
   overlap; ``distinct`` when the score lies inside the group's distinct
   distribution (below ``tail``); ``inconclusive`` otherwise (above every
   distinct pair the fit expects, below the confirmation threshold; or the
   images could not be compared).

Images are read with the image pass's decoder (the reference volume: a 4-D
image's mean over time), prepared once (:func:`audit.images.confirmprep.read_prepared`) and kept in
a small cache while the pairs that use them are confirmed (pairs are
ordered so that an image's pairs come together). Only the images of
candidate pairs and of the null pairs are read; a dataset without a
candidate reads nothing and costs nothing here.
"""

from __future__ import annotations

import math
import os
import time
import zlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np

from audit.images.confirm import (
    COPY_THRESHOLD,
    MIN_OVERLAP,
    Confirmation,
    Prepared,
    confirm_pair,
    group_threshold,
    null_fit,
)
from audit.images.confirmprep import read_prepared
from audit.images.decode import BadImage
from audit.images.nullcache import NullCache, pair_key

__all__ = ["DEFAULTS", "Candidate", "GroupNull", "Verdict", "confirm_candidates", "tail_bound"]

#: Defaults of the decision (the catalogue's ``leakage.near_duplicate_image`` table repeats them).
DEFAULTS: dict[str, Any] = {"alpha": 0.01, "null_pairs": 30, "floor": COPY_THRESHOLD, "cap": 0.993,
                            "max_confirmations": 2000}
#: Participants outside every candidate pair needed to draw the null from them alone.
MIN_POOL = 4
#: Prepared volumes kept at once.
CACHE_SIZE = 48


@dataclass(frozen=True)
class Candidate:
    """A candidate pair to confirm: two images (paths relative to the dataset), their group, exact-value evidence."""

    a: str
    b: str
    group: str
    exact_blocks: bool = False  # the patch sketches share at least the patch threshold of exact voxel blocks


@dataclass(frozen=True)
class GroupNull:
    """A group's distinct pairs and the thresholds they set."""

    group: str
    scores: tuple[float, ...]
    comparisons: int  # candidate pairs of the group (m)
    tail: float  # mu + sigma z(1 - alpha / m): distinct pairs exceed it with probability alpha / m
    threshold: float  # the confirmation threshold (tail clipped to [floor, cap])
    how: str

    def to_dict(self) -> dict[str, Any]:
        s = np.array(self.scores, dtype=np.float64)
        return {"group": self.group, "distinct_pairs": len(s),
                "distinct_mean": round(float(s.mean()), 4) if len(s) else None,
                "distinct_sd": round(float(s.std(ddof=1)), 4) if len(s) > 1 else None,
                "distinct_max": round(float(s.max()), 4) if len(s) else None,
                "comparisons": self.comparisons, "tail": round(self.tail, 4),
                "threshold": round(self.threshold, 4), "how": self.how}


@dataclass(frozen=True)
class Verdict:
    """The confirmation stage's decision on one candidate pair."""

    a: str
    b: str
    verdict: str  # "copy", "inconclusive", "distinct"
    why: str
    score: float | None
    threshold: float
    tail: float
    confirmation: Confirmation | None = field(default=None, compare=False)

    def evidence(self) -> dict[str, Any]:
        """JSON-ready figures: the score, the thresholds, the transform found."""
        out: dict[str, Any] = {"verdict": self.verdict, "why": self.why, "score": self.score,
                               "threshold": round(self.threshold, 4), "distinct_tail": round(self.tail, 4)}
        c = self.confirmation
        if c is not None:
            t = c.transform
            out["transform"] = {"mirrored": t.mirrored, "flips": list(t.flips), "rotation_deg": t.rotation_deg,
                                "scale": t.scale, "translation_mm": list(t.translation_mm), "start": t.start}
            out.update(alignment=c.alignment, overlap=c.overlap, fixed=c.fixed, seconds=c.seconds,
                       reasons=list(c.reasons))
        return out


def tail_bound(scores: Sequence[float], comparisons: float, alpha: float) -> float:
    """``loc + scale * z(1 - alpha / comparisons)`` of ``scores`` (:func:`audit.images.confirm.null_fit`:
    median and MAD; ``-inf`` with fewer than 3 scores)."""
    x = np.asarray(scores, dtype=np.float64)
    if len(x) < 3:
        return -math.inf
    z = NormalDist().inv_cdf(1 - alpha / max(float(comparisons), 1.0))
    loc, scale = null_fit(x)
    return float(loc + scale * z)


class _Volumes:
    """Prepared volumes by path, the last ``CACHE_SIZE`` kept; a failure is kept as its message.

    With ``workers`` > 1, :meth:`prefetch` reads and prepares images in that
    many threads (inflating, block sums and the log run outside the GIL):
    the two images of a pair at once, and the next pair's while this one is
    confirmed; each confirmation smooths in two threads (``threads``).
    """

    def __init__(self, root: Path, workers: int = 1) -> None:
        self.root = root
        self.kept: OrderedDict[str, Prepared | str] = OrderedDict()
        self.read = 0
        self._pool = ThreadPoolExecutor(max_workers=workers) if workers > 1 else None
        self.threads = min(workers, 2)  # for a confirmation's own smoothing
        self._pending: dict[str, Future[Prepared | str]] = {}

    def prefetch(self, paths: Sequence[str]) -> None:
        """Start reading ``paths`` (those not kept or under way) in the threads, when there are any."""
        if self._pool is None:
            return
        for path in paths:
            if path not in self.kept and path not in self._pending:
                self._pending[path] = self._pool.submit(self._load, path)

    def get(self, path: str) -> Prepared | str:
        hit = self.kept.get(path)
        if hit is None:
            pending = self._pending.pop(path, None)
            hit = self.kept[path] = pending.result() if pending is not None else self._load(path)
            self.read += 1
            if len(self.kept) > CACHE_SIZE:
                self.kept.popitem(last=False)
        else:
            self.kept.move_to_end(path)
        return hit

    def close(self) -> None:
        if self._pool is not None:
            for pending in self._pending.values():
                pending.cancel()
            self._pool.shutdown(wait=True)
            self._pending.clear()

    def _load(self, path: str) -> Prepared | str:
        from nibabel.spatialimages import HeaderDataError
        from nibabel.wrapstruct import WrapStructError

        try:
            return read_prepared(self.root / path)
        except MemoryError:
            return "not enough memory to compare it"
        except BadImage as err:
            return f"cannot be compared ({err.message})"
        except (OSError, ValueError, TypeError, IndexError, ArithmeticError, np.linalg.LinAlgError, HeaderDataError,
                WrapStructError) as err:
            return f"cannot be compared ({type(err).__name__}: {err})"  # an unreadable or unusable image


def _confirm(vols: _Volumes, a: str, b: str, threshold: float) -> Confirmation | str:
    pa, pb = vols.get(a), vols.get(b)
    for path, p in ((a, pa), (b, pb)):
        if isinstance(p, str):
            return f"{path} {p}"
    assert isinstance(pa, Prepared) and isinstance(pb, Prepared)
    try:
        return confirm_pair(pa, None, pb, None, threshold=threshold, threads=vols.threads)
    except (ValueError, FloatingPointError, np.linalg.LinAlgError) as err:
        return f"the comparison failed ({type(err).__name__}: {err})"


def _null_pairs(members: Sequence[tuple[str, str]], exclude: set[frozenset[str]], n: int,
                group: str) -> list[tuple[str, str]]:
    """Up to ``n`` random pairs of images of different participants, not in ``exclude`` (seeded by ``group``).

    Images of a candidate pair are left out of the draw while at least
    ``MIN_POOL`` participants remain: a copy is not a distinct pair, and a
    small group holding several copies of one scan would otherwise raise
    its own threshold above them.
    """
    rng = np.random.default_rng(zlib.crc32(group.encode("utf-8")))
    involved = {p for pair in exclude for p in pair}
    pool = [m for m in members if m[0] not in involved]
    if len({s for _, s in pool}) >= MIN_POOL:
        members = pool
    out: list[tuple[str, str]] = []
    seen: set[frozenset[str]] = set()
    if len({s for _, s in members}) < 2:
        return out
    for _ in range(50 * n):
        if len(out) >= n:
            break
        i, j = rng.choice(len(members), 2, replace=False).tolist()
        (pa, sa), (pb, sb) = members[i], members[j]
        key = frozenset((pa, pb))
        if sa == sb or key in exclude or key in seen:
            continue
        seen.add(key)
        out.append((pa, pb))
    return out


def confirm_candidates(root: Path, candidates: Sequence[Candidate],
                       members: Mapping[str, Sequence[tuple[str, str]]], *,
                       settings: Mapping[str, Any] | None = None, hashes: Mapping[str, str] | None = None,
                       null_cache: NullCache | None = None, workers: int | None = None,
                       ) -> tuple[list[Verdict], dict[str, GroupNull], dict[str, Any]]:
    """Verdicts on ``candidates`` (module docstring), each group's null, and figures about the stage.

    Parameters
    ----------
    root : Path
        The dataset folder (candidate paths are relative to it).
    candidates : sequence of Candidate
    members : mapping
        Group -> ``(path, participant)`` of every image of the group (the null's pairs are drawn from them).
    settings : mapping, optional
        ``alpha``, ``null_pairs``, ``floor``, ``cap``, ``max_confirmations`` (:data:`DEFAULTS`).
    hashes : mapping, optional
        Path -> content hash: with ``null_cache``, the null's scores are looked up and kept there.
    null_cache : NullCache, optional
    workers : int, optional
        Threads that read and prepare images (``None``: one per local core; at most 4).
    """
    cfg = {**DEFAULTS, **(settings or {})}
    t0 = time.perf_counter()
    vols = _Volumes(Path(root), max(1, min(workers if workers is not None else (os.cpu_count() or 1), 4)))
    try:
        verdicts, nulls, cached, seconds = _stage(vols, candidates, members, cfg, hashes, null_cache)
    finally:
        vols.close()
    stats = {"candidates": len(candidates), "confirmations": len(seconds), "images_read": vols.read,
             "null_scores_cached": cached, "seconds": round(time.perf_counter() - t0, 3),
             "seconds_per_confirmation": round(float(np.median(seconds)), 4) if seconds else None}
    return verdicts, nulls, stats


def _stage(vols: _Volumes, candidates: Sequence[Candidate], members: Mapping[str, Sequence[tuple[str, str]]],
           cfg: Mapping[str, Any], hashes: Mapping[str, str] | None, null_cache: NullCache | None,
           ) -> tuple[list[Verdict], dict[str, GroupNull], int, list[float]]:
    by_group: dict[str, list[Candidate]] = {}
    for c in candidates:
        by_group.setdefault(c.group, []).append(c)
    nulls: dict[str, GroupNull] = {}
    verdicts: list[Verdict] = []
    budget = int(cfg["max_confirmations"])
    seconds: list[float] = []
    cached = 0
    for group, cands in sorted(by_group.items()):
        m = len(cands)
        ordered = sorted(cands, key=lambda c: (c.a, c.b))
        n_do = max(0, min(len(ordered), budget))  # those over max_confirmations are not confirmed
        budget -= n_do
        done = _confirm_each(vols, [(c.a, c.b) for c in ordered[:n_do]], cfg["cap"])  # first at the cap
        results: list[tuple[Candidate, Confirmation | str | None]] = list(
            zip(ordered, [*done, *[None] * (len(ordered) - n_do)]))
        seconds.extend(c.seconds for c in done if not isinstance(c, str))
        if not any(isinstance(c, Confirmation) and not cand.exact_blocks and not c.copy for cand, c in results):
            # every verdict is settled without the null: exact blocks, failures, or at or above the cap
            null = nulls[group] = GroupNull(group, (), m, float(cfg["cap"]), float(cfg["cap"]),
                                            f"no null needed: every confirmed pair scored at least the cap "
                                            f"{cfg['cap']:g} or shares exact voxel blocks")
        else:
            exclude = {frozenset((c.a, c.b)) for c in cands}
            pairs = sorted(_null_pairs(members.get(group, ()), exclude, int(cfg["null_pairs"]), group))
            scores, hits = _null_scores(vols, pairs, cfg["floor"], hashes or {}, null_cache, seconds)
            cached += hits
            tail = tail_bound(scores, m, cfg["alpha"])
            th = group_threshold(np.array(scores), m, alpha=cfg["alpha"], floor=cfg["floor"], cap=cfg["cap"])
            how = (f"the Gaussian tail (median, MAD) of {len(scores)} distinct pairs of this group at "
                   f"{cfg['alpha']:g} / {m} "
                   f"comparisons ({tail:.3f}), clipped to [{cfg['floor']:g}, {cfg['cap']:g}]"
                   if len(scores) >= 3 else f"the floor {cfg['floor']:g} (too few distinct pairs to fit)")
            null = nulls[group] = GroupNull(group, tuple(round(s, 4) for s in scores), m, tail, th, how)
        for cand, c in results:
            if c is None:
                verdicts.append(Verdict(cand.a, cand.b, "copy" if cand.exact_blocks else "inconclusive",
                                        "not confirmed: over max_confirmations" +
                                        ("; shares exact voxel blocks" if cand.exact_blocks else ""),
                                        None, null.threshold, null.tail))
                continue
            verdicts.append(_judge(cand, c if isinstance(c, str) else _at(c, null.threshold), null))
    return verdicts, nulls, cached, seconds


def _confirm_each(vols: _Volumes, pairs: Sequence[tuple[str, str]], threshold: float) -> list[Confirmation | str]:
    """:func:`_confirm` of each pair in turn, the next pair's images read while this one is confirmed."""
    out: list[Confirmation | str] = []
    for k, (a, b) in enumerate(pairs):
        vols.prefetch([a, b, *(pairs[k + 1] if k + 1 < len(pairs) else ())])
        out.append(_confirm(vols, a, b, threshold))
    return out


def _null_scores(vols: _Volumes, pairs: Sequence[tuple[str, str]], floor: float, hashes: Mapping[str, str],
                 cache: NullCache | None, seconds: list[float]) -> tuple[list[float], int]:
    """The null pairs' scores (from ``cache`` where both content hashes are known) and how many were cached."""
    keys = {p: pair_key(hashes[p[0]], hashes[p[1]]) for p in pairs if hashes.get(p[0]) and hashes.get(p[1])}
    known = cache.get(list(keys.values())) if cache is not None else {}
    scores, fresh = [], {}
    todo = [p for p in pairs if known.get(keys.get(p, "")) is None]
    done = dict(zip(todo, _confirm_each(vols, todo, floor)))
    for a, b in pairs:
        hit = known.get(keys.get((a, b), ""))
        if hit is not None:
            scores.append(hit)
            continue
        c = done[(a, b)]
        if not isinstance(c, str):
            scores.append(c.score)
            seconds.append(c.seconds)
            if (a, b) in keys:
                fresh[keys[(a, b)]] = c.score
    if cache is not None:
        cache.put(fresh)
    return scores, sum(1 for k in keys.values() if k in known)


def _at(c: Confirmation, threshold: float) -> Confirmation:
    """``c`` judged at ``threshold`` (it was computed at the cap)."""
    if c.threshold == threshold:
        return c
    reasons = tuple(f"fine-detail correlation {c.score:.3f} {'>=' if c.score >= threshold else '<'} {threshold:g}"
                    if r.startswith("fine-detail correlation") else r for r in c.reasons)
    return replace(c, copy=c.score >= threshold and c.overlap >= MIN_OVERLAP, threshold=threshold, reasons=reasons)


def _judge(cand: Candidate, c: Confirmation | str, null: GroupNull) -> Verdict:
    th, tail = null.threshold, null.tail
    if isinstance(c, str):
        if cand.exact_blocks:
            return Verdict(cand.a, cand.b, "copy", f"shares exact voxel blocks; {c}", None, th, tail)
        return Verdict(cand.a, cand.b, "inconclusive", c, None, th, tail)
    if cand.exact_blocks:
        return Verdict(cand.a, cand.b, "copy", "shares exact voxel blocks (patch sketches)", c.score, th, tail, c)
    if c.copy:
        return Verdict(cand.a, cand.b, "copy", f"fine-detail correlation {c.score:.3f} >= {th:.3f}",
                       c.score, th, tail, c)
    if c.score < tail or c.overlap < MIN_OVERLAP:
        why = (f"fine-detail correlation {c.score:.3f}: inside this group's distinct pairs (< {tail:.3f})"
               if c.score < tail else f"too little overlap ({c.overlap:.0%})")
        return Verdict(cand.a, cand.b, "distinct", why, c.score, th, tail, c)
    return Verdict(cand.a, cand.b, "inconclusive",
                   f"fine-detail correlation {c.score:.3f}: above this group's distinct pairs ({tail:.3f}), "
                   f"under the confirmation threshold {th:.3f}", c.score, th, tail, c)
