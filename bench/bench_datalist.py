"""Benchmark reading a MONAI datalist and deriving participant ids from its image paths (issue #12).

Writes a datalist of ``--entries`` entries (default 100,000), each with
``--images`` image paths (default 4: T1w, T2w, FLAIR, PD of one BIDS
session), a class label and a ``fold`` (``i % 5``), as MONAI writes it
(indented JSON), then prints, in seconds (wall clock and CPU time of this
process, best of ``--repeat``):

* the floor: ``json.loads`` of the file;
* ``read_splits`` (parse, check every entry, the BIDS id rule, the k-fold
  tables) and, with ``--pattern``, the same with ``--id-pattern``;
* the disjointness levels of the result (``audit.disjointness`` on the fold views).

The issue's target: under 2 s for 100,000 entries with four images each.

Usage::

    .venv/bin/python bench/bench_datalist.py [--entries 100000] [--images 4] [--repeat 3] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from audit.config import AuditOptions
from audit.context import AuditContext
from audit.disjointness import disjointness
from audit.splits import read_splits

MODALITIES = ("T1w", "T2w", "FLAIR", "PD", "T2starw", "PDT2")


def write_datalist(path: Path, entries: int, images: int) -> Path:
    mods = MODALITIES[:images]
    training = [{"image": [f"data/sub-{i:06d}/ses-1/anat/sub-{i:06d}_ses-1_{m}.nii.gz" for m in mods],
                 "label": i % 2, "fold": i % 5} for i in range(entries)]
    path.write_text(json.dumps({"description": "benchmark", "training": training}, indent=4))
    return path


def timed(func, repeat: int) -> tuple[float, float, object]:  # type: ignore[no-untyped-def]
    best_wall = best_cpu = float("inf")
    out = None
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        out = func()
        best_wall = min(best_wall, time.perf_counter() - w)
        best_cpu = min(best_cpu, time.process_time() - c)
    return best_wall, best_cpu, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--pattern", default=r"sub-([0-9]+)")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-datalist-"))
    work.mkdir(parents=True, exist_ok=True)
    path = write_datalist(work / "datalist.json", args.entries, args.images)
    size = path.stat().st_size / 1e6
    print(f"datalist: {args.entries} entries x {args.images} images, {size:.1f} MB ({path})")
    rows = []
    wall, cpu, _ = timed(lambda: json.loads(path.read_text()), args.repeat)
    rows.append(("json.loads (floor)", wall, cpu))
    wall, cpu, s = timed(lambda: read_splits(path), args.repeat)
    rows.append(("read_splits, rule bids", wall, cpu))
    assert s.id_rule["rule"] == "bids" and s.folds == (0, 1, 2, 3, 4)  # type: ignore[union-attr]
    assert sum(len(s.table("validation", f)) for f in s.folds) == args.entries  # type: ignore[union-attr]
    wall, cpu, _ = timed(lambda: read_splits(path, id_pattern=args.pattern), args.repeat)
    rows.append(("read_splits, --id-pattern", wall, cpu))
    ctx = AuditContext(options=AuditOptions(run_validator=False, check_images=False), splits=s)  # type: ignore[arg-type]
    wall, cpu, levels = timed(lambda: disjointness(ctx), 1)
    rows.append(("disjointness (5 folds)", wall, cpu))
    width = max(len(r[0]) for r in rows)
    print(f"{'step':<{width}}  {'wall s':>8}  {'cpu s':>8}")
    for name, w, c in rows:
        print(f"{name:<{width}}  {w:8.3f}  {c:8.3f}")
    print(f"levels: {sorted({d['level'] for d in levels})}")  # type: ignore[union-attr]
    read = rows[1]
    print(f"target: read_splits under 2 s: cpu {read[2]:.2f} s ({'met' if read[2] < 2 else 'NOT met'}), wall "
          f"{read[1]:.2f} s ({'met' if read[1] < 2 else 'not met: a loaded machine inflates wall time'})")


if __name__ == "__main__":
    main()
