"""Content leakage: the same scan, or a near-copy of it, under other ids in another split.

``leakage.duplicate_image`` [error]
    Two images with the same decoded-content hash
    (:attr:`~audit.images.summary.ImageSummary.content_hash`: SHA-256 of the
    decoded, canonical-RAS float32 voxels, so re-compression, header-only
    edits, another axis order, and another on-disk type or scaling that decode
    to the same values all hash alike) in different splits, under different
    participant ids, or under one participant's different session ids (the
    same voxels cannot be a genuine second visit).

``leakage.near_duplicate_image`` [error; warning when inconclusive]
    Two images of *different participants* in different splits that are
    near-copies of one scan, decided in two stages.

    1. *Candidates* (every pair of one BIDS suffix, cheap, scalable to
       100,000 images), by either of two per-image summaries
       (:mod:`audit.images.fingerprint`, :mod:`audit.images.sketch`):

       * *fingerprints* agree: relative similarity (cosine of the two
         fingerprints after removing the mean fingerprint of the images of
         their suffix; also with one grid mirrored or turned,
         :func:`audit.images.candidates.mirror_pairs`, so flip-augmented
         copies are candidates) at least the suffix's threshold *and*
         foreground sizes within its tolerance (along each principal axis).
         The threshold is adaptive per suffix: searched at
         ``similarity_floor`` 0.80 (sizes within ``size_tolerance_floor``
         6 %), all pairs are kept when they number at most the suffix's
         budget, max(``candidate_budget`` 100, ``candidate_budget_per_image``
         0.1 x its images); over it, the threshold rises to the budget's
         boundary, and where that reaches ``similarity`` 0.90 the fixed rule
         (0.90, ``size_tolerance`` 4 %) applies, so no pair it finds is lost.
         Pairs left over are not confirmed: the evidence's
         ``candidate_thresholds`` says where each suffix's threshold was set
         and how many. Suffixes with fewer than three fingerprinted images
         are not compared this way (no mean to compare against);
       * *spectra* stand out (:mod:`audit.images.spectrum`, suffixes of at
         least 24 images): the frame-free power spectra of the two images'
         band-passed log intensities are each other's near neighbours by at
         least ``spectrum_z`` (4) robust standard units of the suffix's pairs
         (at most ``spectrum_budget_fraction`` 0.25 of the fingerprints'
         budget more pairs): crops into the head,
         bias-field-corrected, translated copies, whose fingerprint frame moved;
       * *mutual nearest neighbours* (:mod:`audit.images.mutual`): the two
         images are each other's best by the sum of the spectrum and the
         fingerprint (best mirror) z scores, sizes within
         ``size_tolerance_floor``; at most ``mutual_budget_per_image`` (0.05)
         new pairs per image, the highest first: copies that several
         transforms moved under both cuts (flip + turn + noise);
       * *voxel patches* are shared: at least ``patch_overlap`` (default
         0.5) of the smaller image's 2x2x2 blocks of exact voxel values are
         also blocks of the other (256-hash bottom-k sketches): crops, pads,
         another origin or orientation, skull stripping.

    2. *Confirmation* (candidate pairs that cross splits only;
       :mod:`audit.images.confirmpairs`, through
       :meth:`audit.context.AuditContext.confirmations`): both images are
       read at full resolution, registered (mirrors along any axis,
       rotation, translation, scale) and compared by the correlation of
       their band-passed log intensities (:mod:`audit.images.confirm`).
       The threshold is the group's own: the Gaussian tail of ``null_pairs``
       random distinct pairs of the suffix at ``confirm_alpha`` / (its
       candidate pairs), clipped to [``confirm_floor``, ``confirm_cap``].
       **error**: confirmed (or the two share exact voxel blocks);
       **warning** (asks for review, both images pictured side by side):
       above every distinct pair the tail expects but under the threshold,
       or the images could not be compared; **no finding**: inside the
       group's distinct pairs. The finding's pairs carry both stages' scores,
       the transform found and the threshold with how it was set.

    How the false-pair rate is held as the dataset grows: a coarse score
    with a fixed threshold must let more distinct pairs through as pairs
    multiply (the demo's phantoms: 0 at 40 subjects, one at 400 at 0.937,
    9 at 1,000). Now the coarse score only selects what to confirm; the
    confirmation threshold grows with the number ``m`` of candidate pairs
    (at most ``confirm_alpha`` = 1 % chance of one false confirmation among
    them, Bonferroni), and the score of a distinct pair does not depend on
    how many others the group holds.

    Pairs with equal content hashes are left to ``leakage.duplicate_image``.
    Two sessions of one participant are expected to look alike and are never
    reported here (split apart, they are ``leakage.subject_overlap``).

Both stages, measured (``bench/bench_neardup.py --confirm``, figures in
:data:`SEPARATION`): on 100 different people (IXI T1w, 2 mm) no
finding; copies of 96 of them (24 transform classes, 4 copies each)
planted as new participants: every candidate copy confirmed (error), no
distinct pair at error or warning; distinct pairs score 0.13 +- 0.08
(highest 0.29), the lowest confirmed copy 0.75; a confirmation takes
0.44 s (2 mm); at 1 mm a copy costs about 0.75 s CPU (reading its two images
0.42 s, the comparison 0.25 s): 1.1x the image pass at 41 images, 1.3x at 13. Candidate recall per class on real anatomy
(96 copies, 24 classes, with the spectra and the mutual neighbours;
docs/neardup-confirm.md): every
class 100 % (crops into the head and bias-field-corrected copies, 0 % by the
fingerprints, are found by the spectra; the flip + 10-degree rotation +
noise copy under both cuts, by the mutual nearest neighbours); every
candidate copy has been confirmed. On clean IXI: 10 candidates (2
fingerprint, 3 spectrum, 5 mutual-neighbour pairs), all rejected by
confirmation, no finding. On
the demo's phantoms (all alike: distinct ones confirm at 0.87-0.97, up to
0.989 beside planted copies of others, so the group's threshold rises to the
cap, 0.993): no finding on the clean 40-, 400- and 2,000-subject datasets
(3 distinct candidates at 400 subjects at 0.90; at 2,000 subjects the adaptive
threshold finds 4,999 pairs at the 0.80 floor, over the budget of 260, and
rises to 0.882: 260 candidates, 140 across the demo's splits, stage-2 up to
0.887: all inside the distinct distribution); copies
that keep the voxel values (scaling, gamma 0.8, crops, skull stripping,
flips of the second and third array axes, Rician 2 %: 0.997-1.000) are
errors; a flip of the first array axis (0.94), resampled, rotated, noised and bias-changed phantom
copies fall inside the phantoms' distinct pairs and are not reported (there is nothing
individual left in such images to confirm them with).

How the candidate defaults were chosen (``bench/bench_neardup.py --separation``
measures the figures in :data:`SEPARATION`, which every near-duplicate
finding carries in its evidence): planted copies of synthetic phantoms (56)
and of real images (3) (re-saved as int16 with scaling, 2 % and 5 % noise,
gamma 0.8 and 1.25, cropping 3 voxels on one side and 2 on both, zero
padding, resampling to 1.5 times the voxel size, 7 and 10 degree rotations,
reorientation, a moved affine) against every pair of different subjects of
seven synthetic datasets of 12 to 200 subjects (54,000 pairs) and of the
real images in ``../shared/data/nifti``:

* fingerprints: copies caught every time (noise, gamma, padding, resampling,
  int16 and scaling of the phantoms; gamma, padding, int16 and scaling of the
  real images) have relative similarity 0.935 or more, sizes within 1.5 %;
  different subjects at most 0.891, and 0.875 among those whose sizes agree
  within 4 % (synthetic phantoms come from one template, so some "people"
  are near-twins); different real images at most 0.04. So 0.90 with the
  size test has no false positive on any of them, with 0.025 to spare;
* voxel patches: every crop, pad, reorientation and moved copy shares 0.96
  or more of its patches with its original; different subjects (synthetic
  and real) share none (0.000): 0.5 is far from both;
* real near-duplicates: the denoised ``ascm_out_test.nii.gz`` of
  ``aniso_vox.nii.gz`` (fingerprint 0.927, sizes 1.9 % apart), the
  reoriented, moved and resampled ``reoriented_anat_moved.nii`` of
  ``anatomical.nii`` (0.913, 3.6 %) and ``example_nifti2.nii.gz``, a
  32x20x12 crop of ``example4d.nii.gz`` (patches 0.905) are caught;
* missed: noise added to a zero-masked image (``example4d``'s masked
  background becomes data: 0.58), rotations of 7 degrees or more of real
  images other than ``anatomical.nii`` (0.75 to 0.83: the fingerprint of a
  volume over ``audit.images.fingerprint.SMOOTH_VOXELS`` voxels is smoothed from coarser
  blocks), resampling that changes a tight crop's extent by more than 4 %,
  and images too small to fingerprint whose values changed (the 3-slice
  ``resampled_anat_moved.nii``). Rotations are not part of the contract: a
  rotated copy is caught when the frame finds it (most phantoms: 110 of 112).

Identical voxels stored under another affine (a moved or reoriented copy)
have the same content hash: ``leakage.duplicate_image`` reports them.

Images are mapped to splits by participant and session: a split row without
a session covers every session of that participant. Pairs inside one split
are not leakage and are not reported. Findings: one per pair of splits (per
fold of a k-fold layout), naming every participant involved, with the pairs
(paths, ids, hash or similarity) in evidence (the first :data:`MAX_PAIRS`;
the count is complete).

Both checks read the one image pass of the audit
(:attr:`~audit.context.AuditContext.images`); with
``--ignore-nifti-headers`` nothing is read and they report nothing. A check
reads no image file: for the report, the first :data:`THUMBNAIL_PAIRS` pairs of
each finding of the :data:`PICTURED` checks get a 64x64 middle-slice picture
of both images (``thumbnail_png``, base64 PNG) once the checks have run
(:func:`audit.images.thumbnails.with_pair_pictures`, called by
:mod:`audit.api`); those few images are read again for it, nothing else.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from itertools import combinations
from typing import TYPE_CHECKING, Any

from audit.catalogue import THRESHOLDS
from audit.checks.registry import check
from audit.context import AuditContext
from audit.findings import Finding, finding
from audit.images.confirmpairs import Candidate
from audit.images.nearpairs import NearPair, near_duplicates

if TYPE_CHECKING:
    from audit.images.summary import ImageSummaries, ImageSummary

__all__ = ["MAX_PAIRS", "PICTURED", "SEPARATION", "THRESHOLDS", "THUMBNAIL_PAIRS", "near_duplicates"]

NEAR = "leakage.near_duplicate_image"
#: The confirmation stage's settings (:func:`audit.images.confirmpairs.confirm_candidates`) -> their threshold names.
CONFIRM_SETTINGS = {"alpha": "confirm_alpha", "null_pairs": "null_pairs", "floor": "confirm_floor",
                    "cap": "confirm_cap", "max_confirmations": "max_confirmations"}
#: The decision, in words (every finding carries it).
DECISION_RULE = (
    "error: the confirmation stage finds a copy (the pair shares exact voxel blocks, or its full-resolution "
    "fine-detail correlation reaches the group's threshold: the Gaussian tail of the group's own distinct pairs "
    "at confirm_alpha / (candidate pairs of the group), clipped to [confirm_floor, confirm_cap]); warning: the "
    "correlation lies above that tail but under the threshold, or the images could not be compared; no finding: "
    "the correlation lies inside the group's distinct pairs")
#: The candidate stage's adaptive threshold, in words (every finding carries it).
CANDIDATE_RULE = (
    "fingerprint pairs are searched per suffix at similarity_floor (sizes within size_tolerance_floor); a suffix "
    "keeps them all when they number at most its budget, max(candidate_budget, candidate_budget_per_image x its "
    "images); otherwise its threshold rises to the budget's boundary (the pairs above the (budget + 1)-th highest "
    "similarity), and where that boundary reaches similarity the fixed rule (similarity, size_tolerance) applies; "
    "pairs left over are not confirmed (over_budget, per suffix); suffixes of at least 24 images are also searched "
    "by their spectra (pairs standing out of both images' neighbourhoods by spectrum_z robust standard units, "
    "at most spectrum_budget_fraction of the budget more: crops into the head, bias-field-corrected and "
    "translated copies), and pairs whose two images are each other's nearest by the sum of both z scores, "
    "sizes within size_tolerance_floor (at most mutual_budget_per_image x its images more, the highest first)")
#: Pairs listed in one finding's evidence (the count is always complete).
MAX_PAIRS = 50
NAMED = 4  # pairs named in a message
#: Pairs of a finding whose two images get a middle-slice picture in evidence (``thumbnail_png``) for the report.
THUMBNAIL_PAIRS = 4
#: The checks whose findings' evidence pairs (``a``/``b`` sides with a ``path``) want those pictures.
PICTURED = ("leakage.duplicate_image", "leakage.near_duplicate_image")


#: Measured by ``bench/bench_neardup.py --separation`` (see the module documentation).
SEPARATION: dict[str, Any] = {
    "measured_with": "bench/bench_neardup.py --separation",
    "copies_lowest_similarity": 0.935,  # transforms caught every time (noise, gamma, padding, resampling...)
    "distinct_highest_similarity_same_size": 0.875,  # different subjects whose sizes agree within 4 %
    "distinct_highest_similarity": 0.891,  # different subjects, any size
    "copies_lowest_patch_overlap": 0.962,  # crops, pads, reorientations, moved copies
    "distinct_highest_patch_overlap": 0.0,  # different subjects, synthetic and real
    "distinct_pairs": 54_000,
    "datasets": "synthetic phantoms, 7 datasets of 12 to 200 subjects; 9 real images of ../shared/data/nifti",
    # the confirmation stage (bench/bench_neardup.py --confirm)
    "confirmation_measured_with": "bench/bench_neardup.py --confirm",
    "confirmation_distinct_real": {"pairs": 30, "mean": 0.128, "sd": 0.077, "highest": 0.295,
                                   "of": "IXI T1w, 100 different people, 2 mm"},
    "confirmation_copies_real_lowest": 0.616,  # every candidate copy of 24 transform classes (elastic 2 mm)
    "candidate_distinct_real_highest": 0.891,  # IXI + copies, stage 1, at the adaptive threshold (floor 0.80)
    "confirmation_distinct_phantoms_highest": 0.989,  # phantoms (+ copies of others): the group threshold rises to the cap
    "false_error_pairs": {"IXI": 0, "synthetic 40": 0, "synthetic 400": 0, "synthetic 2000": 0},
}


# ------------------------------------------------------------------ splits
@dataclass(frozen=True)
class _Member:
    """Where an image lies in one fold view: the splits holding its participant (and session)."""

    image: ImageSummary
    splits: tuple[str, ...]


def _membership(tables: Mapping[str, Any]) -> Any:
    """A function from (participant, session) to the names of the splits (in view order) holding it."""
    sessions = {name: t.sessions() for name, t in tables.items()}
    subjects = {name: t.subjects() for name, t in tables.items()}

    def splits_of(subject: str | None, session: str | None) -> tuple[str, ...]:
        if subject is None:
            return ()
        out = []
        for name in tables:
            ses = sessions[name]
            if (subject, None) in ses:
                out.append(name)
            elif session is None:
                if subject in subjects[name]:
                    out.append(name)
            elif (subject, session) in ses:
                out.append(name)
        return tuple(out)

    return splits_of


def _cross_split(a: ImageSummary, b: ImageSummary, splits_of: Any,
                 order: Mapping[str, int]) -> list[tuple[str, str, ImageSummary, ImageSummary]]:
    """``(split x, split y, image in x, image in y)`` for every pair of different splits, x before y."""
    sa, sb = splits_of(a.subject, a.session), splits_of(b.subject, b.session)
    out = []
    seen = set()
    for x in sa:
        for y in sb:
            if x == y:
                continue
            if order[x] < order[y]:
                key = (x, y, a.path, b.path)
                item = (x, y, a, b)
            else:
                key = (y, x, b.path, a.path)
                item = (y, x, b, a)
            if key not in seen:
                seen.add(key)
                out.append(item)
    return out


def _side(split: str, s: ImageSummary) -> dict[str, Any]:
    return {"split": split, "participant_id": s.subject, "session_id": s.session, "path": s.path}


def _where(fold: int | None) -> dict[str, Any]:
    return {} if fold is None else {"fold": fold}


def _label(fold: int | None, a: str, b: str) -> str:
    return f"{a} and {b}" + ("" if fold is None else f" (fold {fold})")


def _pair_name(a: ImageSummary, b: ImageSummary) -> str:
    def one(s: ImageSummary) -> str:
        return f"{s.subject}/{s.session}" if s.session else str(s.subject)

    return f"{one(a)} = {one(b)}"


def _findings(ctx: AuditContext, fold: int | None, hits: dict[tuple[str, str], list[dict[str, Any]]],
              what: tuple[str, str], extra: Mapping[str, Any], severity: str | None = None) -> Iterator[Finding]:
    """One finding per pair of splits; ``what``: the words after the count (one pair, several pairs)."""
    for (x, y), rows in hits.items():
        rows.sort(key=lambda r: (r["a"]["participant_id"] or "", r["b"]["participant_id"] or "",
                                 r["a"]["path"], r["b"]["path"]))
        names = [r["name"] for r in rows]
        shown = ", ".join(names[:NAMED]) + (f", and {len(names) - NAMED} more" if len(names) > NAMED else "")
        subjects = {r[k]["participant_id"] for r in rows for k in ("a", "b") if r[k]["participant_id"]}
        pairs = [{k: v for k, v in r.items() if k != "name"} for r in rows[:MAX_PAIRS]]
        yield finding(
            f"{len(rows)} image pair{'s' if len(rows) != 1 else ''} in {_label(fold, x, y)} "
            f"{what[0] if len(rows) == 1 else what[1]}: {shown}",
            splits=(x, y), subjects=subjects,
            evidence={**_where(fold), "count": len(rows), "pairs": pairs, **extra},
            severity=severity,  # type: ignore[arg-type]
        )


def _summaries(ctx: AuditContext) -> ImageSummaries:
    summaries: ImageSummaries = ctx.images
    return summaries


def _views(ctx: AuditContext) -> Iterator[tuple[int | None, Mapping[str, Any]]]:
    assert ctx.splits is not None
    yield from ctx.splits.views()


# --------------------------------------------------------------- duplicates
@check("leakage.duplicate_image", default="error", needs={"splits", "images"})
def duplicate_image(ctx: AuditContext) -> Iterator[Finding]:
    """The same decoded voxels under different participant or session ids in different splits."""
    summaries = _summaries(ctx)
    if summaries.ignore_headers:
        return
    by_hash: dict[str, list[ImageSummary]] = defaultdict(list)
    for s in summaries:
        if s.content_hash and s.subject and s.status in ("ok", "empty"):
            by_hash[s.content_hash].append(s)
    groups = [g for g in by_hash.values() if len({(s.subject, s.session) for s in g}) > 1]
    if not groups:
        return
    for fold, tables in _views(ctx):
        splits_of = _membership(tables)
        order = {name: i for i, name in enumerate(tables)}
        hits: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for group in groups:
            for a, b in combinations(sorted(group, key=lambda s: s.path), 2):
                if (a.subject, a.session) == (b.subject, b.session):
                    continue  # one visit stored twice (two runs): not leakage between ids
                for x, y, ia, ib in _cross_split(a, b, splits_of, order):
                    hits[(x, y)].append({"a": _side(x, ia), "b": _side(y, ib), "content_hash": a.content_hash,
                                         "name": _pair_name(ia, ib)})
        yield from _findings(ctx, fold, _ordered(hits, order), ("holds the same voxel data under two ids",
                                                           "hold the same voxel data under two ids"), {
            "hash": "sha256 of the decoded voxels (canonical RAS order, float32): survives re-compression, "
                    "header edits and on-disk type or scaling changes that decode to the same values",
        })


def _ordered(hits: dict[tuple[str, str], list[dict[str, Any]]],
             order: Mapping[str, int]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    return {k: hits[k] for k in sorted(hits, key=lambda k: (order[k[0]], order[k[1]]))}


#: The candidate stage's settings (:func:`near_duplicates`' keywords, named as the thresholds).
CANDIDATE_SETTINGS = ("similarity", "size_tolerance", "patch_overlap", "similarity_floor", "size_tolerance_floor",
                      "candidate_budget", "candidate_budget_per_image", "spectrum_z",
                      "spectrum_budget_fraction", "mutual_budget_per_image")


def _near_cached(ctx: AuditContext, th: Mapping[str, Any]) -> tuple[list[NearPair], dict[str, Any]]:
    return ctx.once(_near, tuple((k, th[k]) for k in CANDIDATE_SETTINGS if k in th))


def _near(ctx: AuditContext, settings: tuple[tuple[str, Any], ...]) -> tuple[list[NearPair], dict[str, Any]]:
    return near_duplicates(_summaries(ctx), **dict(settings))


def _thresholds(ctx: AuditContext, key: str) -> tuple[dict[str, Any], list[str]]:
    """The defaults with the configured overrides of ``key`` (and the overrides left out when it was read)."""
    return ctx.thresholds(key, THRESHOLDS[key]), ctx.config.ignored_overrides(key)


def _review_severity(ctx: AuditContext) -> str:
    """Inconclusive pairs: a warning, or the check's configured severity when that is lower."""
    configured = ctx.config.severity_overrides().get(NEAR, "error")
    return configured if configured == "info" else "warning"


def _crossing(ctx: AuditContext, pairs: list[NearPair]) -> list[NearPair]:
    """The pairs that lie in two different splits in at least one view (only those can leak)."""
    out, seen = [], set()
    for _, tables in _views(ctx):
        splits_of = _membership(tables)
        order = {name: i for i, name in enumerate(tables)}
        for p in pairs:
            if (p.a.path, p.b.path) not in seen and _cross_split(p.a, p.b, splits_of, order):
                seen.add((p.a.path, p.b.path))
                out.append(p)
    return out


@check("leakage.near_duplicate_image", default="error", needs={"splits", "images"},
       thresholds=THRESHOLDS["leakage.near_duplicate_image"])
def near_duplicate_image(ctx: AuditContext) -> Iterator[Finding]:
    """Near-copies of one scan (flipped, rotated, cropped, resampled, re-scaled, noised) under different participants."""
    summaries = _summaries(ctx)
    if summaries.ignore_headers:
        return
    th, ignored = _thresholds(ctx, NEAR)
    pairs, stats = _near_cached(ctx, th)
    pairs = _crossing(ctx, pairs)
    if not pairs:
        return
    cands = tuple(Candidate(p.a.path, p.b.path, p.group, (p.patch_overlap or 0.0) >= th["patch_overlap"])
                  for p in pairs)
    settings = tuple((key, th[name]) for key, name in CONFIRM_SETTINGS.items())
    verdicts, nulls, stage = ctx.confirmations(cands, settings)
    by_pair = {(v.a, v.b): v for v in verdicts}
    extra: dict[str, Any] = {
        "threshold": th["similarity"], "size_tolerance": th["size_tolerance"],
        "patch_overlap_threshold": th["patch_overlap"],
        "candidate_thresholds": {
            "rule": CANDIDATE_RULE, "groups": stats.get("thresholds", {}),
            "over_budget": sum(g.get("over_budget", 0) for g in stats.get("thresholds", {}).values()),
            "spectrum": stats.get("spectrum", {}), "mutual": stats.get("mutual", {}),
            **{k: th[k] for k in CANDIDATE_SETTINGS[3:] if k in th}},
        "similarity": "cosine of the two fingerprints after removing the mean fingerprint of the images of "
                      "their suffix (audit.images.candidates), or of one and the other mirrored",
        "confirmation": {"rule": DECISION_RULE, "groups": {g: n.to_dict() for g, n in sorted(nulls.items())},
                         "stage": stage, **{name: th[name] for name in CONFIRM_SETTINGS.values()}},
        "separation": SEPARATION,
        **({"ignored_overrides": ignored} if ignored else {}),
    }
    review = _review_severity(ctx)
    for fold, tables in _views(ctx):
        splits_of = _membership(tables)
        order = {name: i for i, name in enumerate(tables)}
        hits: dict[str, dict[tuple[str, str], list[dict[str, Any]]]] = {"copy": defaultdict(list),
                                                                       "inconclusive": defaultdict(list)}
        for p in pairs:
            v = by_pair.get((p.a.path, p.b.path))
            if v is None or v.verdict not in hits:
                continue
            for x, y, ia, ib in _cross_split(p.a, p.b, splits_of, order):
                hits[v.verdict][(x, y)].append({
                    "a": _side(x, ia), "b": _side(y, ib), "similarity": p.similarity,
                    "size_difference": p.size_difference, "patch_overlap": p.patch_overlap,
                    "spectrum_z": p.spectrum_z, "mutual_score": p.mutual_score,
                    "matched_by": list(p.matched_by), "grid_map": p.grid_map, "suffix": p.group,
                    "compared_with": p.group_size, "confirmation": v.evidence(), "name": _pair_name(ia, ib)})
        yield from _findings(ctx, fold, _ordered(hits["copy"], order), (
            "is a confirmed near-duplicate under two participants",
            "are confirmed near-duplicates under two participants"), extra)
        yield from _findings(ctx, fold, _ordered(hits["inconclusive"], order), (
            "looks alike but is not confirmed as a copy (review the two images side by side)",
            "look alike but are not confirmed as copies (review the two images side by side)"), extra,
            severity=review)
