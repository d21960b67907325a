"""The Python API: one function per command, and the library entry points behind the CLI.

For researchers (documented in ``docs/python.md``, doctested there):
:func:`validate`, :func:`audit`, :func:`readiness` and :func:`split` take the
options of the matching ``bidsaudit`` command as keyword arguments, with the
same names (``--no-validator`` is ``no_validator=``) and the same defaults;
they print nothing and write nothing but what the command writes besides its
reports (the certificate of a passing audit, the split files). They return
a :class:`~audit.result.Result`, which shows itself in a notebook
(``split`` returns a :class:`SplitOutput`). A dataset is a folder (``str``
or path) or a pybids ``bids.BIDSLayout``, whose root is audited. Errors are
the one tree of :mod:`audit.errors`: bad input is an
:class:`~audit.errors.InputError`, a validator that cannot run a
:class:`~audit.errors.ValidatorError`; a finding is never an exception.

For front ends (the CLI, the service, ``train/``): :func:`validate_dataset`,
:func:`audit_splits` and :func:`readiness_dataset` take a ready
:class:`~audit.config.AuditOptions`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
import platform
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from audit import __version__
from audit import (
    certificate as certificates,  # looked up at call time: tests replace write_certificate
)
from audit.bidsindex import index_dataset
from audit.checks.content import PICTURED, THUMBNAIL_PAIRS
from audit.config import load_options
from audit.context import AuditContext, AuditOptions
from audit.coverage import coverage_for
from audit.disjointness import disjointness
from audit.errors import InputError, did_you_mean
from audit.expectations import load_suites
from audit.images.thumbnails import with_pair_pictures
from audit.outputs.distributions import split_distributions
from audit.policy import apply_policy, certificate_refusal
from audit.readiness import readiness_for
from audit.result import Result
from audit.runner import build_result, run_checks
from audit.scanner import from_sidecars
from audit.splits import SplitPlan, SplitResult, read_splits, split_dataset
from audit.splits.sitefolds import split_by_site
from audit.validator import ValidatorRun, run_validator
from audit.validatorsharded import should_shard, validate_with_shards
from audit.validatorshards import dataset_subjects

__all__ = [
    "AUDIT_FAMILIES",
    "SplitOutput",
    "VALIDATE_FAMILIES",
    "audit",
    "audit_splits",
    "certify",
    "dataset_block",
    "dataset_path",
    "dataset_summary",
    "overlap_matrices",
    "read_pretrain",
    "readiness",
    "readiness_dataset",
    "reproduce_block",
    "split",
    "splits_block",
    "validate",
    "validate_dataset",
]

PathLike = str | os.PathLike[str]


# --------------------------------------------------------------------------- the Python API
def validate(dataset: Any, *, ignore_nifti_headers: bool = False, validator_config: PathLike | None = None,
             no_validator: bool = False, workers: int | None = None, shard_size: int | None = None,
             jobs: int | None = None, validator_memory: int | None = None, scheduler: str | None = None,
             config: PathLike | None = None, expectations: Sequence[PathLike] | None = None) -> Result:
    """BIDS validity (the official validator) plus the checks that need no split: ``bidsaudit validate``.

    Parameters
    ----------
    dataset : str, path or bids.BIDSLayout
        The dataset folder (a layout: its root).
    ignore_nifti_headers : bool
        Images are placeholders: do not read their content.
    validator_config : path, optional
        The official validator's JSON configuration (ignored codes).
    no_validator : bool
        Skip the official validator.
    workers : int, optional
        Image workers (default: all cores).
    shard_size, jobs, validator_memory : int, optional
        The validator in shards of ``shard_size`` subjects (``0``: one run;
        default: shards of 1,000 above 1,000 subjects), ``jobs`` at once, each
        within ``validator_memory`` MiB (``docs/validation.md``).
    scheduler : str, optional
        A dask.distributed scheduler address for the validator's shards and the image pass.
    config : path, optional
        A ``bidsaudit.toml`` (default: found beside the dataset).
    expectations : list of paths, optional
        Great Expectations suites (the ``expectations`` extra).

    Returns
    -------
    Result

    Raises
    ------
    InputError
        No such dataset, no ``dataset_description.json``, a bad option or file.
    ValidatorError
        The official validator could not run (``no_validator=True`` skips it).
    """
    root = dataset_path(dataset)
    _check_validator_config(validator_config)
    options = _options(root, None, config, ignore_nifti_headers=ignore_nifti_headers,
                       validator_config=None if validator_config is None else Path(validator_config),
                       run_validator=not no_validator, workers=workers, expectations=_suites(expectations),
                       shard_size=shard_size, validator_jobs=jobs, validator_memory_mib=validator_memory,
                       scheduler=scheduler)
    return validate_dataset(root, options)


def audit(dataset: Any, splits: PathLike, *, label: str | None = None, site: str | None = None,
          group: str | None = None, pretrain: PathLike | None = None, ignore_nifti_headers: bool = False,
          validator_config: PathLike | None = None, no_validator: bool = False, workers: int | None = None,
          scheduler: str | None = None, shard_size: int | None = None, jobs: int | None = None,
          validator_memory: int | None = None, id_pattern: str | None = None, path_column: str | None = None,
          certificate: PathLike | None = None, no_certificate: bool = False, config: PathLike | None = None,
          expectations: Sequence[PathLike] | None = None, out_dir: PathLike = "bidsaudit-reports") -> Result:
    """Leakage, split integrity, confounds, shift and readiness of split files: ``bidsaudit audit``.

    Parameters
    ----------
    dataset : str, path, bids.BIDSLayout or None
        The dataset (``None``: a reviewer's audit of split files alone).
    splits : path
        A folder of split TSV/CSV files, one table with a ``split`` column,
        a ClinicaDL ``split-N/`` layout or nnU-Net's ``splits_final.json``.
    label, site, group : str, optional
        Columns: the task's label (default ``diagnosis`` if present), the
        site (default: scanners from the sidecars), related participants.
    pretrain : path, optional
        Participants used for pretraining (any split format or a model folder).
    id_pattern, path_column : str, optional
        For split files that list image paths (MONAI datalists, path
        tables): a regular expression whose first group is the participant
        id, and the column (or datalist key) holding the paths.
    certificate : path, optional
        Where the certificate of a passing audit goes (default: beside the
        split files; without a dataset, ``out_dir``: a reviewer's audit
        writes nothing into the split files' folder); ``no_certificate=True``
        writes none, and so does a limited pass that the configuration's
        ``[certificate] limited_pass`` policy refuses. The path written is
        ``result.attachments["certificate"]`` (``None`` when none was);
        ``result.attachments["certificate_note"]`` says why none was.
    ignore_nifti_headers, validator_config, no_validator, workers, shard_size, jobs, validator_memory, config, expectations
        As for :func:`validate`.
    scheduler : str, optional
        A dask.distributed scheduler address for the image pass and the validator's shards.

    Returns
    -------
    Result

    Raises
    ------
    InputError
        Unreadable or ambiguous split files, a column that is not there (with
        the nearest name), an explicit certificate path that cannot be written.
    """
    root = None if dataset is None else dataset_path(dataset)
    _check_validator_config(validator_config)
    options = _options(root, Path(splits), config, label=label, site=site, group=group,
                       pretrain=None if pretrain is None else str(pretrain),
                       ignore_nifti_headers=ignore_nifti_headers,
                       validator_config=None if validator_config is None else Path(validator_config),
                       run_validator=not no_validator, workers=workers, scheduler=scheduler,
                       id_pattern=id_pattern, path_column=path_column, expectations=_suites(expectations),
                       shard_size=shard_size, validator_jobs=jobs, validator_memory_mib=validator_memory)
    target = certificates.certificate_target(Path(splits), None if certificate is None else Path(certificate),
                                             reviewer=root is None, out_dir=Path(out_dir))
    result = audit_splits(root, splits, options)
    written: str | None = None
    note: str | None = None
    refusal = None if no_certificate else certificate_refusal(result.status, result.coverage, options.config)
    if result.status == "pass" and refusal is not None:
        note = f"Certificate not written: {refusal}"
    elif result.status == "pass" and not no_certificate:
        try:
            written = str(certify(result, options, splits, target))
        except OSError as err:
            if certificate is not None:  # asked for: not writing it is a failure to run, as in the CLI
                raise InputError(certificate, f"cannot write the certificate: {err.strerror or err}") from None
            note = (f"Certificate not written: cannot write beside the split files ({err.strerror or err}); "
                    "give certificate=PATH")
    return dataclasses.replace(result, attachments={**result.attachments, "certificate": written,
                                                    "certificate_note": note})


def readiness(dataset: Any, *, label: str | None = None, site: str | None = None,
              ignore_nifti_headers: bool = False, no_validator: bool = False, config: PathLike | None = None,
              expectations: Sequence[PathLike] | None = None) -> Result:
    """Data readiness score (0-100) and level for a learning task on ``label``: ``bidsaudit readiness``.

    ``label`` defaults to ``diagnosis`` (or the configuration's column);
    the other options are those of :func:`validate`. Raises
    :class:`~audit.errors.InputError` when ``participants.tsv`` has no such
    column (naming the nearest one).
    """
    root = dataset_path(dataset)
    options = _options(root, None, config, label=label or "diagnosis", site=site,
                       ignore_nifti_headers=ignore_nifti_headers, run_validator=not no_validator,
                       expectations=_suites(expectations))
    return readiness_dataset(root, options)


class SplitOutput(NamedTuple):
    """What :func:`split` made: the split, the folder written and every file in it (unpacks as a tuple)."""

    split: SplitResult
    folder: Path
    files: list[Path]


def split(dataset: Any, *, label: str = "diagnosis", output: PathLike = "splits", group: str | None = None,
          test_size: float = 0.2, val_size: float = 0.2, folds: int = 0, seed: int = 0,
          balance: str | Sequence[str] = "age,sex,site", layout: str = "both",
          leave_site_out: bool = False) -> SplitOutput:
    """Write leak-free, stratified, subject-level (or group-level) splits: ``bidsaudit split``.

    Returns a :class:`SplitOutput` ``(split, folder, files)``: the
    :class:`~audit.splits.SplitResult` (assignments, balance, parameters),
    the ``output`` folder (give it to :func:`audit` as ``splits``) and the
    files written. ``balance`` is a comma-separated string, as on the
    command line, or a list of columns. Raises
    :class:`~audit.errors.SplitError` for a split that cannot be made.
    ``leave_site_out=True`` writes one fold per site instead, that site held
    out as the fold's validation set (:func:`audit.splits.sitefolds.split_by_site`;
    the size, seed and balance options do not apply).
    """
    root = dataset_path(dataset)
    if leave_site_out:
        result, files = split_by_site(root, output, label=label, layout=layout, group=group)
        return SplitOutput(result, Path(output), list(files))
    columns = balance.split(",") if isinstance(balance, str) else list(balance)
    plan = SplitPlan(label=label, group=group, test_size=test_size, val_size=val_size, folds=folds, seed=seed,
                     balance=tuple(c.strip() for c in columns if c.strip()))
    result, files = split_dataset(root, plan, output, layout=layout)
    return SplitOutput(result, Path(output), list(files))


def dataset_path(dataset: Any) -> Path:
    """The folder of a dataset given as a path or as a pybids ``BIDSLayout`` (its ``root``).

    A layout is recognised by its class's module (``bids.*``) and its
    ``root``, without importing pybids. What the layout was built with
    (``validate``, ``ignore`` patterns, derivatives) selects what *pybids*
    lists; bidsaudit audits the raw dataset at the root, minus what its
    ``.bidsignore`` names, and reports non-BIDS files instead of dropping
    them (see ``docs/python.md``).

    >>> dataset_path("ds001").name
    'ds001'
    >>> dataset_path(3)
    Traceback (most recent call last):
    ...
    audit.errors.InputError: dataset: expected a dataset folder (str or path) or a pybids bids.BIDSLayout, got int
    """
    if isinstance(dataset, (str, os.PathLike)):
        return Path(dataset)
    kind = type(dataset)
    if kind.__module__.split(".")[0] == "bids" and isinstance(getattr(dataset, "root", None), (str, os.PathLike)):
        return Path(dataset.root)
    raise InputError(None, field="dataset", expected="a dataset folder (str or path) or a pybids bids.BIDSLayout",
                     got=kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}")


def _options(dataset: Path | None, splits: Path | None, config: PathLike | None, **kwargs: Any) -> AuditOptions:
    """The command's options with the configuration applied, as the CLI builds them (its notes are not printed)."""
    options, _notes = load_options(dataset if dataset is not None and dataset.is_dir() else None, splits,
                                   None if config is None else Path(config), **kwargs)
    return options


def _suites(expectations: Sequence[PathLike] | None) -> tuple[str, ...]:
    """Read and check the suites before any work (a bad one is an InputError), as the CLI does."""
    if not expectations:
        return ()
    paths = [Path(p) for p in ([expectations] if isinstance(expectations, (str, os.PathLike)) else expectations)]
    load_suites(paths)
    return tuple(str(p) for p in paths)


def _validator(root: Path, options: AuditOptions, n_files: int) -> ValidatorRun:
    """The official validator on ``root``: one run, or shards merged into its result (audit.validatorsharded)."""
    if not should_shard(len(dataset_subjects(root)), shard_size=options.shard_size, scheduler=options.scheduler):
        return run_validator(root, ignore_nifti_headers=options.ignore_nifti_headers, config=options.validator_config,
                             n_files=n_files)
    return validate_with_shards(root, ignore_nifti_headers=options.ignore_nifti_headers,
                                config=options.validator_config, n_files=n_files, shard_size=options.shard_size,
                                jobs=options.validator_jobs, scheduler=options.scheduler,
                                memory_mib=options.validator_memory_mib)


def _check_validator_config(path: PathLike | None) -> None:
    if path is not None and not Path(path).is_file():
        raise InputError(path, "no such file", field="validator_config", expected="the validator's JSON config file")


# --------------------------------------------------------------------------- front ends' entry points

VALIDATE_FAMILIES = ("bids", "quality", "expectations")


def validate_dataset(path: str | Path, options: AuditOptions | None = None, *, command: str = "validate",
                     families: tuple[str, ...] = VALIDATE_FAMILIES) -> Result:
    """Index and validate a dataset: the official validator plus checks that need no split."""
    options = options or AuditOptions()
    t0 = time.perf_counter()
    index = index_dataset(path)
    timings = {"index_s": time.perf_counter() - t0}
    ctx = AuditContext(options=options, index=index)
    if options.run_validator:
        t = time.perf_counter()
        ctx.validator = _validator(index.root, options, len(index.rows))
        timings["validator_s"] = time.perf_counter() - t
    t = time.perf_counter()
    findings, skipped = run_checks(ctx, families, out_of_scope=("splits",))
    timings["checks_s"] = time.perf_counter() - t
    dataset = dataset_block(ctx)
    summary = dataset_summary(ctx)
    findings, extra = _finish(ctx, findings, skipped, families, summary)
    timings["total_s"] = time.perf_counter() - t0
    return build_result(command, ctx, findings, skipped, dataset=dataset, summary=summary,
                        reproduce=reproduce_block(command, options, timings), **extra)


def dataset_block(ctx: AuditContext) -> dict[str, Any]:
    assert ctx.index is not None
    fp = ctx.fingerprint
    return {"path": str(ctx.index.root), "name": ctx.index.name, "fingerprint": fp.fingerprint,
            "files": len(ctx.index.rows)}


def dataset_summary(ctx: AuditContext) -> dict[str, Any]:
    """Subjects, sessions, datatypes and scanners, for the report's summary."""
    assert ctx.index is not None
    index = ctx.index
    images = index.images()
    datatypes = Counter(r.datatype for r in index.rows if r.role == "data")
    by_image = from_sidecars(index).by_image  # the checks' scanner identity (audit.scanner)
    scanners: Counter[str] = Counter(by_image.get(row.path, "unknown") for row in images)
    sessions = sum(max(1, len(v)) for v in index.sessions_by_subject.values())
    absent = sum(1 for r in images if r.link in ("dangling", "annex-pointer"))
    table = index.participants
    return {
        "subjects": len(index.subjects),
        "sessions": sessions,
        "files": len(index.rows),
        "images": len(images),
        "images_absent": absent,
        "invalid_names": len(index.invalid),
        "datatypes": dict(sorted((k, v) for k, v in datatypes.items() if k)),
        "scanners": dict(scanners.most_common()),
        "participant_columns": list(table.columns) if table is not None else [],
        "bids_version": index.description.get("BIDSVersion"),
    }


def reproduce_block(command: str, options: AuditOptions, timings: dict[str, float]) -> dict[str, Any]:
    argv = [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv and sys.argv[0] else [command]
    return {
        "command_line": " ".join(argv),
        "bidsaudit": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in options.__dict__.items()
                    if k != "config"},
    }


AUDIT_FAMILIES = ("bids", "quality", "split", "leakage", "confound", "shift", "expectations")


def audit_splits(dataset: str | Path | None, splits: str | Path, options: AuditOptions | None = None, *,
                 command: str = "audit") -> Result:
    """Audit split files, with the dataset when given (a reviewer may have only the split files)."""
    options = options or AuditOptions()
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    split_set = read_splits(Path(splits), label=options.label, id_pattern=options.id_pattern,
                            path_column=options.path_column)
    timings["splits_s"] = time.perf_counter() - t0
    ctx = AuditContext(options=options, splits=split_set)
    if options.pretrain:
        ctx.pretrain_subjects = read_pretrain(Path(options.pretrain), id_pattern=options.id_pattern,
                                              path_column=options.path_column)
    if dataset is not None:
        t = time.perf_counter()
        ctx.index = index_dataset(dataset)
        timings["index_s"] = time.perf_counter() - t
        if options.run_validator:
            t = time.perf_counter()
            ctx.validator = _validator(ctx.index.root, options, len(ctx.index.rows))
            timings["validator_s"] = time.perf_counter() - t
    _check_columns(ctx)
    t = time.perf_counter()
    findings, skipped = run_checks(ctx, AUDIT_FAMILIES)
    timings["checks_s"] = time.perf_counter() - t
    dataset_info = dataset_block(ctx) if ctx.index is not None else None
    summary = dataset_summary(ctx) if ctx.index is not None else {}
    findings, extra = _finish(ctx, findings, skipped, AUDIT_FAMILIES, summary)
    timings["total_s"] = time.perf_counter() - t0
    return build_result(
        command, ctx, findings, skipped,
        attachments={"dataset_files": dict(ctx.fingerprint.files)} if ctx.index is not None else {},
        dataset=dataset_info,
        splits={**splits_block(split_set), "disjointness": disjointness(ctx), **_distributions(ctx)},
        summary=summary,
        reproduce=reproduce_block(command, options, timings),
        **extra,
    )


def readiness_dataset(path: str | Path, options: AuditOptions) -> Result:
    """Readiness of a dataset for a learning task on ``options.label`` (no splits needed)."""
    index = index_dataset(path)
    label = options.label
    table = index.participants
    columns = list(table.columns) if table is not None else []
    if not label or label not in columns:
        raise InputError(index.root / "participants.tsv", f"no column '{label}'{did_you_mean(label or '', columns)}",
                         field="--label",
                         expected="a column of participants.tsv: " + (", ".join(columns) or "(no table)"))
    return validate_dataset(path, options, command="readiness", families=(*VALIDATE_FAMILIES, "confound"))


def _finish(ctx: AuditContext, findings: list[Any], skipped: list[dict[str, str]], families: tuple[str, ...],
            summary: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """Draw the duplicate pairs' pictures, apply the configuration's severities and waivers, then score readiness."""
    if ctx.index is not None:  # the checks read no image: the report's pictures are drawn here
        findings = with_pair_pictures(findings, ctx.index.root, checks=PICTURED, pairs=THUMBNAIL_PAIRS)
    config = ctx.options.config
    today = dt.date.today()
    findings, waivers = apply_policy(findings, config, today)
    readiness = readiness_for(ctx, findings, skipped, summary, ran=ctx.checks_ran, families=families,
                              waivers=waivers)
    coverage = coverage_for(ctx, skipped, splits_in_scope="split" in families)
    return list(findings), {"waivers": tuple(waivers), "readiness": readiness, "checks": ctx.checks_ran,
                            "coverage": coverage,
                            "config": {"fingerprint": config.fingerprint(), "date": today.isoformat(),
                                       "source": config.source}}


def splits_block(split_set: Any) -> dict[str, Any]:
    """Format, fingerprint and participants per split of a split set.

    The fingerprint is a sha256 over (path relative to the split root, sha256
    of the file's bytes) for every file read, so it does not depend on where
    the split folder lies or how its path was spelled.
    """
    digest = hashlib.sha256()
    root = Path(split_set.root)
    base = root if root.is_dir() else root.parent
    for name in sorted(split_set.files):
        path = Path(name)
        try:
            rel = path.resolve().relative_to(base.resolve()).as_posix()
        except ValueError:  # a test set taken from the parent folder
            rel = os.path.relpath(path.resolve(), base.resolve())
        digest.update(rel.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    sizes: dict[str, int] = {}
    for table in split_set.tables:
        key = table.name if table.fold is None else f"{table.name}/fold-{table.fold}"
        sizes[key] = len(split_set.subjects(table.name, table.fold))
    return {"format": split_set.format, "fingerprint": "sha256:" + digest.hexdigest(), "sizes": sizes,
            "files": list(split_set.files), "folds": list(split_set.folds), "notes": list(split_set.notes),
            "overlap": overlap_matrices(split_set),
            **({"id_rule": dict(split_set.id_rule)} if split_set.id_rule else {})}


def _distributions(ctx: AuditContext) -> dict[str, Any]:
    """The report's per-split charts data (``splits.distributions``), from what the checks computed."""
    block = split_distributions(ctx)
    return {"distributions": block} if block else {}


def overlap_matrices(split_set: Any) -> list[dict[str, Any]]:
    """Participants shared by each pair of splits, per fold view (the report's overlap matrix)."""
    out = []
    for fold, tables in split_set.views():
        names = [n for n in split_set.names if n in tables] + sorted(n for n in tables if n not in split_set.names)
        subjects = {n: tables[n].subjects() for n in names}
        matrix = [[len(subjects[a] & subjects[b]) for b in names] for a in names]
        out.append({"fold": fold, "splits": names, "matrix": matrix})
    return out


def read_pretrain(path: Path, *, id_pattern: str | None = None, path_column: str | None = None) -> frozenset[str]:
    """Participants used for pretraining: any split input (all its splits together), or a model folder.

    A model folder (MAPS) is read through its ``train+validation.tsv``; a
    MONAI datalist, a path list, a participant TSV or any other split input
    counts every participant it names (``id_pattern``/``path_column`` as
    for ``--splits``).
    """
    expected = ("a model folder (MAPS) with train+validation.tsv, a participant TSV, a MONAI datalist, "
                "an image-path list or any other split input")
    if not path.exists():
        raise InputError(path, "no such file or folder", field="--pretrain", expected=expected)
    if path.is_dir() and (path / "train+validation.tsv").is_file():
        path = path / "train+validation.tsv"
    subjects: set[str] = set()
    try:
        pre = read_splits(path, id_pattern=id_pattern, path_column=path_column)
    except InputError as err:
        raise InputError(None, str(err), field="--pretrain", expected=expected) from None
    for table in pre.tables:
        subjects |= table.subjects()
    return frozenset(subjects)


def _check_columns(ctx: AuditContext) -> None:
    """Columns named by --label/--site/--group must exist (in participants.tsv or the split files)."""
    assert ctx.splits is not None
    columns: set[str] = set()
    if ctx.index is not None and ctx.index.participants is not None:
        columns |= set(ctx.index.participants.columns)
    for table in ctx.splits.tables:
        columns |= set(table.columns)
    for option, column in (("--label", ctx.options.label), ("--site", ctx.options.site),
                           ("--group", ctx.options.group)):
        if column and column not in columns:
            raise InputError(ctx.index.root / "participants.tsv" if ctx.index is not None else ctx.splits.root,
                             f"no column '{column}'{did_you_mean(column, columns)}", field=option,
                             expected="a column of participants.tsv or of the split files: "
                             + ", ".join(sorted(columns)))


def certify(result: Result, options: AuditOptions, splits: str | Path, path: Path | None = None) -> Path:
    """Write the certificate of a passing audit (default: beside the split files)."""
    data = result.to_dict()
    splits = Path(splits)
    if path is None:
        path = (splits if splits.is_dir() else splits.parent) / certificates.CERTIFICATE_NAME
    cert = certificates.build_certificate(
        data, dataset_files=result.attachments.get("dataset_files"),
        split_files=list((data.get("splits") or {}).get("files") or []),
        options={"label": options.label, "site": options.site, "group": options.group,
                 "pretrain": options.pretrain, "id_pattern": options.id_pattern,
                 "path_column": options.path_column},
        config={**options.config.as_options_dict(), "source": options.config.source}, where=path,
        split_root=splits if splits.is_dir() else splits.parent,
        key=os.environ.get(certificates.SIGNING_KEY_ENV) or None,
    )
    return certificates.write_certificate(cert, path)

