"""The library calls behind ``bidsaudit train`` and ``bidsaudit predict`` (one call each).

Both raise :class:`audit.errors.InputError` for input that cannot be used
(exit 2) and :class:`train.gate.Refused` (its subclasses
:class:`~train.gate.GateClosed` and :class:`~train.predict.LeakageRefused`)
when they ran and refuse (exit 1). torch is imported only after the gate has
opened.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit.errors import InputError, did_you_mean
from train.data import MODES, TASKS
from train.gate import VERIFY_MODES, open_gate

__all__ = ["TrainSummary", "demo_training", "predict", "train_model"]

Echo = Callable[[str], None]
_DEFAULT_LABEL = {"classification": "diagnosis", "regression": "age"}


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

    def lines(self) -> list[str]:
        """A human summary: main metrics per split, mean ± sd over runs."""
        from train.maps import MAIN_METRIC

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
        return out


def train_model(dataset: str | os.PathLike[str], splits: str | os.PathLike[str], output: str | os.PathLike[str], *,
                certificate: str | os.PathLike[str] | None = None, task: str | None = None,
                label: str | None = None, epochs: int | None = None, model: str | None = None,
                seeds: int | None = None, seed: int | None = None, mode: str | None = None,
                folds: Sequence[int] | None = None, batch_size: int | None = None, lr: float | None = None,
                patience: int | None = None, width: int | None = None, shape: Sequence[int] | None = None,
                resize: str | None = None, norm: str | None = None, augment: bool | None = None,
                suffix: str | None = None, slice_axis: int | None = None, slice_discard: float | None = None,
                patch_size: int | None = None, patch_stride: int | None = None, weight_decay: float | None = None,
                selection: str | None = None, verify: str = "cache", require_signature: bool = False,
                transfer_from: str | os.PathLike[str] | None = None, freeze: str | None = None,
                transfer_lr: float | None = None, learning_curve: Sequence[float] | None = None,
                resume: bool = False, device: str = "auto", num_workers: int | None = None,
                bootstrap: int | None = None, cache_dir: str | os.PathLike[str] | None = None,
                threads: int | None = None, progress: bool = True, echo: Echo = print,
                _on_batch: Callable[[int, int], None] | None = None) -> TrainSummary:
    """Verify the certificate, then train a model into the model folder ``output``.

    Options left at ``None`` take the defaults of :class:`train.maps.TrainConfig`
    (or, with ``resume``, the values the folder was started with; an option
    given that differs from those is an error).

    Parameters
    ----------
    dataset, splits : path-like
        The BIDS dataset and the split input the certificate vouches for.
    output : path-like
        New model folder (or the folder to continue with ``resume``).
    certificate : path-like, optional
        Default: ``bidsaudit-certificate.json`` beside the split files.
    task : {"classification", "regression", "reconstruction", "segmentation"}
    label : str, optional
        Target column (default ``diagnosis`` for classification, ``age`` for regression).
    epochs, model, seeds, seed, mode, folds, batch_size, lr, patience, width, shape, resize, norm, augment, suffix
        See :class:`train.maps.TrainConfig`; ``seeds`` is how many seeds
        (``seed``, ``seed + 1``, ...), ``folds`` restricts a k-fold split.
    slice_axis, slice_discard, patch_size, patch_stride, weight_decay, selection
        Also :class:`train.maps.TrainConfig` (``selection``: ``loss`` or
        ``metric``, the best model that predictions and the summary use).
    transfer_from : path-like, optional
        A complete model folder whose weights start this one (every tensor
        whose name and shape match); its training, validation and
        pretraining participants must not be in this split's evaluation
        (validation, test) sets (``leakage.pretrain_overlap``, exit 1).
    freeze : {"none", "encoder", "decoder", "both"}
        Parts of the model that do not train (with ``transfer_from``).
    transfer_lr : float, optional
        Learning rate of the transferred parameters (default ``lr``).
    learning_curve : sequence of float, optional
        Increasing fractions in (0, 1]: also train on nested, label-stratified,
        seeded subject subsets of each fold's training set and report the
        validation metric against the number of training participants
        (``learning_curve.tsv``/``.json``, ``report.html``).
    verify : {"cache", "full"}
        How the gate re-hashes dataset files (split files are always re-read).
    require_signature : bool
        Refuse a certificate without a valid signature.
    resume : bool
        Continue an interrupted run in ``output``.
    device : str
        ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
    cache_dir : path-like, optional
        Keep decoded volumes there between runs (``<sha256>.npy``).
    threads : int, optional
        torch's CPU threads for this call (default: torch's own choice); on a
        small shared machine 1 is often fastest.

    Raises
    ------
    InputError
        Bad arguments, a missing or malformed certificate, dataset, split
        input or model folder; torch not installed (exit 2).
    GateClosed
        The certificate does not match the dataset and split files (exit 1).
    Refused
        A participant in both train and validation of a fold (exit 1).
    """
    t0 = time.perf_counter()
    if verify not in VERIFY_MODES:
        raise InputError(None, field="--verify", expected=" or ".join(VERIFY_MODES), got=repr(verify))
    if task is not None and task not in TASKS:
        raise InputError(None, field="--task", expected=" or ".join(TASKS), got=repr(task))
    if mode is not None and mode not in MODES:
        raise InputError(None, field="--mode", expected=" or ".join(MODES), got=repr(mode))
    gate_label = label if resume else (label or _DEFAULT_LABEL.get(task or "classification"))

    # every training setting, the same for a single process and for each torchrun rank
    settings: dict[str, Any] = dict(
        resume=resume, task=task, label=label, epochs=epochs, model=model, seeds=seeds, seed=seed, mode=mode,
        folds=folds, batch_size=batch_size, lr=lr, patience=patience, width=width, shape=shape, resize=resize,
        norm=norm, augment=augment, suffix=suffix, slice_axis=slice_axis, slice_discard=slice_discard,
        patch_size=patch_size, patch_stride=patch_stride, weight_decay=weight_decay, selection=selection,
        transfer_from=transfer_from, freeze=freeze, transfer_lr=transfer_lr, learning_curve=learning_curve,
        device=device, num_workers=num_workers, bootstrap=bootstrap, cache_dir=cache_dir, threads=threads,
        on_batch=_on_batch, t0=t0)
    distributed = _world_size_env() > 1
    if not distributed:
        # the gate: before anything else is read, decoded or imported
        gate = open_gate(dataset, splits, certificate=certificate, label=gate_label, verify=verify,
                         require_signature=require_signature)
        return _train_gated(gate, output, **settings, progress=progress, echo=echo)

    # torchrun: every rank runs the gate; if any rank refuses, every rank stops with the reason
    failure: BaseException | None = None
    try:
        gate = open_gate(dataset, splits, certificate=certificate, label=gate_label, verify=verify,
                         require_signature=require_signature)
    except Exception as err:  # a refusal, bad input or anything else: _agree stops every rank with it
        failure = err
    dist_mod = _init_distributed(device)
    try:
        _agree(failure, "the gate")
        if dist_mod.get_rank() != 0:
            echo = _silent
        summary = _train_gated(gate, output, **settings, progress=progress and dist_mod.get_rank() == 0,
                               echo=echo)
        dist_mod.barrier()  # leave together: a rank that exits while another still talks to it aborts gloo
        return summary
    finally:
        if dist_mod.is_initialized():
            dist_mod.destroy_process_group()


def _silent(_: str) -> None:
    return None


def _world_size_env() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise InputError(None, "WORLD_SIZE is not an integer", field="WORLD_SIZE",
                         got=repr(os.environ.get("WORLD_SIZE"))) from None


def _init_distributed(device: str) -> Any:
    """Join torchrun's process group: NCCL on CUDA (one GPU per local rank), gloo on CPU."""
    try:
        import torch
        import torch.distributed as dist
    except ImportError:
        raise InputError(None, "training needs PyTorch, which is not installed",
                         expected="pip install torch==2.13.0 and pip install 'bidsaudit[train]'") from None
    if not dist.is_available():
        raise InputError(None, "this PyTorch build has no torch.distributed",
                         expected="a build with it, or one process")
    cuda = device != "cpu" and torch.cuda.is_available() and not device.startswith("cpu")
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return dist


def _agree(failure: BaseException | None, what: str) -> None:
    """Every rank learns whether any rank failed; each raises its own error, or says another rank failed."""
    import torch
    import torch.distributed as dist

    flag = torch.tensor([0 if failure is None else (2 if isinstance(failure, InputError) else 1)])
    if dist.get_backend() == "nccl":
        flag = flag.cuda()
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    if failure is not None:
        raise failure
    if int(flag.item()):
        from train.gate import Refused

        if int(flag.item()) == 2:
            raise InputError(None, f"another rank could not pass {what} (its message is above)")
        raise Refused(f"another rank stopped at {what}", ["see rank 0's message"])


def _train_gated(gate: Any, output: str | os.PathLike[str], *, resume: bool, task: str | None, label: str | None,
                 epochs: int | None, model: str | None, seeds: int | None, seed: int | None, mode: str | None,
                 folds: Sequence[int] | None, batch_size: int | None, lr: float | None, patience: int | None,
                 width: int | None, shape: Sequence[int] | None, resize: str | None, norm: str | None,
                 augment: bool | None, suffix: str | None, slice_axis: int | None, slice_discard: float | None,
                 patch_size: int | None, patch_stride: int | None, weight_decay: float | None,
                 selection: str | None, transfer_from: str | os.PathLike[str] | None, freeze: str | None,
                 transfer_lr: float | None, learning_curve: Sequence[float] | None, device: str,
                 num_workers: int | None, bootstrap: int | None, cache_dir: str | os.PathLike[str] | None,
                 threads: int | None, progress: bool, echo: Echo, on_batch: Callable[[int, int], None] | None,
                 t0: float) -> TrainSummary:
    """Everything after the gate opened (on every rank under torchrun)."""
    output = Path(output)

    stored = _stored_config(output) if resume else None
    eff_task = task or (stored.task if stored else "classification")
    eff_label = label or (stored.label if stored else _DEFAULT_LABEL.get(eff_task))

    try:
        import torch  # noqa: F401
    except ImportError:
        raise InputError(None, "training needs PyTorch, which is not installed",
                         expected="pip install torch==2.13.0 and pip install 'bidsaudit[train]'") from None
    from train.data import VolumeStore, collect_items, find_masks
    from train.gate import GateClosed, Refused
    from train.loop import rank, resolve_device, world_size
    from train.maps import MapsFolder, TrainConfig
    from train.models import DEFAULT_MODEL

    given = {"task": task, "label": label, "epochs": epochs, "model": model, "seeds": seeds, "seed": seed,
             "mode": mode, "folds": None if folds is None else sorted(int(f) for f in folds),
             "batch_size": batch_size, "lr": lr, "patience": patience, "width": width,
             "shape": None if shape is None else [int(s) for s in shape], "resize": resize, "norm": norm,
             "augment": augment, "suffix": suffix, "num_workers": num_workers, "bootstrap": bootstrap,
             "slice_axis": slice_axis, "slice_discard": slice_discard, "patch_size": patch_size,
             "patch_stride": patch_stride, "weight_decay": weight_decay, "selection": selection,
             "transfer_from": None if transfer_from is None else str(Path(transfer_from).resolve()),
             "freeze": freeze, "transfer_lr": transfer_lr,
             "learning_curve": None if learning_curve is None else [float(f) for f in learning_curve]}
    if stored is not None:
        clash = [f"{k}={v!r} (the folder has {getattr(stored, k)!r})" for k, v in given.items()
                 if v is not None and v != getattr(stored, k)]
        if clash:
            raise InputError(output, "--resume continues a run with the settings it was started with; "
                             "these differ: " + ", ".join(clash))
        cfg = stored
    else:
        base = TrainConfig(task=eff_task, label=eff_label if eff_task in ("classification", "regression") else None,
                           model=model or DEFAULT_MODEL[eff_task])
        for k, v in given.items():
            if v is not None and k not in ("task", "label", "model"):
                setattr(base, k, v)
        cfg = base
    _check_config(cfg)
    dev = resolve_device(device)
    if world_size() > 1 and dev.type == "cuda":
        import torch

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
    store = VolumeStore(gate.dataset, cache_dir=cache_dir)
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
        echo(f"resuming {output}")
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
        echo(f"note: {n}")

    import torch

    old_threads = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise InputError(None, field="--threads", expected="an integer >= 1", got=repr(threads))
        torch.set_num_threads(threads)
    maps.meta["threads"] = torch.get_num_threads()
    maps.save()
    try:
        runs = _train_folds(folds_items, cfg, store, maps, dev, echo, progress, config_hash, on_batch)
        curve = None
        if cfg.learning_curve:
            from train.curve import learning_curve as run_curve

            curve = run_curve(folds_items, cfg, store, maps, dev, runs, echo=echo, progress=progress,
                              config_hash=config_hash, write=main)
    except InputError:
        if main and stored is None and not any(maps.root.glob("split-*/seed-*/checkpoint.pt")):
            import shutil

            shutil.rmtree(maps.root, ignore_errors=True)  # made by this call, nothing trained: leave no trace
        raise
    finally:
        torch.set_num_threads(old_threads)
    if not main:
        return TrainSummary(maps=maps.root, task=cfg.task, model=cfg.model, device=str(dev), runs=[], summary={},
                            notes=notes, seconds=time.perf_counter() - t0, rank=rank())
    summary = _write_summary(maps, runs)
    if curve is not None:
        maps.meta["learning_curve"] = curve["summary"]
    maps.finish({"over_runs": summary, "n_runs": len(runs),
                 "volumes_decoded": store.decoded, "volume_cache_hits": store.hits})
    from train.report import write_report

    write_report(maps)
    return TrainSummary(maps=maps.root, task=cfg.task, model=cfg.model, device=str(dev), runs=runs,
                        summary=summary, notes=notes, seconds=time.perf_counter() - t0)


def torch_dist() -> Any:
    import torch.distributed as dist

    return dist


def _create_maps(main: bool, output: Path, **kw: Any) -> Any:
    """Rank 0 creates the model folder; under torchrun the others wait, then hold a read-only view of it."""
    from train.loop import barrier, world_size
    from train.maps import MapsFolder

    err: InputError | None = None
    maps = None
    if main:
        try:
            maps = MapsFolder.create(output, **kw)
        except InputError as e:
            err = e
    if world_size() > 1:
        _agree(err, "creating the model folder")
        barrier()
    elif err is not None:
        raise err
    if maps is None:
        maps = MapsFolder.open(output, complete=False)
        maps.readonly = True
    return maps


def _train_folds(folds_items: dict[int, dict[str, list[Any]]], cfg: Any, store: Any, maps: Any, dev: Any,
                 echo: Echo, progress: bool, config_hash: str,
                 on_batch: Callable[[int, int], None] | None) -> list[dict[str, Any]]:
    from train.data import fit_preprocessing
    from train.loop import FoldData, prepare_arrays, train_run

    runs = []
    for fold, items in folds_items.items():
        prep = fit_preprocessing(items["train"], store, task=cfg.task, shape=cfg.shape, resize=cfg.resize,
                                 norm=cfg.norm)
        fd = FoldData(fold, items, prep)
        for name, its in items.items():
            if its:
                fd.arrays[name] = prepare_arrays(its, store, prep, cfg.task)
        fd.items = {k: v for k, v in items.items() if v}
        for s in cfg.seed_list:
            runs.append(train_run(fd, cfg, maps.run_dir(fold, s), seed=s, device=dev, echo=echo,
                                  progress=progress, config_hash=config_hash, on_batch=on_batch))
    return runs


def _stored_config(output: Path) -> Any:
    from train.maps import MapsFolder

    if not (output / "maps.json").is_file():
        raise InputError(output, "nothing to resume here (no maps.json)",
                         expected="a model folder left by an interrupted 'bidsaudit train'")
    maps = MapsFolder.open(output, complete=False)
    if maps.meta.get("status") == "complete":
        raise InputError(output, "this training run is already complete", expected="an interrupted run to resume")
    return maps.config


def _check_config(cfg: Any) -> None:
    from train.data import NORMS, RESIZES

    for name, lo in (("epochs", 1), ("batch_size", 1), ("seeds", 1), ("width", 1), ("patience", 1),
                     ("patch_size", 4), ("patch_stride", 1), ("bootstrap", 0), ("num_workers", 0)):
        v = getattr(cfg, name)
        if not isinstance(v, int) or isinstance(v, bool) or v < lo:
            raise InputError(None, field=f"--{name.replace('_', '-')}", expected=f"an integer >= {lo}", got=repr(v))
    if not (isinstance(cfg.lr, (int, float)) and cfg.lr > 0):
        raise InputError(None, field="--lr", expected="a positive number", got=repr(cfg.lr))
    if cfg.resize not in RESIZES:
        raise InputError(None, field="--resize", expected=" or ".join(RESIZES), got=repr(cfg.resize))
    if cfg.norm not in NORMS:
        raise InputError(None, field="--norm", expected=" or ".join(NORMS), got=repr(cfg.norm))
    if cfg.task in ("classification", "regression") and not cfg.label:
        raise InputError(None, f"{cfg.task} needs a label column", field="--label")
    if cfg.selection not in ("loss", "metric"):
        raise InputError(None, field="--selection", expected="loss or metric", got=repr(cfg.selection))
    if cfg.freeze not in FREEZES:
        raise InputError(None, field="--freeze", expected=" or ".join(FREEZES), got=repr(cfg.freeze))
    if cfg.transfer_lr is not None and not (isinstance(cfg.transfer_lr, (int, float)) and cfg.transfer_lr > 0):
        raise InputError(None, field="--transfer-lr", expected="a positive number", got=repr(cfg.transfer_lr))
    if not cfg.transfer_from and (cfg.freeze != "none" or cfg.transfer_lr is not None):
        raise InputError(None, "--freeze and --transfer-lr need --transfer-from", field="--transfer-from",
                         expected="a model folder to start from")
    check_fractions(cfg.learning_curve)
    if not 0 <= cfg.slice_discard < 0.5:
        raise InputError(None, field="--slice-discard", expected="a fraction in [0, 0.5)", got=repr(cfg.slice_discard))
    if cfg.slice_axis not in (0, 1, 2):
        raise InputError(None, field="--slice-axis", expected="0, 1 or 2", got=repr(cfg.slice_axis))


FREEZES = ("none", "encoder", "decoder", "both")


def check_fractions(fractions: Sequence[float] | None) -> None:
    """``--learning-curve``: increasing fractions in (0, 1]."""
    if fractions is None:
        return
    import math

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


def _check_transfer(cfg: Any, folds_items: dict[int, dict[str, list[Any]]]) -> dict[str, str]:
    """The source folder's participants; refuse (exit 1) those among this split's evaluation participants."""
    from train.maps import MapsFolder

    src = MapsFolder.open(Path(cfg.transfer_from))
    seen = src.seen_subjects()
    evaluated = {it.participant_id for items in folds_items.values() for split, its in items.items()
                 if split != "train" for it in its}
    both = sorted(evaluated & set(seen))
    if both:
        from train.gate import Refused

        raise Refused(f"leakage.pretrain_overlap: {len(both)} participant(s) that trained the transfer source "
                      f"{src.root} are in this split's evaluation sets", [", ".join(both[:20])
                                                                          + (" ..." if len(both) > 20 else "")])
    return seen


def _check_label(label: str, gate: Any) -> None:
    """The label column must be in the split files or participants.tsv (with the nearest name)."""
    columns = set(gate.index.participants.columns) if gate.index.participants is not None else set()
    for t in gate.splits.tables:
        columns |= set(t.columns)
    if label not in columns:
        raise InputError(None, f"no column '{label}'{did_you_mean(label, columns)}", field="--label",
                         expected="a column of the split files or participants.tsv: " + ", ".join(sorted(columns)))


def _train_validation_rows(folds_items: dict[int, dict[str, list[Any]]], cfg: Any, gate: Any,
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
        from audit.api import read_pretrain

        try:
            for pid in sorted(read_pretrain(Path(pre))):
                rows.append([pid, None, "pretrain", None, None])
        except InputError as err:
            notes.append(f"the audited pretraining source {pre} cannot be read now ({err}); "
                         "its participants are not listed in train+validation.tsv")
    return rows, ["participant_id", "session_id", "split", "fold", cfg.label or "label"]


def _write_summary(maps: Any, runs: list[dict[str, Any]]) -> dict[str, Any]:
    from train.maps import write_json, write_tsv
    from train.metrics import summarise_runs

    summary = summarise_runs(runs)
    rows = []
    for r in runs:
        for split, ms in (r.get("metrics") or {}).items():
            for name, m in ms.items():
                rows.append([split, r["fold"], r["seed"], name, m.get("value"), m.get("ci_low"), m.get("ci_high")])
    for split, ms in summary.items():
        for name, m in ms.items():
            rows.append([split, "all", "all", name, m.get("mean"), None, None])
    write_tsv(maps.root / "summary.tsv", ["split", "fold", "seed", "metric", "value", "ci_low", "ci_high"], rows)
    write_json(maps.root / "summary.json", {"runs": runs, "over_runs": summary})
    return summary


def predict(maps_dirs: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
            data: str | os.PathLike[str], split_file: str | os.PathLike[str], *,
            output: str | os.PathLike[str] | None = None, label: str | None = None, selection: str | None = None,
            device: str = "auto", bootstrap: int = 1000, threads: int | None = None, echo: Echo = print) -> Any:
    """Predict with one model folder or an ensemble of several; refuse any participant seen in training.

    See :func:`train.predict.predict`.
    """
    from train.predict import predict as _predict

    dirs = [maps_dirs] if isinstance(maps_dirs, (str, os.PathLike)) else list(maps_dirs)
    return _predict(dirs, data, split_file, output=output, label=label, selection=selection, device=device,
                    bootstrap=bootstrap, threads=threads, echo=echo)


def demo_training(directory: str | os.PathLike[str], *, epochs: int = 5,
                  echo: Echo = print) -> bool:
    """The demo's training step: train on the audited split, then show the leaky split refused.

    Expects what :func:`audit.demo.run_demo` wrote in ``directory``
    (``dataset/``, ``splits/`` with its certificate, ``splits-leaky/``).
    Returns True when everything behaved as expected (training ran, or torch
    is not installed; the leaky split was refused).
    """
    from train.gate import GateClosed

    directory = Path(directory)
    dataset, clean, leaky = directory / "dataset", directory / "splits", directory / "splits-leaky"
    ok = True
    try:
        import torch  # noqa: F401
        have_torch = True
    except ImportError:
        have_torch = False
    if have_torch:
        echo(f"      bidsaudit train: a small Conv5_FC3 on the certified split ({epochs} epochs, CPU)")
        summary = train_model(dataset, clean, directory / "maps", epochs=epochs, width=4, batch_size=4, lr=3e-3,
                              augment=True, bootstrap=200, device="cpu", threads=1, progress=False,
                              echo=lambda s: echo("      " + s))
        for line in summary.lines():
            echo("      " + line)
    else:
        echo("      bidsaudit train: skipped (PyTorch is not installed: pip install torch==2.13.0)")
    for cert in (None, clean / "bidsaudit-certificate.json"):
        try:
            train_model(dataset, leaky, directory / "maps-leaky", certificate=cert, epochs=1, progress=False,
                        echo=lambda s: None)
        except GateClosed as err:
            echo(f"      training on the leaky split refused (exit 1): {err}")
        except InputError as err:
            echo(f"      training on the leaky split refused (exit 2): {err}")
        else:
            echo("      unexpected: training on the leaky split was not refused")
            ok = False
    return ok
