"""leakage.near_duplicate_image in two stages: candidates confirmed at full resolution, errors only when confirmed.

Real anatomy: 100 different people's T1w (IXI, 2 mm) in ``../shared/data/ixi-t1w-100``
(or ``$BIDSAUDIT_SHARED_DATA/ixi-t1w-100``); copies are made with the
transform classes of ``bench/bench_confirm.py`` and planted under new
participant ids in the test split. The default run plants a representative
set of classes in one small dataset; the ``slow`` run plants every class the
candidate stage finds and audits all 100 people and a 400-subject synthetic
dataset.
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from audit.bidsindex import index_dataset
from audit.catalogue import THRESHOLDS
from audit.context import AuditContext, AuditOptions
from audit.images.confirm import COPY_THRESHOLD
from audit.images.confirmpairs import tail_bound
from audit.runner import run_checks
from audit.splits import read_splits
from bench.bench_confirm import make_copy

SHARED = Path(os.environ.get("BIDSAUDIT_SHARED_DATA") or Path(__file__).resolve().parents[2].parent / "shared" / "data")
IXI = SHARED / "ixi-t1w-100"
needs_ixi = pytest.mark.skipif(not IXI.is_dir(), reason=f"real IXI T1w images not found at {IXI}")
NEAR = "leakage.near_duplicate_image"
TH = THRESHOLDS[NEAR]

#: Classes planted in the default run: a mirror along each of two axes, intensity, resampling, noise, skull strip.
FAST = ("flip-k", "flip-j", "scale", "gamma-0.8", "resample-1.5x", "noise-5%", "skull-strip")
#: More classes for the slow run (some of them the candidate stage misses on some heads).
EVERY = FAST + ("flip-i", "gamma-1.25", "resample-0.75x", "rician-5%", "pad", "bias", "rot-5", "rot-15",
                "translate", "elastic-1mm", "flip-k+rot-10+noise-2%")


def _ixi_files() -> list[Path]:
    return sorted(IXI.glob("sub-*/anat/*_T1w.nii*"))


def _dataset(root: Path, originals: list[Path], copies: dict[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    """A BIDS folder: the original images (links) and each copy as its own participant."""
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text('{"Name": "t", "BIDSVersion": "1.10.0"}')
    for f in originals:
        dst = root / f.relative_to(IXI)
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.symlink_to(f.resolve())
    for sub, (data, affine) in copies.items():
        d = root / sub / "anat"
        d.mkdir(parents=True)
        nib.save(nib.Nifti1Image(np.asarray(data, dtype=np.float32), affine), str(d / f"{sub}_T1w.nii.gz"))
    return root


def _splits(root: Path, train: list[str], test: list[str]) -> Path:
    root.mkdir(parents=True)
    (root / "train.tsv").write_text("participant_id\n" + "\n".join(train) + "\n")
    (root / "test.tsv").write_text("participant_id\n" + "\n".join(test) + "\n")
    return root


def _run(ds: Path, sp: Path, **options):
    options.setdefault("workers", 1)
    ctx = AuditContext(options=AuditOptions(run_validator=False, **options), index=index_dataset(ds),
                       splits=read_splits(sp))
    found, _ = run_checks(ctx, [NEAR])
    return [f for f in found if f.check == NEAR]


def _plant(tmp_path: Path, classes: tuple[str, ...], n_distinct: int, seed: int = 1):
    files = _ixi_files()
    source = files[20]
    img = nib.load(source)
    v, a = np.asarray(img.dataobj, dtype=np.float32), img.affine
    copies = {f"sub-copy{k:02d}": make_copy(name, v, a, seed=seed) for k, name in enumerate(classes)}
    others = files[40:40 + n_distinct]
    ds = _dataset(tmp_path / "ds", [source, *others], copies)
    subjects = [f.name.split("_")[0] for f in others]
    sp = _splits(tmp_path / "sp", [source.name.split("_")[0], *subjects[: n_distinct // 2]],
                 [*copies, *subjects[n_distinct // 2:]])
    return ds, sp, source.name.split("_")[0], dict(zip(copies, classes))


def _confirmed(findings) -> dict[str, dict]:
    """Copy participant -> its evidence pair, for error findings."""
    out = {}
    for f in findings:
        if f.severity == "error":
            for p in f.evidence["pairs"]:
                out[p["b"]["participant_id"]] = p
    return out


@needs_ixi
def test_copies_of_real_anatomy_are_confirmed_errors_and_distinct_people_are_not(tmp_path):
    ds, sp, original, planted = _plant(tmp_path, FAST, 6)
    findings = _run(ds, sp)
    confirmed = _confirmed(findings)
    assert set(confirmed) == set(planted), (set(planted) - set(confirmed), [f.message for f in findings])
    assert not [f for f in findings if f.severity != "error"]  # no warning: distinct people are no finding
    for sub, pair in confirmed.items():
        assert pair["a"]["participant_id"] == original
        c = pair["confirmation"]
        assert c["verdict"] == "copy" and c["score"] >= c["threshold"] >= COPY_THRESHOLD, (planted[sub], c)
        if planted[sub].startswith("flip"):
            assert c["transform"]["mirrored"], c
            assert "fingerprint (mirrored or turned)" in pair["matched_by"], pair["matched_by"]
    ev = findings[0].evidence
    group = ev["confirmation"]["groups"]["T1w"]
    assert group["threshold"] == COPY_THRESHOLD  # real heads: the floor rules
    assert group["distinct_max"] < 0.4 and group["distinct_pairs"] >= 10
    assert "Gaussian tail" in group["how"] and ev["confirmation"]["rule"].startswith("error:")
    assert ev["confirmation"]["confirm_floor"] == TH["confirm_floor"]


@needs_ixi
def test_a_copy_under_a_raised_threshold_is_a_warning_not_an_error(tmp_path):
    """Above every distinct pair, under the (configured) confirmation threshold: inconclusive, asks for review."""
    ds, sp, _, _ = _plant(tmp_path, ("gamma-0.8", "resample-1.5x"), 4)
    strict = {"thresholds": {NEAR: {"confirm_floor": 0.99}}}
    findings = _run(ds, sp, config=strict)
    severities = {p["b"]["participant_id"]: f.severity for f in findings for p in f.evidence["pairs"]}
    assert severities["sub-copy01"] == "warning", severities  # resampled: about 0.93, under 0.99
    assert severities["sub-copy00"] == "error"  # gamma: 1.000
    warning = next(f for f in findings if f.severity == "warning")
    assert "review" in warning.message and warning.evidence["pairs"][0]["confirmation"]["verdict"] == "inconclusive"
    # the configured severity of the check bounds the warning
    quiet = {**strict, "severity": {NEAR: "info"}}
    assert {f.severity for f in _run(ds, sp, config=quiet)} == {"info"}


@needs_ixi
def test_rotated_real_copies_are_candidates_at_the_adaptive_threshold(tmp_path):
    """0.90 misses these (a rotation moves the fingerprint's frame); searched at the 0.80 floor, within the budget."""
    ds, sp, original, planted = _plant(tmp_path, ("rot-5", "rot-15", "resample-1.5x"), 6)
    findings = _run(ds, sp)
    confirmed = _confirmed(findings)
    assert set(confirmed) == set(planted), (set(planted) - set(confirmed), [f.message for f in findings])
    stage = findings[0].evidence["candidate_thresholds"]
    assert stage["groups"]["T1w"]["threshold"] == TH["similarity_floor"] and stage["over_budget"] == 0
    assert stage["rule"].startswith("fingerprint pairs are searched per suffix")


#: Classes the fingerprint's frame loses; the spectra find them (in groups of at least SPECTRUM_MIN images).
FRAME_FREE = ("crop", "bias-corrected", "translate")


@needs_ixi
def test_crops_and_bias_corrected_copies_are_found_by_their_spectra(tmp_path):
    ds, sp, _, planted = _plant(tmp_path, FRAME_FREE, 24)
    findings = _run(ds, sp, workers=2)
    confirmed = _confirmed(findings)
    assert set(confirmed) == set(planted), (set(planted) - set(confirmed), [f.message for f in findings])
    assert not [f for f in findings if f.severity != "error"]
    by = {planted[s]: p["matched_by"] for s, p in confirmed.items()}
    assert "spectrum" in by["crop"] and "spectrum" in by["bias-corrected"], by
    spectra = findings[0].evidence["candidate_thresholds"]["spectrum"]["T1w"]
    assert spectra["z_min"] == TH["spectrum_z"] and spectra["pairs_added"] <= spectra["budget"]


@pytest.mark.slow
@needs_ixi
def test_every_transform_class_of_real_anatomy_is_a_confirmed_error(tmp_path):
    """Each of bench/bench_confirm.py's classes, each copied from another real head, among 34 other people.

    (Many copies of *one* head in a small group hide each other from the spectra's neighbourhood score:
    with all 24 classes copied from one head among 24 people, the crop, the bias-corrected and the
    translated copy were missed; docs/neardup-confirm.md.)
    """
    from bench.bench_confirm import TRANSFORMS

    files = _ixi_files()
    originals, others = files[:len(TRANSFORMS)], files[40:50]
    copies, planted = {}, {}
    for k, (name, f) in enumerate(zip(TRANSFORMS, originals)):
        img = nib.load(f)
        sub = f"sub-copy{k:02d}"
        copies[sub] = make_copy(name, np.asarray(img.dataobj, dtype=np.float32), img.affine, seed=2)
        planted[sub] = (name, f.name.split("_")[0])
    ds = _dataset(tmp_path / "ds", [*originals, *others], copies)
    sp = _splits(tmp_path / "sp", [f.name.split("_")[0] for f in [*originals, *others]], list(copies))
    findings = _run(ds, sp, workers=2, config={"thresholds": {NEAR: {"mutual_budget_per_image": 0.05}}})
    confirmed = _confirmed(findings)
    missed = sorted(planted[s][0] for s in set(planted) - set(confirmed))
    # measured (2026-12-01, twice): 23 of 24, the 10-degree rotation of one head missed by the candidate stage
    # (confirmed directly, that pair scores 0.91); with the mutual nearest neighbours (audit.images.mutual, here set
    # explicitly) 24
    assert missed == [], missed
    # every finding of any severity links a copy to its own original: no distinct pair is reported
    linked = [(p["a"]["participant_id"], p["b"]["participant_id"]) for f in findings for p in f.evidence["pairs"]]
    assert all(b in planted and planted[b][1] == a for a, b in linked), linked


@pytest.mark.slow
@needs_ixi
def test_every_candidate_copy_is_confirmed(tmp_path):
    """Every planted copy the candidate stage links is confirmed; the classes it always links are all there.

    (The candidate stage misses some rotated, translated, noised or padded copies of some heads, and
    every crop into the head of a uint8 image, bias-corrected or 2 mm-warped copy: bench/bench_neardup.py
    --confirm.)
    """
    from audit.checks.content import near_duplicates
    from audit.hashing import HashCache
    from audit.images.summary import summarise_images

    ds, sp, original, planted = _plant(tmp_path, EVERY, 10, seed=2)
    confirmed = _confirmed(_run(ds, sp))
    summaries = summarise_images(index_dataset(ds), workers=1, cache=HashCache(memory=True))
    pairs, _ = near_duplicates(summaries, **TH)
    linked = {p.b.subject for p in pairs if p.a.subject == original and p.b.subject in planted}
    assert linked <= set(confirmed), sorted(planted[s] for s in linked - set(confirmed))
    assert {s for s, c in planted.items() if c in FAST} <= set(confirmed)


@needs_ixi
def test_a_hundred_different_people_have_no_near_duplicate(tmp_path):
    files = _ixi_files()
    subjects = [f.name.split("_")[0] for f in files]
    sp = _splits(tmp_path / "sp", subjects[::2], subjects[1::2])
    assert _run(IXI, sp, workers=2) == []


def _synthetic_clean(tmp_path: Path, n: int) -> list:
    from audit.synthetic import make_dataset

    ds = tmp_path / f"ds{n}"
    make_dataset(ds, n_subjects=n, seed=0)  # as bidsaudit demo makes it
    subjects = sorted(p.name for p in ds.glob("sub-*"))
    sp = _splits(tmp_path / f"sp{n}", subjects[: n // 2], subjects[n // 2:])
    return _run(ds, sp, workers=2)


def test_clean_synthetic_dataset_has_no_near_duplicate_finding(tmp_path):
    """The demo's phantoms are all alike (distinct ones confirm at 0.87-0.96): no finding of any severity."""
    assert _synthetic_clean(tmp_path, 40) == []


@pytest.mark.slow
def test_false_pairs_do_not_grow_with_the_number_of_subjects(tmp_path):
    assert _synthetic_clean(tmp_path, 40) == [] and _synthetic_clean(tmp_path, 400) == []


def test_tail_bound_is_the_bonferroni_gaussian_tail():
    scores = [0.1, 0.2, 0.15, 0.12, 0.18]
    one, many = tail_bound(scores, 1, 0.01), tail_bound(scores, 1000, 0.01)
    assert np.mean(scores) < one < many  # more comparisons, a higher bar
    assert tail_bound([0.1, 0.2], 10, 0.01) == -np.inf  # too few to fit


def test_the_null_is_computed_only_when_it_can_change_a_verdict_and_is_kept_by_content_hash(tmp_path):
    """A copy scored at or above the cap needs no null; a null once scored is read back on the next audit."""
    from audit.hashing import HashCache
    from audit.images.confirmpairs import Candidate, confirm_candidates
    from audit.images.nullcache import NullCache
    from audit.images.summary import summarise_images
    from audit.synthetic import make_dataset

    ds = tmp_path / "ds"
    make_dataset(ds, n_subjects=8, seed=1, session_fraction=0.0)
    src = next((ds / "sub-003").rglob("*_T1w.nii*"))
    img = nib.load(src)
    v, a = np.asarray(img.dataobj, dtype=np.float32), img.affine
    for sub, name in (("sub-101", "scale"), ("sub-102", "rot-10")):
        out = ds / sub / "anat"
        out.mkdir(parents=True)
        data, aff = make_copy(name, v, a, seed=1)
        nib.save(nib.Nifti1Image(data, aff), str(out / f"{sub}_T1w.nii.gz"))
    images = summarise_images(index_dataset(ds), workers=1, cache=HashCache(memory=True))
    members = {"T1w": [(s.path, s.subject) for s in images if s.status == "ok"]}
    hashes = {s.path: s.content_hash for s in images}
    path = {s.subject: s.path for s in images}
    cache = NullCache(tmp_path / "cache")

    def run(copy: str):
        cand = Candidate(*sorted((path["sub-003"], path[copy])), "T1w")
        return confirm_candidates(ds, [cand], members, hashes=hashes, null_cache=cache,
                                  settings={"null_pairs": 12})

    (v1,), nulls, stage = run("sub-101")  # intensity x3.7: every fine detail kept, score 1.000
    assert v1.verdict == "copy" and v1.score >= TH["confirm_cap"]
    assert nulls["T1w"].scores == () and "no null needed" in nulls["T1w"].how and stage["confirmations"] == 1
    (v2,), nulls, stage = run("sub-102")  # rotated phantom: under the cap, the null decides
    scored = len(nulls["T1w"].scores)
    assert scored >= 10 and stage["confirmations"] == 1 + scored and stage["null_scores_cached"] == 0
    (v3,), again, stage = run("sub-102")  # the next audit of the same images
    assert stage["confirmations"] == 1 and stage["null_scores_cached"] == scored
    assert again["T1w"].scores == nulls["T1w"].scores and (v3.verdict, v3.score) == (v2.verdict, v2.score)
