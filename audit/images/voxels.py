"""Voxel-array primitives the image measures share: native value types, weighted moments, block sums, sorted unique.

Small pure functions on numpy arrays, used by the fingerprint
(:mod:`audit.images.fingerprint`), the patch sketch
(:mod:`audit.images.sketch`), the candidate search
(:mod:`audit.images.candidates`) and the statistics of the image pass
(:mod:`audit.images.measures`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["MOMENT_VOXELS", "block_affine", "block_sum", "moments", "native", "unique_sorted", "whole_blocks"]

#: Moments of the data region come from a regular subsample of at most about this many voxels.
MOMENT_VOXELS = 2**18


def moments(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted centroid (3,) and covariance (3, 3) of voxel indices, from the three plane sums."""
    w = np.asarray(weights)
    idx = [np.arange(n, dtype=np.float64) for n in w.shape]
    p01 = w.sum(axis=2, dtype=np.float64)  # (x, y)
    p02 = w.sum(axis=1, dtype=np.float64)  # (x, z)
    p12 = w.sum(axis=0, dtype=np.float64)  # (y, z)
    marg = [p01.sum(axis=1), p01.sum(axis=0), p02.sum(axis=0)]
    total = float(marg[0].sum())
    centre = np.array([(marg[a] * idx[a]).sum() / total for a in range(3)])
    cov = np.empty((3, 3))
    for a in range(3):
        cov[a, a] = (marg[a] * idx[a] ** 2).sum() / total - centre[a] ** 2
    for (a, b), plane in (((0, 1), p01), ((0, 2), p02), ((1, 2), p12)):
        cov[a, b] = cov[b, a] = float(idx[a] @ plane @ idx[b]) / total - centre[a] * centre[b]
    return centre, cov


def block_affine(affine: np.ndarray, f: Sequence[int]) -> np.ndarray:
    """The voxel -> world affine of blocks of ``f`` voxels (a block's centre is its voxels' centre).

    >>> block_affine(np.eye(4), (2, 2, 1))[:3, 3].tolist()
    [0.5, 0.5, 0.0]
    """
    out: np.ndarray = affine @ np.diag([f[0], f[1], f[2], 1.0])
    out[:3, 3] = affine[:3, :3] @ ((np.array(f, dtype=np.float64) - 1) / 2) + affine[:3, 3]
    return out


def whole_blocks(a: np.ndarray, f: Sequence[int]) -> np.ndarray:
    """``a`` without its last, partial blocks of ``f`` voxels (a view).

    >>> whole_blocks(np.zeros((5, 4, 3)), (2, 2, 2)).shape
    (4, 4, 2)
    """
    return a[: a.shape[0] // f[0] * f[0], : a.shape[1] // f[1] * f[1], : a.shape[2] // f[2] * f[2]]


def block_sum(a: np.ndarray, f: Sequence[int], dtype: np.dtype | type | None = None) -> np.ndarray:
    """Sums over blocks of ``f`` voxels (the last, partial blocks sum what they hold), in ``dtype`` (``a``'s).

    The last axis first: for the Fortran-ordered volumes of the image pass
    those are whole planes, and the strided first axis is summed last, on
    data already reduced (six times faster than the other way round).
    """
    out = a
    for axis in reversed(range(len(f))):
        k = f[axis]
        if k <= 1:
            continue
        n = out.shape[axis]
        m = math.ceil(n / k)
        idx: list[slice] = [slice(None)] * 3
        idx[axis] = slice(0, None, k)
        acc = np.array(out[tuple(idx)], dtype=dtype or out.dtype)  # first voxel of every block (m of them)
        dtype = None
        for i in range(1, k):
            idx[axis] = slice(i, None, k)
            part = out[tuple(idx)]
            if part.shape[axis] == m:
                acc += part
            else:  # the last block is partial
                head: list[slice] = [slice(None)] * 3
                head[axis] = slice(0, part.shape[axis])
                acc[tuple(head)] += part
        out = acc
    return out


def native(volume: np.ndarray) -> np.ndarray:
    """``volume`` itself when it holds 8- or 16-bit integers (exact in float32), as float32 otherwise."""
    v = np.asarray(volume)
    if v.dtype.kind in "iu" and v.dtype.itemsize <= 2:
        return v
    return np.asarray(v, dtype=np.float32)


def unique_sorted(a: np.ndarray) -> np.ndarray:
    """``np.unique`` of a 1-D array without NaN, by one sort (numpy 2's hash-based ``unique``: 20 times slower)."""
    s = np.sort(a)
    if s.size < 2:
        return s
    keep = np.empty(s.size, dtype=bool)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]
