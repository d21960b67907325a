"""Samples: whole images, 2D slices or 3D patches of preprocessed volumes, with seeded augmentation.

:class:`SampleSet` serves the samples of preprocessed volumes (an array
stacked by :func:`stack`, or a :class:`train.bank.VolumeBank` that reads
each volume from memory, a memory map or the image) to a
:class:`torch.utils.data.DataLoader` as numpy arrays, with optional augmentation (MONAI transforms,
:func:`make_augmentation`) seeded per (seed, epoch, sample). Importing this
module does not import torch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from audit.errors import InputError
from train.config import MODES

__all__ = ["SampleSet", "make_augmentation", "mix_seed", "sample_positions", "stack"]


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
    volumes : ndarray or VolumeBank, shape (N, X, Y, Z)
        Preprocessed images (``volumes[i]`` is read per sample, and only
        the sample's window of it is copied).
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
        # a copy of the window only: a memory-mapped volume pages in just these voxels
        x = np.array(self.volumes[i][w][None], dtype=np.float32)
        sample: dict[str, Any] = {"image": x, "target": self.targets[i], "item": i, "pos": k}
        if self.masks is not None:
            sample["mask"] = np.array(self.masks[i][w][None], dtype=np.int64)
        if self.augment is not None:
            sample = self.augment(sample, mix_seed(self.seed, self.epoch, j))
        sample["image"] = np.ascontiguousarray(sample["image"], dtype=np.float32)
        if self.masks is not None:
            sample["mask"] = np.ascontiguousarray(sample["mask"][0], dtype=np.int64)
        return sample


def mix_seed(*values: int) -> int:
    """A 32-bit seed derived from ``values`` (the same on every machine and process)."""
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
