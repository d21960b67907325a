"""The library calls behind ``bidsaudit train`` and ``bidsaudit predict`` (one call each).

Both raise :class:`audit.errors.InputError` for input that cannot be used
(exit 2) and :class:`train.gate.Refused` (its subclasses
:class:`~train.gate.GateClosed` and :class:`~train.predict.LeakageRefused`)
when they ran and refuse (exit 1). torch is imported only after the gate has
opened. :func:`train_model` opens the gate (on every rank under torchrun) and
hands a :class:`~train.config.TrainConfig` to :func:`train.run.train_gated`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from audit.errors import InputError
from train.config import (
    TrainConfig,
    check_choices,
    gate_label,
    given_settings,
    parse_fractions,
)
from train.distributed import agree, init_distributed, world_size_env
from train.gate import VERIFY_MODES, GateClosed, open_gate
from train.predict import (
    predict as _predict,  # torch is imported inside, after the leak check
)
from train.run import RunOptions, TrainSummary, train_gated
from train.tensorcache import CACHE_DTYPES, DEFAULT_MAX_MEMORY, parse_size

__all__ = ["TrainConfig", "TrainSummary", "demo_training", "parse_fractions", "predict", "train_model"]

Echo = Callable[[str], None]


def train_model(dataset: str | os.PathLike[str], splits: str | os.PathLike[str], output: str | os.PathLike[str],
                config: TrainConfig | None = None, *, certificate: str | os.PathLike[str] | None = None,
                verify: str = "cache", require_signature: bool = False, resume: bool = False,
                device: str = "auto", cache_dir: str | os.PathLike[str] | None = None, cache: bool = True,
                cache_dtype: str = "float32", max_memory: int | str | None = None, threads: int | None = None,
                progress: bool = True, echo: Echo = print, _on_batch: Callable[[int, int], None] | None = None,
                permutation_test: int = 0, **settings: Any) -> TrainSummary:
    """Verify the certificate, then train a model into the model folder ``output``.

    The hyperparameters are a :class:`~train.config.TrainConfig`: pass one as
    ``config``, or name its fields as keywords (``epochs=5, width=4``; a
    keyword overrides the field of ``config``). A keyword left at ``None``
    takes the default (or, with ``resume``, the value the folder was started
    with; a value given that differs from that one is an error; a ``config``
    given with ``resume`` must equal the stored one field by field).

    Parameters
    ----------
    dataset, splits : path-like
        The BIDS dataset and the split input the certificate vouches for.
    output : path-like
        New model folder (or the folder to continue with ``resume``).
    config : TrainConfig, optional
        Every hyperparameter (task, label, epochs, model, seeds, seed, mode,
        folds, batch_size, lr, patience, width, shape, resize, norm, augment,
        suffix, slice_axis, slice_discard, patch_size, patch_stride,
        weight_decay, selection, num_workers, bootstrap, transfer_from,
        freeze, transfer_lr, learning_curve): see
        :class:`train.config.TrainConfig`.
    certificate : path-like, optional
        Default: ``bidsaudit-certificate.json`` beside the split files.
    verify : {"cache", "full"}
        How the gate re-hashes dataset files (split files are always re-read).
    require_signature : bool
        Refuse a certificate without a valid signature.
    resume : bool
        Continue an interrupted run in ``output``.
    device : str
        ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
    cache_dir : path-like, optional
        The content-addressed tensor cache (default
        :func:`train.tensorcache.default_cache_dir`): each image decoded and
        preprocessed once, read memory-mapped, verified against its content
        hash; ``bidsaudit cache clean`` empties it.
    cache : bool
        ``False`` (``--no-cache``): no cache; images are decoded when needed
        and not held in memory.
    cache_dtype : {"float32", "float16"}
        How preprocessed images are stored in the cache.
    max_memory : int or str, optional
        Bytes of volumes held in memory (``"2G"``, ``"512M"``; default
        ``1G``): the rest is read from the cache's memory maps (or decoded again).
    threads : int, optional
        torch's CPU threads for this call (default: torch's own choice); on a
        small shared machine 1 is often fastest.
    permutation_test : int
        N shuffled-label runs after training (:mod:`train.permutation`):
        ``permutation_test.tsv``/``.json`` in the model folder; a leaking
        pipeline puts a ``leakage.pipeline`` finding into the summary's
        ``findings`` (the CLI exits 1).
    **settings
        Fields of :class:`~train.config.TrainConfig` by name. Among them:
        ``transfer_from`` (a complete model folder whose weights start this
        one; its training, validation and pretraining participants must not
        be in this split's evaluation sets: ``leakage.pretrain_overlap``,
        exit 1), ``freeze`` and ``transfer_lr`` (with ``transfer_from``),
        ``learning_curve`` (increasing fractions in (0, 1]: nested,
        label-stratified, seeded subject subsets of each fold's training set,
        ``learning_curve.tsv``/``.json``), ``selection`` (``loss`` or
        ``metric``: the best model that predictions and the summary use).

    Raises
    ------
    InputError
        Bad arguments, a missing or malformed certificate, dataset, split
        input or model folder; torch not installed (exit 2).
    GateClosed
        The certificate does not match the dataset and split files (exit 1).
    Refused
        A participant in both train and validation of a fold (exit 1).
    TypeError
        A keyword that is not a field of :class:`~train.config.TrainConfig`.
    """
    run = RunOptions(resume=resume, device=device, cache_dir=cache_dir, cache=cache, cache_dtype=cache_dtype,
                     max_memory=DEFAULT_MAX_MEMORY if max_memory is None else max_memory, threads=threads,
                     progress=progress,
                     echo=echo, on_batch=_on_batch, permutation_test=permutation_test)
    if verify not in VERIFY_MODES:
        raise InputError(None, field="--verify", expected=" or ".join(VERIFY_MODES), got=repr(verify))
    if cache_dtype not in CACHE_DTYPES:
        raise InputError(None, field="--cache-dtype", expected=" or ".join(CACHE_DTYPES), got=repr(cache_dtype))
    parse_size(run.max_memory)
    given = given_settings(config, settings)
    check_choices(given)
    label = gate_label(given, resume=resume)

    if world_size_env() <= 1:
        # the gate: before anything else is read, decoded or imported
        gate = open_gate(dataset, splits, certificate=certificate, label=label, verify=verify,
                         require_signature=require_signature)
        return train_gated(gate, output, given, run)

    # torchrun: every rank runs the gate; if any rank refuses, every rank stops with the reason
    failure: BaseException | None = None
    try:
        gate = open_gate(dataset, splits, certificate=certificate, label=label, verify=verify,
                         require_signature=require_signature)
    except Exception as err:  # a refusal, bad input or anything else: agree() stops every rank with it
        failure = err
    dist_mod = init_distributed(device)
    try:
        agree(failure, "the gate")
        if dist_mod.get_rank() != 0:
            run = dataclasses.replace(run, echo=_silent, progress=False)
        summary = train_gated(gate, output, given, run)
        dist_mod.barrier()  # leave together: a rank that exits while another still talks to it aborts gloo
        return summary
    finally:
        if dist_mod.is_initialized():
            dist_mod.destroy_process_group()


def _silent(_: str) -> None:
    return None


def predict(maps_dirs: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
            data: str | os.PathLike[str], split_file: str | os.PathLike[str], *,
            output: str | os.PathLike[str] | None = None, label: str | None = None, selection: str | None = None,
            device: str = "auto", bootstrap: int = 1000, threads: int | None = None, echo: Echo = print) -> Any:
    """Predict with one model folder or an ensemble of several; refuse any participant seen in training.

    See :func:`train.predict.predict`.
    """
    dirs = [maps_dirs] if isinstance(maps_dirs, (str, os.PathLike)) else list(maps_dirs)
    return _predict(dirs, data, split_file, output=output, label=label, selection=selection, device=device,
                    bootstrap=bootstrap, threads=threads, echo=echo)


def demo_training(directory: str | os.PathLike[str], *, epochs: int = 5, permutations: int = 3,
                  echo: Echo = print) -> bool:
    """The demo's training step: train on the audited split, then show the leaky split refused.

    Expects what :func:`audit.demo.run_demo` wrote in ``directory``
    (``dataset/``, ``splits/`` with its certificate, ``splits-leaky/``).
    Returns True when everything behaved as expected (training ran, or torch
    is not installed, and its ``permutations`` shuffled-label runs found no
    leak; the leaky split was refused).
    """
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
        echo(f"      with a permutation test: {permutations} more runs on shuffled labels must score at chance")
        summary = train_model(dataset, clean, directory / "maps", epochs=epochs, width=4, batch_size=4, lr=3e-3,
                              augment=True, bootstrap=200, device="cpu", threads=1, progress=False,
                              permutation_test=permutations, echo=lambda s: echo("      " + s))
        for line in summary.lines():
            echo("      " + line)
        if summary.findings:  # a clean, certified split must not leak through the pipeline
            echo("      unexpected: the shuffled-label runs of the clean demo scored above chance")
            ok = False
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
