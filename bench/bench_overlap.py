"""Benchmark the id overlap checks on split tables of a million rows.

Writes a folder of split files (``train.tsv``, ``validation.tsv``,
``test.tsv``; columns participant_id, session_id, diagnosis, age) with
``--subjects`` participants of ``--sessions`` sessions each (default
250,000 x 4 = 1,000,000 rows), split 70/15/15 by participant, and plants a
handful of leaks:

* ``--leaks`` train participants copied whole (every session) into test
  (subject and session overlap);
* ``--leaks`` train participants with one session moved to validation (subject
  overlap only: a longitudinal subject cut across splits);
* ``--leaks`` test rows without session_id for train participants ("every
  session": session overlap through the empty session).

With ``--whole-copy`` the test split also holds a copy of every train row
(the worst case: a file given twice), so every train participant is a leak.

With ``--folds K`` it writes ClinicaDL's layout instead (``split-N/train.tsv``,
``split-N/validation.tsv`` for every fold plus a shared ``test.tsv``; the pool
is cut into K validation folds, so ``--subjects`` rows are read K times).

Then prints, in seconds:

* the floor: ``pandas.read_csv`` of the same files (dtype=str) plus one
  Python ``set`` intersection of the participant ids of train and test;
* ``read_splits`` (strict reading and id normalisation);
* the id checks: ``run_checks`` of the families ``leakage`` and ``split``
  with no dataset (what runs on split files alone), and each check alone;
* the two label checks that also read split tables (``quality.label_conflict``,
  ``quality.missing_label``);
* ratios against the floor, and whether the planted leaks were all found.

Usage::

    .venv/bin/python bench/bench_overlap.py [--subjects 250000] [--sessions 4] [--folds 0] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LIMIT_S = 2.0


def _timed(func):  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    value = func()
    return value, time.perf_counter() - t


class Timing(float):
    """Seconds of wall-clock time (the float), with the process CPU seconds beside them (``cpu``)."""

    cpu: float

    def __new__(cls, wall: float, cpu: float) -> Timing:
        self = super().__new__(cls, wall)
        self.cpu = cpu
        return self

    def __format__(self, spec: str) -> str:
        return f"{float(self):{spec}} s (cpu {self.cpu:.3f})"


def _write(path: Path, frame) -> None:  # type: ignore[no-untyped-def]
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, sep="\t", index=False, na_rep="")


def make_splits_folder(root: Path, subjects: int, sessions: int, leaks: int, folds: int, seed: int = 0,
                       whole_copy: bool = False) -> dict:
    """Write the split files under ``root``; return the planted leaks."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    ids = np.array([f"sub-{i:07d}" for i in range(subjects)], dtype=object)
    order = rng.permutation(subjects)
    n_test = int(subjects * 0.15)
    n_val = int(subjects * 0.15)
    test_ids = ids[order[:n_test]]
    val_ids = ids[order[n_test:n_test + n_val]]
    train_ids = ids[order[n_test + n_val:]]
    ses = np.array([f"ses-M{12 * k:02d}" for k in range(sessions)], dtype=object)
    labels = np.array(["CN", "AD", "MCI"], dtype=object)

    def rows(pids: np.ndarray) -> pd.DataFrame:
        n = len(pids)
        return pd.DataFrame({
            "participant_id": np.repeat(pids, sessions),
            "session_id": np.tile(ses, n),
            "diagnosis": np.repeat(labels[np.arange(n) % 3], sessions),
            "age": np.repeat((60 + np.arange(n) % 30).astype(str), sessions),
        })

    train, val, test = rows(train_ids), rows(val_ids), rows(test_ids)
    copied = list(train_ids[:leaks])                     # whole subject copied into test
    cut = list(train_ids[leaks:2 * leaks])               # one session moved to validation
    sessionless = list(train_ids[2 * leaks:3 * leaks])   # test rows without session_id
    test = pd.concat([test, train[train["participant_id"].isin(copied)]], ignore_index=True)
    moved = train["participant_id"].isin(cut) & (train["session_id"] == ses[-1])
    val = pd.concat([val, train[moved]], ignore_index=True)
    train = train[~moved]
    extra = pd.DataFrame({"participant_id": sessionless, "session_id": "",
                          "diagnosis": "CN", "age": "70"})
    test = pd.concat([test, extra], ignore_index=True)
    if whole_copy:
        test = pd.concat([test, train], ignore_index=True)
    # shuffle rows so nothing relies on file order
    train, val, test = (f.sample(frac=1.0, random_state=seed).reset_index(drop=True) for f in (train, val, test))
    planted = {"copied": list(train["participant_id"].unique()) if whole_copy else copied, "cut": cut,
               "sessionless": sessionless}
    if folds:
        pool = pd.concat([train, val], ignore_index=True)
        pids = pool["participant_id"].unique()
        fold_of = dict(zip(pids, rng.permutation(len(pids)) % folds))
        f = pool["participant_id"].map(fold_of)
        for k in range(folds):
            _write(root / f"split-{k}" / "train.tsv", pool[f != k])
            _write(root / f"split-{k}" / "validation.tsv", pool[f == k])
        _write(root / "test.tsv", test)
        # the cut subjects now sit in one fold: their moved session follows them, so they are
        # no longer a train/validation leak in k-fold; the test leaks remain in every fold
        planted["cut"] = []
    else:
        _write(root / "train.tsv", train)
        _write(root / "validation.tsv", val)
        _write(root / "test.tsv", test)
    return planted


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=250_000)
    ap.add_argument("--sessions", type=int, default=4)
    ap.add_argument("--leaks", type=int, default=3, help="participants planted per kind of leak")
    ap.add_argument("--folds", type=int, default=0, help="0: train/validation/test folder; K: ClinicaDL k-fold")
    ap.add_argument("--whole-copy", action="store_true", help="test also holds every train row (worst case)")
    ap.add_argument("--repeat", type=int, default=3, help="best of N for every timing")
    ap.add_argument("--workdir", type=Path, default=None, help="kept when given; a temporary folder otherwise")
    args = ap.parse_args(argv)

    import pandas as pd

    from audit.checks.registry import all_checks
    from audit.context import AuditContext, AuditOptions
    from audit.runner import run_checks
    from audit.splits import read_splits

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-overlap-"))
    root = work / "splits"
    try:
        if root.exists():
            shutil.rmtree(root)
        planted, t_gen = _timed(lambda: make_splits_folder(root, args.subjects, args.sessions, args.leaks,
                                                           args.folds, whole_copy=args.whole_copy))
        files = sorted(root.rglob("*.tsv"))
        nrows = sum(sum(1 for _ in open(f, "rb")) - 1 for f in files)
        print(f"split files: {len(files)} under {root}, {nrows:,} rows "
              f"({args.subjects:,} participants x {args.sessions} sessions), written in {t_gen:.1f} s")

        def best(func, cold=None):  # type: ignore[no-untyped-def]
            """Best of ``--repeat`` runs, wall-clock and CPU time (CPU time barely moves on a busy machine)."""
            value, wall, cpu = None, float("inf"), float("inf")
            for _ in range(args.repeat):
                if cold is not None:
                    cold()
                c = time.process_time()
                value, ti = _timed(func)
                wall, cpu = min(wall, ti), min(cpu, time.process_time() - c)
            return value, Timing(wall, cpu)

        def floor() -> int:
            frames = {f.stem: pd.read_csv(f, sep="\t", dtype=str, keep_default_na=False) for f in files}
            return len(set(frames["train" if "train" in frames else files[0].stem]["participant_id"])
                       & set(frames["test"]["participant_id"]))

        _, t_floor = best(floor)
        split_set, t_read = best(lambda: read_splits(root))

        def ctx() -> AuditContext:
            return AuditContext(options=AuditOptions(label="diagnosis"), splits=split_set)

        def cold() -> None:
            """Forget what the tables cached (participant sets...): every timing starts cold, as an audit does."""
            for t in split_set.tables:
                t._cache.clear()

        (findings, skipped), t_checks = best(lambda: run_checks(ctx(), ("leakage", "split")), cold)
        per_check = {}
        for cid in sorted({s.id for s in all_checks().values()
                           if s.family in ("leakage", "split") or s.id.startswith("quality.")
                           and s.func.__module__ == "audit.checks.split"}):
            _, t = best(lambda cid=cid: run_checks(ctx(), (cid,)), cold)
            per_check[cid] = t
        (_, _), t_labels = best(lambda: run_checks(ctx(), ("quality.label_conflict", "quality.missing_label")), cold)

        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (best of {args.repeat} runs)")
        print(f"{'floor: read_csv + set intersection':<44} {t_floor:7.3f}")
        print(f"{'read_splits':<44} {t_read:7.3f}   x{t_read / t_floor:.2f} of the floor")
        print(f"{'id checks (leakage + split families)':<44} {t_checks:7.3f}   x{t_checks / t_floor:.2f} of the floor"
              f"   {'OK' if t_checks < LIMIT_S else 'OVER'} (limit {LIMIT_S:.0f} s)")
        for cid, t in per_check.items():
            print(f"  {cid:<42} {t:7.3f}")
        print(f"{'label checks (label_conflict, missing_label)':<44} {t_labels:7.3f}")
        print(f"{'read_splits + id checks':<44} {t_read + t_checks:7.3f} s")
        print("(each check alone starts cold; run together they share the participant sets and frames)")
        print("skipped: " + ", ".join(f"{s['check']} ({s['reason']})" for s in skipped))

        for f in findings:
            print(f"  {f.severity:<7} {f.check:<26} {f.message[:160]}")
        subjects = {s for f in findings if f.check == "leakage.subject_overlap" for s in f.subjects}
        sessions = {s for f in findings if f.check == "leakage.session_overlap" for s in f.subjects}
        want_subjects = set(planted["copied"]) | set(planted["cut"]) | set(planted["sessionless"])
        want_sessions = set(planted["copied"]) | set(planted["sessionless"])
        ok = subjects == want_subjects and sessions == want_sessions
        print(f"planted leaks found: {'all, and nothing else' if ok else 'NO'} "
              f"(subject overlap {len(subjects)}/{len(want_subjects)}, session overlap "
              f"{len(sessions)}/{len(want_sessions)})")
        return 0 if ok else 1
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
