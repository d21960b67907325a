"""The training commands of the ``bidsaudit`` command line: train, predict, export and the tensor cache.

Part of the program's entry point (with :mod:`audit.cli`, which registers
these commands, and :mod:`audit.clibase`): torch and the trainer are imported
inside the commands, so ``bidsaudit --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from audit.clibase import reported_errors

__all__ = ["cache_app", "export", "predict", "train"]

def train(
    dataset: Annotated[Path, typer.Argument(help="The BIDS dataset folder the certificate vouches for.")],
    splits: Annotated[Path, typer.Option("--splits", help="The audited split files.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The model folder (MAPS) to write.")],
    certificate: Annotated[Optional[Path], typer.Option("--certificate", help="Default: "
                                                        "bidsaudit-certificate.json beside the split files.")]
    = None,
    task: Annotated[Optional[str], typer.Option("--task", help="classification, regression, reconstruction or "
                                                "segmentation.")] = None,
    label: Annotated[Optional[str], typer.Option("--label", help="Target column.")] = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs", min=1, help="Epochs per run.")] = None,
    model: Annotated[Optional[str], typer.Option("--model", help="conv5fc3, resnet or unet.")] = None,
    mode: Annotated[Optional[str], typer.Option("--mode", help="image, slice or patch.")] = None,
    seeds: Annotated[Optional[int], typer.Option("--seeds", min=1, help="Repeat with N seeds (mean ± sd).")]
    = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", min=1)] = None,
    lr: Annotated[Optional[float], typer.Option("--lr", help="Learning rate (default 1e-3, Adam).")] = None,
    verify: Annotated[str, typer.Option("--verify", help="cache (size, mtime, inode) or full (re-hash every "
                                        "file).")] = "cache",
    require_signature: Annotated[bool, typer.Option("--require-signature", help="Refuse a certificate without a "
                                                    "valid BIDSAUDIT_SIGNING_KEY signature.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run in --output.")] = False,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
    width: Annotated[Optional[int], typer.Option("--width", min=1, help="Channels of the first layer.")] = None,
    transfer_from: Annotated[Optional[Path], typer.Option("--transfer-from", help="A model folder whose weights "
                                                          "start this model (its participants must not be in this "
                                                          "split's validation or test sets).")] = None,
    freeze: Annotated[Optional[str], typer.Option("--freeze", help="With --transfer-from: encoder, decoder, both "
                                                  "or none.")] = None,
    transfer_lr: Annotated[Optional[float], typer.Option("--transfer-lr", help="Learning rate of the transferred "
                                                         "parameters (default --lr).")] = None,
    learning_curve: Annotated[Optional[str], typer.Option("--learning-curve", help="Increasing fractions of the "
                                                          "training participants, e.g. 0.25,0.5,0.75,1.0: the "
                                                          "validation metric against training-set size.")] = None,
    nproc_per_node: Annotated[Optional[int], typer.Option("--nproc-per-node", min=1, help="Train on N local "
                                                          "processes (torchrun, DistributedDataParallel).")] = None,
    cache_dir: Annotated[Optional[Path], typer.Option("--cache-dir", help="The tensor cache (default: the user "
                                                      "cache folder; 'bidsaudit cache info' shows it).")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="No tensor cache: decode images when needed.")]
    = False,
    cache_dtype: Annotated[str, typer.Option("--cache-dtype", help="float32 or float16 (preprocessed images in "
                                             "the cache).")] = "float32",
    max_memory: Annotated[Optional[str], typer.Option("--max-memory", help="Volumes held in memory, e.g. 512M or "
                                                      "2G (default 1G); the rest is read memory-mapped.")] = None,
    permutation_test: Annotated[int, typer.Option("--permutation-test", min=0, help="N shuffled-label runs after "
                                                  "training: the null distribution, the p-value, and exit 1 "
                                                  "(leakage.pipeline) when they score clearly above chance.")] = 0,
) -> None:
    """Train a PyTorch model on an audited split, and nothing else (the gate cannot be bypassed).

    Under torchrun (WORLD_SIZE > 1) it trains with DistributedDataParallel;
    every rank runs the gate and rank 0 writes the model folder.
    """
    with reported_errors():  # torch missing: the train extra is named (exit 2)
        from train.api import parse_fractions, train_model
        from train.launch import launch

        curve = parse_fractions(learning_curve) if learning_curve is not None else None
        if nproc_per_node is not None and nproc_per_node > 1:
            argv = ["train", str(dataset), "--splits", str(splits), "--output", str(output), "--verify", verify,
                    "--device", device]
            for flag, value in (("--certificate", certificate), ("--task", task), ("--label", label),
                                ("--epochs", epochs), ("--model", model), ("--mode", mode), ("--seeds", seeds),
                                ("--batch-size", batch_size), ("--lr", lr), ("--width", width),
                                ("--transfer-from", transfer_from), ("--freeze", freeze),
                                ("--transfer-lr", transfer_lr), ("--learning-curve", learning_curve),
                                ("--cache-dir", cache_dir), ("--cache-dtype", cache_dtype),
                                ("--max-memory", max_memory),

                                ("--permutation-test", permutation_test or None)):
                if value is not None:
                    argv += [flag, str(value)]
            argv += ["--require-signature"] * require_signature + ["--resume"] * resume + ["--no-cache"] * no_cache
            raise typer.Exit(launch(nproc_per_node, argv, echo=lambda s: typer.echo(s, err=True)))
        summary = train_model(dataset, splits, output, certificate=certificate, task=task, label=label,
                              epochs=epochs, model=model, mode=mode, seeds=seeds, batch_size=batch_size, lr=lr,
                              verify=verify, require_signature=require_signature, resume=resume, device=device,
                              width=width, transfer_from=transfer_from, freeze=freeze, transfer_lr=transfer_lr,
                              learning_curve=curve, cache_dir=cache_dir, cache=not no_cache,
                              cache_dtype=cache_dtype, max_memory=max_memory, echo=typer.echo,
                              permutation_test=permutation_test)
        if summary.rank == 0:  # under torchrun the other ranks say nothing
            for line in summary.lines():
                typer.echo(line)
            typer.echo(f"Model folder: {summary.maps}")
    if any(f.get("severity") == "error" for f in summary.findings):
        raise typer.Exit(1)  # leakage.pipeline: the shuffled-label runs scored above chance


def predict(
    maps: Annotated[list[Path], typer.Argument(help="One model folder, or several (an ensemble).")],
    data: Annotated[Path, typer.Option("--data", help="The BIDS dataset to predict on.")],
    split_file: Annotated[Path, typer.Option("--split", help="The participants to predict (a split TSV).")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Where to write predictions.")] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
) -> None:
    """Predict; refuses participants that trained the model(s) or their pretraining sources."""
    with reported_errors():
        from train.api import predict as run_predict

        summary = run_predict(maps, data, split_file, output=output, device=device, echo=typer.echo)
        for line in summary.lines():
            typer.echo(line)


def export(
    maps: Annotated[Path, typer.Argument(help="A complete model folder written by 'bidsaudit train'.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The ONNX file to write (*.onnx).")],
    fold: Annotated[Optional[int], typer.Option("--fold", help="Which fold's run (default: the first).")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Which seed's run (default: the first).")] = None,
    selection: Annotated[Optional[str], typer.Option("--selection", help="loss or metric: which best model "
                                                     "(default: the folder's).")] = None,
    opset: Annotated[int, typer.Option("--opset", min=7, help="ONNX opset version.")] = 17,
    tolerance: Annotated[float, typer.Option("--tolerance", help="Largest absolute difference allowed between "
                                             "onnxruntime's and PyTorch's outputs.")] = 1e-4,
    info_sheet: Annotated[Optional[Path], typer.Option("--info-sheet", help="Also write the model info sheet "
                                                       "(FILE.md, or .html), filled from the model folder.")] = None,
) -> None:
    """Export a trained model to ONNX, checked against PyTorch with onnxruntime."""
    with reported_errors():
        from train.export import export_onnx
        from train.infosheet import info_sheet as sheet_sections

        if info_sheet is not None:
            sheet_sections(maps)  # an incomplete or foreign folder: exit 2 before the export
        rep = export_onnx(maps, output, fold=fold, seed=seed, selection=selection, opset=opset, tolerance=tolerance)
        typer.echo(f"wrote {output} (fold {rep['fold']}, seed {rep['seed']}, {rep['weights']}); onnxruntime vs "
                   f"PyTorch max abs diff {rep['check']['max_abs_diff']:.3g} (tolerance {tolerance:g}); "
                   f"report {output}.json")
        if info_sheet is not None:
            from train.infosheet import write_info_sheet

            write_info_sheet(maps, info_sheet)
            typer.echo(f"wrote the model info sheet {info_sheet}")


cache_app = typer.Typer(help="The trainer's tensor cache: where it is, how big, and emptying it.",
                        no_args_is_help=True, rich_markup_mode=None)
CacheDirOpt = Annotated[Optional[Path], typer.Option("--cache-dir", help="The cache folder (default: the one "
                                                     "'bidsaudit train' uses).")]


@cache_app.command("info")
def cache_info(cache_dir: CacheDirOpt = None) -> None:
    """Show where the tensor cache is and how much it holds."""
    from train.tensorcache import cache_info as info

    with reported_errors():
        got = info(cache_dir)
        typer.echo(f"tensor cache {got['path']}: {got['entries']} entries, {got['bytes'] / 2**20:.1f} MiB"
                   + (f" ({got['partial']} partial writes left by interrupted runs)" if got["partial"] else ""))


@cache_app.command("clean")
def cache_clean(cache_dir: CacheDirOpt = None) -> None:
    """Remove every tensor cache entry (other files in the folder are left alone)."""
    from train.tensorcache import clean_cache

    with reported_errors():
        got = clean_cache(cache_dir)
        typer.echo(f"removed {got['removed']} entries ({got['bytes'] / 2**20:.1f} MiB) from {got['path']}")
