"""One training call on verified data: everything after the gate opened, to the finished model folder.

:func:`train_gated` resolves the :class:`~train.config.TrainConfig` (or the
stored one, resuming), collects each fold's items from the verified dataset,
refuses a leak between a fold's splits or into a transfer source's
participants, creates the model folder (rank 0 under torchrun), trains every
(fold, seed) and writes the summary and the report. torch is imported here
only after the gate has opened (:mod:`train.loop` is imported on call).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit.api import read_pretrain
from audit.bidsindex import read_json
from audit.errors import InputError, did_you_mean
from train import data
from train.config import MAIN_METRIC, TrainConfig, resolve_config
from train.curve import learning_curve
from train.distributed import agree, barrier, rank, torch_dist, world_size
from train.gate import GateClosed, GatePass, Refused
from train.items import collect_items, find_masks
from train.maps import MapsFolder, write_json, write_tsv
from train.metrics import summarise_runs
from train.permutation import (
    check_permutation_option,
    permutation_lines,
    permutation_test,
)
from train.report import write_report
from train.siteconfound import site_analysis, site_test_lines, summary_site_rows
from train.tensorcache import default_cache_dir

__all__ = ["RunOptions", "TrainSummary", "train_gated"]

Echo = Callable[[str], None]


@dataclass(frozen=True)
class RunOptions:
    """How one training call runs; nothing here changes the model (so none of it is in ``maps.json``'s config).

    Attributes
    ----------
    resume : bool
        Continue an interrupted run in the output folder.
    device : str
        ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
    cache_dir : path-like, optional
        The tensor cache (default :func:`train.tensorcache.default_cache_dir`).
    cache : bool
        Use the tensor cache (``--no-cache``: decode when needed).
    cache_dtype : str
        ``float32`` or ``float16`` (preprocessed images in the cache).
    max_memory : int or str
        Bytes of volumes held in memory.
    threads : int, optional
        torch's CPU threads for this call.
    progress : bool
        Show progress bars.
    echo : callable
        Where messages go.
    on_batch : callable, optional
        Called with (batch, batches) after each training batch.
    t0 : float
        ``time.perf_counter()`` when the call started.
    permutation_test : int
        Shuffled-label runs after training (:mod:`train.permutation`); 0: none.
    """

    resume: bool = False
    device: str = "auto"
    cache_dir: str | os.PathLike[str] | None = None
    cache: bool = True
    cache_dtype: str = "float32"
    max_memory: int | str = "1G"
    threads: int | None = None
    progress: bool = True
    echo: Echo = print
    on_batch: Callable[[int, int], None] | None = None
    t0: float = field(default_factory=time.perf_counter)
    permutation_test: int = 0


@dataclass
class TrainSummary:
    """What a training call did.

    Attributes
    ----------
    maps : Path
        The model folder.
    task, model, device : str
    runs : list of dict
        One per (fold, seed): epochs run, best epochs, metrics per split with CIs.
    summary : dict
        ``{split: {metric: {"mean", "sd", "n"}}}`` over runs.
    notes : list of str
    seconds : float
    """

    maps: Path
    task: str
    model: str
    device: str
    runs: list[dict[str, Any]]
    summary: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    rank: int = 0  # under torchrun: only rank 0's summary has runs
    findings: list[dict[str, Any]] = field(default_factory=list)  # leakage.pipeline: exit 1
    permutation: dict[str, Any] | None = None
    site_test: dict[str, Any] | None = None  # prediction_confound.json

    def lines(self) -> list[str]:
        """A human summary: main metrics per split, mean ± sd over runs."""
        metric = MAIN_METRIC[self.task][0]
        out = [f"trained {len(self.runs)} run(s) ({self.model}, {self.task}) on {self.device} "
               f"in {self.seconds:.1f} s; model folder {self.maps}"]
        for split, ms in self.summary.items():
            shown = [k for k in (metric, "loss", "accuracy", "roc_auc", "mae", "r2", "iou") if k in ms]
            parts = []
            for k in dict.fromkeys(shown):
                m = ms[k]
                sd = "" if m.get("sd") is None else f" ± {m['sd']:.3f}"
                parts.append(f"{k} {m['mean']:.3f}{sd}" if m.get("mean") is not None else f"{k} n/a")
            out.append(f"  {split}: " + ", ".join(parts))
        out += [f"  note: {n}" for n in self.notes]
        out += permutation_lines(self.permutation)
        out += site_test_lines(self.site_test)
        return out


def train_gated(gate: GatePass, output: str | os.PathLike[str], given: Mapping[str, Any],
                run: RunOptions) -> TrainSummary:
    """Everything after the gate opened (on every rank under torchrun).

    ``given`` holds the hyperparameters the caller chose (see
    :func:`train.config.given_settings`): over the defaults for a new run,
    and each equal to the stored one when resuming.
    """
    output = Path(output)
    stored = _stored_config(output) if run.resume else None
    try:
        import torch
    except ImportError:
        raise InputError(None, "training needs PyTorch, which is not installed",
                         expected="pip install torch==2.13.0 and pip install 'bidsaudit[train]'") from None
    from train.loop import resolve_device  # torch

    cfg = resolve_config(given, stored, where=output)
    cfg.check()
    check_permutation_option(run.permutation_test, cfg.task, world_size())
    dev = resolve_device(run.device)
    if world_size() > 1 and dev.type == "cuda":
        dev = torch.device("cuda", torch.cuda.current_device())  # torchrun: this rank's GPU
    main = rank() == 0
    notes = list(gate.notes)
    split_set = gate.splits
    fold_ids = [f for f in split_set.folds] or [None]
    if cfg.folds is not None:
        unknown = sorted(set(cfg.folds) - {f for f in fold_ids if f is not None})
        if unknown or fold_ids == [None]:
            raise InputError(split_set.root, f"no fold(s) {unknown or cfg.folds} in this split",
                             field="--folds", expected="fold numbers of the split: "
                             + (", ".join(map(str, split_set.folds)) or "none (not a k-fold split)"))
        fold_ids = [f for f in fold_ids if f in cfg.folds]

    if cfg.label and cfg.task in ("classification", "regression"):
        _check_label(cfg.label, gate)
    masks = find_masks(gate.dataset) if cfg.task == "segmentation" else None
    if cfg.task == "segmentation" and gate.masks is None:
        raise GateClosed(f"the gate is closed: certificate {gate.certificate_path} does not cover segmentation "
                         "masks", ["it has no record of the derivatives masks (written by an older bidsaudit): "
                                   "audit the dataset again"])
    store = data.VolumeStore(gate.dataset, cache_dir=(run.cache_dir or default_cache_dir()) if run.cache else None,
                             max_memory=run.max_memory, cache_dtype=run.cache_dtype)
    folds_items: dict[int, dict[str, list[Any]]] = {}
    for f in fold_ids:
        view = dict(next(v for v in split_set.views() if v.fold == f).tables)
        if "train" not in view:
            raise InputError(split_set.root, "no train split" + ("" if f is None else f" in fold {f}"),
                             expected="a split with train (and validation) tables")
        names = list(view)
        for i, a in enumerate(names):  # the audit vouched for this; a trainer checks it again at start
            for b in names[i + 1:]:
                both = sorted(view[a].subjects() & view[b].subjects())
                if both:
                    raise Refused(f"leakage: participants are in both {a} and {b}"
                                  + ("" if f is None else f" of fold {f}"), [", ".join(both[:20])])
        folds_items[f or 0] = {name: collect_items(gate.index, gate.files, table, task=cfg.task, label=cfg.label,
                                                   suffix=cfg.suffix, masks=masks, notes=notes,
                                                   mask_hashes=gate.masks)
                               for name, table in view.items()}
        if not folds_items[f or 0]["train"]:
            raise InputError(view["train"].path, f"no {cfg.suffix} image for any training row",
                             expected=f"participants with {cfg.suffix} images (--suffix picks another)")
    if "validation" not in next(iter(folds_items.values())):
        notes.append("no validation split: no early stopping; the best models are the last epoch's")
    if masks:
        n_masks = len({i.mask for fi in folds_items.values() for s in fi.values() for i in s})
        notes.append(f"segmentation masks come from derivatives/ ({n_masks} files), certified by the audit; "
                     "their hashes are in maps.json")

    if cfg.learning_curve and any(not fi.get("validation") for fi in folds_items.values()):
        raise InputError(split_set.root, "a learning curve is measured on the validation split, and there is none",
                         field="--learning-curve", expected="a split with validation participants")
    source_seen = _check_transfer(cfg, folds_items) if cfg.transfer_from else {}

    config_hash = "sha256:" + hashlib.sha256(json.dumps(cfg.to_dict(), sort_keys=True).encode()).hexdigest()
    if stored is not None:
        maps = MapsFolder.open(output, complete=False)
        maps.readonly = not main
        rec = maps.meta.get("gate") or {}
        now = gate.record()
        for k in ("dataset_fingerprint", "split_fingerprint"):
            if rec.get(k) != now.get(k):
                raise InputError(output, f"the model folder was started on other data ({k.replace('_', ' ')} "
                                 f"{rec.get(k)}, now {now.get(k)})", expected="the dataset and split files it was "
                                 "trained on (or a new output folder)")
        run.echo(f"resuming {output}")
    else:
        tv_rows, tv_header = _train_validation_rows(folds_items, cfg, gate, notes)
        tv_rows += [[pid, None, "pretrain", None, None] for pid in sorted(source_seen)]
        maps = _create_maps(main, output, config=cfg, gate=gate, folds=list(folds_items), extra={
            "device": str(dev), "config_hash": config_hash,
            "masks": {i.mask: i.mask_sha256 for fi in folds_items.values() for s in fi.values() for i in s
                      if i.mask} or None,
            "pretrain": (gate.certificate.get("options") or {}).get("pretrain"),
            "transfer": None if not cfg.transfer_from else {
                "from": cfg.transfer_from, "freeze": cfg.freeze, "transfer_lr": cfg.transfer_lr,
                "participants": len(source_seen)},
        }, train_validation=tv_rows, tv_header=tv_header)
    maps.meta["device"] = str(dev)
    if world_size() > 1:
        maps.meta["distributed"] = {"world_size": world_size(), "backend": str(torch_dist().get_backend())}
    maps.meta["notes"] = notes
    maps.meta["status"] = "running"
    maps.save()
    for n in gate.notes:
        run.echo(f"note: {n}")

    old_threads = torch.get_num_threads()
    if run.threads is not None:
        if run.threads < 1:
            raise InputError(None, field="--threads", expected="an integer >= 1", got=repr(run.threads))
        torch.set_num_threads(run.threads)
    maps.meta["threads"] = torch.get_num_threads()
    maps.save()
    try:
        fds: list[Any] = []
        t_real = time.perf_counter()
        runs = _train_folds(folds_items, cfg, store, maps, dev, run, config_hash,
                            keep=fds if run.permutation_test else None)
        t_real = time.perf_counter() - t_real
        permutation = (permutation_test(fds, cfg, maps, dev, run, runs, t_real)
                       if run.permutation_test and main else None)
        curve = None
        if cfg.learning_curve:
            curve = learning_curve(folds_items, cfg, store, maps, dev, runs, echo=run.echo, progress=run.progress,
                                   config_hash=config_hash, write=main)
    except InputError:
        if main and stored is None and not any(maps.root.glob("split-*/seed-*/checkpoint.pt")):
            shutil.rmtree(maps.root, ignore_errors=True)  # made by this call, nothing trained: leave no trace
        raise
    finally:
        torch.set_num_threads(old_threads)
    if not main:
        return TrainSummary(maps=maps.root, task=cfg.task, model=cfg.model, device=str(dev), runs=[], summary={},
                            notes=notes, seconds=time.perf_counter() - run.t0, rank=rank())
    sites = site_analysis(maps, runs, index=gate.index, site_column=(gate.certificate.get("options") or {}).get("site"),
                          task=cfg.task, classes=_classes(maps, runs), selection=maps.selection_name(),
                          n_boot=cfg.bootstrap, seed=cfg.seed)
    summary = _write_summary(maps, runs, summary_site_rows(sites))
    if curve is not None:
        maps.meta["learning_curve"] = curve["summary"]
    findings = list((permutation or {}).get("findings") or [])
    if findings:
        maps.meta["findings"] = findings
    maps.finish({"over_runs": summary, "n_runs": len(runs),
                 "volumes_decoded": store.decoded, "volume_cache_hits": store.hits,
                 "volume_memory_peak_bytes": store.budget.peak, "cache_entries_refused": store.problems()})
    write_report(maps)
    return TrainSummary(maps=maps.root, task=cfg.task, model=cfg.model, device=str(dev), runs=runs,
                        summary=summary, notes=notes, seconds=time.perf_counter() - run.t0, findings=findings,
                        permutation=permutation, site_test=(sites or {}).get("prediction_confound"))


def _create_maps(main: bool, output: Path, **kw: Any) -> MapsFolder:
    """Rank 0 creates the model folder; under torchrun the others wait, then hold a read-only view of it."""
    err: InputError | None = None
    maps = None
    if main:
        try:
            maps = MapsFolder.create(output, **kw)
        except InputError as e:
            err = e
    if world_size() > 1:
        agree(err, "creating the model folder")
        barrier()
    elif err is not None:
        raise err
    if maps is None:
        maps = MapsFolder.open(output, complete=False)
        maps.readonly = True
    return maps


def _train_folds(folds_items: dict[int, dict[str, list[Any]]], cfg: TrainConfig, store: Any, maps: MapsFolder,
                 dev: Any, run: RunOptions, config_hash: str, keep: list[Any] | None = None) -> list[dict[str, Any]]:
    from train.loop import FoldData, prepare_arrays, train_run  # torch

    runs = []
    for fold, items in folds_items.items():
        prep = data.fit_preprocessing(items["train"], store, task=cfg.task, shape=cfg.shape, resize=cfg.resize,
                                      norm=cfg.norm)
        fd = FoldData(fold, items, prep)
        for name, its in items.items():
            if its:
                fd.arrays[name] = prepare_arrays(its, store, prep, cfg.task)
        fd.items = {k: v for k, v in items.items() if v}
        if keep is not None:  # the shuffled-label runs reuse the arrays
            keep.append(fd)
        for s in cfg.seed_list:
            runs.append(train_run(fd, cfg, maps.run_dir(fold, s), seed=s, device=dev, echo=run.echo,
                                  progress=run.progress, config_hash=config_hash, on_batch=run.on_batch))
    return runs


def _stored_config(output: Path) -> TrainConfig:
    if not (output / "maps.json").is_file():
        raise InputError(output, "nothing to resume here (no maps.json)",
                         expected="a model folder left by an interrupted 'bidsaudit train'")
    maps = MapsFolder.open(output, complete=False)
    if maps.meta.get("status") == "complete":
        raise InputError(output, "this training run is already complete", expected="an interrupted run to resume")
    return maps.config


def _check_transfer(cfg: TrainConfig, folds_items: dict[int, dict[str, list[Any]]]) -> dict[str, str]:
    """The source folder's participants; refuse (exit 1) those among this split's evaluation participants."""
    src = MapsFolder.open(Path(cfg.transfer_from))
    seen = src.seen_subjects()
    evaluated = {it.participant_id for items in folds_items.values() for split, its in items.items()
                 if split != "train" for it in its}
    both = sorted(evaluated & set(seen))
    if both:
        raise Refused(f"leakage.pretrain_overlap: {len(both)} participant(s) that trained the transfer source "
                      f"{src.root} are in this split's evaluation sets", [", ".join(both[:20])
                                                                          + (" ..." if len(both) > 20 else "")])
    return seen


def _check_label(label: str, gate: GatePass) -> None:
    """The label column must be in the split files or participants.tsv (with the nearest name)."""
    columns = set(gate.index.participants.columns) if gate.index.participants is not None else set()
    for t in gate.splits.tables:
        columns |= set(t.columns)
    if label not in columns:
        raise InputError(None, f"no column '{label}'{did_you_mean(label, columns)}", field="--label",
                         expected="a column of the split files or participants.tsv: " + ", ".join(sorted(columns)))


def _train_validation_rows(folds_items: dict[int, dict[str, list[Any]]], cfg: TrainConfig, gate: GatePass,
                           notes: list[str]) -> tuple[list[list[Any]], list[str]]:
    """ClinicaDL's ``train+validation.tsv``: every participant seen in training, validation or pretraining."""
    rows: list[list[Any]] = []
    seen = set()
    for fold, items in folds_items.items():
        for split in ("train", "validation"):
            for it in items.get(split, ()):
                key = (it.participant_id, it.session_id, split, fold)
                if key not in seen:
                    seen.add(key)
                    rows.append([it.participant_id, it.session_id, split, fold, it.label])
    pre = (gate.certificate.get("options") or {}).get("pretrain")
    if pre:
        try:
            for pid in sorted(read_pretrain(Path(pre))):
                rows.append([pid, None, "pretrain", None, None])
        except InputError as err:
            notes.append(f"the audited pretraining source {pre} cannot be read now ({err}); "
                         "its participants are not listed in train+validation.tsv")
    return rows, ["participant_id", "session_id", "split", "fold", cfg.label or "label"]


def _classes(maps: MapsFolder, runs: list[dict[str, Any]]) -> list[str]:
    path = maps.run_dir(runs[0]["fold"], runs[0]["seed"]) / "preprocessing.json" if runs else None
    return list((read_json(path) if path is not None and path.is_file() else {}).get("classes") or [])


def _write_summary(maps: MapsFolder, runs: list[dict[str, Any]],
                   site_rows: list[list[Any]] | None = None) -> dict[str, Any]:
    summary = summarise_runs(runs)
    rows = []
    for r in runs:
        for split, ms in (r.get("metrics") or {}).items():
            for name, m in ms.items():
                rows.append([split, r["fold"], r["seed"], name, m.get("value"), m.get("ci_low"), m.get("ci_high")])
    for split, ms in summary.items():
        for name, m in ms.items():
            rows.append([split, "all", "all", name, m.get("mean"), None, None])
    rows = [[*r, "all"] for r in rows] + list(site_rows or [])  # per-site rows: train.siteconfound
    write_tsv(maps.root / "summary.tsv", ["split", "fold", "seed", "metric", "value", "ci_low", "ci_high", "site"],
              rows)
    write_json(maps.root / "summary.json", {"runs": runs, "over_runs": summary})
    return summary
