"""The model folder (MAPS, after ClinicaDL): everything needed to trust, resume and reuse a run.

Layout::

    MAPS/
      maps.json                 status, every hyperparameter, seeds, folds, versions, device,
                                the gate's record (certificate hash, fingerprints), label classes
      environment.json          installed distributions and their versions
      bidsaudit-certificate.json  a copy of the certificate the gate verified
      splits/                   copies of the split files (paths relative to the split root)
      train+validation.tsv      every participant seen in training, validation or pretraining
      split-<fold>/seed-<seed>/
        preprocessing.json      what was fitted on this fold's training set
        checkpoint.pt           last finished epoch (model, optimiser, early-stopping state)
        metrics.tsv             one row per finished epoch
        best-loss/model.pt      best validation loss
        best-<metric>/model.pt  best main metric
        predictions/<split>_best-<sel>.tsv
        metrics/<split>_best-<sel>.json   metrics with bootstrap 95 % CIs
        done.json               written last: the run is complete
      summary.json, summary.tsv per split, fold and seed; mean ± sd over runs

Every file is written atomically (a temporary file renamed over the target),
``maps.json`` first with ``"status": "running"`` and last with
``"complete"``: a run killed at any point leaves a folder whose files are each
whole, which ``train --resume`` continues and ``predict`` refuses until it is
complete. This module does not import torch.
"""

from __future__ import annotations

import csv
import io
import json
import platform
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit import __version__
from audit.bidsindex import read_json
from audit.errors import InputError
from audit.fsutil import atomic_write_bytes, atomic_write_text
from train.config import TrainConfig

__all__ = [
    "MAPS_VERSION",
    "MapsFolder",
    "environment",
    "read_tsv",
    "write_json",
    "write_tsv",
]

MAPS_VERSION = "1"


def environment() -> dict[str, Any]:
    """Python, platform and every installed distribution with its version."""
    from importlib import metadata

    dists = {}
    for d in metadata.distributions():
        name = d.metadata.get("Name")
        if name:
            dists[name] = d.version
    return {"python": platform.python_version(), "implementation": platform.python_implementation(),
            "platform": platform.platform(), "packages": dict(sorted(dists.items(), key=lambda kv: kv[0].lower()))}


def write_tsv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]], *, delimiter: str = "\t") -> Path:
    """Write a TSV (or, with ``delimiter=","``, a CSV) atomically (``n/a`` for missing values, floats with 6
    significant digits)."""
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delimiter, lineterminator="\n")
    w.writerow(header)
    for r in rows:
        w.writerow(["n/a" if v is None else (f"{v:.6g}" if isinstance(v, float) else v) for v in r])
    return atomic_write_text(path, buf.getvalue())


def read_tsv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def write_json(path: Path, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")


@dataclass
class MapsFolder:
    """A model folder on disk."""

    root: Path
    meta: dict[str, Any] = field(default_factory=dict)
    readonly: bool = False  # a torchrun rank other than 0: it reads, rank 0 writes

    # ------------------------------------------------------------ paths
    def run_dir(self, fold: int, seed: int) -> Path:
        return self.root / f"split-{fold}" / f"seed-{seed}"

    @property
    def config(self) -> TrainConfig:
        return TrainConfig.from_dict(self.meta.get("config") or {})

    # ------------------------------------------------------------ create
    @classmethod
    def create(cls, root: Path, *, config: TrainConfig, gate: Any, folds: Sequence[int], extra: Mapping[str, Any],
               train_validation: Sequence[Sequence[Any]], tv_header: Sequence[str]) -> MapsFolder:
        """Start a model folder: copies of certificate and splits, ``train+validation.tsv``, ``maps.json``."""
        root = Path(root)
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise InputError(root, "already exists and is not empty",
                             expected="a new folder for the model (or --resume to continue the run there)")
        root.mkdir(parents=True, exist_ok=True)
        split_set = gate.splits
        copies = {}
        for src, rel in zip(split_set.files, split_set.relative_files):
            rel = rel.replace("../", "_parent/")
            dst = root / "splits" / rel
            atomic_write_bytes(dst, Path(src).read_bytes())
            copies[rel] = str(Path(src).resolve())
        atomic_write_bytes(root / "bidsaudit-certificate.json", gate.certificate_path.read_bytes())
        write_tsv(root / "train+validation.tsv", tv_header, train_validation)
        write_json(root / "environment.json", environment())
        meta = {
            "maps_version": MAPS_VERSION,
            "status": "running",
            "tool": {"name": "bidsaudit", "version": __version__},
            "config": config.to_dict(),
            "folds": list(folds),
            "seeds": config.seed_list,
            "dataset": {"path": str(gate.dataset), "name": gate.index.name},
            "splits": {"root": str(Path(split_set.root).resolve()), "format": split_set.format, "files": copies},
            "gate": gate.record(),
            "versions": _versions(),
            **extra,
        }
        self = cls(root, meta)
        self.save()
        return self

    @classmethod
    def open(cls, root: Path, *, complete: bool = True) -> MapsFolder:
        """Read a model folder; refuse one that is not a model folder or not complete.

        Raises
        ------
        InputError
            No folder, no or malformed ``maps.json``, missing files, or (with
            ``complete``) a run that did not finish.
        """
        root = Path(root)
        if not root.is_dir():
            raise InputError(root, "no such folder", expected="a model folder written by 'bidsaudit train'")
        path = root / "maps.json"
        if not path.is_file():
            raise InputError(root, "no maps.json here", expected="a model folder written by 'bidsaudit train'")
        meta = read_json(path)
        if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict) or "status" not in meta:
            raise InputError(path, "not a bidsaudit model folder description", field="config/status",
                             expected="maps.json written by 'bidsaudit train'")
        self = cls(root, meta)
        try:
            TrainConfig.from_dict(meta["config"])
        except TypeError as err:
            raise InputError(path, f"malformed config: {err}", field="config") from None
        _check_types(meta, path)
        if complete:
            if meta.get("status") != "complete":
                raise InputError(root, f"the training run is incomplete (status '{meta.get('status')}')",
                                 expected="a complete model folder (continue it with 'bidsaudit train --resume')")
            missing = [p for p in ("train+validation.tsv", "bidsaudit-certificate.json") if not (root / p).is_file()]
            for fold in meta.get("folds") or []:
                for seed in meta.get("seeds") or []:
                    run = self.run_dir(fold, seed)
                    for p in ("done.json", "preprocessing.json", f"best-{self.selection_name()}/model.pt"):
                        if not (run / p).is_file():
                            missing.append(str((run / p).relative_to(root)))
            if missing:
                raise InputError(root, "the model folder is incomplete or damaged: missing "
                                 + ", ".join(missing[:10]), expected="a complete model folder")
        return self

    def selection_name(self, selection: str | None = None) -> str:
        sel = selection or self.config.selection
        return "loss" if sel == "loss" else self.config.main_metric[0]

    def save(self) -> None:
        if self.readonly:
            return
        write_json(self.root / "maps.json", self.meta)

    def finish(self, summary: Mapping[str, Any]) -> None:
        if self.readonly:
            return
        self.meta["status"] = "complete"
        self.meta["summary"] = summary
        self.save()

    def seen_subjects(self) -> dict[str, str]:
        """Participants seen in training, validation or pretraining: ``{participant_id: role}``."""
        path = self.root / "train+validation.tsv"
        if not path.is_file():
            raise InputError(self.root, "no train+validation.tsv", expected="a complete model folder")
        out: dict[str, str] = {}
        for row in read_tsv(path):
            pid = (row.get("participant_id") or "").strip()
            if pid:
                pid = "sub-" + pid.removeprefix("sub-")
                out.setdefault(pid, row.get("split") or "train")
        return out


_INT = ("epochs", "batch_size", "patience", "width", "seed", "seeds", "slice_axis", "patch_size", "patch_stride",
        "num_workers", "bootstrap")
_FLOAT = ("lr", "weight_decay", "slice_discard")
_STR = ("task", "model", "mode", "suffix", "resize", "norm", "selection", "freeze")


def _check_types(meta: Mapping[str, Any], path: Path) -> None:
    """Every recorded setting has the type ``train`` writes (a hand-edited maps.json is refused by field)."""
    cfg = meta["config"]

    def bad(name: str, expected: str) -> InputError:
        return InputError(path, "malformed setting", field=f"config/{name}", expected=expected,
                          got=repr(cfg.get(name))[:80])

    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    for k in _INT:
        if k in cfg and not is_int(cfg[k]):
            raise bad(k, "an integer")
    for k in _FLOAT:
        if k in cfg and not (isinstance(cfg[k], (int, float)) and not isinstance(cfg[k], bool)):
            raise bad(k, "a number")
    for k in _STR:
        if k in cfg and not isinstance(cfg[k], str):
            raise bad(k, "a string")
    for k in ("label", "transfer_from"):
        if cfg.get(k) is not None and not isinstance(cfg[k], str):
            raise bad(k, "a string or null")
    if cfg.get("transfer_lr") is not None and not isinstance(cfg["transfer_lr"], (int, float)):
        raise bad("transfer_lr", "a number or null")
    if "augment" in cfg and not isinstance(cfg["augment"], bool):
        raise bad("augment", "true or false")
    for k in ("folds", "shape", "learning_curve"):
        v = cfg.get(k)
        if v is not None and not (isinstance(v, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                               for x in v)):
            raise bad(k, "a list of numbers or null")
    for k in ("folds", "seeds"):
        v = meta.get(k)
        if v is not None and not (isinstance(v, list) and all(is_int(x) for x in v)):
            raise InputError(path, "malformed run list", field=k, expected="a list of integers", got=repr(v)[:80])


def _versions() -> dict[str, Any]:
    from importlib import metadata

    out: dict[str, Any] = {"python": platform.python_version()}
    for name in ("torch", "monai", "numpy", "nibabel", "scikit-learn", "scipy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out

