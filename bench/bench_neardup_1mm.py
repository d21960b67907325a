"""Cost of the near-duplicate confirmation stage on 1 mm images, as a ratio to the image pass of the same run.

A synthetic dataset of ``--subjects`` (12) 1 mm heads (176 x 240 x 256,
:func:`audit.synthetic.make_dataset`), one participant's T1w copied under a
new participant in the test split with a transform class of
``bench/bench_confirm.py``. For each case: the image pass (every summary,
fingerprint, sketch and spectrum: the time the pass took before the
confirmation stage existed plus the spectrum), then
``leakage.near_duplicate_image`` (candidate search, confirmations, null),
with a cold null cache and again with the cache the first run left (a CI
job auditing an unchanged dataset). Printed: seconds and the ratio
``(image pass + check) / image pass`` (goal: at most 1.2); with
``--workers 1`` (the pass in this process, the stage without reader
threads) also the same ratio of CPU seconds, which a loaded machine
disturbs less. ``none`` is the dataset without a copy (``--subjects 13
--classes none``: a clean dataset of the size of the others).

scipy.ndimage and scipy.optimize are imported (and timed) before the runs:
the first confirmation in a process would pay that import, and so do a full
audit's shift and confound checks (scipy.stats imports scipy.optimize) and
the duplicate pairs' thumbnails (scipy.ndimage).

    PYTHONPATH=$PWD python bench/bench_neardup_1mm.py [--subjects 12] [--classes scale,rot-10] [--workers 2]

Figures only (no assertion); times are wall-clock on a shared machine: the
ratio is what to compare.
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


def main(argv: list[str] | None = None) -> int:
    import nibabel as nib
    import numpy as np

    from audit.bidsindex import index_dataset
    from audit.context import AuditContext, AuditOptions
    from audit.hashing import HashCache
    from audit.images.summary import summarise_images
    from audit.runner import run_checks
    from audit.splits import read_splits
    from audit.synthetic import make_dataset
    from bench.bench_confirm import make_copy

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=12)
    ap.add_argument("--classes", default="none,scale,rot-10")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--runs", default="cold,warm", help="cold: an empty null cache; warm: the cache of the run before")
    ap.add_argument("--mutual-budget-per-image", type=float, default=None,
                    help="the mutual-nearest-neighbour candidates' budget (default: the catalogue's; 0: off)")
    args = ap.parse_args(argv)
    if args.mutual_budget_per_image is not None:
        from audit.catalogue import THRESHOLDS

        THRESHOLDS["leakage.near_duplicate_image"]["mutual_budget_per_image"] = args.mutual_budget_per_image
    t_imp = time.perf_counter()
    import scipy.ndimage
    import scipy.optimize  # noqa: F401

    print(f"scipy.ndimage + scipy.optimize import: {time.perf_counter() - t_imp:.2f} s (not in the ratios)")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-neardup-1mm-"))
    os.environ["BIDSAUDIT_CACHE_DIR"] = str(work / "cache")
    base = work / f"base-{args.subjects}"
    if len(list(base.glob("sub-*/anat/*_T1w.nii*"))) < args.subjects:  # (an interrupted run leaves fewer)
        make_dataset(base, n_subjects=args.subjects, seed=0, session_fraction=0.0, shape=(176, 240, 256),
                     voxel_size=(1.0, 1.0, 1.0), overwrite=True)
    subjects = sorted(p.name for p in base.glob("sub-*"))
    for name in [c for c in args.classes.split(",") if c]:
        ds = work / f"ds-{args.subjects}-{name}"
        if not ds.exists():
            shutil.copytree(base, ds, copy_function=os.link)  # the heads as hard links
            if name != "none":
                src = next((ds / subjects[2]).rglob("*_T1w.nii*"))
                img = nib.load(src)
                data, aff = make_copy(name, np.asarray(img.dataobj, dtype=np.float32), img.affine, seed=1)
                out = ds / "sub-copy" / "anat"
                out.mkdir(parents=True)
                nib.save(nib.Nifti1Image(data.astype(np.float32), aff), str(out / "sub-copy_T1w.nii.gz"))
        everyone = sorted(p.name for p in ds.glob("sub-*"))
        sp = work / f"sp-{args.subjects}-{name}"
        sp.mkdir(exist_ok=True)
        test = ["sub-copy"] if name != "none" else everyone[-2:]
        (sp / "train.tsv").write_text("participant_id\n" + "\n".join(s for s in everyone if s not in test) + "\n")
        (sp / "test.tsv").write_text("participant_id\n" + "\n".join(test) + "\n")
        if "cold" in args.runs:
            shutil.rmtree(work / "cache", ignore_errors=True)  # the null cache of an earlier invocation
        for run in [r for r in args.runs.split(",") if r]:
            index = index_dataset(ds)
            t0, c0 = time.perf_counter(), time.process_time()
            images = summarise_images(index, workers=args.workers, cache=HashCache(memory=True))
            t1, c1 = time.perf_counter(), time.process_time()
            ctx = AuditContext(options=AuditOptions(run_validator=False, workers=args.workers), index=index,
                               splits=read_splits(sp))
            ctx.__dict__["images"] = images  # the pass above, not a second one
            t2, c2 = time.perf_counter(), time.process_time()
            found, _ = run_checks(ctx, ["leakage.near_duplicate_image"])
            t3, c3 = time.perf_counter(), time.process_time()
            near = [f for f in found if f.check == "leakage.near_duplicate_image"]
            stage = near[0].evidence["confirmation"]["stage"] if near else {}
            cpu = (f", CPU ratio {(c1 - c0 + c3 - c2) / (c1 - c0):.2f} (pass {c1 - c0:.1f} s, check {c3 - c2:.1f} s)"
                   if args.workers == 1 else "")
            print(f"{name:8} {run}: {len(images)} images, image pass {t1 - t0:.1f} s, near-duplicate check "
                  f"{t3 - t2:.1f} s ({stage.get('confirmations', 0)} confirmations, "
                  f"{stage.get('null_scores_cached', 0)} null scores cached), ratio "
                  f"{(t1 - t0 + t3 - t2) / (t1 - t0):.2f}{cpu}; findings {[(f.severity, f.subjects) for f in near]}")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
