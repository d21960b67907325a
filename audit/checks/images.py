"""quality.* checks over image content: corrupt, empty, inconsistent geometry, absent images.

Every image check reads :attr:`AuditContext.images` (one pass over
the images per audit, cached on disk), never the files.

Findings are grouped: one per kind of problem (zero-byte, truncated,
impossible dimensions...) for corrupt and empty images, one per suffix for
geometry. Each lists the subjects concerned and, in ``evidence``, the count
and the files (path, subject, what is wrong), up to :data:`MAX_FILES`.

With ``--ignore-nifti-headers`` no image content is read (as the validator's
``--ignoreNiftiHeaders``: the images are placeholders), so
``quality.corrupt_image``, ``quality.empty_image`` and
``quality.inconsistent_geometry`` report nothing; zero-byte images are not
corrupt then. ``quality.absent_images`` needs no image read and always runs.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from audit.checks.registry import check
from audit.context import AuditContext
from audit.findings import Finding, finding
from audit.images.summary import ImageSummaries, ImageSummary

#: Files listed in one finding's evidence (the count is always complete).
MAX_FILES = 100
#: Voxel sizes are compared after rounding to this many decimals (mm).
ZOOM_DECIMALS = 2

_CORRUPT_WORDS = {
    "zero_byte": "are zero-byte files (use --ignore-nifti-headers if they are placeholders)",
    "truncated": "are truncated",
    "bad_gzip": "have damaged gzip data",
    "not_nifti": "are not NIfTI files",
    "bad_header": "have an invalid header",
    "impossible_dims": "have impossible dimensions",
    "unknown_dtype": "have an unknown data type",
    "nonfinite_affine": "have a non-finite (NaN or infinite) affine",
    "singular_affine": "have a singular affine",
    "undecodable": "cannot be decoded",
}
_EMPTY_WORDS = {
    "no_voxels": "have no voxels",
    "non_finite": "have no finite voxel (all NaN or infinite)",
    "constant": "hold one value in every voxel",
}


def _summaries(ctx: AuditContext) -> ImageSummaries:
    summaries: ImageSummaries = ctx.images
    return summaries


def _file_entry(s: ImageSummary, **extra: Any) -> dict[str, Any]:
    return {"path": s.path, "subject": s.subject, "session": s.session, "problem": s.problem, **extra}


def _grouped(items: Sequence[ImageSummary], words: dict[str, str], noun: str) -> Iterator[Finding]:
    groups: dict[str, list[ImageSummary]] = defaultdict(list)
    for s in items:
        groups[s.problem_code or "undecodable"].append(s)
    for code, group in sorted(groups.items()):
        group.sort(key=lambda s: s.path)
        first = group[0]
        if len(group) == 1:
            message = f"{first.path}: {noun} ({first.problem})"
        else:
            what = words.get(code, code.replace("_", " "))
            message = f"{len(group)} images {what} (first: {first.path}: {first.problem})"
        yield finding(
            message,
            subjects=sorted({s.subject for s in group if s.subject}),
            evidence={"problem": code, "count": len(group), "files": [_file_entry(s) for s in group[:MAX_FILES]]},
        )


@check("quality.corrupt_image", default="error", needs={"images"})
def corrupt_image(ctx: AuditContext) -> Iterator[Finding]:
    """Images that cannot be read, are truncated, or have impossible header values."""
    summaries = _summaries(ctx)
    if summaries.ignore_headers:
        return
    yield from _grouped(summaries.with_status("corrupt"), _CORRUPT_WORDS, "corrupt image")


@check("quality.empty_image", default="error", needs={"images"})
def empty_image(ctx: AuditContext) -> Iterator[Finding]:
    """Images with no voxels, no finite voxel, or one value everywhere."""
    summaries = _summaries(ctx)
    if summaries.ignore_headers:
        return
    yield from _grouped(summaries.with_status("empty"), _EMPTY_WORDS, "empty image")


def _geometry(s: ImageSummary) -> dict[str, Any]:
    return {
        "shape": list(s.spatial_shape or ()),
        "voxel_size": [round(z, ZOOM_DECIMALS) for z in (s.zooms or ())],
        "orientation": s.orientation,
    }


def _describe(attr: str, value: Any) -> str:
    if attr == "shape":
        return "x".join(str(v) for v in value)
    if attr == "voxel_size":
        return "x".join(f"{v:g}" for v in value) + " mm"
    return str(value)


@check("quality.inconsistent_geometry", default="warning", needs={"images"})
def inconsistent_geometry(ctx: AuditContext) -> Iterator[Finding]:
    """Images whose voxel size, orientation or shape differs from the dataset's norm for their suffix.

    The norm of an attribute (spatial shape, voxel size rounded to 0.01 mm,
    orientation code) is the value a strict majority of the readable images of
    that suffix share; an attribute without such a majority is not judged.
    Suffixes with fewer than three readable images are not judged.
    """
    summaries = _summaries(ctx)
    if summaries.ignore_headers:
        return
    by_suffix: dict[str, list[ImageSummary]] = defaultdict(list)
    for s in summaries.with_status("ok", "empty"):
        if s.shape is not None and s.zooms is not None:
            by_suffix[s.suffix or "?"].append(s)
    for suffix, group in sorted(by_suffix.items()):
        yield from _suffix_geometry(suffix, group)


def _suffix_geometry(suffix: str, group: list[ImageSummary]) -> Iterable[Finding]:
    if len(group) < 3:
        return
    geoms = {s.path: _geometry(s) for s in group}
    norm: dict[str, Any] = {}
    for attr in ("shape", "voxel_size", "orientation"):
        counts = Counter(repr(g[attr]) for g in geoms.values())
        value, n = counts.most_common(1)[0]
        if n * 2 > len(group):
            norm[attr] = next(g[attr] for g in geoms.values() if repr(g[attr]) == value)
    if not norm:
        return
    deviating = []
    per_attr: Counter[str] = Counter()
    for s in sorted(group, key=lambda s: s.path):
        g = geoms[s.path]
        differs = {a: g[a] for a in norm if g[a] != norm[a]}
        if differs:
            per_attr.update(differs.keys())
            deviating.append((s, differs))
    if not deviating:
        return
    parts = [f"{per_attr[a]} in {a.replace('_', ' ')}" for a in ("shape", "voxel_size", "orientation") if per_attr[a]]
    norm_text = ", ".join(f"{a.replace('_', ' ')} {_describe(a, v)}" for a, v in norm.items())
    first, differs = deviating[0]
    first_text = ", ".join(f"{a.replace('_', ' ')} {_describe(a, v)}" for a, v in differs.items())
    yield finding(
        f"{suffix}: {len(deviating)} of {len(group)} images differ from the usual geometry ({norm_text}): "
        f"{', '.join(parts)} (first: {first.path}: {first_text})",
        subjects=sorted({s.subject for s, _ in deviating if s.subject}),
        evidence={
            "suffix": suffix, "norm": norm, "images": len(group), "count": len(deviating),
            "differs": dict(per_attr),
            "files": [{"path": s.path, "subject": s.subject, "session": s.session, "differs": d}
                      for s, d in deviating[:MAX_FILES]],
        },
    )


@check("quality.absent_images", default="warning", needs={"dataset"})
def absent_images(ctx: AuditContext) -> Iterator[Finding]:
    """Images whose content is not here (dangling symbolic links, git-annex pointers): image checks skip them."""
    assert ctx.index is not None
    absent = [r for r in ctx.index.images() if r.link in ("dangling", "annex-pointer")]
    if not absent:
        return
    kinds = Counter(r.link for r in absent)
    yield finding(
        f"{len(absent)} images have no content here (dangling symbolic links or git-annex pointers); "
        "image checks skipped for them",
        subjects=sorted({r.subject for r in absent if r.subject}),
        evidence={
            "count": len(absent), "dangling": kinds.get("dangling", 0), "annex_pointer": kinds.get("annex-pointer", 0),
            "annexed": sum(1 for r in absent if r.annex_key),
            "files": [{"path": r.path, "subject": r.subject, "link": r.link, "annex_key": r.annex_key}
                      for r in absent[:MAX_FILES]],
            "hint": "datalad get (or git annex get) fetches the content",
        },
    )
