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
``(image pass + check) / image pass`` (goal: at most 1.2).

    PYTHONPATH=$PWD python bench/bench_neardup_1mm.py [--subjects 12] [--classes scale,rot-10]

Figures only (no assertion); times are wall-clock on a shared machine: the
ratio is what to compare.
"""

from __future__ import annotations

import argparse
import os
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
    args = ap.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-neardup-1mm-"))
    os.environ["BIDSAUDIT_CACHE_DIR"] = str(work / "cache")
    base = work / "base"
    if len(list(base.glob("sub-*/anat/*_T1w.nii*"))) < args.subjects:  # (an interrupted run leaves fewer)
        make_dataset(base, n_subjects=args.subjects, seed=0, session_fraction=0.0, shape=(176, 240, 256),
                     voxel_size=(1.0, 1.0, 1.0), overwrite=True)
    subjects = sorted(p.name for p in base.glob("sub-*"))
    for name in [c for c in args.classes.split(",") if c]:
        ds = work / f"ds-{name}"
        if not ds.exists():
            import shutil

            shutil.copytree(base, ds)
            if name != "none":
                src = next((ds / subjects[2]).rglob("*_T1w.nii*"))
                img = nib.load(src)
                data, aff = make_copy(name, np.asarray(img.dataobj, dtype=np.float32), img.affine, seed=1)
                out = ds / "sub-copy" / "anat"
                out.mkdir(parents=True)
                nib.save(nib.Nifti1Image(data.astype(np.float32), aff), str(out / "sub-copy_T1w.nii.gz"))
        everyone = sorted(p.name for p in ds.glob("sub-*"))
        sp = work / f"sp-{name}"
        sp.mkdir(exist_ok=True)
        test = ["sub-copy"] if name != "none" else everyone[-2:]
        (sp / "train.tsv").write_text("participant_id\n" + "\n".join(s for s in everyone if s not in test) + "\n")
        (sp / "test.tsv").write_text("participant_id\n" + "\n".join(test) + "\n")
        for run in ("cold", "warm"):
            index = index_dataset(ds)
            t0 = time.perf_counter()
            images = summarise_images(index, workers=2, cache=HashCache(memory=True))
            t1 = time.perf_counter()
            ctx = AuditContext(options=AuditOptions(run_validator=False, workers=2), index=index,
                               splits=read_splits(sp))
            ctx.__dict__["images"] = images  # the pass above, not a second one
            t2 = time.perf_counter()
            found, _ = run_checks(ctx, ["leakage.near_duplicate_image"])
            t3 = time.perf_counter()
            near = [f for f in found if f.check == "leakage.near_duplicate_image"]
            stage = near[0].evidence["confirmation"]["stage"] if near else {}
            print(f"{name:8} {run}: image pass {t1 - t0:.1f} s, near-duplicate check {t3 - t2:.1f} s "
                  f"({stage.get('confirmations', 0)} confirmations, {stage.get('null_scores_cached', 0)} null "
                  f"scores cached), ratio {(t1 - t0 + t3 - t2) / (t1 - t0):.2f}; findings "
                  f"{[(f.severity, f.subjects) for f in near]}")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
