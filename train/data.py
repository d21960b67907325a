"""Data for the trainer: items by subject, a decoded-volume cache, fitted preprocessing, samples.

Importing this module does not import torch: the data sets here hand numpy
arrays to :class:`torch.utils.data.DataLoader`, whose default collation makes
tensors of them.

* :func:`collect_items` turns the rows of a split table into images of the
  verified dataset (a row without ``session_id`` takes every session), with
  their label and, for segmentation, their mask from ``derivatives/``.
* :class:`VolumeStore` reads each image's bytes once, checks them against the
  certified content hash (the bytes decoded are the bytes the audit saw),
  decodes them to a float32 volume in closest-canonical (RAS) orientation and
  keeps it, in memory and optionally in a folder of ``.npy`` files keyed by
  content hash; a file is never decoded twice.
* :class:`Preprocessing` is fitted on the training fold only (target shape,
  intensity statistics, class list, regression target scaling) and applied
  unchanged to validation, test and prediction sets.
* :class:`SampleSet` serves whole images, 2D slices or 3D patches of
  preprocessed volumes stacked in one array, with optional augmentation
  (MONAI transforms) seeded per (seed, epoch, sample).
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from audit.errors import InputError

if TYPE_CHECKING:
    from audit.bidsindex import DatasetIndex
    from audit.splits import SplitTable

__all__ = [
    "MODES",
    "TASKS",
    "Item",
    "Preprocessing",
    "SampleSet",
    "VolumeStore",
    "collect_items",
    "decode_volume",
    "find_masks",
    "fit_preprocessing",
    "make_augmentation",
    "sample_positions",
]

TASKS = ("classification", "regression", "reconstruction", "segmentation")
MODES = ("image", "slice", "patch")
NORMS = ("image", "train", "none")
RESIZES = ("crop_pad", "resample")
MASK_SUFFIXES = ("dseg", "mask")
_MASK_RE = re.compile(r"^(?P<stem>.+)_(?P<suffix>dseg|mask)\.nii(\.gz)?$")


@dataclass(frozen=True)
class Item:
    """One image of a split, with what the trainer needs to know about it.

    ``label`` is the raw value of the label column (``None`` for
    reconstruction and segmentation); ``path`` is relative to the dataset
    root and ``sha256`` its certified content hash; ``mask`` (segmentation) is
    an absolute path with its content hash in ``mask_sha256``.
    """

    participant_id: str
    session_id: str | None
    path: str
    sha256: str
    label: str | None = None
    mask: str | None = None
    mask_sha256: str | None = None
    where: str = ""


# ---------------------------------------------------------------- items
def _entities(name: str) -> dict[str, str]:
    out = {}
    for part in name.split("_"):
        key, sep, value = part.partition("-")
        if sep:
            out[key] = value
    return out


def find_masks(root: Path) -> list[tuple[Path, dict[str, str], str]]:
    """Every ``*_dseg.nii[.gz]`` and ``*_mask.nii[.gz]`` under ``root/derivatives/*/sub-*``.

    Returns ``(path, entities, suffix)`` sorted by path.
    """
    out = []
    deriv = root / "derivatives"
    if not deriv.is_dir():
        return out
    for pipeline in sorted(p for p in deriv.iterdir() if p.is_dir()):
        for sub in sorted(pipeline.glob("sub-*")):
            for dirpath, _, files in os.walk(sub):
                for f in files:
                    m = _MASK_RE.match(f)
                    if m:
                        out.append((Path(dirpath) / f, _entities(m.group("stem")), m.group("suffix")))
    return sorted(out, key=lambda t: str(t[0]))


def _match_mask(image_entities: Mapping[str, str], masks: Sequence[tuple[Path, dict[str, str], str]],
                image: str) -> Path | None:
    best: list[tuple[tuple[int, int, int], Path]] = []
    for path, ents, suffix in masks:
        if ents.get("sub") != image_entities.get("sub"):
            continue
        if "ses" in image_entities and ents.get("ses") not in (None, image_entities["ses"]):
            continue
        if any(ents[k] != v for k, v in image_entities.items() if k in ents):
            continue
        shared = sum(1 for k in image_entities if k in ents)
        extra = sum(1 for k in ents if k not in image_entities)
        best.append(((shared, int(suffix == "dseg"), -extra), path))
    if not best:
        return None
    best.sort(key=lambda t: t[0], reverse=True)
    if len(best) > 1 and best[0][0] == best[1][0]:
        raise InputError(best[0][1], f"two masks fit {image} equally well: {best[0][1].name} and {best[1][1].name}",
                         expected="one *_dseg or *_mask image per image (use desc-/space- entities to tell them apart)")
    return best[0][1]


def collect_items(index: DatasetIndex, files: Mapping[str, str], table: SplitTable, *, task: str,
                  label: str | None, suffix: str = "T1w",
                  masks: Sequence[tuple[Path, dict[str, str], str]] | None = None,
                  notes: list[str] | None = None, require_label: bool = True,
                  mask_hashes: Mapping[str, str] | None = None) -> list[Item]:
    """The images of ``table``'s rows in the dataset, in row order.

    Parameters
    ----------
    index : DatasetIndex
        The verified dataset.
    files : mapping
        Certified content hashes by relative path.
    table : SplitTable
        One split of one fold.
    task : str
        One of :data:`TASKS`.
    label : str or None
        Label column (classification, regression): read from the split
        file's column when it has one, else from ``participants.tsv``.
    suffix : str
        BIDS suffix of the images to use.
    masks : list, optional
        What :func:`find_masks` found (segmentation).
    notes : list, optional
        Receives one line per row skipped (no image, no label).
    mask_hashes : mapping, optional
        Certified mask hashes by path relative to the dataset root (the
        certificate's ``dataset.masks``): the loader checks the bytes it
        decodes against these.
    require_label : bool
        Skip rows without a label value (training); ``False`` keeps them with
        ``label=None`` (prediction of unlabelled data).

    Raises
    ------
    InputError
        A regression label that is not a number; segmentation images without
        a mask (all of them listed).
    """
    by_subject: dict[str, list[Any]] = {}
    for row in index.images():
        if row.suffix == suffix and row.subject:
            by_subject.setdefault(row.subject, []).append(row)
    ptable = index.participants if label and label not in table.columns else None
    plabels: dict[str, str] = {}
    if ptable is not None and label in ptable.columns:
        for pid, value in zip(ptable["participant_id"], ptable[label]):
            plabels["sub-" + str(pid).strip().removeprefix("sub-")] = value
    skipped_label: list[str] = []
    skipped_image: list[str] = []
    out: list[Item] = []
    seen: set[str] = set()
    missing_mask: list[str] = []
    for r in table.rows:
        value: str | None = None
        if task in ("classification", "regression"):
            value = r.label if label == table.label_column else (r.extra.get(label) if label else None)
            if value is None and label not in table.columns:
                value = plabels.get(r.participant_id)
            value = None if value is None or str(value).strip() in ("", "n/a", "nan", "NaN") else str(value).strip()
            if value is None and require_label:
                skipped_label.append(r.participant_id)
                continue
            if task == "regression" and value is not None:
                try:
                    if not math.isfinite(float(value)):
                        raise ValueError
                except ValueError:
                    raise InputError(r.file, line=r.line, field=label, expected="a number (regression target)",
                                     got=repr(value)) from None
        rows = [x for x in by_subject.get(r.participant_id, ()) if r.session_id in (None, x.session)]
        if not rows:
            skipped_image.append(r.participant_id + (f"/{r.session_id}" if r.session_id else ""))
            continue
        for x in rows:
            if x.path in seen:
                continue
            seen.add(x.path)
            mask = msha = None
            if task == "segmentation":
                mpath = _match_mask(_entities(x.entities), masks or (), x.path)
                if mpath is None:
                    missing_mask.append(x.path)
                    continue
                rel = mpath.relative_to(index.root).as_posix() if mpath.is_relative_to(index.root) else None
                msha = (mask_hashes or {}).get(rel or "")
                if msha is None:
                    try:
                        msha = "sha256:" + hashlib.sha256(mpath.read_bytes()).hexdigest()
                    except OSError as err:
                        raise InputError(mpath, f"cannot read the mask: {err.strerror or err}") from None
                mask = str(mpath)
            out.append(Item(r.participant_id, x.session, x.path, files.get(x.path, ""), value, mask, msha,
                            f"{r.file}:{r.line}"))
    if missing_mask:
        subs = sorted({p.split("/", 1)[0] for p in missing_mask})
        raise InputError(index.root / "derivatives", f"no segmentation mask for {len(missing_mask)} image(s) of "
                         f"{len(subs)} participant(s) in split '{table.name}': {', '.join(subs[:20])}"
                         + (" ..." if len(subs) > 20 else "") + f" (first image: {missing_mask[0]})",
                         expected="one derivatives/<pipeline>/sub-*/.../*_dseg.nii.gz or *_mask.nii.gz with the "
                         "image's entities for every image of the split")
    if notes is not None:
        name = table.name + ("" if table.fold is None else f" (fold {table.fold})")
        if skipped_label:
            notes.append(f"{name}: {len(skipped_label)} row(s) without a value for '{label}' skipped: "
                         + ", ".join(sorted(set(skipped_label))[:10]))
        if skipped_image:
            notes.append(f"{name}: {len(skipped_image)} row(s) without a {suffix} image skipped: "
                         + ", ".join(sorted(set(skipped_image))[:10]))
    return out


# ---------------------------------------------------------------- decoding
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
    """Decoded volumes, each decoded once, keyed by certified content hash.

    Parameters
    ----------
    root : Path
        Dataset root (relative item paths are read from here).
    cache_dir : path-like, optional
        Also keep decoded volumes as ``<sha256>.npy`` there (memory-mapped
        on the next run); written atomically.
    verify : bool
        Compare each file's bytes with its certified hash before decoding
        (always on in training; a mismatch means the file changed after the
        gate opened).
    """

    def __init__(self, root: Path, *, cache_dir: str | os.PathLike[str] | None = None, verify: bool = True) -> None:
        self.root = Path(root)
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.verify = verify
        self._mem: dict[str, np.ndarray] = {}
        self.zooms: dict[str, tuple[float, ...]] = {}
        self.decoded = 0
        self.hits = 0

    def get(self, path: str, sha256: str) -> np.ndarray:
        """The canonical float32 volume of ``path`` (relative to the root, or absolute); read-only."""
        key = sha256 or path
        vol = self._mem.get(key)
        if vol is not None:
            self.hits += 1
            return vol
        disk = None if self.cache_dir is None or not sha256 else self.cache_dir / (sha256.split(":")[-1] + ".npy")
        if disk is not None and disk.is_file():
            try:
                vol = np.load(disk, mmap_mode="r")
                self.hits += 1
            except (OSError, ValueError):
                vol = None
        if vol is None:
            full = Path(path) if os.path.isabs(path) else self.root / path
            try:
                raw = full.read_bytes()
            except OSError as err:
                raise InputError(full, f"cannot read: {err.strerror or err}") from None
            if self.verify and sha256:
                have = "sha256:" + hashlib.sha256(raw).hexdigest()
                if have != sha256:
                    from train.gate import GateClosed

                    raise GateClosed("the gate is closed", [f"dataset file {path} changed after the gate opened"])
            vol, zooms = decode_volume(raw, str(full))
            self.zooms[key] = zooms
            self.decoded += 1
            vol.setflags(write=False)
            if disk is not None:
                import io

                from audit.fsutil import atomic_write_bytes

                buf = io.BytesIO()
                np.save(buf, vol)
                try:
                    atomic_write_bytes(disk, buf.getvalue())
                except OSError:
                    pass
        self._mem[key] = vol
        return vol

    def image(self, item: Item) -> np.ndarray:
        return self.get(item.path, item.sha256)

    def mask(self, item: Item) -> np.ndarray:
        assert item.mask is not None
        return self.get(item.mask, item.mask_sha256 or "")


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
    shapes = np.array([store.image(it).shape for it in train])
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


# ----------------------------------------------------------------- samples
def sample_positions(shape: Sequence[int], mode: str, *, slice_axis: int = 2, slice_discard: float = 0.15,
                     patch_size: int = 16, patch_stride: int = 16) -> list[tuple[int, ...]]:
    """Where the samples of one volume lie: ``()`` (image), ``(k,)`` (slice), ``(x, y, z)`` (patch origin)."""
    if mode == "image":
        return [()]
    if mode == "slice":
        n = shape[slice_axis]
        cut = int(n * slice_discard)
        return [(k,) for k in range(cut, n - cut)] or [(n // 2,)]
    if mode == "patch":
        axes = []
        for n in shape:
            p = min(patch_size, n)
            starts = list(range(0, n - p + 1, patch_stride))
            if starts[-1] != n - p:
                starts.append(n - p)
            axes.append(starts)
        return [(x, y, z) for x in axes[0] for y in axes[1] for z in axes[2]]
    raise InputError(None, field="--mode", expected=" or ".join(MODES), got=repr(mode))


class SampleSet:
    """Samples (images, slices or patches) of preprocessed volumes, for a DataLoader.

    Parameters
    ----------
    volumes : ndarray, shape (N, X, Y, Z)
        Preprocessed images.
    targets : sequence
        Per image: class index, standardised number, or 0.
    masks : ndarray of int64, shape (N, X, Y, Z), optional
        Segmentation class indices.
    mode, slice_axis, slice_discard, patch_size, patch_stride
        See :func:`sample_positions`.
    augment : callable, optional
        ``augment(sample_dict, seed) -> sample_dict`` (training only).
    seed : int
        Augmentation seed; the epoch is set with :meth:`set_epoch`.
    """

    def __init__(self, volumes: np.ndarray, targets: Sequence[Any], *, masks: np.ndarray | None = None,
                 mode: str = "image", slice_axis: int = 2, slice_discard: float = 0.15, patch_size: int = 16,
                 patch_stride: int = 16, augment: Callable[[dict[str, Any], int], dict[str, Any]] | None = None,
                 seed: int = 0) -> None:
        self.volumes = volumes
        self.targets = list(targets)
        self.masks = masks
        self.mode = mode
        self.slice_axis = slice_axis
        self.patch_size = patch_size
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        shape = volumes.shape[1:]
        self.positions = sample_positions(shape, mode, slice_axis=slice_axis, slice_discard=slice_discard,
                                          patch_size=patch_size, patch_stride=patch_stride)
        self.index = [(i, k) for i in range(len(volumes)) for k in range(len(self.positions))]

    def __len__(self) -> int:
        return len(self.index)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def window(self, pos: tuple[int, ...]) -> tuple[slice | int, ...]:
        if self.mode == "image":
            return (slice(None),) * 3
        if self.mode == "slice":
            w: list[slice | int] = [slice(None)] * 3
            w[self.slice_axis] = pos[0]
            return tuple(w)
        shape = self.volumes.shape[1:]
        return tuple(slice(p, p + min(self.patch_size, n)) for p, n in zip(pos, shape))

    def sample_shape(self) -> tuple[int, ...]:
        """Channels-first shape of one sample (what the model takes)."""
        return (1, *np.empty(self.volumes.shape[1:], dtype=bool)[self.window(self.positions[0])].shape)

    def __getitem__(self, j: int) -> dict[str, Any]:
        i, k = self.index[j]
        w = self.window(self.positions[k])
        x = self.volumes[i][w][None]
        sample: dict[str, Any] = {"image": x, "target": self.targets[i], "item": i, "pos": k}
        if self.masks is not None:
            sample["mask"] = self.masks[i][w][None]
        if self.augment is not None:
            sample = self.augment(sample, _mix(self.seed, self.epoch, j))
        sample["image"] = np.ascontiguousarray(sample["image"], dtype=np.float32)
        if self.masks is not None:
            sample["mask"] = np.ascontiguousarray(sample["mask"][0], dtype=np.int64)
        return sample


def _mix(*values: int) -> int:
    h = hashlib.blake2b(repr(values).encode(), digest_size=4)
    return int.from_bytes(h.digest(), "little")


def make_augmentation(*, segmentation: bool, dims: int,
                      strength: float = 1.0) -> Callable[[dict[str, Any], int], dict[str, Any]]:
    """On-the-fly augmentation with MONAI transforms: flips, small affine, intensity scale, noise.

    The same geometric transform is applied to the image and its mask
    (nearest-neighbour for the mask). Each call is seeded, so a run is
    reproducible whatever the number of loader workers.

    Raises
    ------
    InputError
        MONAI is not installed.
    """
    try:
        from monai.transforms import (
            Compose,
            RandAffined,
            RandFlipd,
            RandGaussianNoised,
            RandScaleIntensityd,
        )
    except ImportError:
        raise InputError(None, "augmentation needs MONAI, which is not installed", field="--augment",
                         expected="pip install 'bidsaudit[train]' (or train without augmentation)") from None
    keys = ["image", "mask"] if segmentation else ["image"]
    modes = ["bilinear", "nearest"] if segmentation else ["bilinear"]
    rot = 0.08 * strength
    transform = Compose([
        RandFlipd(keys=keys, prob=0.5, spatial_axis=0),
        RandAffined(keys=keys, prob=0.5, rotate_range=(rot,) * (3 if dims == 3 else 1),
                    scale_range=(0.05 * strength,) * dims, translate_range=(2.0 * strength,) * dims,
                    mode=modes, padding_mode="border"),
        RandScaleIntensityd(keys=["image"], factors=0.1 * strength, prob=0.3),
        RandGaussianNoised(keys=["image"], prob=0.3, std=0.05 * strength),
    ])

    from monai.data import get_track_meta, set_track_meta

    def apply(sample: dict[str, Any], seed: int) -> dict[str, Any]:
        transform.set_random_state(seed=seed)
        data = {k: np.asarray(sample[k], dtype=np.float32) for k in keys}
        track = get_track_meta()
        set_track_meta(False)  # plain tensors: MONAI's metadata tracking costs a quarter of the time here
        try:
            out = transform(data)
        finally:
            set_track_meta(track)
        sample = dict(sample)
        for k in keys:
            v = out[k]
            v = v.as_tensor() if hasattr(v, "as_tensor") else v
            sample[k] = v.numpy() if hasattr(v, "numpy") else np.asarray(v)
        if segmentation:
            sample["mask"] = np.rint(sample["mask"]).astype(np.int64)
        return sample

    return apply


def stack(arrays: Iterable[np.ndarray], n: int, shape: Sequence[int], dtype: Any) -> np.ndarray:
    """Preprocessed volumes stacked in one contiguous array (what a SampleSet slices)."""
    out = np.empty((n, *shape), dtype=dtype)
    for i, a in enumerate(arrays):
        out[i] = a
    return out
