"""``bidsaudit demo``: a synthetic multi-site dataset, run through the pipeline.

The demo writes ``DIR/dataset`` (a BIDS dataset with real gzipped NIfTI
images, made by :mod:`audit.synthetic`), validates it, makes a leak-free split
of it (``DIR/splits``), audits that split (it passes and gets a certificate),
then audits a deliberately leaky copy (``DIR/splits-leaky``: three test
participants copied into train), which fails and shows why. Then a second,
confounded dataset (``DIR/dataset-confounded``: the same kind of phantoms, but
diagnosis tied to site, as when patients come from one hospital and controls
from another) is split and audited: its split is leak-free, yet the audit
rejects it (``confound.label_site`` error: a network could learn the scanner
instead of the diagnosis; the report's heat map shows label by site). JSON
results and HTML reports go under ``DIR/reports``.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

from audit.api import audit_splits, certify, validate_dataset
from audit.context import AuditOptions
from audit.errors import InputError
from audit.fsutil import atomic_write_text
from audit.splits import SplitPlan, split_dataset
from audit.synthetic import make_dataset
from reports.render import render_report
from train.api import demo_training

__all__ = ["run_demo"]


def run_demo(directory: Path, *, subjects: int = 40, seed: int = 0, force: bool = False,
             echo: Callable[[str], None] = print) -> int:
    """Run the demo in ``directory``; return the exit code (0 when every step behaved as expected)."""
    directory = Path(directory)
    dataset = directory / "dataset"
    reports = directory / "reports"
    splits_dir = directory / "splits"
    leaky_dir = directory / "splits-leaky"
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
    steps = 6
    echo(f"[1/{steps}] writing a synthetic {subjects}-subject, multi-site BIDS dataset to {dataset}")
    summary = make_dataset(dataset, n_subjects=subjects, seed=seed)
    echo(f"      {summary.n_subjects} subjects, {summary.n_images} T1w images, sites: {', '.join(summary.sites)}"
         f" ({time.perf_counter() - t0:.1f} s)")

    echo(f"[2/{steps}] bidsaudit validate (official BIDS validator, images, participants table)")
    validated = validate_dataset(dataset, AuditOptions(), command="validate")
    _save(validated, reports / "validate", echo)
    ok = validated.status == "pass"

    echo(f"[3/{steps}] bidsaudit split --label diagnosis (stratified, balanced on age/sex/site)")
    plan = SplitPlan(label="diagnosis", seed=seed)
    _, files = split_dataset(dataset, plan, splits_dir, layout="folder")
    echo(f"      wrote {len(files)} files to {splits_dir}")

    echo(f"[4/{steps}] bidsaudit audit: the split as made, then a leaky copy of it")
    options = AuditOptions(label="diagnosis")
    clean = audit_splits(dataset, splits_dir, options)
    _save(clean, reports / "audit", echo)
    if clean.status == "pass":
        cert = certify(clean, options, splits_dir)
        echo(f"      certificate: {cert}")
    leaked = make_leaky_copy(splits_dir, leaky_dir, n=3)
    echo(f"      leaky copy: {', '.join(leaked)} copied from test into train ({leaky_dir})")
    leaky = audit_splits(dataset, leaky_dir, options)
    _save(leaky, reports / "audit-leaky", echo)
    ok = ok and clean.status == "pass" and leaky.status == "fail"

    echo(f"[5/{steps}] a confounded dataset (diagnosis tied to site): leak-free, and still rejected")
    confounded = confounded_audit(directory, subjects=subjects, seed=seed, echo=echo)
    _save(confounded, reports / "audit-confounded", echo)
    confound_errors = [f for f in confounded.findings if f.check == "confound.label_site" and f.severity == "error"]
    ok = ok and confounded.status == "fail" and bool(confound_errors)

    echo(f"[6/{steps}] bidsaudit train: only the certified split may be used")
    ok = demo_training(directory, echo=echo) and ok
    maps = directory / "maps" / "report.html"

    echo(f"demo finished in {time.perf_counter() - t0:.1f} s")
    echo(f"HTML report (clean split): {(reports / 'audit.html').resolve()}")
    echo(f"HTML report (leaky split): {(reports / 'audit-leaky.html').resolve()}")
    echo(f"HTML report (confounded):  {(reports / 'audit-confounded.html').resolve()}")
    echo(f"HTML report (validation):  {(reports / 'validate.html').resolve()}")
    if maps.exists():
        echo(f"Training report:           {maps.resolve()}")
    if not ok:
        echo("unexpected: the clean demo should pass, and the leaky copy and the confounded dataset should fail")
    return 0 if ok else 1


def confounded_audit(directory: Path, *, subjects: int, seed: int, echo: Callable[[str], None]):  # type: ignore[no-untyped-def]
    """Make ``DIR/dataset-confounded`` (diagnosis tied to site), split it leak-free, and audit the split."""
    dataset = directory / "dataset-confounded"
    splits_dir = directory / "splits-confounded"
    summary = make_dataset(dataset, n_subjects=subjects, seed=seed + 1, confounded=True)
    split_dataset(dataset, SplitPlan(label="diagnosis", seed=seed), splits_dir, layout="folder")
    echo(f"      {summary.n_subjects} subjects in {dataset}: sites A and C mostly AD, site B mostly CN; "
         f"split into {splits_dir}")
    return audit_splits(dataset, splits_dir, AuditOptions(label="diagnosis"))


def _save(result, stem: Path, echo: Callable[[str], None]) -> None:  # type: ignore[no-untyped-def]
    atomic_write_text(stem.with_suffix(".json"), result.to_json())
    atomic_write_text(stem.with_suffix(".html"), render_report(result.to_dict()))
    counts = result.counts()
    echo(f"      {result.status.upper()}: {counts['error']} errors, {counts['warning']} warnings, "
         f"{counts['info']} notes")
    for f in result.findings:
        if f.severity != "info":
            echo(f"      {f.severity:<7} {f.check}: {f.message}")


def make_leaky_copy(splits_dir: Path, leaky_dir: Path, *, n: int = 3) -> list[str]:
    """Copy a folder-format split and add ``n`` test participants' rows to train (a classic leak)."""
    leaky_dir.mkdir(parents=True, exist_ok=True)
    for name in ("train.tsv", "validation.tsv", "test.tsv"):
        shutil.copyfile(splits_dir / name, leaky_dir / name)
    test_lines = (splits_dir / "test.tsv").read_text().splitlines()
    header, rows = test_lines[0], [r for r in test_lines[1:] if r.strip()]
    chosen = sorted({r.split("\t")[0] for r in rows})[:n]
    moved = [r for r in rows if r.split("\t")[0] in chosen]
    train = (splits_dir / "train.tsv").read_text().rstrip("\n").splitlines()
    if train[0] != header:
        raise ValueError("train.tsv and test.tsv have different columns")
    atomic_write_text(leaky_dir / "train.tsv", "\n".join(train + moved) + "\n")
    return chosen
