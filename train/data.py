"""Volumes for the trainer: decoded once, checked against the certificate, and fitted preprocessing.

Importing this module does not import torch.

* :class:`VolumeStore` reads an image's bytes, checks them against the
  certified content hash (the bytes decoded are the bytes the audit saw) and
  decodes them to a float32 volume in closest-canonical (RAS) orientation;
  with the tensor cache (:mod:`train.tensorcache`) a file is decoded once and
  read memory-mapped afterwards; in memory it keeps no more than its byte
  budget (``--max-memory``).
* :class:`Preprocessing` is fitted on the training fold only
  (:func:`fit_preprocessing`: target shape, intensity statistics, class list,
  regression target scaling) and applied unchanged to validation, test and
  prediction sets.

Items (what a split table names) are in :mod:`train.items`, samples and
augmentation in :mod:`train.samples`.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from audit.errors import InputError
from train.config import NORMS, RESIZES
from train.gate import GateClosed
from train.items import Item
from train.tensorcache import CACHE_DTYPES, DEFAULT_MAX_MEMORY, MemoryBudget, TensorCache, digest, parse_size

__all__ = [
    "RAW_DIGEST",
    "Preprocessing",
    "VolumeStore",
    "decode_volume",
    "fit_preprocessing",
]


RAW_DIGEST = digest({"entry": "decoded", "version": 1, "dtype": "float32", "orientation": "closest canonical"})


def decode_volume(raw: bytes, name: str) -> tuple[np.ndarray, tuple[float, ...]]:
    """Decode NIfTI bytes to a float32 3D volume in closest-canonical orientation, and its voxel size.

    Raises
    ------
    InputError
        Not a NIfTI image, or not 3D (a 4D image with one volume is taken).
    """
    import nibabel as nib

    try:
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        klass = nib.Nifti2Image if len(raw) >= 4 and int.from_bytes(raw[:4], "little") == 540 else nib.Nifti1Image
        img = nib.as_closest_canonical(klass.from_bytes(raw))
        data = np.asarray(img.dataobj, dtype=np.float32)
    except InputError:
        raise
    except Exception as err:  # nibabel raises many kinds; the message says which file
        raise InputError(name, f"cannot decode the image: {err}", expected="a NIfTI-1/2 image") from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3 or min(data.shape) < 1:
        raise InputError(name, "the models take 3D images", expected="a 3D volume", got=f"shape {data.shape}")
    if not np.isfinite(data).all():
        data = np.nan_to_num(data, nan=0.0, posinf=0.0, neginf=0.0)
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    return np.ascontiguousarray(data), zooms


class VolumeStore:
    """Decoded volumes keyed by certified content hash: in a bounded memory budget, in the tensor cache, or decoded again.

    Parameters
    ----------
    root : Path
        Dataset root (relative item paths are read from here).
    cache_dir : path-like, optional
        The content-addressed tensor cache (:class:`train.tensorcache.TensorCache`):
        decoded and preprocessed volumes are written there once and read
        memory-mapped afterwards. ``None``: no cache, a volume is decoded
        whenever it is needed and not in memory.
    verify : bool
        Compare each file's bytes with its certified hash before decoding
        (always on in training; a mismatch means the file changed after the
        gate opened).
    max_memory : int or str
        Bytes of volumes kept in memory (``"2G"``, ``"512M"``; default
        :data:`train.tensorcache.DEFAULT_MAX_MEMORY`): least recently used out
        first. Accounted in :attr:`budget` (``held``, ``peak``).
    cache_dtype : {"float32", "float16"}
        How preprocessed images are stored in the cache (decoded volumes are
        kept as float32).

    Attributes
    ----------
    decoded : int
        Images decoded by this store (a file is decoded once per run when the
        cache is on).
    hits : int
        Volumes served from memory or the cache.
    """

    def __init__(self, root: Path, *, cache_dir: str | os.PathLike[str] | None = None, verify: bool = True,
                 max_memory: int | str = DEFAULT_MAX_MEMORY, cache_dtype: str = "float32") -> None:
        if cache_dtype not in CACHE_DTYPES:
            raise InputError(None, field="--cache-dtype", expected=" or ".join(CACHE_DTYPES), got=repr(cache_dtype))
        self.root = Path(root)
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.cache = None if cache_dir is None else TensorCache(cache_dir)
        self.verify = verify
        self.cache_dtype = cache_dtype
        self.budget = MemoryBudget(parse_size(max_memory))
        self.zooms: dict[str, tuple[float, ...]] = {}
        self.decoded = 0
        self.hits = 0
        self.owner = os.getpid()

    def in_owner(self) -> bool:
        """False in a DataLoader worker: workers read memory maps and their inherited memory, and keep nothing."""
        return os.getpid() == self.owner

    def _decode(self, path: str, sha256: str) -> np.ndarray:
        full = Path(path) if os.path.isabs(path) else self.root / path
        try:
            raw = full.read_bytes()
        except OSError as err:
            raise InputError(full, f"cannot read: {err.strerror or err}") from None
        if self.verify and sha256:
            have = "sha256:" + hashlib.sha256(raw).hexdigest()
            if have != sha256:
                raise GateClosed("the gate is closed", [f"dataset file {path} changed after the gate opened"])
        vol, zooms = decode_volume(raw, str(full))
        del raw
        self.zooms[sha256 or path] = zooms
        self.decoded += 1
        vol.setflags(write=False)
        return vol

    def get(self, path: str, sha256: str) -> np.ndarray:
        """The canonical float32 volume of ``path`` (relative to the root, or absolute); read-only.

        From memory, else the cache (memory-mapped; a corrupt or mismatching
        entry is refused and the image decoded again), else decoded (and
        written to the cache).
        """
        key = ("raw", sha256 or path)
        vol = self.budget.get(key)
        if vol is not None:
            self.hits += 1
            return vol
        if self.cache is not None and sha256:
            hit = self.cache.open(sha256, RAW_DIGEST)
            if hit is not None:
                self.hits += 1
                return hit[0]
        vol = self._decode(path, sha256)
        if self.cache is not None and sha256:
            self.cache.save(sha256, RAW_DIGEST, vol, {"zooms": list(self.zooms[sha256])})
        elif self.in_owner():
            self.budget.put(key, vol)
        return vol

    def shape(self, path: str, sha256: str) -> tuple[int, ...]:
        """The decoded volume's shape (from the cache entry's record when there is one)."""
        if self.cache is not None and sha256 and ("raw", sha256) not in self.budget:
            meta = self.cache.meta(sha256, RAW_DIGEST)
            if meta is not None:
                return tuple(int(n) for n in meta["shape"])
        return tuple(self.get(path, sha256).shape)

    def image(self, item: Item) -> np.ndarray:
        return self.get(item.path, item.sha256)

    def mask(self, item: Item) -> np.ndarray:
        assert item.mask is not None
        return self.get(item.mask, item.mask_sha256 or "")

    def problems(self) -> list[str]:
        """Why cache entries were refused in this run (each was computed again)."""
        return [] if self.cache is None else list(self.cache.problems)


# ------------------------------------------------------------ preprocessing
def _crop_pad(vol: np.ndarray, shape: Sequence[int], fill: float = 0.0) -> np.ndarray:
    out = np.full(tuple(shape), fill, dtype=vol.dtype)
    src, dst = [], []
    for n, m in zip(vol.shape, shape):
        if n >= m:
            a = (n - m) // 2
            src.append(slice(a, a + m))
            dst.append(slice(0, m))
        else:
            a = (m - n) // 2
            src.append(slice(0, n))
            dst.append(slice(a, a + n))
    out[tuple(dst)] = vol[tuple(src)]
    return out


def _resample(vol: np.ndarray, shape: Sequence[int], *, order: int) -> np.ndarray:
    from scipy.ndimage import zoom

    if tuple(vol.shape) == tuple(shape):
        return np.array(vol, dtype=vol.dtype)
    factors = [m / n for n, m in zip(vol.shape, shape)]
    out = zoom(np.asarray(vol), factors, order=order, mode="nearest", grid_mode=True)
    return _crop_pad(out, shape)  # zoom may be off by one voxel


def _foreground(vol: np.ndarray) -> np.ndarray:
    v = np.asarray(vol)
    fg = v[v > 0]
    return fg if fg.size >= 0.01 * v.size else v.ravel()


@dataclass
class Preprocessing:
    """Preprocessing fitted on a training fold; applied unchanged to every other set.

    Attributes
    ----------
    shape : tuple of int
        Common shape (x, y, z): the per-axis median of the training images'
        shapes unless given.
    resize : {"crop_pad", "resample"}
        Centre crop/zero pad, or resample (trilinear; nearest for masks).
    norm : {"image", "train", "none"}
        Per-image z-score over the foreground; z-score with the training
        fold's foreground mean and sd; or nothing.
    mean, std : float
        The training fold's statistics (``norm="train"``).
    train_shapes : list of [min, max] per axis
        Shapes seen in training: a crop/pad model refuses images far outside.
    classes : list of str
        Classification: the label values seen in training, in order.
        Segmentation: the mask values seen in training (as strings).
    target_mean, target_std : float
        Regression: the training targets' scaling.
    """

    shape: tuple[int, int, int]
    resize: str = "crop_pad"
    norm: str = "image"
    mean: float = 0.0
    std: float = 1.0
    train_shapes: list[list[int]] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    target_mean: float = 0.0
    target_std: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Preprocessing:
        d = dict(d)
        d["shape"] = tuple(int(s) for s in d["shape"])
        return cls(**d)

    def digest(self, kind: str = "image", dtype: str = "float32") -> str:
        """What names this preprocessing's cache entries: only the fields that change the ``kind`` tensor.

        >>> a = Preprocessing(shape=(8, 8, 8), target_mean=3.0)
        >>> a.digest() == Preprocessing(shape=(8, 8, 8)).digest() != Preprocessing(shape=(8, 8, 9)).digest()
        True
        """
        spec: dict[str, Any] = {"entry": kind, "version": 1, "shape": list(self.shape), "resize": self.resize,
                                "dtype": dtype}
        if kind == "image":
            spec["norm"] = self.norm
            if self.norm == "train":
                spec["mean"], spec["std"] = repr(float(self.mean)), repr(float(self.std))
        else:
            spec["classes"] = list(self.classes)
        return digest(spec)

    def check_shape(self, shape: Sequence[int], where: str) -> None:
        """Refuse an image a crop/pad model cannot take (an axis far outside what training saw)."""
        if self.resize != "crop_pad" or not self.train_shapes:
            return
        for axis, (n, (lo, hi)) in enumerate(zip(shape, self.train_shapes)):
            if n < 0.75 * lo or n > 1.25 * hi + 1:
                raise InputError(where, f"image shape {tuple(shape)} cannot be taken by this model: axis {axis} "
                                 f"has {n} voxels, training images had {lo}-{hi}",
                                 expected=f"images of about the training shape {tuple(self.shape)} "
                                 "(or train with resize='resample')")

    def image(self, vol: np.ndarray, where: str = "") -> np.ndarray:
        self.check_shape(vol.shape, where)
        v = (_crop_pad(np.asarray(vol), self.shape) if self.resize == "crop_pad"
             else _resample(np.asarray(vol), self.shape, order=1)).astype(np.float32, copy=False)
        if self.norm == "image":
            fg = _foreground(v)
            v = (v - float(fg.mean())) / max(float(fg.std()), 1e-6)
        elif self.norm == "train":
            v = (v - self.mean) / max(self.std, 1e-6)
        return v.astype(np.float32, copy=False)

    def mask(self, vol: np.ndarray, where: str = "") -> np.ndarray:
        """Mask values mapped to class indices 0..C-1 (a value not seen in training is an error)."""
        m = np.rint(np.asarray(vol)).astype(np.int64)
        m = _crop_pad(m, self.shape) if self.resize == "crop_pad" else _resample(m, self.shape, order=0)
        values = [int(float(c)) for c in self.classes]
        lut_in = np.asarray(values, dtype=np.int64)
        unknown = np.setdiff1d(np.unique(m), lut_in)
        if unknown.size:
            raise InputError(where, f"mask value(s) {', '.join(map(str, unknown.tolist()))} never seen in training",
                             expected="values among " + ", ".join(map(str, values)))
        return np.searchsorted(lut_in, m).astype(np.int64)

    def target(self, item: Item, task: str) -> Any:
        """The training target of an item: class index, or standardised number."""
        if task == "classification":
            if item.label not in self.classes:
                raise InputError(item.where, f"label value '{item.label}' was never seen in training",
                                 expected="one of " + ", ".join(self.classes))
            return self.classes.index(item.label)
        if task == "regression":
            return (float(item.label or "nan") - self.target_mean) / max(self.target_std, 1e-12)
        return 0


def fit_preprocessing(train: Sequence[Item], store: VolumeStore, *, task: str, shape: Sequence[int] | None = None,
                      resize: str = "crop_pad", norm: str = "image") -> Preprocessing:
    """Fit every data-dependent step on the training fold's items only."""
    if not train:
        raise InputError(None, "the training split has no images", expected="a training split with images")
    if resize not in RESIZES:
        raise InputError(None, field="--resize", expected=" or ".join(RESIZES), got=repr(resize))
    if norm not in NORMS:
        raise InputError(None, field="--norm", expected=" or ".join(NORMS), got=repr(norm))
    shapes = np.array([store.shape(it.path, it.sha256) for it in train])
    target = tuple(int(s) for s in (shape if shape is not None else np.median(shapes, axis=0).round().astype(int)))
    if len(target) != 3 or min(target) < 4:
        raise InputError(None, field="--shape", expected="three sizes of at least 4 voxels", got=str(target))
    prep = Preprocessing(shape=target, resize=resize, norm=norm,  # type: ignore[arg-type]
                         train_shapes=[[int(a), int(b)] for a, b in zip(shapes.min(0), shapes.max(0))])
    if norm == "train":
        total = n = sq = 0.0
        for it in train:
            v = (_crop_pad(store.image(it), target) if resize == "crop_pad"
                 else _resample(store.image(it), target, order=1))
            fg = _foreground(v).astype(np.float64)
            total += fg.sum()
            sq += (fg**2).sum()
            n += fg.size
        prep.mean = total / n
        prep.std = math.sqrt(max(sq / n - prep.mean**2, 0.0))
    if task == "classification":
        prep.classes = sorted({str(it.label) for it in train})
        if len(prep.classes) < 2:
            raise InputError(None, f"the training split has one class only ({', '.join(prep.classes)})",
                             expected="at least two label values in training")
    elif task == "regression":
        y = np.array([float(it.label or "nan") for it in train])
        prep.target_mean, prep.target_std = float(y.mean()), float(y.std() or 1.0)
    elif task == "segmentation":
        values: set[int] = set()
        for it in train:
            values |= set(np.unique(np.rint(np.asarray(store.mask(it))).astype(np.int64)).tolist())
        prep.classes = [str(v) for v in sorted(values)]
        if len(prep.classes) < 2:
            raise InputError(None, "the training masks hold a single value", expected="background and at least "
                             "one labelled class in the training masks")
    return prep
