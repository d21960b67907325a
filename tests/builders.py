"""Builders for tests: tiny BIDS trees on disk and in-memory contexts."""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
#: The real test data: ``$BIDSAUDIT_SHARED_DATA``, else ``../shared/data`` beside the repository (tests skip when absent).
SHARED_DATA = Path(os.environ["BIDSAUDIT_SHARED_DATA"]) if os.environ.get("BIDSAUDIT_SHARED_DATA") else SHARED / "data"


def write_image(path: Path, data: np.ndarray | None = None, *, affine: np.ndarray | None = None,
                shape: tuple[int, ...] = (8, 9, 10), seed: int = 0) -> Path:
    """Write a small gzipped NIfTI-1 image (random content unless ``data`` given)."""
    import nibabel as nib

    if data is None:
        data = np.random.default_rng(seed).normal(100, 20, size=shape).astype(np.float32)
    img = nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0]) if affine is None else affine)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = img.to_bytes()
    if path.name.endswith(".gz"):
        with open(path, "wb") as fh, gzip.GzipFile(fileobj=fh, mode="wb", mtime=0, filename="") as gz:
            gz.write(raw)
    else:
        path.write_bytes(raw)
    return path


def make_bids(root: Path, subjects: Iterable[str] = ("01", "02", "03"), *,
              participants: Mapping[str, Mapping[str, Any]] | None = None,
              participants_json: Mapping[str, Any] | None = None,
              sidecar: Mapping[str, Any] | None = None, images: bool = True,
              sessions: Mapping[str, Iterable[str]] | None = None) -> Path:
    """Write a tiny BIDS dataset: one T1w (+ sidecar) per subject (per session)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(json.dumps(
        {"Name": "tiny", "BIDSVersion": "1.10.0", "DatasetType": "raw", "Authors": ["A", "B"]}))
    subjects = list(subjects)
    rows = participants or {s: {"age": str(60 + i), "sex": "MF"[i % 2], "diagnosis": ["CN", "AD"][i % 2]}
                            for i, s in enumerate(subjects)}
    cols = sorted({k for r in rows.values() for k in r})
    lines = ["\t".join(["participant_id", *cols])]
    lines += ["\t".join([f"sub-{s}", *[str(r.get(c, "n/a")) for c in cols]]) for s, r in rows.items()]
    (root / "participants.tsv").write_text("\n".join(lines) + "\n")
    if participants_json is not None:
        (root / "participants.json").write_text(json.dumps(participants_json))
    meta = {"Manufacturer": "Siemens", "ManufacturersModelName": "Prisma", "MagneticFieldStrength": 3,
            "RepetitionTime": 2.3} if sidecar is None else dict(sidecar)
    for i, s in enumerate(subjects):
        for ses in (sessions or {}).get(s, [None]):
            folder = root / f"sub-{s}" / (f"ses-{ses}" if ses else "") / "anat"
            stem = f"sub-{s}" + (f"_ses-{ses}" if ses else "") + "_T1w"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{stem}.json").write_text(json.dumps(meta))
            if images:
                write_image(folder / f"{stem}.nii.gz", seed=i)
            else:
                (folder / f"{stem}.nii.gz").write_bytes(b"")
    return root


def invoke(*args: object) -> Any:
    """Run the CLI in-process (typer's CliRunner); no traceback and no exception but SystemExit allowed."""
    from typer.testing import CliRunner

    from audit.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result
