"""Imported once by the forkserver that audits fork from: load everything an audit loads.

Each audit runs in a process forked from that server; whatever the library
imports lazily (pandas, pandera, scipy, scikit-learn, nibabel, the check
modules) would otherwise be imported again by every audit (about 1.8 s each
on the development machine). A tiny audit of a four-participant dataset in a
temporary folder, with its own hash cache there, loads all of it. It leaves
no thread behind (safe to fork) and writes nothing outside its temporary
folder. Any failure here is ignored: audits then pay the imports themselves.
"""

from __future__ import annotations

import os

from audit.api import audit_splits
from audit.config import load_options
from audit.hashing import HashCache

__all__ = ["MODULES", "warm"]

#: Imported by name as well: the checks that a four-participant audit skips (shift, near duplicates) need them.
MODULES = ("scipy.stats", "scipy.spatial", "scipy.optimize", "scipy.linalg", "sklearn.model_selection",
           "sklearn.metrics", "sklearn.preprocessing", "sklearn.linear_model", "sklearn.ensemble", "joblib",
           "psutil", "audit.stats", "audit.images.candidates", "audit.images.summary", "audit.hashing", "audit.readiness",
           "audit.policy", "reports.render", "jsonschema")


def warm() -> None:
    import importlib
    import json
    import tempfile
    from pathlib import Path

    for name in MODULES:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - an optimisation only
            pass
    saved = os.environ.get("BIDSAUDIT_CACHE_DIR")
    cache_dir = None
    try:
        import nibabel as nib
        import numpy as np

        with tempfile.TemporaryDirectory(prefix="bidsaudit-warm-") as tmp:
            root = Path(tmp) / "ds"
            cache_dir = str(Path(tmp) / "cache")
            os.environ["BIDSAUDIT_CACHE_DIR"] = cache_dir
            root.mkdir()
            (root / "dataset_description.json").write_text(json.dumps(
                {"Name": "warm-up", "BIDSVersion": "1.10.0", "DatasetType": "raw", "Authors": ["bidsaudit"]}))
            ids = [f"{i:02d}" for i in range(1, 5)]
            (root / "participants.tsv").write_text("participant_id\tdiagnosis\tage\tsex\n" + "".join(
                f"sub-{s}\t{['CN', 'AD'][i % 2]}\t{60 + i}\t{'MF'[i % 2]}\n" for i, s in enumerate(ids)))
            rng = np.random.default_rng(0)
            for s in ids:
                anat = root / f"sub-{s}" / "anat"
                anat.mkdir(parents=True)
                (anat / f"sub-{s}_T1w.json").write_text(json.dumps({"Manufacturer": "warm", "RepetitionTime": 2}))
                nib.save(nib.Nifti1Image(rng.normal(100, 20, (6, 6, 6)).astype(np.float32), np.eye(4)),
                         str(anat / f"sub-{s}_T1w.nii.gz"))
            splits = Path(tmp) / "splits"
            splits.mkdir()
            (splits / "train.tsv").write_text("participant_id\nsub-01\nsub-02\n")
            (splits / "test.tsv").write_text("participant_id\nsub-03\nsub-04\n")
            options, _ = load_options(None, None, None, label="diagnosis", site=None, group=None, workers=1,
                                   run_validator=False)
            audit_splits(root, splits, options).to_dict()  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001 - an optimisation only
        pass
    finally:
        if saved is None:
            os.environ.pop("BIDSAUDIT_CACHE_DIR", None)
        else:
            os.environ["BIDSAUDIT_CACHE_DIR"] = saved
        if cache_dir is not None:
            cache = HashCache._defaults.pop(cache_dir, None)
            if cache is not None:
                cache.close()


warm()
