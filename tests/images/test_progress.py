"""The image pass and the validator report progress through audit.progress, and only to an installed sink."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from audit.images.imagepass import run_pass
from audit.progress import reporting


def _images(tmp_path, n):
    paths = []
    for i in range(n):
        p = tmp_path / f"img{i}.nii.gz"
        nib.save(nib.Nifti1Image(np.random.default_rng(i).random((8, 8, 8)).astype("float32"), np.eye(4)), p)
        paths.append(str(p))
    return paths


@pytest.mark.parametrize("workers", [1, 2])
def test_the_image_pass_reports_every_image_once_done(tmp_path, workers):
    paths = _images(tmp_path, 6)
    seen = []
    with reporting(lambda what, done, total: seen.append((what, done, total))):
        out = run_pass(paths, workers=workers, scheduler=None)
    assert len(out) == 6
    assert seen[0] == ("reading images", 0, 6) and seen[-1] == ("reading images", 6, 6)
    done = [d for _, d, _ in seen]
    assert done == sorted(done)  # never goes backwards


def test_without_a_sink_nothing_is_reported_and_nothing_printed(tmp_path, capsys):
    assert len(run_pass(_images(tmp_path, 2), workers=1, scheduler=None)) == 2
    assert capsys.readouterr() == ("", "")


def test_the_validator_run_is_a_stage_without_a_size(monkeypatch, tmp_path):
    import audit.validator as v

    monkeypatch.setattr(v, "_run_validator", lambda *a, **k: "ran")
    seen = []
    with reporting(lambda what, done, total: seen.append((what, done, total))):
        assert v.run_validator(tmp_path) == "ran"
    assert seen == [("running the official BIDS validator", 0, None)]
