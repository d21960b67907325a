"""Mutual nearest neighbours: candidate pairs that two images' own rankings link where no fixed cut does.

The fingerprint threshold and the spectrum z (:mod:`audit.images.nearpairs`)
are cuts on one score each, set on the group's distinct pairs. A copy that
several transforms moved at once (a flip, a 10-degree turn and 2 % noise) can
fall under both cuts and still be its original's closest image: the two
descriptors each give it a middling score, and other images give it a high
score by one descriptor only (copies sharing a noise level have alike
spectra; some other heads have an alike fingerprint). This rule ranks by
both at once.

Score (:func:`mutual_pairs`)
    For each image, its ``k`` nearest others by the spectra's
    neighbourhood-scaled similarity (:class:`audit.images.spectrum.NeighbourhoodSpace`)
    and by the fingerprints (cosine of the unit residuals on their top 32
    principal axes), both scanned in blocks of rows; each pair so listed
    (sizes within ``size_tolerance``) is scored by the sum of two robust z
    scores: the spectra's (the group's median and MAD of pair scores) and the
    fingerprints' (relative similarity under the best of the identity and the
    7 mirrors of the grid, :data:`MUTUAL_CODES`, standardised by the median
    and MAD of random pairs' best-map similarity). Two descriptors, each
    scaled by its own spread, each a share of the evidence.

Rule
    ``(i, j)`` is a candidate when each is the other's best-scoring image
    (mutual nearest neighbours, :data:`MUTUAL_BY`: by the sum). Every image
    is in at most one pair, so a group of ``n`` images gives at most ``n / 2``
    pairs (measured: about a quarter of the images on distinct people), and
    at most ``limit`` are kept, the highest sums first. Neither a margin
    over the second best nor a score cut separates weak copies from
    distinct people (``docs/neardup-confirm.md``): the budget bounds the
    cost. A candidate only costs one confirmation
    (:mod:`audit.images.confirmpairs` decides it): the rule cannot make an
    error of a pair the confirmation does not confirm.

Cost: the block scans (``n^2`` projected dot products, as
:func:`audit.images.spectrum.spectrum_pairs`; groups up to
``SPECTRUM_MAX``) and the fingerprints of at most ``2 k n`` pairs under
each of the 8 grid maps. No ``n x n`` matrix is held.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from audit.images.candidates import FLIP_CODES, Residuals, grid_map
from audit.images.spectrum import NeighbourhoodSpace

__all__ = ["MUTUAL_BY", "MUTUAL_CODES", "MUTUAL_K", "mapped_similarity", "mutual_pairs"]

#: Nearest others per image (by each descriptor) whose pairs are scored.
MUTUAL_K = 8
#: Grid maps the fingerprints are compared under: the identity and the 7 axis reversals (mirrors).
MUTUAL_CODES = (0, *FLIP_CODES)
#: The scores whose mutual nearest neighbours are candidates (module docstring).
MUTUAL_BY = ("both",)
#: Random pairs whose best-map fingerprint similarity sets the fingerprints' median and MAD.
_NULL_PAIRS = 2000


def mapped_similarity(res: Residuals, a: np.ndarray, b: np.ndarray,
                      codes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Relative fingerprint similarity of row pairs under the best of ``codes`` (and that code).

    Under a grid map ``T`` the similarity of ``i, j`` is the smaller of
    ``cos(x_i - m, T x_j - m)`` and ``cos(T^-1 x_i - m, x_j - m)``, as
    :func:`audit.images.candidates.mirror_pairs` scores it; code 0 is the
    identity (the plain relative similarity).

    >>> from audit.images.candidates import residuals
    >>> g = np.random.default_rng(0).normal(size=(5, 27)).astype(np.float32)
    >>> g[4] = g[1].reshape(3, 3, 3)[::-1].ravel()  # a copy of row 1, mirrored along the first grid axis
    >>> sim, code = mapped_similarity(residuals(g), np.array([1, 0]), np.array([4, 2]), tuple(range(48)))
    >>> round(float(sim[0]), 3) >= 0.99, int(code[0])
    (True, 1)
    """
    n, d = res.x.shape
    size = round(d ** (1 / 3))
    best = np.full(len(a), -np.inf)
    which = np.zeros(len(a), dtype=np.int64)
    if not len(a):
        return best, which
    mm = float(res.mean.astype(np.float64) @ res.mean)
    sq = np.einsum("ij,ij->i", res.x, res.x, dtype=np.float64)
    whole = len(a) > n  # more pairs than rows: map every row once per code, not each pair's row (same values)
    gram = n * n <= len(a)  # as many pairs as the whole table: one matrix product per code (float64, as the rows)
    x64 = res.x.astype(np.float64) if gram else None
    for k in codes:
        tm = grid_map(res.mean, k, size)  # T m
        tsm = grid_map(res.mean[:, None], k, size, adjoint=True)[:, 0]  # T* m
        dot_tm, dot_tsm = res.x @ tm, res.x @ tsm
        norm_t = np.sqrt(np.maximum(sq - 2 * dot_tsm + mm, 0.0))  # |T x - m|
        norm_ts = np.sqrt(np.maximum(sq - 2 * dot_tm + mm, 0.0))  # |T* x - m|
        mapped = grid_map(res.x, k, size) if whole else None
        table = x64 @ mapped.astype(np.float64).T if x64 is not None and mapped is not None else None
        for s in range(0, len(a), 1024):
            p, q = a[s:s + 1024], b[s:s + 1024]
            if table is not None:
                dots = table[p, q]
            else:
                tq = mapped[q] if mapped is not None else grid_map(res.x[q], k, size)
                dots = np.einsum("ij,ij->i", res.x[p], tq, dtype=np.float64)
            den1, den2 = res.norms[p] * norm_t[q], norm_ts[p] * res.norms[q]
            cos1 = (dots - res.dot_mean[p] - dot_tsm[q] + mm) / np.where(den1 > 0, den1, 1.0)
            cos2 = (dots - dot_tm[p] - res.dot_mean[q] + mm) / np.where(den2 > 0, den2, 1.0)
            sim = np.minimum(cos1, cos2)
            better = sim > best[s:s + 1024]
            best[s:s + 1024][better] = sim[better]
            which[s:s + 1024][better] = k
    return best, which


def mutual_pairs(space: NeighbourhoodSpace, fingerprints: Residuals | None, fp_row: np.ndarray, *,
                 labels: np.ndarray, limit: int, k: int = MUTUAL_K, spreads: np.ndarray | None = None,
                 size_tolerance: float = np.inf, by: tuple[str, ...] = MUTUAL_BY,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """Candidate pairs ``(i, j)`` (``i < j``, highest combined score first, at most ``limit``) and figures.

    Parameters
    ----------
    space : NeighbourhoodSpace
        The group's spectra (rows are the group's images).
    fingerprints : Residuals or None
        The group's fingerprints; ``fp_row[i]`` is image ``i``'s row there
        (-1: none; its fingerprint z is 0).
    labels : ndarray
        Participant of each image: pairs of one participant are left out.
    limit : int
        Pairs kept at most (the highest combined score first).
    k : int
        Nearest others per image by each descriptor whose pairs are scored.
    spreads, size_tolerance
        Log principal spreads per image (``(n, 3)``, NaN: unknown); pairs
        further apart than ``size_tolerance`` along an axis are not scored.
    by : tuple of str
        The scores whose mutual nearest neighbours are candidates:
        ``"fingerprint"``, ``"spectrum"``, ``"both"`` (their sum).

    Returns
    -------
    i, j : ndarray of int64
        The pairs.
    score : ndarray of float64
        Their combined score (spectrum z + fingerprint z).
    code : ndarray of int64
        The grid map of the fingerprint similarity (-1: no fingerprints).
    stats : dict
        Pairs scored, proposed (per score), kept; the descriptors' medians and MADs.
    """
    n = len(space.x)
    empty = np.zeros(0, dtype=np.int64)
    info: dict[str, Any] = {"images": n, "k": k, "by": list(by), "pairs_scored": 0, "pairs_proposed": 0,
                            "pairs_kept": 0}
    if n < 3 or limit <= 0 or not space.mad > 0:
        return empty, empty, np.zeros(0), empty, info
    k = min(k, n - 1)
    lists = [_top_k(space.x, labels, k, space.chunk, level=space.r)]
    if fingerprints is not None and (fp_row >= 0).sum() > k + 1:
        have = np.flatnonzero(fp_row >= 0)
        a, b = _top_k(_fp_projection(fingerprints, fp_row[have], seed=seed), labels[have], k, space.chunk)
        lists.append((have[a], have[b]))
    r = np.concatenate([x[0] for x in lists])
    c = np.concatenate([x[1] for x in lists])
    key = np.unique(np.minimum(r, c) * n + np.maximum(r, c))
    lo, hi = key // n, key % n
    if spreads is not None and np.isfinite(size_tolerance):
        fit = ~(np.abs(spreads[lo] - spreads[hi]).max(axis=1) > size_tolerance)  # no sizes (NaN): kept
        lo, hi = lo[fit], hi[fit]
    info["pairs_scored"] = len(lo)
    zsp = (2 * np.einsum("ij,ij->i", space.x[lo], space.x[hi], dtype=np.float64) - space.r[lo] - space.r[hi]
           - space.median) / space.mad
    zfp = np.zeros(len(lo))
    code = np.full(len(lo), -1, dtype=np.int64)
    if fingerprints is not None:
        zfp, code, fp_figures = _fingerprint_z(fingerprints, fp_row, lo, hi, seed=seed)
        info.update(fp_figures)
    info.update(spectrum_median=round(space.median, 4), spectrum_mad=round(space.mad, 4))
    score = zsp + zfp
    scores = {"fingerprint": zfp, "spectrum": zsp, "both": score}
    proposed: dict[int, list[str]] = {}
    for name in by:
        for p in _mutual(lo, hi, scores[name], n).tolist():
            proposed.setdefault(p, []).append(name)
    info["pairs_proposed"] = len(proposed)
    info["proposed_by"] = {name: sum(name in v for v in proposed.values()) for name in by}
    at = np.array(sorted(proposed, key=lambda p: (-score[p], p))[:limit], dtype=np.int64)
    info["pairs_kept"] = len(at)
    return lo[at], hi[at], score[at], code[at], info


def _top_k(x: np.ndarray, labels: np.ndarray, k: int, chunk: int,
           level: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``k`` best others by ``2 x_i . x_j - level_i - level_j`` (cosine without ``level``)."""
    n = len(x)
    k = min(k, n - 1)
    rows, cols = [], []
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        sc = x[s:e] @ x.T
        if level is not None:
            sc = 2 * sc - level[s:e, None] - level[None, :]
        sc[labels[s:e, None] == labels[None, :]] = -np.inf  # self and one participant's sessions
        top = np.argpartition(-sc, k - 1, axis=1)[:, :k]
        fine = np.isfinite(sc[np.arange(e - s)[:, None], top])
        rows.append(np.repeat(np.arange(s, e), k)[fine.ravel()])
        cols.append(top.ravel()[fine.ravel()])
    return np.concatenate(rows), np.concatenate(cols)


def _mutual(lo: np.ndarray, hi: np.ndarray, score: np.ndarray, n: int) -> np.ndarray:
    """Positions of the pairs ``(lo, hi)`` whose two images are each other's best-scoring partner."""
    ends = np.concatenate([lo, hi])
    pos = np.concatenate([np.arange(len(lo)), np.arange(len(lo))])
    order = np.lexsort((pos, -np.concatenate([score, score]), ends))  # by image, best first
    ends, pos = ends[order], pos[order]
    first = np.r_[True, ends[1:] != ends[:-1]]
    best = pos[first]  # each image's best pair
    counts = np.bincount(best, minlength=len(lo))
    return np.flatnonzero(counts == 2)  # best for both of its images


def _fp_projection(res: Residuals, rows: np.ndarray, *, seed: int, dims: int = 32) -> np.ndarray:
    """Unit fingerprint residuals of ``rows`` on their top principal axes (fitted on a sample), unit length."""
    rng = np.random.default_rng(seed)
    sample = rows[np.sort(rng.choice(len(rows), size=min(len(rows), 2000), replace=False))]
    u = res.unit(sample)
    _, _, vt = np.linalg.svd(u - u.mean(axis=0), full_matrices=False)
    axes = np.ascontiguousarray(vt[:dims].T)
    out = np.empty((len(rows), axes.shape[1]), dtype=np.float32)
    for s in range(0, len(rows), 4096):
        out[s:s + 4096] = res.unit(rows[s:s + 4096]) @ axes
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out


def _fingerprint_z(res: Residuals, fp_row: np.ndarray, lo: np.ndarray, hi: np.ndarray, *,
                   seed: int) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Robust z of the best-map fingerprint similarity of pairs ``(lo, hi)`` (0 where one has no fingerprint)."""
    m = len(res.x)
    codes = MUTUAL_CODES
    have = (fp_row[lo] >= 0) & (fp_row[hi] >= 0)
    z = np.zeros(len(lo))
    code = np.full(len(lo), -1, dtype=np.int64)
    figures: dict[str, Any] = {"fingerprint_maps": len(codes)}
    if m < 3 or not have.any():
        return z, code, figures
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, m, 2 * _NULL_PAIRS), rng.integers(0, m, 2 * _NULL_PAIRS)
    keep = a != b
    a, b = a[keep][:_NULL_PAIRS], b[keep][:_NULL_PAIRS]
    null, _ = mapped_similarity(res, a, b, codes)
    med = float(np.median(null))
    mad = float(np.median(np.abs(null - med))) * 1.4826
    figures.update(fingerprint_median=round(med, 4), fingerprint_mad=round(mad, 4))
    if not mad > 0:
        return z, code, figures
    sim, which = mapped_similarity(res, fp_row[lo[have]], fp_row[hi[have]], codes)
    z[have] = (sim - med) / mad
    code[have] = which
    return z, code, figures
