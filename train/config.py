"""Training configuration: every hyperparameter of a run, its defaults, its checks and the resume rule.

:class:`TrainConfig` is one frozen record of what a run trains with (what
``maps.json`` keeps under ``config`` and ``--resume`` must match). Its
defaults are the trainer's: a field left out takes the default of its task
(``label``: ``diagnosis`` for classification, ``age`` for regression, none
otherwise; ``model``: :data:`DEFAULT_MODEL`). How a call runs (device, cache
folder, threads, progress) is not part of it: it does not change the model.

This module imports neither torch nor numpy.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from audit.errors import InputError

__all__ = [
    "DEFAULT_LABEL",
    "DEFAULT_MODEL",
    "FREEZES",
    "MAIN_METRIC",
    "MODES",
    "NORMS",
    "RESIZES",
    "TASKS",
    "TrainConfig",
    "check_choices",
    "check_fractions",
    "gate_label",
    "given_settings",
    "parse_fractions",
    "resolve_config",
]

TASKS = ("classification", "regression", "reconstruction", "segmentation")
MODES = ("image", "slice", "patch")
NORMS = ("image", "train", "none")
RESIZES = ("crop_pad", "resample")
FREEZES = ("none", "encoder", "decoder", "both")
SUPERVISED = ("classification", "regression")
MAIN_METRIC = {"classification": ("balanced_accuracy", "max"), "regression": ("mae", "min"),
               "segmentation": ("dice", "max"), "reconstruction": ("mse", "min")}
DEFAULT_MODEL = {"classification": "conv5fc3", "regression": "conv5fc3", "segmentation": "unet",
                 "reconstruction": "autoencoder"}
DEFAULT_LABEL = {"classification": "diagnosis", "regression": "age"}


@dataclass(frozen=True)
class TrainConfig:
    """Every hyperparameter of a training run (what ``maps.json`` records and ``--resume`` must match).

    ``label`` and ``model`` left at ``None`` take the task's default; a task
    without a target (reconstruction, segmentation) has no label.
    """

    task: str = "classification"
    label: str | None = None
    model: str | None = None
    mode: str = "image"
    suffix: str = "T1w"
    epochs: int = 20
    batch_size: int = 4
    lr: float = 1e-3  # 1e-4 (the old default) left the demo at chance for 6+ epochs; 1e-3 reaches 0.93-1.0
    weight_decay: float = 1e-4
    patience: int = 5
    width: int = 8
    seed: int = 0
    seeds: int = 1
    folds: list[int] | None = None
    shape: list[int] | None = None
    resize: str = "crop_pad"
    norm: str = "image"
    augment: bool = True
    slice_axis: int = 2
    slice_discard: float = 0.15
    patch_size: int = 16
    patch_stride: int = 16
    num_workers: int = 0
    bootstrap: int = 1000
    selection: str = "loss"
    transfer_from: str | None = None
    freeze: str = "none"
    transfer_lr: float | None = None
    learning_curve: list[float] | None = None

    def __post_init__(self) -> None:
        label = (self.label or DEFAULT_LABEL.get(self.task)) if self.task in SUPERVISED else None
        object.__setattr__(self, "label", label)
        object.__setattr__(self, "model", self.model or DEFAULT_MODEL.get(self.task, "conv5fc3"))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @property
    def main_metric(self) -> tuple[str, str]:
        """(metric, "max" or "min") used for ``best-<metric>``."""
        return MAIN_METRIC[self.task]

    @property
    def seed_list(self) -> list[int]:
        return [self.seed + i for i in range(self.seeds)]

    def check(self) -> None:
        """Every value in range (:class:`InputError` naming the option otherwise)."""
        for name, lo in (("epochs", 1), ("batch_size", 1), ("seeds", 1), ("width", 1), ("patience", 1),
                         ("patch_size", 4), ("patch_stride", 1), ("bootstrap", 0), ("num_workers", 0)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise InputError(None, field=f"--{name.replace('_', '-')}", expected=f"an integer >= {lo}",
                                 got=repr(v))
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise InputError(None, field="--lr", expected="a positive number", got=repr(self.lr))
        if self.resize not in RESIZES:
            raise InputError(None, field="--resize", expected=" or ".join(RESIZES), got=repr(self.resize))
        if self.norm not in NORMS:
            raise InputError(None, field="--norm", expected=" or ".join(NORMS), got=repr(self.norm))
        if self.task in SUPERVISED and not self.label:
            raise InputError(None, f"{self.task} needs a label column", field="--label")
        if self.selection not in ("loss", "metric"):
            raise InputError(None, field="--selection", expected="loss or metric", got=repr(self.selection))
        if self.freeze not in FREEZES:
            raise InputError(None, field="--freeze", expected=" or ".join(FREEZES), got=repr(self.freeze))
        if self.transfer_lr is not None and not (isinstance(self.transfer_lr, (int, float)) and self.transfer_lr > 0):
            raise InputError(None, field="--transfer-lr", expected="a positive number", got=repr(self.transfer_lr))
        if not self.transfer_from and (self.freeze != "none" or self.transfer_lr is not None):
            raise InputError(None, "--freeze and --transfer-lr need --transfer-from", field="--transfer-from",
                             expected="a model folder to start from")
        check_fractions(self.learning_curve)
        if not 0 <= self.slice_discard < 0.5:
            raise InputError(None, field="--slice-discard", expected="a fraction in [0, 0.5)",
                             got=repr(self.slice_discard))
        if self.slice_axis not in (0, 1, 2):
            raise InputError(None, field="--slice-axis", expected="0, 1 or 2", got=repr(self.slice_axis))


_NAMES = tuple(f.name for f in fields(TrainConfig))


def _normalised(name: str, value: Any) -> Any:
    """One chosen value as ``maps.json`` keeps it (sorted folds, ints, floats, an absolute source folder)."""
    if name == "folds":
        return sorted(int(f) for f in value)
    if name == "shape":
        return [int(s) for s in value]
    if name == "transfer_from":
        return str(Path(value).resolve())
    if name == "learning_curve":
        return [float(f) for f in value]
    return value


def given_settings(config: TrainConfig | None = None,
                   settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The hyperparameters a caller chose: every field of ``config``, then each keyword that is not ``None``.

    Raises
    ------
    TypeError
        A keyword that is not a field of :class:`TrainConfig`.
    """
    settings = dict(settings or {})
    unknown = sorted(set(settings) - set(_NAMES))
    if unknown:
        raise TypeError(f"train_model() got an unexpected keyword argument {unknown[0]!r}")
    raw = config.to_dict() if config is not None else {}
    raw.update({k: v for k, v in settings.items() if v is not None})
    return {k: _normalised(k, v) for k, v in raw.items() if v is not None}


def check_choices(given: Mapping[str, Any]) -> None:
    """``task`` and ``mode``, checked before anything is read (the gate included)."""
    task, mode = given.get("task"), given.get("mode")
    if task is not None and task not in TASKS:
        raise InputError(None, field="--task", expected=" or ".join(TASKS), got=repr(task))
    if mode is not None and mode not in MODES:
        raise InputError(None, field="--mode", expected=" or ".join(MODES), got=repr(mode))


def gate_label(given: Mapping[str, Any], *, resume: bool) -> str | None:
    """The label column the gate reads the split tables with (a resumed run's is in its folder, read later)."""
    label = given.get("label")
    if resume:
        return label
    return label or DEFAULT_LABEL.get(given.get("task") or "classification")


def resolve_config(given: Mapping[str, Any], stored: TrainConfig | None, *,
                   where: str | os.PathLike[str]) -> TrainConfig:
    """The run's configuration: what was given over the defaults, or (resuming) the stored one.

    Raises
    ------
    InputError
        Resuming with a given value that differs from the stored one.
    """
    if stored is None:
        return TrainConfig(**given)
    clash = [f"{k}={v!r} (the folder has {getattr(stored, k)!r})" for k, v in given.items()
             if v != getattr(stored, k)]
    if clash:
        raise InputError(Path(where), "--resume continues a run with the settings it was started with; "
                         "these differ: " + ", ".join(clash))
    return stored


def check_fractions(fractions: Sequence[float] | None) -> None:
    """``--learning-curve``: increasing fractions in (0, 1]."""
    if fractions is None:
        return
    fs = list(fractions)
    if (not fs or any(not isinstance(f, (int, float)) or isinstance(f, bool) or not math.isfinite(f)
                      or not 0 < f <= 1 for f in fs) or any(b <= a for a, b in zip(fs, fs[1:]))):
        raise InputError(None, field="--learning-curve", expected="increasing fractions in (0, 1], "
                         "e.g. 0.25,0.5,0.75,1.0", got=",".join(map(str, fs)) or "nothing")


def parse_fractions(text: str) -> list[float]:
    """``"0.25,0.5,1"`` to floats (the CLI's ``--learning-curve``), validated."""
    try:
        fs = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(None, field="--learning-curve", expected="comma-separated fractions, e.g. 0.25,0.5,1.0",
                         got=repr(text)) from None
    check_fractions(fs)
    return fs
