"""The mutual-nearest-neighbour candidates add confirmations, never errors, among distinct people.

Clean real anatomy (100 different people, IXI T1w 2 mm; skipped when
absent) and the demo's clean synthetic phantoms: the rule adds candidate
pairs (every image has a nearest one), all of them distinct people, and the
confirmation rejects every one: no finding of any severity.
"""

from __future__ import annotations

import math

import pytest

from audit.bidsindex import index_dataset
from audit.catalogue import THRESHOLDS
from audit.hashing import HashCache
from audit.images.nearpairs import near_duplicates
from audit.images.summary import summarise_images
from tests.checks.test_near_confirm import IXI, _run, _splits, needs_ixi

NEAR = "leakage.near_duplicate_image"
#: The budget these tests measure, set explicitly so that they keep testing the rule if the default changes.
TH = {**THRESHOLDS[NEAR], "mutual_budget_per_image": 0.05}
ON = {"config": {"thresholds": {NEAR: {"mutual_budget_per_image": 0.05}}}}


def _added(root) -> dict:
    images = summarise_images(index_dataset(root), workers=2, cache=HashCache(memory=True))
    _, stats = near_duplicates(images, **TH)
    return stats["mutual"]["T1w"]


def _clean_splits(root, out):
    subjects = sorted(p.name for p in root.glob("sub-*"))
    return _splits(out, subjects[::2], subjects[1::2])


def test_mutual_candidates_of_clean_phantoms_are_all_rejected(tmp_path):
    from audit.synthetic import make_dataset

    ds = tmp_path / "ds"
    make_dataset(ds, n_subjects=40, seed=0)  # as bidsaudit demo makes it (52 images)
    mutual = _added(ds)
    assert 0 < mutual["pairs_added"] <= mutual["budget"] == math.ceil(TH["mutual_budget_per_image"] * 52), mutual
    assert _run(ds, _clean_splits(ds, tmp_path / "sp"), workers=2, **ON) == []


@pytest.mark.slow  # 70 s on the shared 2 cores; test_a_hundred_different_people_have_no_near_duplicate runs the check
@needs_ixi
def test_mutual_candidates_of_a_hundred_different_people_are_all_rejected(tmp_path):
    mutual = _added(IXI)
    assert 0 < mutual["pairs_added"] <= mutual["budget"] == 5, mutual
    assert _run(IXI, _clean_splits(IXI, tmp_path / "sp"), workers=2, **ON) == []
