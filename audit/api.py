"""Library entry points behind the CLI commands (the CLI only parses and prints)."""

from __future__ import annotations

import platform
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from audit import __version__
from audit.context import AuditContext, AuditOptions
from audit.result import Result
from audit.runner import build_result, run_checks

__all__ = ["validate_dataset", "dataset_summary", "scanner_label"]

VALIDATE_FAMILIES = ("bids", "quality")


def validate_dataset(path: str | Path, options: AuditOptions | None = None, *, command: str = "validate") -> Result:
    """Index and validate a dataset: the official validator plus checks that need no split."""
    from audit.bidsindex import index_dataset

    options = options or AuditOptions()
    t0 = time.perf_counter()
    index = index_dataset(path)
    timings = {"index_s": time.perf_counter() - t0}
    ctx = AuditContext(options=options, index=index)
    if options.run_validator:
        from audit.validator import run_validator

        t = time.perf_counter()
        ctx.validator = run_validator(index.root, ignore_nifti_headers=options.ignore_nifti_headers,
                                      config=options.validator_config)
        timings["validator_s"] = time.perf_counter() - t
    t = time.perf_counter()
    findings, skipped = run_checks(ctx, VALIDATE_FAMILIES)
    timings["checks_s"] = time.perf_counter() - t
    dataset = dataset_block(ctx)
    timings["total_s"] = time.perf_counter() - t0
    return build_result(command, ctx, findings, skipped, dataset=dataset,
                        summary=dataset_summary(ctx), reproduce=reproduce_block(command, options, timings))


def dataset_block(ctx: AuditContext) -> dict[str, Any]:
    from audit.hashing import HashCache, dataset_fingerprint

    assert ctx.index is not None
    if "fingerprint" not in ctx.cache:
        ctx.cache["fingerprint"] = dataset_fingerprint(ctx.index, HashCache.default())
    fp = ctx.cache["fingerprint"]
    return {"path": str(ctx.index.root), "name": ctx.index.name, "fingerprint": fp.fingerprint,
            "files": len(ctx.index.rows)}


def scanner_label(meta: dict[str, Any]) -> str | None:
    """A readable scanner identity from sidecar fields (None when nothing is known)."""
    parts = []
    for key in ("Manufacturer", "ManufacturersModelName"):
        value = meta.get(key)
        if value not in (None, ""):
            parts.append(" ".join(str(value).replace("_", " ").split()))
    field = meta.get("MagneticFieldStrength")
    if field not in (None, ""):
        parts.append(f"{field}T")
    return " ".join(parts) or None


def dataset_summary(ctx: AuditContext) -> dict[str, Any]:
    """Subjects, sessions, datatypes and scanners, for the report's summary."""
    assert ctx.index is not None
    index = ctx.index
    images = index.images()
    datatypes = Counter(r.datatype for r in index.rows if r.role == "data")
    scanners: Counter[str] = Counter()
    for row in images:
        label = scanner_label(index.sidecar(row.path))
        scanners[label or "unknown"] += 1
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
