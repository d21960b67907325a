"""Library entry points behind the CLI commands (the CLI only parses and prints)."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import platform
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from audit import __version__
from audit import (
    certificate as certificates,  # looked up at call time: tests replace write_certificate
)
from audit.bidsindex import index_dataset
from audit.checks.content import PICTURED, THUMBNAIL_PAIRS
from audit.context import AuditContext, AuditOptions
from audit.coverage import coverage_for
from audit.errors import InputError, did_you_mean
from audit.images.thumbnails import with_pair_pictures
from audit.outputs.distributions import split_distributions
from audit.policy import apply_policy
from audit.readiness import readiness_for
from audit.result import Result
from audit.runner import build_result, run_checks
from audit.scanner import from_sidecars
from audit.splits import read_splits
from audit.validator import run_validator

__all__ = [
    "AUDIT_FAMILIES",
    "VALIDATE_FAMILIES",
    "audit_splits",
    "certify",
    "dataset_block",
    "dataset_summary",
    "overlap_matrices",
    "read_pretrain",
    "readiness_dataset",
    "reproduce_block",
    "splits_block",
    "validate_dataset",
]

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
        ctx.validator = run_validator(index.root, ignore_nifti_headers=options.ignore_nifti_headers,
                                      config=options.validator_config, n_files=len(index.rows))
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
    split_set = read_splits(Path(splits), label=options.label)
    timings["splits_s"] = time.perf_counter() - t0
    ctx = AuditContext(options=options, splits=split_set)
    if options.pretrain:
        ctx.pretrain_subjects = read_pretrain(Path(options.pretrain))
    if dataset is not None:
        t = time.perf_counter()
        ctx.index = index_dataset(dataset)
        timings["index_s"] = time.perf_counter() - t
        if options.run_validator:
            t = time.perf_counter()
            ctx.validator = run_validator(ctx.index.root, ignore_nifti_headers=options.ignore_nifti_headers,
                                          config=options.validator_config, n_files=len(ctx.index.rows))
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
        splits={**splits_block(split_set), **_distributions(ctx)},
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
            "overlap": overlap_matrices(split_set)}


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


def read_pretrain(path: Path) -> frozenset[str]:
    """Participants used for pretraining: a split TSV, or a model folder's ``train+validation.tsv``."""
    if path.is_dir():
        tv = path / "train+validation.tsv"
        if not tv.is_file():
            raise InputError(path, "no train+validation.tsv in this folder", field="--pretrain",
                             expected="a split TSV or a model folder (MAPS) with train+validation.tsv")
        path = tv
    if not path.exists():
        raise InputError(path, "no such file or folder", field="--pretrain",
                         expected="a split TSV or a model folder (MAPS) with train+validation.tsv")
    subjects: set[str] = set()
    pre = read_splits(path)
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
                 "pretrain": options.pretrain},
        config={**options.config.as_options_dict(), "source": options.config.source}, where=path,
        split_root=splits if splits.is_dir() else splits.parent,
        key=os.environ.get(certificates.SIGNING_KEY_ENV) or None,
    )
    return certificates.write_certificate(cert, path)

