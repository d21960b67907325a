"""The training loop: plain PyTorch, seeded, CPU or CUDA, with early stopping, checkpoints and resume.

One *run* is one (fold, seed) of a :class:`FoldData` (a fold's items, its
preprocessing fitted on the training items only, and its arrays from
:func:`prepare_arrays`); :func:`train_run` trains,
keeps the best models by validation loss and by the main metric, writes one
row of ``metrics.tsv`` and a checkpoint after every epoch, and at the end
evaluates the best models on every other split of the fold (predictions and
metrics with bootstrap CIs). Randomness is reseeded from (seed, epoch) at each
epoch, so a resumed run ends exactly where an uninterrupted one would.
"""

from __future__ import annotations

import io
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from audit.bidsindex import read_json
from audit.errors import InputError
from audit.fsutil import atomic_write_bytes
from train import metrics as M
from train.config import TrainConfig
from train.bank import prepare_split
from train.data import Preprocessing, VolumeStore
from train.distributed import barrier, rank, sync_epoch, world_size
from train.items import Item
from train.maps import MapsFolder, read_tsv, write_json, write_tsv
from train.models import build_model, part_of
from train.samples import SampleSet, make_augmentation, mix_seed

__all__ = ["FoldData", "evaluate", "load_torch", "metrics_with_ci", "n_outputs", "param_groups", "point_metrics",
           "prediction_rows", "prepare_arrays", "resolve_device", "save_torch", "seed_everything", "train_run",
           "transfer_weights"]

Echo = Callable[[str], None]


def resolve_device(device: str) -> torch.device:
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise InputError(None, field="--device", expected="auto, cpu, cuda or cuda:N", got=repr(device)) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(None, "CUDA is not available on this machine", field="--device", expected="auto or cpu")
    if dev.type not in ("cpu", "cuda"):
        raise InputError(None, field="--device", expected="auto, cpu, cuda or cuda:N", got=repr(device))
    return dev


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and every CUDA device); deterministic cuDNN."""
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


@dataclass
class FoldData:
    """One fold: items per split, preprocessing fitted on its training items, volume banks per split."""

    fold: int
    items: dict[str, list[Item]]
    prep: Preprocessing
    arrays: dict[str, tuple[Any, list[Any], Any]] = field(default_factory=dict)


def prepare_arrays(items: Sequence[Item], store: VolumeStore, prep: Preprocessing,
                   task: str) -> tuple[Any, list[Any], Any]:
    """A split's preprocessed images (and masks) as volume banks (:mod:`train.bank`); targets per image."""
    return prepare_split(items, store, prep, task)


def _sample_set(arr: tuple[np.ndarray, list[Any], np.ndarray | None], cfg: TrainConfig, *,
                augment: Callable[..., Any] | None = None, seed: int = 0) -> SampleSet:
    vols, targets, masks = arr
    return SampleSet(vols, targets, masks=masks, mode=cfg.mode, slice_axis=cfg.slice_axis,
                     slice_discard=cfg.slice_discard, patch_size=cfg.patch_size, patch_stride=cfg.patch_stride,
                     augment=augment, seed=seed)


def n_outputs(cfg: TrainConfig, prep: Preprocessing) -> int:
    if cfg.task in ("classification", "segmentation"):
        return len(prep.classes)
    return 1


def _loss(cfg: TrainConfig, out: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    if cfg.task == "classification":
        return F.cross_entropy(out, batch["target"].long())
    if cfg.task == "regression":
        return F.mse_loss(out[:, 0], batch["target"].float())
    if cfg.task == "reconstruction":
        return F.mse_loss(out, batch["image"])
    return dice_ce_loss(out, batch["mask"])


def dice_ce_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Soft Dice loss over the classes (averaged), plus cross-entropy for stable early gradients."""
    n = logits.shape[1]
    probs = torch.softmax(logits, dim=1)
    onehot = F.one_hot(target, n).movedim(-1, 1).float()
    dims = tuple(range(2, logits.ndim))
    inter = (probs * onehot).sum(dims)
    denom = probs.sum(dims) + onehot.sum(dims)
    dice = (2 * inter + eps) / (denom + eps)
    return (1 - dice.mean()) + F.cross_entropy(logits, target)


def _to(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


class _Bar:
    """A rich progress bar on an interactive stderr; silent otherwise."""

    def __init__(self, enabled: bool) -> None:
        self.progress = None
        if enabled and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeRemainingColumn(), console=Console(stderr=True), transient=True)
            self.progress.start()

    def task(self, description: str, total: int) -> Any:
        return None if self.progress is None else self.progress.add_task(description, total=total)

    def advance(self, task: Any) -> None:
        if self.progress is not None and task is not None:
            self.progress.advance(task)

    def done(self, task: Any) -> None:
        if self.progress is not None and task is not None:
            self.progress.remove_task(task)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


@torch.no_grad()
def evaluate(model: nn.Module, arr: tuple[np.ndarray, list[Any], np.ndarray | None], cfg: TrainConfig,
             prep: Preprocessing, device: torch.device, *, keep_proba: bool = False) -> dict[str, Any]:
    """Run ``model`` over one split's samples; outputs aggregated per image, and the mean sample loss.

    Returns ``{"loss", "proba"|"pred"|"mse"|"counts"}`` with one entry per image
    (class probabilities averaged over an image's slices or patches;
    segmentation probabilities stitched into the whole volume; with
    ``keep_proba`` they are returned too, as ``seg_proba`` (N, C, X, Y, Z)).
    """
    model.eval()
    ss = _sample_set(arr, cfg)
    loader = DataLoader(ss, batch_size=max(1, 2 * cfg.batch_size), shuffle=False, num_workers=0)
    n_img = len(arr[0])
    k = n_outputs(cfg, prep)
    sums = np.zeros((n_img, k), np.float64)
    counts = np.zeros(n_img, np.int64)
    seg_buf: dict[int, np.ndarray] = {}
    seg_left = {i: len(ss.positions) for i in range(n_img)}
    seg_counts = np.zeros((n_img, k, 3)) if cfg.task == "segmentation" else None
    kept: dict[int, np.ndarray] = {}
    total_loss, n_samples = 0.0, 0
    for batch in loader:
        b = _to(batch, device)
        out = model(b["image"])
        total_loss += float(_loss(cfg, out, b)) * len(out)
        n_samples += len(out)
        items = batch["item"].numpy()
        if cfg.task == "classification":
            np.add.at(sums, items, torch.softmax(out, 1).double().cpu().numpy())
        elif cfg.task == "regression":
            np.add.at(sums, items, out.double().cpu().numpy()[:, :1])
        elif cfg.task == "reconstruction":
            err = ((out - b["image"]) ** 2).flatten(1).mean(1).double().cpu().numpy()
            np.add.at(sums, items, err[:, None])
        else:
            probs = torch.softmax(out, 1).float().cpu().numpy()
            for j, (i, p) in enumerate(zip(items.tolist(), batch["pos"].numpy().tolist())):
                buf = seg_buf.get(i)
                if buf is None:
                    buf = seg_buf[i] = np.zeros((k, *prep.shape), np.float32)
                buf[(slice(None), *ss.window(ss.positions[p]))] += probs[j]
                seg_left[i] -= 1
                if seg_left[i] == 0:
                    assert seg_counts is not None and arr[2] is not None
                    full = seg_buf.pop(i)
                    if keep_proba:
                        kept[i] = _normalised(full)
                    seg_counts[i] = M.segmentation_counts(arr[2][i], full.argmax(0), k)
        np.add.at(counts, items, 1)
    out_d: dict[str, Any] = {"loss": total_loss / max(n_samples, 1)}
    mean = sums / np.maximum(counts, 1)[:, None]
    if cfg.task == "classification":
        out_d["proba"] = mean
    elif cfg.task == "regression":
        out_d["pred"] = mean[:, 0] * prep.target_std + prep.target_mean
    elif cfg.task == "reconstruction":
        out_d["mse"] = mean[:, 0]
    else:
        out_d["counts"] = seg_counts
        if keep_proba:
            out_d["seg_proba"] = np.stack([kept[i] for i in range(n_img)]) if n_img else np.zeros((0, k))
            out_d["masks"] = arr[2]
    return out_d


def _normalised(buf: np.ndarray) -> np.ndarray:
    """Stitched class probabilities summed over overlapping samples, back to probabilities."""
    total = buf.sum(axis=0, keepdims=True)
    return buf / np.where(total > 0, total, 1.0)


def point_metrics(cfg: TrainConfig, prep: Preprocessing, res: Mapping[str, Any], items: Sequence[Item],
                  idx: np.ndarray | None = None, *, engine: str = "sklearn") -> dict[str, float]:
    """Metrics of evaluated outputs ``res`` against the items' truth (rows ``idx``)."""
    sel = np.arange(len(items)) if idx is None else idx
    if cfg.task == "classification":
        y = np.array([prep.classes.index(str(items[i].label)) for i in sel])
        return M.classification_metrics(y, res["proba"][sel], prep.classes, engine=engine)
    if cfg.task == "regression":
        y = np.array([float(items[i].label or "nan") for i in sel])
        return M.regression_metrics(y, res["pred"][sel], engine=engine)
    if cfg.task == "reconstruction":
        return {"mse": float(np.mean(res["mse"][sel]))}
    return M.segmentation_metrics(res["counts"][sel], prep.classes)


def prediction_rows(cfg: TrainConfig, prep: Preprocessing, res: Mapping[str, Any],
                    items: Sequence[Item]) -> tuple[list[str], list[list[Any]]]:
    """Header and rows of a predictions TSV (one row per image)."""
    head = ["participant_id", "session_id", "image"]
    rows: list[list[Any]] = []
    if cfg.task == "classification":
        head += ["true_label", "predicted_label", *[f"proba_{c}" for c in prep.classes]]
        for it, p in zip(items, res["proba"]):
            rows.append([it.participant_id, it.session_id, it.path, it.label, prep.classes[int(np.argmax(p))],
                         *map(float, p)])
    elif cfg.task == "regression":
        head += ["true_value", "predicted_value"]
        for it, p in zip(items, res["pred"]):
            rows.append([it.participant_id, it.session_id, it.path, it.label, float(p)])
    elif cfg.task == "reconstruction":
        head += ["mse"]
        for it, e in zip(items, res["mse"]):
            rows.append([it.participant_id, it.session_id, it.path, float(e)])
    else:
        head += ["mask", *[f"dice_{c}" for c in prep.classes]]
        for it, c in zip(items, res["counts"]):
            per = M.segmentation_metrics(c[None], prep.classes)
            rows.append([it.participant_id, it.session_id, it.path, it.mask,
                         *[per[f"dice_{k}"] for k in prep.classes]])
    return head, rows


def metrics_with_ci(cfg: TrainConfig, prep: Preprocessing, res: Mapping[str, Any], items: Sequence[Item],
                    *, seed: int) -> dict[str, dict[str, Any]]:
    point = point_metrics(cfg, prep, res, items)
    ci = M.bootstrap_ci(lambda idx: point_metrics(cfg, prep, res, items, idx, engine="numpy"),
                        [it.participant_id for it in items],
                        n_boot=cfg.bootstrap, seed=seed)
    return M.with_ci(point, ci)


def save_torch(obj: Any, path: Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_torch(path: Path, device: torch.device) -> Any:
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # a damaged file: say which (torch's own message runs to many lines)
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise InputError(path, f"cannot read the checkpoint ({type(err).__name__}: {first})",
                         expected="a file written by bidsaudit train") from None


def _better(value: float, best: float, direction: str) -> bool:
    if not math.isfinite(value):
        return False
    return value < best if direction == "min" else value > best


METRIC_COLUMNS = {
    "classification": ["accuracy", "balanced_accuracy", "sensitivity", "specificity", "ppv", "npv", "f1", "roc_auc"],
    "regression": ["mae", "rmse", "r2"],
    "reconstruction": ["mse"],
    "segmentation": ["dice", "iou"],
}


def train_run(fd: FoldData, cfg: TrainConfig, run_dir: Path, *, seed: int, device: torch.device, echo: Echo,
              progress: bool = True, config_hash: str = "",
              on_batch: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Train one (fold, seed) into ``run_dir``; continue from its checkpoint when there is one.

    ``on_batch(epoch, batch)`` is called after every training batch (tests use
    it to interrupt a run mid-epoch).

    Under torchrun (a process group is initialised) the model is wrapped in
    DistributedDataParallel and each rank trains on its DistributedSampler
    share; every rank evaluates the validation set with the same weights and
    buffers (rank 0's, broadcast after each epoch) so all take the same
    early-stopping decision, and only rank 0 writes files. Other ranks return
    ``{"fold", "seed", "metrics": {}}``.
    """
    main, world = rank() == 0, world_size()
    done = run_dir / "done.json"
    if done.is_file():
        result = read_json(done)
        echo(f"fold {fd.fold} seed {seed}: already complete")
        return dict(result)
    if main:
        write_json(run_dir / "preprocessing.json", fd.prep.to_dict())
    metric, direction = cfg.main_metric
    has_val = "validation" in fd.arrays
    train_arr = fd.arrays["train"]
    dims = 2 if cfg.mode == "slice" else 3
    augment = make_augmentation(segmentation=cfg.task == "segmentation", dims=dims) if cfg.augment else None
    train_ss = _sample_set(train_arr, cfg, augment=augment, seed=seed)
    seed_everything(seed)
    model = build_model(cfg.model, cfg.task, train_ss.sample_shape(), n_outputs(cfg, fd.prep), width=cfg.width)
    transferred = transfer_weights(model, cfg, fd.fold, device) if cfg.transfer_from else set()
    model.to(device)
    opt = torch.optim.Adam(param_groups(model, cfg, transferred), lr=cfg.lr, weight_decay=cfg.weight_decay)
    net: nn.Module = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    state: dict[str, Any] = {"epoch": 0, "history": [], "best_loss": math.inf, "best_loss_epoch": None,
                             "best_metric": math.inf if direction == "min" else -math.inf,
                             "best_metric_epoch": None, "bad_epochs": 0, "stopped_early": False}
    ckpt = run_dir / "checkpoint.pt"
    if ckpt.is_file():
        saved = load_torch(ckpt, device)
        if saved.get("config_hash") != config_hash:
            raise InputError(ckpt, "this checkpoint was written with other settings",
                             expected="the settings recorded in maps.json")
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        state = saved["state"]
        echo(f"fold {fd.fold} seed {seed}: resuming after epoch {state['epoch']}")
    n = math.ceil(len(train_ss) / world)  # samples per rank (DistributedSampler pads)
    drop_last = n > cfg.batch_size and n % cfg.batch_size == 1  # BatchNorm needs two samples per batch
    bar = _Bar(progress)
    try:
        while state["epoch"] < cfg.epochs and not state["stopped_early"]:
            epoch = state["epoch"]
            t0 = time.perf_counter()
            torch.manual_seed(mix_seed(seed, epoch))
            train_ss.set_epoch(epoch)
            g = torch.Generator()
            g.manual_seed(mix_seed(seed, epoch, 1))
            if world > 1:
                from torch.utils.data.distributed import DistributedSampler

                sampler = DistributedSampler(train_ss, num_replicas=world, rank=rank(), shuffle=True,
                                             seed=mix_seed(seed, 1))
                sampler.set_epoch(epoch)
                loader = DataLoader(train_ss, batch_size=cfg.batch_size, sampler=sampler,
                                    num_workers=cfg.num_workers, drop_last=drop_last,
                                    pin_memory=device.type == "cuda")
            else:
                loader = DataLoader(train_ss, batch_size=cfg.batch_size, shuffle=True, generator=g,
                                    num_workers=cfg.num_workers, drop_last=drop_last,
                                    pin_memory=device.type == "cuda")
            net.train()
            _freeze_norms(model, cfg)
            task_id = bar.task(f"fold {fd.fold} seed {seed} epoch {epoch + 1}/{cfg.epochs}", len(loader))
            total, count = 0.0, 0
            for b_i, batch in enumerate(loader):
                b = _to(batch, device)
                opt.zero_grad(set_to_none=True)
                loss = _loss(cfg, net(b["image"]), b)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(b["image"])
                count += len(b["image"])
                bar.advance(task_id)
                if on_batch is not None:
                    on_batch(epoch, b_i)
            bar.done(task_id)
            if world > 1:
                total, count = sync_epoch(model, total, count, device)
            row: dict[str, Any] = {"epoch": epoch + 1, "train_loss": total / max(count, 1)}
            if has_val:
                res = evaluate(model, fd.arrays["validation"], cfg, fd.prep, device)
                row["validation_loss"] = res["loss"]
                pm = point_metrics(cfg, fd.prep, res, fd.items["validation"])
                for m in METRIC_COLUMNS[cfg.task]:
                    row[f"validation_{m}"] = pm.get(m, math.nan)
                vloss, vmetric = res["loss"], pm.get(metric, math.nan)
            else:
                vloss, vmetric = row["train_loss"], math.nan
            row["seconds"] = time.perf_counter() - t0
            if _better(vloss, state["best_loss"], "min"):
                state["best_loss"], state["best_loss_epoch"] = vloss, epoch + 1
                state["bad_epochs"] = 0
                if main:
                    save_torch({"model": model.state_dict(), "epoch": epoch + 1}, run_dir / "best-loss" / "model.pt")
            else:
                state["bad_epochs"] += 1
            if not has_val or _better(vmetric, state["best_metric"], direction) or state["best_metric_epoch"] is None:
                if math.isfinite(vmetric):
                    state["best_metric"] = vmetric
                state["best_metric_epoch"] = epoch + 1
                if main:
                    save_torch({"model": model.state_dict(), "epoch": epoch + 1},
                                run_dir / f"best-{metric}" / "model.pt")
            state["history"].append(row)
            state["epoch"] = epoch + 1
            if has_val and state["bad_epochs"] >= cfg.patience:
                state["stopped_early"] = True
            if world > 1:  # rank 0 decides, so that no rank waits for a batch that never comes
                flag = torch.tensor([int(state["stopped_early"])], device=device)
                torch.distributed.broadcast(flag, 0)
                state["stopped_early"] = bool(flag.item())
            if not main:
                continue
            cols = ["epoch", "train_loss", *([f"validation_{c}" for c in ["loss", *METRIC_COLUMNS[cfg.task]]]
                                            if has_val else []), "seconds"]
            write_tsv(run_dir / "metrics.tsv", cols, [[r.get(c) for c in cols] for r in state["history"]])
            save_torch({"model": model.state_dict(), "optimizer": opt.state_dict(), "state": state,
                         "config_hash": config_hash}, ckpt)
            echo(_epoch_line(fd.fold, seed, cfg, row, metric, state))
    finally:
        bar.close()
    if not main:
        barrier()
        return {"fold": fd.fold, "seed": seed, "metrics": {}}
    try:
        return _final(fd, cfg, run_dir, seed=seed, device=device, model=model, state=state, echo=echo)
    finally:
        barrier()


def transfer_source(cfg: TrainConfig, fold: int) -> Path:
    """The weights a run of ``fold`` starts from: the source folder's run of that fold (else its first), first seed."""
    assert cfg.transfer_from is not None
    src = MapsFolder.open(Path(cfg.transfer_from))
    folds = list(src.meta.get("folds") or [0])
    f = fold if fold in folds else folds[0]
    return src.run_dir(f, (src.meta.get("seeds") or [0])[0]) / f"best-{src.selection_name()}" / "model.pt"


def transfer_weights(model: nn.Module, cfg: TrainConfig, fold: int, device: torch.device) -> set[str]:
    """Copy every tensor of the source model whose name and shape match into ``model``; the parameter names copied.

    Parameters of a frozen part (``cfg.freeze``) stop requiring gradients.

    Raises
    ------
    InputError
        A damaged source, or nothing that fits this model.
    """
    path = transfer_source(cfg, fold)
    saved = load_torch(path, device)
    src = saved.get("model") if isinstance(saved, dict) else None
    if not isinstance(src, dict):
        raise InputError(path, "holds no model weights", field="--transfer-from")
    own = model.state_dict()
    fit = {k: v for k, v in src.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    params = {n for n, _ in model.named_parameters()}
    if not fit.keys() & params:
        raise InputError(path, f"no weight of the source model fits this {cfg.model} model (other model, width "
                         "or input shape?)", field="--transfer-from",
                         expected="a model folder of the same model and width")
    own.update(fit)
    model.load_state_dict(own)
    frozen = {"none": (), "encoder": ("encoder",), "decoder": ("decoder",), "both": ("encoder", "decoder")}[cfg.freeze]
    for n, p in model.named_parameters():
        if part_of(cfg.model, n) in frozen:
            p.requires_grad_(False)
    return set(fit) & params


def param_groups(model: nn.Module, cfg: TrainConfig, transferred: set[str]) -> list[dict[str, Any]]:
    """Optimiser groups: new parameters at ``lr``, transferred ones at ``transfer_lr``; frozen ones left out."""
    new = [p for n, p in model.named_parameters() if p.requires_grad and n not in transferred]
    old = [p for n, p in model.named_parameters() if p.requires_grad and n in transferred]
    groups = []
    if new:
        groups.append({"params": new, "lr": cfg.lr, "name": "new"})
    if old:
        groups.append({"params": old, "lr": cfg.transfer_lr if cfg.transfer_lr is not None else cfg.lr,
                       "name": "transferred"})
    if not groups:
        raise InputError(None, "every parameter is frozen: nothing to train", field="--freeze",
                         expected="encoder, decoder or none (both leaves nothing to train here)")
    return groups


def _freeze_norms(model: nn.Module, cfg: TrainConfig) -> None:
    """A frozen part's normalisation layers keep their running statistics (eval mode) while the rest trains."""
    if cfg.freeze == "none" or not cfg.transfer_from:
        return
    frozen = ("encoder", "decoder") if cfg.freeze == "both" else (cfg.freeze,)
    for name, mod in model.named_modules():
        if name and isinstance(mod, nn.modules.batchnorm._BatchNorm) and part_of(cfg.model, name) in frozen:
            mod.eval()


def _epoch_line(fold: int, seed: int, cfg: TrainConfig, row: Mapping[str, Any], metric: str,
                state: Mapping[str, Any]) -> str:
    parts = [f"fold {fold} seed {seed} epoch {row['epoch']}/{cfg.epochs}: train loss {row['train_loss']:.4f}"]
    if "validation_loss" in row:
        parts.append(f"validation loss {row['validation_loss']:.4f}, {metric} {row.get(f'validation_{metric}', math.nan):.3f}")
    parts.append(f"({row['seconds']:.1f} s)")
    if state.get("stopped_early"):
        parts.append(f"- early stop, best epoch {state['best_loss_epoch']}")
    return " ".join(parts)


def _final(fd: FoldData, cfg: TrainConfig, run_dir: Path, *, seed: int, device: torch.device, model: nn.Module,
           state: Mapping[str, Any], echo: Echo) -> dict[str, Any]:
    """Evaluate the best models on every other split; write predictions, metrics and ``done.json``."""
    metric, _ = cfg.main_metric
    result: dict[str, Any] = {"fold": fd.fold, "seed": seed, "epochs_run": state["epoch"],
                              "stopped_early": state["stopped_early"], "best_loss_epoch": state["best_loss_epoch"],
                              "best_metric_epoch": state["best_metric_epoch"], "metrics": {}, "selections": {}}
    for sel in ("loss", metric):
        saved = load_torch(run_dir / f"best-{sel}" / "model.pt", device)
        model.load_state_dict(saved["model"])
        per_split = {}
        for split, items in fd.items.items():
            if split == "train" or not items:
                continue
            res = evaluate(model, fd.arrays[split], cfg, fd.prep, device)
            head, rows = prediction_rows(cfg, fd.prep, res, items)
            write_tsv(run_dir / "predictions" / f"{split}_best-{sel}.tsv", head, rows)
            ms = metrics_with_ci(cfg, fd.prep, res, items, seed=seed)
            ms_out = {"loss": {"value": M._num(res["loss"]), "ci_low": None, "ci_high": None}, **ms}
            write_json(run_dir / "metrics" / f"{split}_best-{sel}.json",
                       {"split": split, "fold": fd.fold, "seed": seed, "selection": f"best-{sel}",
                        "epoch": saved.get("epoch"), "n_images": len(items),
                        "n_participants": len({it.participant_id for it in items}), "metrics": ms_out})
            per_split[split] = ms_out
        result["selections"][f"best-{sel}"] = per_split
    result["metrics"] = result["selections"][f"best-{'loss' if cfg.selection == 'loss' else metric}"]
    write_json(run_dir / "done.json", result)
    return result


def read_metrics_tsv(path: Path) -> list[dict[str, str]]:
    return read_tsv(path)
