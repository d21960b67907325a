"""A split's preprocessed volumes served one at a time, so that memory does not grow with the number of images.

Importing this module does not import torch.

:class:`VolumeBank` looks like an array of shape ``(N, X, Y, Z)`` to
:class:`train.samples.SampleSet` (``len``, ``shape``, ``bank[i]``,
``bank[:k]``), but holds no volume itself: ``bank[i]`` is the store's
in-memory copy when its byte budget holds it, else the tensor cache entry as
a read-only memory map (a slice or a patch of it reads only those voxels),
else (no cache) the image decoded and preprocessed on the spot. DataLoader
workers get the bank by fork or pickle: they open the same memory maps (the
operating system's page cache is shared) and keep nothing in memory of their
own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from train.data import Preprocessing, VolumeStore
from train.items import Item

__all__ = ["VolumeBank", "prepare_split"]


class VolumeBank:
    """The preprocessed images (``kind="image"``, float32 or float16) or masks (``"mask"``, class indices) of a split.

    Parameters
    ----------
    items : sequence of Item
    store : VolumeStore
        Decodes, caches and holds the memory budget.
    prep : Preprocessing
        Fitted on the training fold.
    kind : {"image", "mask"}
    """

    def __init__(self, items: Sequence[Item], store: VolumeStore, prep: Preprocessing, kind: str = "image") -> None:
        self.items = list(items)
        self.store = store
        self.prep = prep
        self.kind = kind
        if kind == "image":
            self.dtype = np.dtype(store.cache_dtype)
        else:
            self.dtype = np.dtype(np.int16 if len(prep.classes) < 2**15 else np.int32)
        self.digest = prep.digest(kind, self.dtype.name)
        self.shape = (len(self.items), *prep.shape)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            return VolumeBank(self.items[i], self.store, self.prep, self.kind)
        return self.volume(int(i))

    def _source(self, it: Item) -> tuple[str, str]:
        if self.kind == "image":
            return it.path, it.sha256
        assert it.mask is not None
        return it.mask, it.mask_sha256 or ""

    def _compute(self, it: Item) -> np.ndarray:
        path, sha = self._source(it)
        vol = self.store.get(path, sha)
        if self.kind == "image":
            out = self.prep.image(vol, it.path)
            if self.dtype == np.float16:
                half = out.astype(np.float16)
                if not np.isfinite(half).all():  # outside float16's range (norm="none" on large intensities)
                    return out
                return half
            return out
        return self.prep.mask(vol, it.mask or "").astype(self.dtype)

    def _entry(self, it: Item) -> np.ndarray:
        """The cached tensor (opened, or computed, written and opened); computed in memory when it cannot be cached."""
        path, sha = self._source(it)
        cache = self.store.cache
        if cache is None or not sha:
            return self._compute(it)
        hit = cache.open(sha, self.digest)
        if hit is not None:
            self.store.hits += 1
            if self.kind == "image":
                self.prep.check_shape(hit[1].get("extra", {}).get("source_shape", hit[0].shape), it.path)
            return hit[0]
        src_shape = list(self.store.shape(path, sha))
        arr = self._compute(it)
        if cache.save(sha, self.digest, arr, {"source_shape": src_shape, "source": it.path}) is None:
            return arr
        hit = cache.open(sha, self.digest)
        return arr if hit is None else hit[0]

    def volume(self, i: int) -> np.ndarray:
        """The ``i``-th preprocessed volume (read-only; an in-memory array or a memory map)."""
        it = self.items[i]
        key = (self.kind, self._source(it)[1] or self._source(it)[0], self.digest)
        budget = self.store.budget
        arr = budget.get(key)
        if arr is not None:
            return arr
        arr = self._entry(it)
        if not self.store.in_owner():
            return arr
        if isinstance(arr, np.memmap):
            # a memory map is cheap to read again: keep a copy only while there is free room, never
            # evicting (under random access an LRU would thrash, reading whole volumes for one slice)
            if budget.room(arr.nbytes):
                arr = np.array(arr)
                arr.setflags(write=False)
                budget.put(key, arr, evict=False)
            return arr
        arr.setflags(write=False)
        budget.put(key, arr)
        return arr

    def warm(self) -> None:
        """Make sure every entry exists and is verified (decoding what is missing), in order, one volume at a time.

        Shape errors (an image a crop/pad model cannot take) and undecodable
        files surface here, before training starts.
        """
        for i in range(len(self.items)):
            self.volume(i)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        store = VolumeStore.__new__(VolumeStore)
        store.__dict__.update(self.store.__dict__)
        store.budget = type(self.store.budget)(0)  # a worker started by pickling holds nothing itself
        state["store"] = store
        return state


def prepare_split(items: Sequence[Item], store: VolumeStore, prep: Preprocessing,
                  task: str) -> tuple[VolumeBank, list[Any], VolumeBank | None]:
    """A split's images (and masks) as banks, every entry made and checked; the targets per image."""
    vols = VolumeBank(items, store, prep, "image")
    vols.warm()
    masks = None
    if task == "segmentation":
        masks = VolumeBank(items, store, prep, "mask")
        masks.warm()
    targets = [prep.target(it, task) for it in items]
    return vols, targets, masks
