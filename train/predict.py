"""Inference with one model folder or an ensemble; refuses any participant a member saw in training.

Before any image is read, every model folder is opened (complete, not
damaged) and the participants of the split file are compared with each
member's ``train+validation.tsv`` (training, validation and pretraining
participants) and with the pretraining sources recorded in its
``maps.json``: one participant in common is a leak, and
:class:`LeakageRefused` says which participants and which model folder (exit 1).

A model folder holds one model per (fold, seed); its prediction is their
average (class probabilities, values), and an ensemble of folders averages
the folders' predictions. Predictions go to ``predictions.tsv``, metrics with
bootstrap 95 % CIs (when the split file or ``participants.tsv`` carries the
label) to ``metrics.json``, both in the output folder.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from audit.api import read_pretrain
from audit.bidsindex import index_dataset, read_json
from audit.errors import InputError
from audit.hashing import HashCache, dataset_fingerprint
from audit.splits import read_splits
from train.data import Preprocessing, VolumeStore
from train.gate import Refused
from train.items import collect_items, find_masks
from train.maps import MapsFolder, write_json, write_tsv
from train.metrics import segmentation_counts
from train.samples import SampleSet

__all__ = ["LeakageRefused", "PredictSummary", "predict"]

Echo = Callable[[str], None]


class LeakageRefused(Refused):
    """The prediction set shares participants with a model's training (exit 1)."""


@dataclass
class PredictSummary:
    """What a prediction call did."""

    output: Path
    task: str
    members: list[Path]
    n_images: int
    metrics: dict[str, Any] | None
    per_member: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        kind = "ensemble of " + str(len(self.members)) if len(self.members) > 1 else "model"
        out = [f"predicted {self.n_images} image(s) with the {kind} ({self.task}); written to {self.output}"]
        if self.metrics:
            parts = []
            for k, m in self.metrics.items():
                if m.get("value") is None or k.startswith(("dice_", "iou_")):
                    continue
                ci = "" if m.get("ci_low") is None else f" [{m['ci_low']:.3f}, {m['ci_high']:.3f}]"
                parts.append(f"{k} {m['value']:.3f}{ci}")
            out.append("  " + ", ".join(parts))
        else:
            out.append("  no labels: predictions only")
        out += [f"  note: {n}" for n in self.notes]
        return out


def _seen(maps: MapsFolder, notes: list[str]) -> dict[str, str]:
    """Participants a model folder saw: train+validation.tsv and its recorded pretraining sources."""
    seen = maps.seen_subjects()
    pre = maps.meta.get("pretrain")
    for src in [pre] if isinstance(pre, str) else list(pre or []):
        path = Path(src)
        if not path.exists():
            notes.append(f"{maps.root}: pretraining source {src} is not here; its participants as recorded in "
                         "train+validation.tsv are checked")
            continue
        for pid in read_pretrain(path):
            seen.setdefault(pid, "pretrain")
    return seen


def predict(maps_dirs: Sequence[str | os.PathLike[str]], data: str | os.PathLike[str],
            split_file: str | os.PathLike[str], *, output: str | os.PathLike[str] | None = None,
            label: str | None = None, selection: str | None = None, device: str = "auto",
            bootstrap: int = 1000, threads: int | None = None, echo: Echo = print) -> PredictSummary:
    """Predict the images of ``split_file``'s participants in ``data`` with one model folder or several.

    Parameters
    ----------
    maps_dirs : sequence of path-like
        Model folders (one: a model; several: an ensemble of the same task).
    data : path-like
        A BIDS dataset.
    split_file : path-like
        The participants to predict (any split input; every table is used).
    output : path-like, optional
        A file name ending in ``.tsv``, ``.csv`` or ``.txt`` is the predictions
        file (metrics beside it, ``<stem>.metrics.json``); anything else is a
        folder (``predictions.tsv``, ``metrics.json``). Default:
        ``<first MAPS>/predictions/<split file stem>`` (``-ensemble`` appended
        for several folders). Must not hold earlier predictions.
    label : str, optional
        Label column (default: the one the models were trained on).
    selection : {"loss", "metric"}, optional
        Which best model of each run (default: the one the folder was trained to prefer).

    Raises
    ------
    InputError
        A missing, incomplete or damaged model folder; members of different
        tasks or classes; a label value a model never saw; an image a model
        cannot take (exit 2).
    LeakageRefused
        A participant of the split file was seen in training or pretraining
        by a member (exit 1).
    """
    if not maps_dirs:
        raise InputError(None, "no model folder given", expected="one or more model folders (MAPS)")
    if selection not in (None, "loss", "metric"):
        raise InputError(None, field="--selection", expected="loss or metric", got=repr(selection))
    members = [MapsFolder.open(Path(d)) for d in maps_dirs]
    cfg0 = members[0].config
    for m in members[1:]:
        c = m.config
        if c.task != cfg0.task or c.label != cfg0.label:
            raise InputError(m.root, f"an ensemble needs members of one task and label: {members[0].root} does "
                             f"{cfg0.task} of {cfg0.label!r}, this one {c.task} of {c.label!r}")
    split_path = Path(split_file)
    if not split_path.exists():
        raise InputError(split_path, "no such file or folder", field="--split", expected="a split file")
    lab = label or cfg0.label
    split_set = read_splits(split_path, label=lab)
    wanted = set()
    for t in split_set.tables:
        wanted |= t.subjects()
    notes: list[str] = []
    leaks = []
    for m in members:
        seen = _seen(m, notes)
        both = sorted(wanted & set(seen))
        if both:
            roles = sorted({seen[p] for p in both})
            leaks.append(f"{len(both)} participant(s) of {split_path} were seen in {'/'.join(roles)} by model "
                         f"folder {m.root}: {', '.join(both[:20])}" + (" ..." if len(both) > 20 else ""))
    if leaks:
        raise LeakageRefused("leakage: refusing to predict participants a model was trained on", leaks)

    try:
        import torch
    except ImportError:
        raise InputError(None, "prediction needs PyTorch, which is not installed",
                         expected="pip install torch==2.13.0 and pip install 'bidsaudit[train]'") from None
    from train.loop import resolve_device

    dev = resolve_device(device)
    index = index_dataset(data)
    cache = HashCache.default()
    try:
        files = dict(dataset_fingerprint(index, cache).files)
    finally:
        cache.close()
    masks = find_masks(index.root) if cfg0.task == "segmentation" else None
    items = []
    for t in split_set.tables:
        items += collect_items(index, files, t, task=cfg0.task, label=lab, suffix=cfg0.suffix, masks=masks,
                               notes=notes, require_label=False)
    uniq = {}
    for it in items:
        uniq.setdefault(it.path, it)
    items = list(uniq.values())
    if not items:
        raise InputError(split_path, f"no {cfg0.suffix} image for any participant of this split in {index.root}")
    labelled = cfg0.task in ("reconstruction", "segmentation") or all(it.label is not None for it in items)

    out_dir = Path(output) if output else members[0].root / "predictions" / (
        split_path.stem + ("-ensemble" if len(members) > 1 else ""))
    pred_path, metrics_path = output_paths(out_dir)
    if pred_path.exists() or (out_dir.is_dir() and any(out_dir.iterdir())):
        raise InputError(pred_path if pred_path.exists() else out_dir, "already holds predictions",
                         expected="a new output file or folder (--output)")

    store = VolumeStore(index.root)
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        member_outputs, prep0, per_member = [], None, {}
        for m in members:
            res, prep = _predict_member(m, items, store, dev, selection, labelled)
            if prep0 is not None and cfg0.task in ("classification", "segmentation") and prep.classes != prep0.classes:
                raise InputError(m.root, f"ensemble members know different classes: {prep0.classes} and {prep.classes}")
            prep0 = prep0 or prep
            member_outputs.append(res)
            per_member[str(m.root)] = res.get("metrics")
    finally:
        torch.set_num_threads(old_threads)
    assert prep0 is not None
    combined = _combine(cfg0.task, member_outputs)
    from train.loop import metrics_with_ci, prediction_rows

    cfg_eval = dataclasses.replace(members[0].config, bootstrap=bootstrap)
    head, rows = prediction_rows(cfg_eval, prep0, combined, items) if labelled or cfg0.task not in (
        "classification", "regression") else _unlabelled_rows(cfg_eval, prep0, combined, items)
    write_tsv(pred_path, head, rows, delimiter="," if pred_path.suffix.lower() == ".csv" else "\t")
    metrics = None
    if labelled:
        metrics = metrics_with_ci(cfg_eval, prep0, combined, items, seed=0)
    else:
        notes.append("the split file and participants.tsv carry no label for some images: no metrics")
    write_json(metrics_path, {
        "split_file": str(split_path.resolve()), "dataset": str(index.root), "task": cfg0.task,
        "members": [str(m.root.resolve()) for m in members], "n_images": len(items),
        "n_participants": len({it.participant_id for it in items}), "metrics": metrics,
        "per_member": per_member, "notes": notes})
    return PredictSummary(pred_path, cfg0.task, [m.root for m in members], len(items), metrics, per_member, notes)


FILE_SUFFIXES = (".tsv", ".csv", ".txt")


def output_paths(output: Path) -> tuple[Path, Path]:
    """Where predictions and metrics go: ``FILE`` and ``FILE``'s stem + ``.metrics.json`` for a file name
    (``preds.tsv``, ``preds.csv``), else ``predictions.tsv`` and ``metrics.json`` inside the folder.

    >>> [str(p) for p in output_paths(Path("out/preds.tsv"))]
    ['out/preds.tsv', 'out/preds.metrics.json']
    >>> [str(p) for p in output_paths(Path("out/preds"))]
    ['out/preds/predictions.tsv', 'out/preds/metrics.json']
    """
    if output.suffix.lower() in FILE_SUFFIXES and not output.is_dir():
        return output, output.with_name(output.stem + ".metrics.json")
    return output / "predictions.tsv", output / "metrics.json"


def _predict_member(m: MapsFolder, items: list[Any], store: Any, dev: Any, selection: str | None,
                    labelled: bool) -> tuple[dict[str, Any], Any]:
    """Average the predictions of a folder's runs (every fold and seed)."""
    from train.loop import (
        evaluate,
        load_torch,
        n_outputs,
        point_metrics,
        prepare_arrays,
    )
    from train.models import build_model

    cfg = m.config
    sel = m.selection_name("loss" if selection == "loss" else (cfg.main_metric[0] if selection == "metric" else None))
    outs = []
    prep0 = None
    for fold in m.meta.get("folds") or []:
        for seed in m.meta.get("seeds") or []:
            run = m.run_dir(fold, seed)
            try:
                prep = Preprocessing.from_dict(read_json(run / "preprocessing.json"))
            except (TypeError, KeyError, ValueError) as err:
                raise InputError(run / "preprocessing.json", f"malformed: {err}") from None
            if not labelled and cfg.task in ("classification", "regression"):
                its = [_with_label(it, prep) for it in items]
            else:
                its = items
            arr = prepare_arrays(its, store, prep, cfg.task)
            shape = SampleSet(arr[0][:1], arr[1][:1], mode=cfg.mode, slice_axis=cfg.slice_axis,
                              slice_discard=cfg.slice_discard, patch_size=cfg.patch_size,
                              patch_stride=cfg.patch_stride).sample_shape()
            model = build_model(cfg.model, cfg.task, shape, n_outputs(cfg, prep), width=cfg.width)
            saved = load_torch(run / f"best-{sel}" / "model.pt", dev)
            try:
                model.load_state_dict(saved["model"])
            except (RuntimeError, KeyError) as err:
                raise InputError(run / f"best-{sel}" / "model.pt", "does not fit the recorded model: "
                             + "; ".join(ln.strip() for ln in str(err).splitlines()[:3] if ln.strip())) from None
            model.to(dev)
            outs.append(evaluate(model, arr, cfg, prep, dev, keep_proba=cfg.task == "segmentation"))
            if prep0 is None:
                prep0 = prep
            elif prep.classes != prep0.classes:
                raise InputError(run, "runs of this model folder know different classes")
    res = _combine(cfg.task, outs)
    if labelled and prep0 is not None:
        res["metrics"] = {k: (None if not np.isfinite(v) else round(float(v), 6))
                          for k, v in point_metrics(cfg, prep0, res, items).items()}
    return res, prep0


def _with_label(item: Any, prep: Any) -> Any:
    return dataclasses.replace(item, label=prep.classes[0] if prep.classes else "0")


def _combine(task: str, outs: list[dict[str, Any]]) -> dict[str, Any]:
    if task == "classification":
        return {"proba": np.mean([o["proba"] for o in outs], axis=0), "loss": float(np.mean([o["loss"] for o in outs]))}
    if task == "regression":
        return {"pred": np.mean([o["pred"] for o in outs], axis=0), "loss": float(np.mean([o["loss"] for o in outs]))}
    if task == "reconstruction":
        return {"mse": np.mean([o["mse"] for o in outs], axis=0), "loss": float(np.mean([o["loss"] for o in outs]))}
    # segmentation: average the stitched class probabilities, then take the most likely class per voxel
    proba = np.mean([o["seg_proba"] for o in outs], axis=0)
    masks = outs[0]["masks"]
    k = proba.shape[1]
    counts = np.stack([segmentation_counts(masks[i], proba[i].argmax(0), k) for i in range(len(proba))])
    return {"counts": counts, "seg_proba": proba, "masks": masks, "loss": float(np.mean([o["loss"] for o in outs]))}


def _unlabelled_rows(cfg: Any, prep: Any, res: dict[str, Any], items: list[Any]) -> tuple[list[str], list[list[Any]]]:
    head = ["participant_id", "session_id", "image"]
    rows: list[list[Any]] = []
    if cfg.task == "classification":
        head += ["predicted_label", *[f"proba_{c}" for c in prep.classes]]
        for it, p in zip(items, res["proba"]):
            rows.append([it.participant_id, it.session_id, it.path, prep.classes[int(np.argmax(p))], *map(float, p)])
    else:
        head += ["predicted_value"]
        for it, p in zip(items, res["pred"]):
            rows.append([it.participant_id, it.session_id, it.path, float(p)])
    return head, rows
