"""Builders for tests: tiny BIDS trees on disk and in-memory contexts."""

from __future__ import annotations

import gzip
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
#: The real test data: $BIDSAUDIT_SHARED_DATA, else the repository-relative ../shared/data (absent in a
#: worktree or a clean clone: the tests that need it skip, saying where they looked).
SHARED_DATA = Path(os.environ.get("BIDSAUDIT_SHARED_DATA") or SHARED / "data")


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


#: Debian's chromium (``BIDSAUDIT_CHROMIUM`` overrides); ``.ci/run`` installs it and chromium-driver.
CHROMIUM = Path(os.environ.get("BIDSAUDIT_CHROMIUM", "/usr/bin/chromium"))


@contextmanager
def chromium_driver(flags: Iterable[str], *, observe: bool = False) -> Iterator[Any]:
    """A headless Selenium driver of Debian's chromium and chromium-driver (the test skips, saying why, without them).

    ``observe`` records the browser's console and performance logs (network and page events) and lets a
    dialog be accepted and noted rather than block the page.
    """
    import pytest

    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")
    driver_path = shutil.which("chromedriver")
    if not CHROMIUM.exists() or not driver_path:
        pytest.skip("Debian's chromium and chromium-driver are not installed (.ci/run installs them)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in flags:
        options.add_argument(flag)
    if observe:
        options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
        options.set_capability("unhandledPromptBehavior", "accept and notify")
        options.add_experimental_option("perfLoggingPrefs", {"enableNetwork": True, "enablePage": True})
    os.environ.setdefault("SE_AVOID_STATS", "true")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
