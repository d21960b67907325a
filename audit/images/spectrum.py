"""The near-duplicate spectrum of one volume, and the candidate pairs a dataset's spectra link.

The fingerprint (:mod:`audit.images.fingerprint`) samples an image in the
frame its own foreground defines: a crop into the head, a bias-field
correction (which lifts the background) or a turn of a head whose principal
spreads are nearly equal moves that frame, and the copy looks like someone
else. The spectrum needs no frame. Measured on 100 real heads (IXI) with 96
planted copies, ranked against each image's own neighbours
(:func:`spectrum_pairs`), it finds every crop, bias-field-corrected,
translated and 5-degree rotated copy the fingerprint missed; the two
together find 94 of the 96 (``bench/bench_neardup.py --confirm``).

Spectrum (``SPECTRUM_VERSION``), computed once per image in the image pass
(:mod:`audit.images.measures`, on the closest-canonical reference volume):

1. *Working grid*: block means to about ``SP_MM`` mm, then linear
   resampling to ``SP_MM`` mm isotropic (voxel size cancels).
2. *Intensities*: log, floored at the 5th percentile of the positive values
   (and 1e-3 of their 99th), clamped from below at Otsu's threshold of
   those log values (background, noise floors and Rician bias are one
   value); high-passed by subtracting a normalised Gaussian (sigma
   ``SP_HIGHPASS`` mm, inside the data) and scaled to unit spread inside
   the data. Scaling and gamma are an additive and a multiplicative
   constant of log intensities; a bias field and its correction are smooth:
   all gone.
3. *Power spectrum*: the volume in a zero box of ``SP_BOX`` mm (larger
   fields of view: the box centred on the data), ``|FFT|^2``; the magnitude
   does not move with a translation, and folding the frequencies of the
   first two axes onto their absolute values (the third is already folded:
   a real signal's spectrum is symmetric) makes it the same for a flip
   along any array axis.
4. *Descriptor*: ``log`` of the lowest ``SP_K`` frequencies per axis
   (``SP_K**3`` values, wavelengths of ``SP_BOX / SP_K`` mm and more),
   centred and scaled to unit length. A crop removes part of the head but
   keeps the rest's detail; small rotations move low frequencies little.

Search (:func:`spectrum_pairs`): the group's spectra minus their mean,
projected on their top ``SP_DIMS`` principal axes, cosine; each pair is
scored against its two images' own neighbourhoods (cross-domain similarity
local scaling: ``2 cos(i, j) - r_i - r_j``, ``r`` the mean cosine of an
image's ``SP_NEIGHBOURS`` nearest others), so a copy that is its original's
closest image stands out even when the group's images are all alike; that
score is standardised by the median and MAD of all the group's pairs, and
pairs at ``z_min`` or more are candidates (the highest first, at most
``limit``). Groups of fewer than ``SPECTRUM_MIN`` images are not searched
this way (too few neighbours and pairs for the scaling). Every candidate is decided by the confirmation stage.
"""

from __future__ import annotations

import base64
import math
from typing import NamedTuple

import numpy as np

from audit.images.features import otsu_threshold
from audit.images.voxels import block_sum, native

__all__ = ["SPECTRUM_MAX", "SPECTRUM_MIN", "SPECTRUM_VERSION", "SP_BOX", "SP_DIMS", "SP_K", "SP_MM", "SP_NEIGHBOURS",
           "NeighbourhoodSpace", "decode_spectrum", "encode_spectrum", "neighbourhood_space", "spectrum",
           "spectrum_pairs"]

#: Working voxel size (mm).
SP_MM = 4.0
#: Edge of the zero box the spectrum is taken in (mm).
SP_BOX = 256.0
#: Lowest frequencies kept per axis.
SP_K = 20
#: Sigma (mm) of the smooth part removed from the log intensities.
SP_HIGHPASS = 10.0
#: Principal axes of the search's projection.
SP_DIMS = 128
#: Nearest others whose mean cosine sets an image's neighbourhood level.
SP_NEIGHBOURS = 5
#: Smallest group searched (a neighbourhood level and a spread of pair scores need a few dozen images).
SPECTRUM_MIN = 24
#: Largest group searched (every pair is scored: n^2 SP_DIMS operations).
SPECTRUM_MAX = 20_000
#: Pairs sampled for the median and MAD of a group's pair scores.
_SAMPLE_PAIRS = 200_000
#: Changes whenever the spectrum's definition changes.
SPECTRUM_VERSION = f"sp1-{SP_MM:g}mm-box{SP_BOX:g}-k{SP_K}-hp{SP_HIGHPASS:g}-otsu"


def spectrum(volume: np.ndarray, affine: np.ndarray) -> np.ndarray | None:
    """The unit-length float32 spectrum descriptor of a 3-D volume (module docstring), or ``None``.

    >>> rng = np.random.default_rng(0)
    >>> head = np.pad(rng.uniform(50, 100, (40, 40, 40)).astype(np.float32), 10)
    >>> a, b = spectrum(head, np.eye(4) * 2), spectrum(head[::-1, :, ::-1], np.eye(4) * 2)
    >>> round(float(a @ b), 4)
    1.0
    >>> spectrum(np.zeros((4, 4, 4), np.float32), np.eye(4)) is None
    True
    """
    from scipy.ndimage import gaussian_filter, zoom

    vol = native(volume)
    if vol.ndim != 3:
        return None
    affine = np.asarray(affine, dtype=np.float64)
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    if not np.all(zooms > 0):
        return None
    f = [max(1, round(SP_MM / z)) for z in zooms]
    if vol.dtype != np.float32:
        vol = vol.astype(np.float32)
    if not np.isfinite(vol).all():
        vol = np.nan_to_num(vol, nan=0.0, posinf=0.0, neginf=0.0)
    shape = [n // k * k for n, k in zip(vol.shape, f)]
    if min(shape) == 0:
        return None
    v = vol[:shape[0], :shape[1], :shape[2]]
    if max(f) > 1:
        v = block_sum(v, f, dtype=np.float32) / np.float32(f[0] * f[1] * f[2])
    factor = zooms * np.array(f) / SP_MM
    if np.any(np.abs(factor - 1) > 1e-3):
        v = zoom(v, factor, order=1)
    if min(v.shape) < 8:
        return None
    data = v > 0
    pos = v[data]
    if pos.size < 64:
        return None
    q5, q99 = np.percentile(pos, [5.0, 99.0])
    floor = max(float(q5), float(q99) * 1e-3)
    logv = np.log(np.maximum(v, floor))
    t = otsu_threshold(logv[data], bins=128)
    if t is not None:
        logv = np.maximum(logv, np.float32(t))
    valid = data.astype(np.float32)
    s = SP_HIGHPASS / SP_MM
    smooth = gaussian_filter(logv * valid, s) / np.maximum(gaussian_filter(valid, s), 1e-3)
    band = np.where(data, logv - smooth, 0.0).astype(np.float32)
    band = gaussian_filter(band, 0.5)
    sd = float(band[data].std())
    if not sd > 1e-9:
        return None
    band /= np.float32(sd)
    n = round(SP_BOX / SP_MM)
    box = np.zeros((n, n, n), dtype=np.float32)
    if max(band.shape) > n:  # a larger field of view: the box centred on the data
        w = np.abs(band)
        lo = []
        for ax in range(3):
            prof = w.sum(axis=tuple(a for a in range(3) if a != ax))
            c = float((prof * np.arange(len(prof))).sum() / max(float(prof.sum()), 1e-12))
            lo.append(int(min(max(round(c - n / 2), 0), max(band.shape[ax] - n, 0))))
        band = band[lo[0]:lo[0] + n, lo[1]:lo[1] + n, lo[2]:lo[2] + n]
    box[:band.shape[0], :band.shape[1], :band.shape[2]] = band
    power = np.abs(np.fft.rfftn(box)) ** 2
    k = np.arange(SP_K)
    signed = (k, (n - k) % n)
    out = np.zeros((SP_K, SP_K, SP_K), dtype=np.float64)
    for ix in signed:
        for iy in signed:
            out += power[np.ix_(ix, iy, k)]
    d = np.log(out + 1e-6).ravel()
    d -= d.mean()
    norm = float(np.linalg.norm(d))
    if not norm > 0 or not math.isfinite(norm):
        return None
    return (d / norm).astype(np.float32)


def spectrum_pairs(vectors: np.ndarray, *, z_min: float, limit: int, labels: np.ndarray | None = None,
                   seed: int = 0, space: NeighbourhoodSpace | None = None,
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, float]]:
    """Candidate pairs ``(i, j, z)`` (``i < j``, highest ``z`` first, at most ``limit``) and figures.

    Pairs whose ``labels`` are equal (one participant's sessions) are left out.
    ``space``: the group's :func:`neighbourhood_space` when already made.

    ``z``: the pair's neighbourhood-scaled similarity (module docstring) in
    robust standard units of the group's pairs. Groups of fewer than
    ``SPECTRUM_MIN`` or more than ``SPECTRUM_MAX`` images give no pair.

    >>> rng = np.random.default_rng(1)
    >>> x = rng.normal(size=(30, 64)).astype(np.float32)
    >>> x[29] = x[3] + 0.05 * rng.normal(size=64)
    >>> i, j, z, _ = spectrum_pairs(x, z_min=4.0, limit=10)
    >>> [(int(a), int(b)) for a, b in zip(i, j)]
    [(3, 29)]
    """
    n = len(vectors)
    empty = np.zeros(0, dtype=np.int64)
    info: dict[str, float] = {"images": n, "pairs_at_z": 0, "pairs_kept": 0}
    if n < max(SPECTRUM_MIN, SP_NEIGHBOURS + 2) or n > SPECTRUM_MAX or limit <= 0:
        return empty, empty, np.zeros(0), info
    space = neighbourhood_space(vectors, seed=seed) if space is None else space
    med, mad, chunk = space.median, space.mad, space.chunk
    info.update(median=round(med, 4), mad=round(mad, 4))
    if not mad > 0:
        return empty, empty, np.zeros(0), info
    cut = med + z_min * mad
    ii, jj, ss = [], [], []
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        score = space.scores(slice(s, e))
        rows, cols = np.nonzero(score >= cut)
        up = cols > rows + s
        if labels is not None:
            up &= labels[rows + s] != labels[cols]
        ii.append(rows[up] + s)
        jj.append(cols[up])
        ss.append(score[rows[up], cols[up]])
    i, j, sc = np.concatenate(ii), np.concatenate(jj), np.concatenate(ss)
    info["pairs_at_z"] = len(i)
    order = np.lexsort((j, i, -sc))[:limit]
    info["pairs_kept"] = len(order)
    return i[order].astype(np.int64), j[order].astype(np.int64), (sc[order] - med) / mad, info


class NeighbourhoodSpace(NamedTuple):
    """A group's spectra as the search compares them (:func:`neighbourhood_space`)."""

    x: np.ndarray  # (n, k) float32: centred, projected on the top principal axes, unit length
    r: np.ndarray  # (n,) float32: each image's neighbourhood level (mean cosine of its nearest others)
    median: float  # of the neighbourhood-scaled pair scores (a sample)
    mad: float  # their MAD x 1.4826 (robust standard unit)
    chunk: int  # rows per block of ``x @ x.T`` (about 4 M scores a block)

    def scores(self, rows: slice) -> np.ndarray:
        """Neighbourhood-scaled similarities ``2 cos(i, j) - r_i - r_j`` of ``rows`` against every image."""
        out: np.ndarray = 2 * (self.x[rows] @ self.x.T) - self.r[rows, None] - self.r[None, :]
        return out


def neighbourhood_space(vectors: np.ndarray, *, seed: int = 0) -> NeighbourhoodSpace:
    """The spectra projected and scaled as :func:`spectrum_pairs` scores them (every pair, in blocks of rows)."""
    n = len(vectors)
    x = np.asarray(vectors, dtype=np.float32)
    x = x - x.mean(axis=0)
    if x.shape[1] > SP_DIMS:
        rng = np.random.default_rng(seed)
        fit = x if n <= 2000 else x[np.sort(rng.choice(n, 2000, replace=False))]
        _, _, vt = np.linalg.svd(fit, full_matrices=False)
        x = x @ vt[:SP_DIMS].T
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    chunk = max(1, 2**22 // n)
    r = np.empty(n, dtype=np.float32)
    for s in range(0, n, chunk):
        sim = x[s:s + chunk] @ x.T
        sim[np.arange(sim.shape[0]), np.arange(s, s + sim.shape[0])] = -np.inf
        r[s:s + chunk] = np.sort(np.partition(sim, n - SP_NEIGHBOURS, axis=1)[:, -SP_NEIGHBOURS:], axis=1).mean(axis=1)
    rng = np.random.default_rng(seed + 1)
    m = min(_SAMPLE_PAIRS, n * (n - 1) // 2)
    a = rng.integers(0, n, 2 * m)
    b = rng.integers(0, n, 2 * m)
    keep = a != b
    a, b = a[keep][:m], b[keep][:m]
    sample = 2 * np.einsum("ij,ij->i", x[a], x[b]) - r[a] - r[b]
    med = float(np.median(sample))
    mad = float(np.median(np.abs(sample - med))) * 1.4826
    return NeighbourhoodSpace(x, r, med, mad, chunk)


def encode_spectrum(vector: np.ndarray) -> str:
    """Base64 of little-endian float16 (how a summary stores a spectrum)."""
    return base64.b64encode(np.asarray(vector, dtype="<f2").tobytes()).decode("ascii")


def decode_spectrum(text: str) -> np.ndarray:
    """The float16 vector of :func:`encode_spectrum` (length 0 for an empty string)."""
    return np.frombuffer(base64.b64decode(text), dtype="<f2")
