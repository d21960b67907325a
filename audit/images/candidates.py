"""Candidate pair search: near-duplicate pairs among the fingerprints or the patch sketches of a dataset.

Pure functions over arrays. The content checks (:mod:`audit.checks.content`)
call :func:`near_pairs` over the fingerprints (:mod:`audit.images.fingerprint`)
of each group and :func:`sketch_pairs` over the patch sketches
(:mod:`audit.images.sketch`).

Sketch pairs (:func:`sketch_pairs`)
    An inverted file of the sketched hashes: no pair is compared that shares
    none; hashes held by more than ``SKETCH_COMMON`` images are ignored.

Similarity
    Fingerprints of one dataset share the anatomy all its scans have (raw
    cosines of different synthetic subjects are 0.97-0.998), so similarity is
    *relative to the group*: each fingerprint minus the mean fingerprint of
    its group (one BIDS suffix of one dataset), cosine of what is left
    (:class:`Residuals`). A copy keeps what makes its original differ from
    the mean; different people share little of it (median about 0). Groups
    of fewer than ``MIN_GROUP`` images have no meaningful mean and are not
    compared.

Candidate search (:func:`near_pairs`)
    Residuals are projected on their top ``SEARCH_DIMS`` principal axes
    (fitted on a sample). A projection on orthonormal axes never lengthens
    a distance, and the part off the axes bounds it further
    (:func:`_bound`), so a pair whose full cosine is at least ``t`` is
    within ``sqrt(2 - 2t)`` there: that is the candidate filter, and every
    candidate is confirmed with the full cosine. Up to ``EXACT_MAX`` images
    every pair is screened (nothing above the threshold can be missed);
    larger groups use an inverted file: k-means cells in the projection,
    each image looks in its ``n_probe`` nearest cells and a pair is missed
    only when neither image's cells hold the other (recall 0.99 at 100,000
    phantom-like fingerprints, ``bench/bench_neardup.py``). At most
    ``CANDIDATES_PER_ROW`` candidates per image are confirmed (the closest
    in the projection), which bounds time and memory for fingerprints that
    the projection does not describe (white noise).

Mirrored and turned copies (:func:`mirror_pairs`)
    A mirrored (flip-augmented) copy's fingerprint is its original's grid
    with some of its three axes reversed (the fingerprint's frame follows
    the foreground's principal axes, signed closest to the world axes, so a
    mirror through a world plane reverses a grid axis); a copy whose two
    nearly equal principal spreads changed order (a small rotation, noise,
    a translation of a head with such a shape) has two grid axes swapped.
    The same projected search runs under each signed axis order ``T``
    (:data:`GRID_MAPS`: the 7 reversals, and up to ``SWAP_MAX`` images the
    40 swaps too) without a mapped copy of the fingerprints: ``T`` is a
    permutation, so the projection of ``T x`` is ``x`` on ``T^-1`` of the
    axes. Each candidate is confirmed with the full vectors, taking the
    *smaller* of ``cos(x_i - m, T x_j - m)`` and ``cos(T^-1 x_i - m, x_j - m)``
    (``m``: the group mean of the fingerprints as they are): a true copy
    scores 1 both ways, an image and an upside-down image of someone else
    share the "upside-down minus upright" residual one way only.
    :func:`mirrored_pairs` is the dense reference (every pair, every flip).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from itertools import permutations
from typing import NamedTuple

import numpy as np

from audit.images.sketch import sketch_containment
from audit.images.voxels import unique_sorted

__all__ = ["CANDIDATES_PER_ROW", "EXACT_MAX", "FLIP_CODES", "GRID_MAPS", "MIN_GROUP", "SEARCH_DIMS", "SKETCH_COMMON",
           "SWAP_MAX", "Residuals", "canonical_flip_variants", "grid_map", "mirror_pairs", "mirrored_pairs",
           "near_pairs", "residuals", "sketch_pairs"]

#: Fewest images of a group for a relative similarity.
MIN_GROUP = 3
#: Principal axes of the candidate search's projection.
SEARCH_DIMS = 32
#: Candidate pairs confirmed per image at most (the closest in the projection are kept beyond that).
CANDIDATES_PER_ROW = 32
#: Up to this many images, every pair is screened in the projection (beyond: the inverted file).
EXACT_MAX = 10_000
#: A hash value held by more images than this is not informative (a shared pattern, not a shared scan).
SKETCH_COMMON = 64


def sketch_pairs(sketches: Sequence[np.ndarray], counts: Sequence[int],
                 min_containment: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of images whose patch sets overlap by at least ``min_containment`` (of the smaller set).

    Candidates share at least one sketched hash (an inverted file: one sort of
    every hash of every sketch; hashes held by more than ``SKETCH_COMMON``
    images are ignored); each candidate is confirmed with
    :func:`sketch_containment`. Time and memory grow with the number of
    hashes (``SKETCH_K`` per image), not with the number of pairs.
    """
    empty = np.zeros(0, dtype=np.int64)
    lengths = np.array([len(s) for s in sketches], dtype=np.int64)
    if len(sketches) < 2 or lengths.sum() == 0:
        return empty, empty, np.zeros(0)
    values = np.concatenate([np.asarray(s, dtype=np.uint64) for s in sketches])
    owner = np.repeat(np.arange(len(sketches), dtype=np.int64), lengths)
    order = np.argsort(values, kind="stable")
    values, owner = values[order], owner[order]
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
    sizes = np.diff(np.r_[starts, len(values)])
    ci: list[np.ndarray] = []
    cj: list[np.ndarray] = []
    for size in np.unique(sizes[(sizes >= 2) & (sizes <= SKETCH_COMMON)]).tolist():
        s0 = starts[sizes == size]
        members = owner[s0[:, None] + np.arange(size)[None, :]]  # (runs, size)
        a, b = np.triu_indices(size, 1)
        ci.append(members[:, a].ravel())
        cj.append(members[:, b].ravel())
    if not ci:
        return empty, empty, np.zeros(0)
    i, j = np.concatenate(ci), np.concatenate(cj)
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    keep = lo != hi
    key = unique_sorted(lo[keep] * len(sketches) + hi[keep])
    lo, hi = key // len(sketches), key % len(sketches)
    sim = np.array([sketch_containment(sketches[a], counts[a], sketches[b], counts[b])
                     for a, b in zip(lo.tolist(), hi.tolist())], dtype=np.float64)
    ok = sim >= min_containment
    return lo[ok], hi[ok], sim[ok]


# ------------------------------------------------------------------ search
class Residuals(NamedTuple):
    """A group's fingerprints as float32, their mean, and each one's distance from it."""

    x: np.ndarray  # (n, d) float32
    mean: np.ndarray  # (d,) float32
    dot_mean: np.ndarray  # (n,) x . mean
    norms: np.ndarray  # (n,) |x - mean|

    def unit(self, rows: np.ndarray | slice) -> np.ndarray:
        """``(x - mean) / |x - mean|`` of ``rows`` (float32)."""
        r = self.x[rows] - self.mean
        scale = self.norms[rows]
        r /= np.where(scale > 0, scale, 1.0).astype(np.float32)[:, None]
        return r

    def cosine(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """Relative similarity of row pairs (float64), from ``x_i . x_j`` alone."""
        out = np.empty(len(i), dtype=np.float64)
        mm = float(self.mean @ self.mean)
        for s in _chunks(len(i), 4096):
            a, b = i[s], j[s]
            dots = np.einsum("ij,ij->i", self.x[a], self.x[b], dtype=np.float64)
            num = dots - self.dot_mean[a] - self.dot_mean[b] + mm
            den = self.norms[a] * self.norms[b]
            out[s] = num / np.where(den > 0, den, 1.0)
        return out


def residuals(vectors: np.ndarray) -> Residuals:
    """:class:`Residuals` of a group (one float32 copy when ``vectors`` are float16)."""
    n, d = vectors.shape
    if vectors.dtype == np.float32:
        x = np.ascontiguousarray(vectors)
    else:
        x = np.empty((n, d), dtype=np.float32)
        for s in _chunks(n, 8192):
            x[s] = vectors[s]
    total = np.zeros(d, dtype=np.float64)
    ones = np.ones(8192, dtype=np.float32)
    for s in _chunks(n, 8192):
        total += ones[:s.stop - s.start] @ x[s]  # column sums through BLAS, per chunk
    mean = (total / max(n, 1)).astype(np.float32)
    dot_mean = np.empty(n, dtype=np.float64)
    sq = np.empty(n, dtype=np.float64)
    for s in _chunks(n, 8192):
        dot_mean[s] = x[s] @ mean
        sq[s] = np.einsum("ij,ij->i", x[s], x[s])
    norms = np.sqrt(np.maximum(sq - 2 * dot_mean + float(mean @ mean), 0.0))
    return Residuals(x, mean, dot_mean, norms)


def _chunks(n: int, size: int) -> Iterator[slice]:
    for i in range(0, n, size):
        yield slice(i, min(n, i + size))


def near_pairs(vectors: np.ndarray, threshold: float, *, n_probe: int = 12, seed: int = 0,
               exact_max: int = EXACT_MAX) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, float]]:
    """Pairs of rows whose relative similarity is at least ``threshold``.

    Parameters
    ----------
    vectors : ndarray (n, d)
        Fingerprints of one group (float16 or float32); not modified.
    threshold : float
        On the cosine of ``vector - group mean``.
    n_probe : int
        Cells each row looks in (groups larger than ``exact_max`` only).
    exact_max : int
        Up to this many rows, every pair is screened in the projection (no
        pair above the threshold can be missed).

    Returns
    -------
    i, j : ndarray of int64
        Row pairs, ``i < j``, sorted.
    sim : ndarray of float64
        Their relative similarity.
    stats : dict
        ``candidates`` (pairs confirmed with the full vectors) and ``exact``
        (1.0 when every pair was screened).
    """
    n = len(vectors)
    empty = np.zeros(0, dtype=np.int64)
    if n < MIN_GROUP:
        return empty, empty, np.zeros(0), {"candidates": 0.0, "exact": 1.0}
    clock = [time.perf_counter()]
    res = residuals(vectors)
    clock.append(time.perf_counter())
    usable = np.flatnonzero(res.norms > 1e-6)
    if len(usable) < 2:
        return empty, empty, np.zeros(0), {"candidates": 0.0, "exact": 1.0}
    proj = _project(res, usable, seed=seed)
    clock.append(time.perf_counter())
    radius = math.sqrt(max(2.0 - 2.0 * threshold, 0.0))
    screened_all = len(usable) <= exact_max
    budget = _Budget(CANDIDATES_PER_ROW * len(usable) + 10_000)
    if screened_all:
        _all_within(proj, radius, budget)
    else:
        _ivf_candidates(proj, radius, budget, n_probe=n_probe, seed=seed)
    ci, cj = budget.pairs()
    clock.append(time.perf_counter())
    i, j = usable[ci], usable[cj]
    sim = res.cosine(i, j)
    clock.append(time.perf_counter())
    keep = sim >= threshold
    lo, hi, s = _sorted(i[keep], j[keep], sim[keep])
    exact = screened_all and not budget.pruned
    seconds = dict(zip(("residuals_s", "projection_s", "search_s", "confirm_s"), np.diff(clock).tolist()))
    return lo, hi, s, {"candidates": float(len(ci)), "exact": 1.0 if exact else 0.0,
                       "pruned": float(budget.pruned), **seconds}


#: The 48 signed orders of the fingerprint grid's axes: ``(perm, reversed axes)``; code ``k < 8`` keeps the
#: order and reverses the axes whose bit is set in ``k`` (the flips of :func:`canonical_flip_variants`).
GRID_MAPS: tuple[tuple[tuple[int, int, int], tuple[int, ...]], ...] = tuple(
    (perm, tuple(ax for ax in range(3) if k >> ax & 1)) for perm in permutations(range(3)) for k in range(8))
#: Codes of the flips alone (used beyond ``SWAP_MAX`` images: 7 screenings rather than 47).
FLIP_CODES = tuple(range(1, 8))
#: Up to this many images the 40 axis swaps are searched too (47 screenings: 17 s at 2,600 images here).
SWAP_MAX = 3000


def grid_map(x: np.ndarray, code: int, size: int, *, adjoint: bool = False) -> np.ndarray:
    """``GRID_MAPS[code]`` applied to grids ``x`` (``(..., size**3)`` or ``(size**3, K)`` columns with
    ``adjoint``: the inverse map, which projects a mapped vector: ``T x . a = x . T* a``)."""
    perm, rev = GRID_MAPS[code]
    if adjoint:  # columns (d, K): reverse, then undo the axis order
        g = x.reshape(size, size, size, -1)
        g = np.flip(g, axis=rev) if rev else g
        return np.ascontiguousarray(np.transpose(g, (*np.argsort(perm).tolist(), 3)).reshape(x.shape))
    g = x.reshape(-1, size, size, size)
    g = np.transpose(g, (0, *(1 + p for p in perm)))
    g = np.flip(g, axis=tuple(1 + r for r in rev)) if rev else g
    return np.ascontiguousarray(g.reshape(x.shape))


def mirror_pairs(vectors: np.ndarray, threshold: float, *, n_probe: int = 12, seed: int = 0,
                 exact_max: int = EXACT_MAX, codes: tuple[int, ...] | None = None,
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, float]]:
    """Pairs of rows whose relative similarity is at least ``threshold`` once one grid is mirrored or turned.

    The search of :func:`near_pairs` under each signed axis order ``codes``
    of :data:`GRID_MAPS` (default: all 47 others up to ``SWAP_MAX`` rows,
    the 7 flips beyond); the similarity of ``i, j`` under ``T`` is the
    smaller of ``cos(x_i - m, T x_j - m)`` and ``cos(T^-1 x_i - m, x_j - m)``
    (module docstring). A turned grid catches copies whose fingerprint
    frame swapped two nearly equal principal axes.

    Returns
    -------
    i, j : ndarray of int64
        Row pairs, ``i < j``, sorted.
    sim : ndarray of float64
        Their best similarity.
    code : ndarray of int64
        The :data:`GRID_MAPS` code that gave it.
    stats : dict
        ``candidates`` (pairs confirmed with the full vectors) and ``exact``.
    """
    n, d = vectors.shape
    empty = np.zeros(0, dtype=np.int64)
    size = round(d ** (1 / 3))
    if n < MIN_GROUP or size**3 != d:
        return empty, empty, np.zeros(0), empty, {"candidates": 0.0, "exact": 1.0}
    res = residuals(vectors)
    usable = np.flatnonzero(res.norms > 1e-6)
    if len(usable) < 2:
        return empty, empty, np.zeros(0), empty, {"candidates": 0.0, "exact": 1.0}
    proj, axes = _projection(res, usable, seed=seed)
    radius = math.sqrt(max(2.0 - 2.0 * threshold, 0.0))
    screened_all = len(usable) <= exact_max
    if codes is None:
        codes = tuple(range(1, len(GRID_MAPS))) if len(usable) <= SWAP_MAX else FLIP_CODES
    mm = float(res.mean.astype(np.float64) @ res.mean)
    sq = np.empty(n, dtype=np.float64)
    for s in _chunks(n, 8192):
        sq[s] = np.einsum("ij,ij->i", res.x[s], res.x[s])
    shift = res.mean @ axes
    best: dict[tuple[int, int], tuple[float, int]] = {}
    candidates = pruned = 0
    for k in codes:
        tm = grid_map(res.mean, k, size)  # T m
        tsm = grid_map(res.mean[:, None], k, size, adjoint=True)[:, 0]  # T* m
        dot_tm, dot_tsm = np.empty(n, dtype=np.float64), np.empty(n, dtype=np.float64)
        for s in _chunks(n, 8192):
            dot_tm[s], dot_tsm[s] = res.x[s] @ tm, res.x[s] @ tsm
        norm_t = np.sqrt(np.maximum(sq - 2 * dot_tsm + mm, 0.0))  # |T x - m|
        norm_ts = np.sqrt(np.maximum(sq - 2 * dot_tm + mm, 0.0))  # |T* x - m|
        axes_k = grid_map(axes, k, size, adjoint=True)
        proj_k = np.empty_like(proj)
        for s in _chunks(len(usable), 8192):
            r = usable[s]
            proj_k[s] = (res.x[r] @ axes_k - shift) / np.where(norm_t[r] > 0, norm_t[r], 1.0).astype(
                np.float32)[:, None]
        budget = _Budget(CANDIDATES_PER_ROW * len(usable) + 10_000)
        if screened_all:
            _cross_within(proj, proj_k, radius, budget)
        else:
            _ivf_candidates(proj, radius, budget, n_probe=n_probe, seed=seed, queries=proj_k)
        ca, cb = budget.pairs()
        candidates += len(ca)
        pruned += budget.pruned
        i, j = usable[ca], usable[cb]
        for s in _chunks(len(i), 4096):
            a, b = i[s], j[s]
            dots = np.einsum("ij,ij->i", res.x[a], grid_map(res.x[b], k, size), dtype=np.float64)
            den1, den2 = res.norms[a] * norm_t[b], norm_ts[a] * res.norms[b]
            cos1 = (dots - res.dot_mean[a] - dot_tsm[b] + mm) / np.where(den1 > 0, den1, 1.0)
            cos2 = (dots - dot_tm[a] - res.dot_mean[b] + mm) / np.where(den2 > 0, den2, 1.0)
            sim = np.minimum(cos1, cos2)
            hit = sim >= threshold
            for p, q, v in zip(a[hit].tolist(), b[hit].tolist(), sim[hit].tolist()):
                key = (min(p, q), max(p, q))
                if key not in best or v > best[key][0]:
                    best[key] = (v, k)
    keys = sorted(best)
    lo = np.array([x[0] for x in keys], dtype=np.int64)
    hi = np.array([x[1] for x in keys], dtype=np.int64)
    return (lo, hi, np.array([best[x][0] for x in keys], dtype=np.float64),
            np.array([best[x][1] for x in keys], dtype=np.int64),
            {"candidates": float(candidates), "exact": 1.0 if screened_all and not pruned else 0.0,
             "pruned": float(pruned)})


def canonical_flip_variants(vector: np.ndarray, size: int | None = None) -> np.ndarray:
    """The 8 axis-reversals of a fingerprint grid, ``(8, d)`` (row 0: ``vector`` itself).

    Row ``k`` reverses the grid axes whose bit is set in ``k`` (1: axis 0,
    2: axis 1, 4: axis 2).
    """
    v = np.asarray(vector)
    d = v.shape[-1]
    n = size or round(d ** (1 / 3))
    if n**3 != d:
        raise ValueError(f"a fingerprint of {d} values is not a cubic grid")
    g = v.reshape(n, n, n)
    out = np.empty((8, d), dtype=v.dtype)
    for k in range(8):
        axes = tuple(ax for ax in range(3) if k >> ax & 1)
        out[k] = (np.flip(g, axis=axes) if axes else g).ravel()
    return out


def mirrored_pairs(vectors: np.ndarray, threshold: float, *, flips: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7),
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The dense reference of :func:`mirror_pairs`: every pair under every flip (``n^2`` memory; tests, benches).

    Returns ``i < j``, the best mirrored similarity over ``flips`` and that flip.
    """
    x = np.asarray(vectors, dtype=np.float32)
    n, d = x.shape
    size = round(d ** (1 / 3))
    if size**3 != d:
        raise ValueError(f"a fingerprint of {d} values is not a cubic grid")
    mean = x.mean(axis=0)

    def unit(v: np.ndarray) -> np.ndarray:
        r = v - mean
        nr = np.linalg.norm(r, axis=1)
        out: np.ndarray = r / np.where(nr > 0, nr, 1)[:, None]
        return out

    r = unit(x)
    best = np.full((n, n), -np.inf, dtype=np.float32)
    code = np.zeros((n, n), dtype=np.int64)
    for k in flips:
        axes = tuple(1 + ax for ax in range(3) if k >> ax & 1)
        rk = unit(np.flip(x.reshape(n, size, size, size), axis=axes).reshape(n, d))
        a = r @ rk.T
        sim = np.minimum(a, a.T)
        better = sim > best
        best[better] = sim[better]
        code[better] = k
    iu, ju = np.nonzero(np.triu(best >= threshold, k=1))
    return iu.astype(np.int64), ju.astype(np.int64), best[iu, ju].astype(np.float64), code[iu, ju]


class _Budget:
    """Candidate pairs with their projected squared distance; beyond ``limit`` only the closest are kept."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.i: list[np.ndarray] = []
        self.j: list[np.ndarray] = []
        self.d: list[np.ndarray] = []
        self.size = 0
        self.pruned = 0

    def add(self, i: np.ndarray, j: np.ndarray, d2: np.ndarray) -> None:
        if not len(i):
            return
        self.i.append(i.astype(np.int64))
        self.j.append(j.astype(np.int64))
        self.d.append(d2.astype(np.float32))
        self.size += len(i)
        if self.size > 4 * self.limit:
            self._prune()

    def _prune(self) -> None:
        i, j, d = (np.concatenate(x) for x in (self.i, self.j, self.d))
        key = i * (max(int(i.max(initial=0)), int(j.max(initial=0))) + 1) + j
        key, first = np.unique(key, return_index=True)
        i, j, d = i[first], j[first], d[first]
        if len(d) > self.limit:
            keep = np.argpartition(d, self.limit - 1)[:self.limit]
            self.pruned += len(d) - self.limit
            i, j, d = i[keep], j[keep], d[keep]
        self.i, self.j, self.d, self.size = [i], [j], [d], len(i)

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.i:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        self._prune()
        return self.i[0], self.j[0]


def _sorted(i: np.ndarray, j: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lo, hi = np.minimum(i, j).astype(np.int64), np.maximum(i, j).astype(np.int64)
    order = np.lexsort((hi, lo))
    return lo[order], hi[order], s[order]


def _project(res: Residuals, rows: np.ndarray, *, seed: int) -> np.ndarray:
    """Unit residuals of ``rows`` on their top principal axes (fitted on a sample), float32 (n, k)."""
    return _projection(res, rows, seed=seed)[0]


def _projection(res: Residuals, rows: np.ndarray, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_project` and the axes ``(d, k)`` it projected on."""
    rng = np.random.default_rng(seed)
    sample = rows[np.sort(rng.choice(len(rows), size=min(len(rows), 4096), replace=False))]
    x = res.unit(sample)
    x -= x.mean(axis=0)
    k = min(SEARCH_DIMS, x.shape[0], x.shape[1])
    # randomised range finder with a few power iterations; orthonormalised through the small Gram matrix
    q = x.T @ rng.standard_normal((x.shape[0], k + 8)).astype(np.float32)
    for _ in range(3):
        q = _orthonormal(x.T @ (x @ _orthonormal(q)))
    _, _, vt = np.linalg.svd((x @ q).astype(np.float64), full_matrices=False)
    axes = np.ascontiguousarray((q.astype(np.float64) @ vt.T)[:, :k].astype(np.float32))  # (d, k' <= k)
    shift = res.mean @ axes
    out = np.empty((len(rows), axes.shape[1]), dtype=np.float32)
    every = len(rows) == len(res.x)  # all rows: slices, no gathered copies
    for s in _chunks(len(rows), 8192):
        r = s if every else rows[s]
        out[s] = (res.x[r] @ axes - shift) / res.norms[r].astype(np.float32)[:, None]
    return out, axes


def _orthonormal(q: np.ndarray) -> np.ndarray:
    """Orthonormal columns spanning ``q`` (through the eigen-decomposition of ``q.T q``)."""
    g = q.T.astype(np.float64) @ q.astype(np.float64)
    w, v = np.linalg.eigh(g)
    keep = w > w.max() * 1e-10
    out: np.ndarray = (q.astype(np.float64) @ (v[:, keep] / np.sqrt(w[keep]))).astype(np.float32)
    return out


def _bound(sq_a: np.ndarray, sq_b: np.ndarray, dots: np.ndarray) -> np.ndarray:
    """A lower bound of the full squared distance of unit residuals from their projections.

    ``|a - b|^2 = |Pa - Pb|^2 + |Qa - Qb|^2 >= |Pa - Pb|^2 + (|Qa| - |Qb|)^2`` with
    ``|Qa|^2 = 1 - |Pa|^2`` (``Q``: the part off the projection axes).
    """
    qa = np.sqrt(np.maximum(1 - sq_a, 0))
    qb = np.sqrt(np.maximum(1 - sq_b, 0))
    out: np.ndarray = sq_a[:, None] + sq_b[None, :] - 2 * dots + (qa[:, None] - qb[None, :]) ** 2
    return out


def _all_within(p: np.ndarray, radius: float, budget: _Budget) -> None:
    """Every pair of rows of ``p`` whose full distance may be within ``radius``."""
    sq = np.einsum("ij,ij->i", p, p)
    r2 = np.float32(radius * radius + 1e-3)  # float32 rounding never drops a pair at the threshold
    for s in _chunks(len(p), 2048):
        d2 = _bound(sq[s], sq, p[s] @ p.T)
        a, b = np.nonzero(d2 <= r2)
        keep = a + s.start < b
        budget.add(a[keep] + s.start, b[keep], d2[a[keep], b[keep]])


def _cross_within(p: np.ndarray, q: np.ndarray, radius: float, budget: _Budget) -> None:
    """Every pair ``(row i of p, row j of q)``, ``i != j``, whose full distance may be within ``radius``."""
    sp = np.einsum("ij,ij->i", p, p)
    sq = np.einsum("ij,ij->i", q, q)
    r2 = np.float32(radius * radius + 1e-3)
    for s in _chunks(len(p), 2048):
        d2 = _bound(sp[s], sq, p[s] @ q.T)
        a, b = np.nonzero(d2 <= r2)
        keep = a + s.start != b
        budget.add(a[keep] + s.start, b[keep], d2[a[keep], b[keep]])


def _ivf_candidates(p: np.ndarray, radius: float, budget: _Budget, *, n_probe: int, seed: int,
                    queries: np.ndarray | None = None) -> None:
    """Row pairs within ``radius`` of each other in ``p``, looking only in each row's ``n_probe`` nearest cells.

    With ``queries`` (rows in the same projection): pairs ``(row of p, row
    of queries)`` with different indices, each query looking in its
    ``n_probe`` nearest cells of ``p``'s inverted file.
    """
    n = len(p)
    q = p if queries is None else queries
    n_cells = max(1, min(int(2 * math.sqrt(n)), n // 8))
    centres = _kmeans(p, n_cells, seed=seed)
    sq = np.einsum("ij,ij->i", p, p)
    sqq = sq if queries is None else np.einsum("ij,ij->i", q, q)
    csq = np.einsum("ij,ij->i", centres, centres)
    n_probe = min(n_probe, n_cells)
    home = np.empty(n, dtype=np.int64)
    probes = np.empty((len(q), n_probe), dtype=np.int64)
    for s in _chunks(n, 16384):
        home[s] = np.argmin(sq[s, None] + csq[None, :] - 2 * (p[s] @ centres.T), axis=1)
    for s in _chunks(len(q), 16384):
        if n_probe < n_cells:
            d2 = sqq[s, None] + csq[None, :] - 2 * (q[s] @ centres.T)
            probes[s] = np.argpartition(d2, n_probe - 1, axis=1)[:, :n_probe]
        else:
            probes[s] = np.arange(n_cells)
    order = np.argsort(home, kind="stable")
    starts = np.searchsorted(home[order], np.arange(n_cells + 1))
    q_rows = np.repeat(np.arange(len(q)), n_probe)
    q_cells = probes.ravel()
    q_order = np.argsort(q_cells, kind="stable")
    q_starts = np.searchsorted(q_cells[q_order], np.arange(n_cells + 1))
    r2 = np.float32(radius * radius + 1e-3)  # float32 rounding never drops a pair at the threshold
    for c in range(n_cells):
        members = order[starts[c]:starts[c + 1]]
        asking = q_rows[q_order[q_starts[c]:q_starts[c + 1]]]
        if not len(members) or not len(asking):
            continue
        pm, sm = p[members], sq[members]
        for s in _chunks(len(asking), 4096):
            qs = asking[s]
            d2 = _bound(sqq[qs], sm, q[qs] @ pm.T)
            a, b = np.nonzero(d2 <= r2)
            qa, mb = qs[a], members[b]
            keep = qa != mb  # found from either side: a pair counts when one row probes the other's cell
            if queries is None:
                budget.add(np.minimum(qa[keep], mb[keep]), np.maximum(qa[keep], mb[keep]), d2[a[keep], b[keep]])
            else:
                budget.add(mb[keep], qa[keep], d2[a[keep], b[keep]])


def _kmeans(p: np.ndarray, k: int, *, seed: int, iters: int = 10) -> np.ndarray:
    """Lloyd's k-means on a sample of ``p`` (deterministic for a seed)."""
    rng = np.random.default_rng(seed)
    sample = p[np.sort(rng.choice(len(p), size=min(len(p), max(30 * k, 10000)), replace=False))]
    centres = sample[np.sort(rng.choice(len(sample), size=k, replace=False))].copy()
    ssq = np.einsum("ij,ij->i", sample, sample)
    for _ in range(iters):
        labels = np.empty(len(sample), dtype=np.int64)
        csq = np.einsum("ij,ij->i", centres, centres)
        for s in _chunks(len(sample), 16384):
            labels[s] = np.argmin(ssq[s, None] + csq[None, :] - 2 * (sample[s] @ centres.T), axis=1)
        counts = np.bincount(labels, minlength=k)
        sums = np.zeros((k, p.shape[1]), dtype=np.float64)
        for dim in range(p.shape[1]):
            sums[:, dim] = np.bincount(labels, weights=sample[:, dim], minlength=k)
        filled = counts > 0
        centres[filled] = (sums[filled] / counts[filled, None]).astype(np.float32)
    return centres
