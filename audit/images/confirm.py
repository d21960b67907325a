"""Confirm a near-duplicate candidate pair at full resolution.

The candidate stage (:mod:`audit.images.candidates`) compares coarse
fingerprints; as a dataset grows, distinct people cross its threshold. :func:`confirm_pair` is a second, independent
comparison of the two volumes that says whether one is a copy of the other:

1. *Preparation* (each volume once, :func:`prepare`, :mod:`audit.images.confirmprep`): values as float32, NaN
   and exact zeros are "no data"; block means down to a working voxel of
   about ``WORK_MM`` (a 1 mm head becomes 2 mm); log intensities (floored);
   the foreground by Otsu's threshold on them; its centroid and principal
   axes in world millimetres.
2. *Roles*: the volume with the smaller foreground (mm^3) is the *fixed*
   one, the other *moving*: a skull-stripped or cropped copy is fixed, so
   every point compared has data on both sides (a mask or a crop never
   leaves the comparison with points that only one side holds).
3. *Initial transforms* (fixed world -> moving world): the affines as they
   are; the centroids matched with the world axes under each of the 8 axis
   sign combinations (flips/mirrors along any axis); the principal axes
   matched under every order and sign (48). Each is scored by the correlation
   of smoothed (``LEVELS[0]`` mm) log intensities over the fixed foreground.
4. *Refinement*: the best ``N_REFINE`` are refined (rotation, translation,
   one isotropic scale: 7 parameters, L-BFGS-B with an analytic gradient on
   that correlation), the best end point then on finer levels
   (``LEVELS``, ``LEVEL_POINTS``, ``LEVEL_ITERS``). Rotations up to 15
   degrees, translations, crops and pads that move the principal axes, and a
   resampling (with or without the affine updated) are absorbed here.
5. *Score*: the moving volume is sampled on the fixed one's working grid
   through the transform; both are band-passed (difference of Gaussians,
   ``BAND`` times the coarser working voxel, by normalised convolution
   inside the joint foreground, so a mask's edge is no edge) and correlated
   inside that foreground, eroded. What is left after the band-pass is the
   individual folding pattern (and the noise of one acquisition), which
   distinct people do not share; what a scaling, a gamma, a bias field
   (or its correction) does to log intensities is constant or smooth and is
   gone.

The verdict is ``score >= COPY_THRESHOLD`` (see ``docs/neardup-confirm.md``
for how the threshold was calibrated on 100 real people, IXI: distinct pairs
at most 0.29, copies at least 0.57). Where a group's distinct members share
their fine detail (smooth synthetic phantoms), :func:`group_threshold`
raises it from the group's own distinct pairs.

Mirrored copies are found as candidates by
:func:`audit.images.candidates.mirror_pairs`; the dataset-level driver (read
the images of the candidate pairs once, the group's null, the verdicts) is
:mod:`audit.images.confirmpairs`.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import permutations, product

import numpy as np

from audit.images.confirmprep import Prepared, box, prepare
from audit.images.voxels import block_affine, block_sum, whole_blocks

__all__ = [
    "COPY_THRESHOLD",
    "Confirmation",
    "Prepared",
    "Transform",
    "confirm_pair",
    "group_threshold",
    "null_fit",
    "prepare",
]

#: Gaussian sigmas (mm) of the registration levels, coarse to fine.
LEVELS = (6.0, 3.0, 1.5)
#: Grid spacing of the sample points at each level (mm, at least one working voxel) and their number at most.
LEVEL_STEP = (6.0, 4.0, 2.0)
LEVEL_POINTS = (1000, 3000, 6000)
#: L-BFGS-B iterations: each of the ``N_REFINE`` initial transforms, then the best one per level.
LEVEL_ITERS = (8, 20, 10, 8)
#: Initial transforms refined.
N_REFINE = 3
#: Band-pass of the score: sigmas as multiples of the coarser working voxel of the pair.
BAND = (0.6, 2.0)
#: Score at or above which a pair is a copy.
COPY_THRESHOLD = 0.5
#: Fraction of the fixed foreground that must lie inside the moving volume's field of view.
MIN_OVERLAP = 0.6


@dataclass(frozen=True)
class Transform:
    """The map found from the fixed volume's world (mm) to the moving one's.

    ``flips`` are world-axis signs: ``(-1, 1, 1)`` is a left-right mirror.
    ``rotation_deg`` is the angle of the proper rotation left after those
    flips, ``scale`` the isotropic scale, ``translation_mm`` how far the
    fixed foreground's centroid moves.
    """

    matrix: np.ndarray  # (4, 4) fixed world -> moving world
    flips: tuple[int, int, int]
    rotation_deg: float
    scale: float
    translation_mm: tuple[float, float, float]
    start: str  # which initial transform the search started from

    @property
    def mirrored(self) -> bool:
        return bool(np.linalg.det(self.matrix[:3, :3]) < 0)


@dataclass(frozen=True)
class Confirmation:
    """The verdict on a candidate pair."""

    score: float  # band-passed correlation inside the joint foreground (-1..1)
    copy: bool
    transform: Transform
    fixed: str  # "a" or "b": the volume with the smaller foreground (the transform maps it to the other)
    alignment: float  # correlation of smoothed log intensities after refinement
    overlap: float  # fraction of the fixed foreground inside the moving field of view
    threshold: float
    reasons: tuple[str, ...]
    seconds: float
    voxels: int = 0  # voxels the score was computed over
    extras: dict = field(default_factory=dict)


# --------------------------------------------------------------- levels
class _Level:
    """A volume's log intensities smoothed for one registration level, block-averaged where the sigma allows."""

    def __init__(self, p: Prepared, sigma_mm: float) -> None:
        from scipy.ndimage import gaussian_filter

        zooms = np.sqrt((p.affine[:3, :3] ** 2).sum(axis=0))
        f = [max(1, int(sigma_mm / (1.5 * z))) for z in zooms]
        img, aff = p.log, p.affine
        if max(f) > 1:
            img = block_sum(whole_blocks(img, f), f) / np.float32(f[0] * f[1] * f[2])
            aff = block_affine(p.affine, f)
        zl = zooms * np.array(f)
        sig = [math.sqrt(max(sigma_mm**2 - (z**2 / 12 if k > 1 else 0.0), 0.0)) / z for z, k in zip(zl, f)]
        self.img = gaussian_filter(img, sig, mode="nearest", truncate=2.5)
        self.affine = aff
        self.inv = np.linalg.inv(aff)
        self.shape = np.array(self.img.shape, float)
        self._grads: np.ndarray | None = None

    def grads(self) -> np.ndarray:
        """The value and its voxel gradient (central differences) per voxel, (n, 4) float32, built once."""
        if self._grads is None:
            g = np.gradient(self.img)
            self._grads = np.ascontiguousarray(np.stack([self.img, *g], axis=-1), dtype=np.float32).reshape(-1, 4)
        return self._grads

    def trilinear(self, vox: np.ndarray) -> np.ndarray:
        """Value and voxel gradient (central differences) at ``vox`` (n, 3), trilinear, (n, 4) float32."""
        grads = self.grads()
        n = self.img.shape
        v = np.clip(vox, 0, np.array(n) - 1.000001)
        i0 = v.astype(np.int64)
        fr = (v - i0).astype(np.float32)
        base = (i0[:, 0] * n[1] + i0[:, 1]) * n[2] + i0[:, 2]
        out = np.zeros((len(v), 4), dtype=np.float32)
        for dx in (0, 1):
            wx = fr[:, 0] if dx else 1 - fr[:, 0]
            for dy in (0, 1):
                wy = wx * (fr[:, 1] if dy else 1 - fr[:, 1])
                for dz in (0, 1):
                    w = wy * (fr[:, 2] if dz else 1 - fr[:, 2])
                    out += grads[base + (dx * n[1] + dy) * n[2] + dz] * w[:, None]
        return out


def _level(p: Prepared, sigma_mm: float) -> _Level:
    if sigma_mm not in p.levels:
        p.levels[sigma_mm] = _Level(p, sigma_mm)
    out: _Level = p.levels[sigma_mm]
    return out


def _levels(fx: Prepared, mv: Prepared, pool: ThreadPoolExecutor | None) -> None:
    """Every registration level of both volumes (and the moving one's gradients) built at once in ``pool``."""
    if pool is None:
        return

    def build(job: tuple[Prepared, float]) -> None:
        lev = _level(*job)
        if job[0] is mv:
            lev.grads()

    list(pool.map(build, [(p, s) for s in LEVELS for p in (mv, fx)]))


def _smooth(jobs: list[tuple[np.ndarray, list[float]]], pool: ThreadPoolExecutor | None) -> list[np.ndarray]:
    """``gaussian_filter`` (zero outside, truncated at 3 sigma) of each ``(array, sigmas)``, in ``pool`` if any."""
    from scipy.ndimage import gaussian_filter

    def one(job: tuple[np.ndarray, list[float]]) -> np.ndarray:
        out: np.ndarray = gaussian_filter(job[0], job[1], mode="constant", truncate=3.0)
        return out

    return list(pool.map(one, jobs)) if pool is not None else [one(j) for j in jobs]


# --------------------------------------------------------------- transforms
def _signs() -> list[np.ndarray]:
    return [np.diag(s) for s in product((1.0, -1.0), repeat=3)]


def _perm_signs() -> list[np.ndarray]:
    out = []
    for perm in permutations(range(3)):
        for s in product((1.0, -1.0), repeat=3):
            m = np.zeros((3, 3))
            for col, (row, sg) in enumerate(zip(perm, s)):
                m[row, col] = sg
            out.append(m)
    return out


_SIGNS = _signs()
_PERM_SIGNS = _perm_signs()


def _starts(fx: Prepared, mv: Prepared) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Initial (name, linear, translation) maps fixed world -> moving world: ``y = L x + t``."""
    out = [("affines", np.eye(3), np.zeros(3))]
    for d in _SIGNS:
        s = "".join("+" if x > 0 else "-" for x in np.diag(d))
        out.append((f"world{s}", d, mv.centre - d @ fx.centre))
    scale = float(np.clip(np.sqrt((mv.spread ** 2).sum() / max((fx.spread ** 2).sum(), 1e-9)), 0.8, 1.25))
    for k, p in enumerate(_PERM_SIGNS):
        lin = scale * (mv.axes @ p @ fx.axes.T)
        out.append((f"principal{k}", lin, mv.centre - lin @ fx.centre))
    return out


def _points(fx: Prepared, step_mm: float, limit: int) -> np.ndarray:
    """Voxel indices of the fixed foreground on a grid of about ``step_mm``, at most ``limit`` (a regular subset)."""
    zooms = np.sqrt((fx.affine[:3, :3] ** 2).sum(axis=0))
    k = [max(1, round(float(step_mm / z))) for z in zooms]
    idx = np.argwhere(fx.fg[:: k[0], :: k[1], :: k[2]]).astype(np.float64) * np.array(k, float)
    if len(idx) > limit:
        idx = idx[np.linspace(0, len(idx) - 1, limit).astype(np.int64)]
    return idx


class _Sampler:
    """Correlation (and its gradient) between fixed values at points and moving values through a transform."""

    def __init__(self, fx: Prepared, mv: Prepared, sigma: float, step: float, limit: int) -> None:
        from scipy.ndimage import map_coordinates

        vox = _points(fx, step, limit)
        self.world = vox @ fx.affine[:3, :3].T + fx.affine[:3, 3]
        lf = _level(fx, sigma)
        fv = self.world @ lf.inv[:3, :3].T + lf.inv[:3, 3]
        self.f = map_coordinates(lf.img, fv.T, order=1, mode="nearest").astype(np.float64)
        self.lm = _level(mv, sigma)
        self.m_img = self.lm.img
        self.inv = self.lm.inv
        self.shape = self.lm.shape
        self.centre = fx.centre
        self.evals = 0

    def corr(self, lin: np.ndarray, t: np.ndarray, grad: bool = False):
        """Correlation (times a penalty when under 90 % of the points fall inside the moving volume), overlap
        fraction, and with ``grad`` the points inside, their dc/dm weights and moving-world gradients."""
        from scipy.ndimage import map_coordinates

        self.evals += 1
        y = self.world @ lin.T + t
        vox = y @ self.inv[:3, :3].T + self.inv[:3, 3]
        inside = np.all((vox >= 0) & (vox <= self.shape - 1), axis=1)
        frac = float(inside.mean())
        if inside.sum() < 32:
            return (-1.0, frac, None) if grad else (-1.0, frac)
        if grad:
            vals = self.lm.trilinear(vox[inside])  # (n, 4): value and its voxel gradient
            m = vals[:, 0].astype(np.float64)
        else:
            m = map_coordinates(self.m_img, vox[inside].T, order=1, mode="nearest").astype(np.float64)
        f = self.f[inside]
        f = f - f.mean()
        m = m - m.mean()
        nf, nm = math.sqrt(float(f @ f)), math.sqrt(float(m @ m))
        if not (nf > 0 and nm > 0):
            return (0.0, frac, None) if grad else (0.0, frac)
        c = float(f @ m) / (nf * nm)
        pen = min(1.0, frac / 0.9)
        if not grad:
            return c * pen, frac
        w = (f / (nf * nm) - c * m / nm**2) * pen
        gw = vals[:, 1:].astype(np.float64) @ self.inv[:3, :3]  # d m / d world
        return c * pen, frac, (inside, w, gw, y[inside])


def _rotvec_matrix(w: np.ndarray) -> np.ndarray:
    th = float(np.linalg.norm(w))
    k = _hat(w)
    if th < 1e-12:
        return np.eye(3) + k
    return np.eye(3) + math.sin(th) / th * k + (1 - math.cos(th)) / th**2 * (k @ k)


def _hat(w: np.ndarray) -> np.ndarray:
    return np.array([[0, -w[2], w[1]], [w[2], 0, -w[0]], [-w[1], w[0], 0]])


def _jl(w: np.ndarray) -> np.ndarray:
    """Left Jacobian of SO(3): d(R(w) v) = -[R(w) v]x J_l(w) dw."""
    th = float(np.linalg.norm(w))
    k = _hat(w)
    if th < 1e-6:
        return np.eye(3) + 0.5 * k
    return np.eye(3) + (1 - math.cos(th)) / th**2 * k + (th - math.sin(th)) / th**3 * (k @ k)


_R = 60.0  # mm: rotations and log-scale are parametrised as the displacement at this radius


def _compose(p: np.ndarray, lin0: np.ndarray, t0: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``y = D(p) (L0 x + t0)`` with ``D`` a similarity about ``L0 c + t0`` (p: rotvec*R, shift, log-scale*R)."""
    rot = _rotvec_matrix(p[:3] / _R) * math.exp(p[6] / _R)
    pc = lin0 @ c + t0
    lin = rot @ lin0
    t = rot @ (t0 - pc) + pc + p[3:6]
    return lin, t


def _refine(s: _Sampler, lin0: np.ndarray, t0: np.ndarray, iters: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Rotation, translation and isotropic scale about the current map that maximise ``s``'s correlation."""
    from scipy.optimize import minimize

    pc = lin0 @ s.centre + t0

    def cost(p: np.ndarray) -> tuple[float, np.ndarray]:
        lin, t = _compose(p, lin0, t0, s.centre)
        c, _, g = s.corr(lin, t, grad=True)
        if g is None:
            return -c, np.zeros(7)
        _, w, gw, y = g
        a = gw * w[:, None]  # dc/dy per point
        d = np.empty(7)
        d[3:6] = a.sum(axis=0)
        v = y - pc - p[3:6]  # s R (z - pc)
        d[6] = float((a * v).sum()) / _R
        d[:3] = _jl(p[:3] / _R).T @ np.cross(v, a).sum(axis=0) / _R
        return -c, -d

    lim = [(-0.35 * _R, 0.35 * _R)] * 3 + [(-40.0, 40.0)] * 3 + [(math.log(0.75) * _R, math.log(1.33) * _R)]
    res = minimize(cost, np.zeros(7), jac=True, method="L-BFGS-B", bounds=lim,
                   options={"maxiter": iters, "ftol": 1e-7, "gtol": 1e-7})
    lin, t = _compose(res.x, lin0, t0, s.centre)
    return lin, t, -float(res.fun)


# --------------------------------------------------------------- score
def _score(fx: Prepared, mv: Prepared, lin: np.ndarray, t: np.ndarray,
           band: tuple[float, float] = BAND, pool: ThreadPoolExecutor | None = None) -> tuple[float, int]:
    """Correlation of the band-passed volumes inside the joint foreground (eroded), on the fixed grid.

    Only what the joint foreground needs is computed: the moving volume is
    sampled at the fixed foreground's voxels alone, and the band-pass runs
    over the fixed foreground's box (the filters see zeros outside the joint
    foreground whatever the box, so a margin would change nothing).
    """
    from scipy.ndimage import binary_erosion, map_coordinates

    h = max(fx.voxel_mm, mv.voxel_mm)
    zooms = np.sqrt((fx.affine[:3, :3] ** 2).sum(axis=0))
    sl = box(fx.fg, [0, 0, 0])
    fl = fx.log[sl]
    lo = np.array([x.start for x in sl], float)
    shape = fl.shape
    a_mv = np.linalg.inv(mv.affine) @ np.vstack([np.hstack([lin, t[:, None]]), [0, 0, 0, 1]]) @ fx.affine
    m3, off = a_mv[:3, :3], a_mv[:3, :3] @ lo + a_mv[:3, 3]
    idx = np.nonzero(fx.fg[sl] & fx.valid[sl])
    # fixed voxel (i, j, k) of the box -> moving voxel (float32, as the sampler takes them)
    coords = (m3 @ np.vstack(idx).astype(np.float64) + off[:, None]).astype(np.float32)
    ml_at = map_coordinates(mv.log, coords, order=1, mode="constant", cval=np.nan)
    # the moving foreground at the nearest voxel (scipy's order 0: floor(x + 0.5), nothing outside [0, n - 1])
    c64 = coords.astype(np.float64)
    inside = np.all((c64 >= 0) & (c64 <= np.array(mv.fg.shape, float)[:, None] - 1), axis=0)
    near = np.floor(c64[:, inside] + 0.5).astype(np.intp)
    ok = np.zeros(len(ml_at), dtype=bool)
    ok[inside] = mv.fg[near[0], near[1], near[2]]
    ok &= np.isfinite(ml_at)
    joint = np.zeros(shape, dtype=bool)
    at = tuple(i[ok] for i in idx)
    joint[at] = True
    core = binary_erosion(joint, iterations=1)
    if np.count_nonzero(core) < 64:
        return 0.0, int(np.count_nonzero(core))
    ml = np.zeros(shape, dtype=np.float32)
    ml[at] = ml_at[ok]
    sigs = [[band[0] * h / z for z in zooms], [band[1] * h / z for z in zooms]]
    arrays = (joint.astype(np.float32), np.where(joint, fl, 0).astype(np.float32), ml)
    sm = _smooth([(x, sg) for x in arrays for sg in sigs], pool)  # the mask, fixed, moving; each at both sigmas
    dens = [np.maximum(d, 1e-3) for d in sm[:2]]
    a, b = (((sm[k] / dens[0]) - (sm[k + 1] / dens[1]))[core].astype(np.float64) for k in (2, 4))
    a -= a.mean()
    b -= b.mean()
    den = math.sqrt(float(a @ a) * float(b @ b))
    return (float(a @ b) / den if den > 0 else 0.0), int(a.size)


# --------------------------------------------------------------- confirm
def _describe(lin: np.ndarray, t: np.ndarray, c: np.ndarray, start: str) -> Transform:
    u, sv, vt = np.linalg.svd(lin)
    scale = float(np.exp(np.log(sv).mean()))
    q = u @ vt
    best = None
    for d in _SIGNS:
        r = q @ d
        if np.linalg.det(r) < 0:
            continue
        ang = math.degrees(math.acos(float(np.clip((np.trace(r) - 1) / 2, -1, 1))))
        if best is None or ang < best[0]:
            best = (ang, tuple(int(x) for x in np.diag(d)))
    assert best is not None
    m = np.eye(4)
    m[:3, :3] = lin
    m[:3, 3] = t
    shift = lin @ c + t - c
    return Transform(m, best[1], round(best[0], 2), round(scale, 4), tuple(round(float(x), 2) for x in shift), start)


def confirm_pair(a: np.ndarray | Prepared, affine_a: np.ndarray | None, b: np.ndarray | Prepared,
                 affine_b: np.ndarray | None, *, threshold: float = COPY_THRESHOLD, threads: int = 1,
                 ) -> Confirmation:
    """Whether ``b`` is a copy of ``a`` (or ``a`` of ``b``), from a full-resolution comparison.

    Parameters
    ----------
    a, b : ndarray (3-D) or Prepared
        Voxel values (NaN and exact zeros are "no data"), or what
        :func:`prepare` made of them (the affine is then ignored).
    affine_a, affine_b : ndarray (4, 4)
        Voxel -> world (mm).
    threshold : float
        On the score.
    threads : int
        Threads for the smoothing (both volumes' registration levels, the
        score's band-pass): the same result, sooner where cores are free.
    """
    if threads > 1:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            return _confirm_pair(a, affine_a, b, affine_b, threshold, pool)
    return _confirm_pair(a, affine_a, b, affine_b, threshold, None)


def _confirm_pair(a: np.ndarray | Prepared, affine_a: np.ndarray | None, b: np.ndarray | Prepared,
                  affine_b: np.ndarray | None, threshold: float, pool: ThreadPoolExecutor | None) -> Confirmation:
    t0 = time.perf_counter()
    pa = a if isinstance(a, Prepared) else prepare(a, affine_a)
    pb = b if isinstance(b, Prepared) else prepare(b, affine_b)
    if pa.fg_mm3 <= pb.fg_mm3:
        fx, mv, fixed = pa, pb, "a"
    else:
        fx, mv, fixed = pb, pa, "b"
    reasons: list[str] = []
    _levels(fx, mv, pool)
    s0 = _Sampler(fx, mv, LEVELS[0], LEVEL_STEP[0], LEVEL_POINTS[0])
    scored = []
    for name, lin, t in _starts(fx, mv):
        c, _ = s0.corr(lin, t)
        scored.append((c, name, lin, t))
    scored.sort(key=lambda x: -x[0])
    best = None
    for c, name, lin, t in scored[:N_REFINE]:
        lin1, t1, c1 = _refine(s0, lin, t, LEVEL_ITERS[0])
        if best is None or c1 > best[0]:
            best = (c1, name, lin1, t1)
    assert best is not None
    _, name, lin, t = best
    samplers = [s0]
    for lev in range(len(LEVELS)):
        if lev:
            samplers.append(_Sampler(fx, mv, LEVELS[lev], LEVEL_STEP[lev], LEVEL_POINTS[lev]))
        lin, t, align = _refine(samplers[-1], lin, t, LEVEL_ITERS[lev + 1])
    sk = samplers[-1]
    evals = sum(x.evals for x in samplers)
    overlap = sk.corr(lin, t)[1]
    score, n = _score(fx, mv, lin, t, pool=pool)
    tr = _describe(lin, t, fx.centre, name)
    if overlap < MIN_OVERLAP:
        reasons.append(f"only {overlap:.0%} of the smaller foreground lies inside the other volume")
    copy = score >= threshold and overlap >= MIN_OVERLAP
    reasons.append(f"fine-detail correlation {score:.3f} {'>=' if score >= threshold else '<'} {threshold:g}")
    if tr.mirrored:
        reasons.append(f"mirrored (world-axis signs {tr.flips})")
    if tr.rotation_deg >= 1.0:
        reasons.append(f"rotated {tr.rotation_deg:.1f} degrees")
    if abs(tr.scale - 1) >= 0.02:
        reasons.append(f"scaled {tr.scale:.3f}")
    return Confirmation(round(score, 4), copy, tr, fixed, round(align, 4), round(overlap, 4), threshold,
                        tuple(reasons), round(time.perf_counter() - t0, 4), n, {"evaluations": evals})


def group_threshold(null_scores: np.ndarray, comparisons: float, *, alpha: float = 0.01,
                    floor: float = COPY_THRESHOLD, cap: float = 0.99) -> float:
    """The threshold for a group whose distinct members may share fine detail.

    ``null_scores`` are :func:`confirm_pair` scores of random pairs of
    different participants of the group (a few dozen). Their Gaussian fit
    puts the chance of one false confirmation among ``comparisons`` candidate
    pairs at ``alpha``: ``loc + scale * z(alpha / comparisons)`` (:func:`null_fit`: median and MAD); never below
    ``floor`` (the threshold calibrated on real anatomy), never above ``cap``
    (what an unresampled copy still reaches). For real heads the floor rules;
    for images without individual fine detail (smooth phantoms, where every
    member is the same few shells) it rises until only near-exact copies pass,
    and a candidate under it is *inconclusive*, not a copy.
    """
    from statistics import NormalDist

    x = np.asarray(null_scores, dtype=np.float64)
    if len(x) < 3:
        return floor
    z = NormalDist().inv_cdf(1 - alpha / max(float(comparisons), 1.0))
    loc, scale = null_fit(x)
    return float(min(cap, max(floor, loc + scale * z)))


def null_fit(scores: np.ndarray) -> tuple[float, float]:
    """Median and 1.4826 MAD of null scores (sd where the MAD is 0): a missed copy drawn as distinct moves neither."""
    x = np.asarray(scores, dtype=np.float64)
    med = float(np.median(x))
    mad = 1.4826 * float(np.median(np.abs(x - med)))
    return round(med, 4), round(mad if mad > 0 else float(x.std(ddof=1)), 4)
