"""``bidsaudit demo``: a synthetic multi-site dataset, run through the pipeline.

The demo writes ``DIR/dataset`` (a BIDS dataset with real gzipped NIfTI
images, made by :mod:`audit.synthetic`), validates it, and writes the JSON
results and HTML reports under ``DIR/reports``. Later steps (split, audit,
train) are added as they land.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

from audit.errors import InputError

__all__ = ["run_demo"]


def run_demo(directory: Path, *, subjects: int = 40, seed: int = 0, force: bool = False,
             echo: Callable[[str], None] = print) -> int:
    """Run the demo in ``directory``; return the exit code (0 when every step behaved as expected)."""
    from audit.api import validate_dataset
    from audit.context import AuditOptions
    from audit.fsutil import atomic_write_text
    from audit.synthetic import make_dataset
    from reports.render import render_report

    directory = Path(directory)
    dataset = directory / "dataset"
    reports = directory / "reports"
    if directory.exists() and any(directory.iterdir()):
        if not force:
            raise InputError(directory, "already exists and is not empty",
                             expected="a new folder (or --force to replace the demo there)")
        if not (dataset / "dataset_description.json").exists() and not (directory / ".bidsaudit-demo").exists():
            raise InputError(directory, "is not a bidsaudit demo folder; refusing to delete it with --force")
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / ".bidsaudit-demo").write_text("made by bidsaudit demo\n")

    t0 = time.perf_counter()
    echo(f"[1/2] writing a synthetic {subjects}-subject, multi-site BIDS dataset to {dataset}")
    summary = make_dataset(dataset, n_subjects=subjects, seed=seed)
    echo(f"      {summary.n_subjects} subjects, {summary.n_images} T1w images, sites: {', '.join(summary.sites)}"
         f" ({time.perf_counter() - t0:.1f} s)")

    echo("[2/2] bidsaudit validate (official BIDS validator, images, participants table)")
    result = validate_dataset(dataset, AuditOptions(), command="validate")
    atomic_write_text(reports / "validate.json", result.to_json())
    atomic_write_text(reports / "validate.html", render_report(result.to_dict()))
    counts = result.counts()
    echo(f"      {result.status.upper()}: {counts['error']} errors, {counts['warning']} warnings, "
         f"{counts['info']} notes")
    for f in result.findings:
        if f.severity != "info":
            echo(f"      {f.severity:<7} {f.check}: {f.message}")
    ok = result.status == "pass"
    echo(f"demo finished in {time.perf_counter() - t0:.1f} s")
    echo(f"HTML report: {(reports / 'validate.html').resolve()}")
    echo(f"JSON result: {(reports / 'validate.json').resolve()}")
    if not ok:
        echo("unexpected: the clean demo dataset did not pass validation")
    return 0 if ok else 1
