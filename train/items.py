"""Items: the images a split table names in the verified dataset, with label and segmentation mask.

:func:`collect_items` turns the rows of a split table into images of the
verified dataset (a row without ``session_id`` takes every session), with
their label and, for segmentation, their mask from ``derivatives/``
(:func:`find_masks`). Imports neither torch nor numpy.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from audit.errors import InputError

if TYPE_CHECKING:
    from audit.bidsindex import DatasetIndex
    from audit.splits import SplitTable

__all__ = ["MASK_SUFFIXES", "Item", "collect_items", "find_masks"]

MASK_SUFFIXES = ("dseg", "mask")
_MASK_RE = re.compile(r"^(?P<stem>.+)_(?P<suffix>dseg|mask)\.nii(\.gz)?$")


@dataclass(frozen=True)
class Item:
    """One image of a split, with what the trainer needs to know about it.

    ``label`` is the raw value of the label column (``None`` for
    reconstruction and segmentation); ``path`` is relative to the dataset
    root and ``sha256`` its certified content hash; ``mask`` (segmentation) is
    an absolute path with its content hash in ``mask_sha256``.
    """

    participant_id: str
    session_id: str | None
    path: str
    sha256: str
    label: str | None = None
    mask: str | None = None
    mask_sha256: str | None = None
    where: str = ""


def _entities(name: str) -> dict[str, str]:
    out = {}
    for part in name.split("_"):
        key, sep, value = part.partition("-")
        if sep:
            out[key] = value
    return out


def find_masks(root: Path) -> list[tuple[Path, dict[str, str], str]]:
    """Every ``*_dseg.nii[.gz]`` and ``*_mask.nii[.gz]`` under ``root/derivatives/*/sub-*``.

    Returns ``(path, entities, suffix)`` sorted by path.
    """
    out = []
    deriv = root / "derivatives"
    if not deriv.is_dir():
        return out
    for pipeline in sorted(p for p in deriv.iterdir() if p.is_dir()):
        for sub in sorted(pipeline.glob("sub-*")):
            for dirpath, _, files in os.walk(sub):
                for f in files:
                    m = _MASK_RE.match(f)
                    if m:
                        out.append((Path(dirpath) / f, _entities(m.group("stem")), m.group("suffix")))
    return sorted(out, key=lambda t: str(t[0]))


def _match_mask(image_entities: Mapping[str, str], masks: Sequence[tuple[Path, dict[str, str], str]],
                image: str) -> Path | None:
    best: list[tuple[tuple[int, int, int], Path]] = []
    for path, ents, suffix in masks:
        if ents.get("sub") != image_entities.get("sub"):
            continue
        if "ses" in image_entities and ents.get("ses") not in (None, image_entities["ses"]):
            continue
        if any(ents[k] != v for k, v in image_entities.items() if k in ents):
            continue
        shared = sum(1 for k in image_entities if k in ents)
        extra = sum(1 for k in ents if k not in image_entities)
        best.append(((shared, int(suffix == "dseg"), -extra), path))
    if not best:
        return None
    best.sort(key=lambda t: t[0], reverse=True)
    if len(best) > 1 and best[0][0] == best[1][0]:
        raise InputError(best[0][1], f"two masks fit {image} equally well: {best[0][1].name} and {best[1][1].name}",
                         expected="one *_dseg or *_mask image per image (use desc-/space- entities to tell them apart)")
    return best[0][1]


def collect_items(index: DatasetIndex, files: Mapping[str, str], table: SplitTable, *, task: str,
                  label: str | None, suffix: str = "T1w",
                  masks: Sequence[tuple[Path, dict[str, str], str]] | None = None,
                  notes: list[str] | None = None, require_label: bool = True,
                  mask_hashes: Mapping[str, str] | None = None) -> list[Item]:
    """The images of ``table``'s rows in the dataset, in row order.

    Parameters
    ----------
    index : DatasetIndex
        The verified dataset.
    files : mapping
        Certified content hashes by relative path.
    table : SplitTable
        One split of one fold.
    task : str
        One of :data:`train.config.TASKS`.
    label : str or None
        Label column (classification, regression): read from the split
        file's column when it has one, else from ``participants.tsv``.
    suffix : str
        BIDS suffix of the images to use.
    masks : list, optional
        What :func:`find_masks` found (segmentation).
    notes : list, optional
        Receives one line per row skipped (no image, no label).
    mask_hashes : mapping, optional
        Certified mask hashes by path relative to the dataset root (the
        certificate's ``dataset.masks``): the loader checks the bytes it
        decodes against these.
    require_label : bool
        Skip rows without a label value (training); ``False`` keeps them with
        ``label=None`` (prediction of unlabelled data).

    Raises
    ------
    InputError
        A regression label that is not a number; segmentation images without
        a mask (all of them listed).
    """
    by_subject: dict[str, list[Any]] = {}
    for row in index.images():
        if row.suffix == suffix and row.subject:
            by_subject.setdefault(row.subject, []).append(row)
    ptable = index.participants if label and label not in table.columns else None
    plabels: dict[str, str] = {}
    if ptable is not None and label in ptable.columns:
        for pid, value in zip(ptable["participant_id"], ptable[label]):
            plabels["sub-" + str(pid).strip().removeprefix("sub-")] = value
    skipped_label: list[str] = []
    skipped_image: list[str] = []
    out: list[Item] = []
    seen: set[str] = set()
    missing_mask: list[str] = []
    for r in table.rows:
        value: str | None = None
        if task in ("classification", "regression"):
            value = r.label if label == table.label_column else (r.extra.get(label) if label else None)
            if value is None and label not in table.columns:
                value = plabels.get(r.participant_id)
            value = None if value is None or str(value).strip() in ("", "n/a", "nan", "NaN") else str(value).strip()
            if value is None and require_label:
                skipped_label.append(r.participant_id)
                continue
            if task == "regression" and value is not None:
                try:
                    if not math.isfinite(float(value)):
                        raise ValueError
                except ValueError:
                    raise InputError(r.file, line=r.line, field=label, expected="a number (regression target)",
                                     got=repr(value)) from None
        rows = [x for x in by_subject.get(r.participant_id, ()) if r.session_id in (None, x.session)]
        if not rows:
            skipped_image.append(r.participant_id + (f"/{r.session_id}" if r.session_id else ""))
            continue
        for x in rows:
            if x.path in seen:
                continue
            seen.add(x.path)
            mask = msha = None
            if task == "segmentation":
                mpath = _match_mask(_entities(x.entities), masks or (), x.path)
                if mpath is None:
                    missing_mask.append(x.path)
                    continue
                rel = mpath.relative_to(index.root).as_posix() if mpath.is_relative_to(index.root) else None
                msha = (mask_hashes or {}).get(rel or "")
                if msha is None:
                    try:
                        msha = "sha256:" + hashlib.sha256(mpath.read_bytes()).hexdigest()
                    except OSError as err:
                        raise InputError(mpath, f"cannot read the mask: {err.strerror or err}") from None
                mask = str(mpath)
            out.append(Item(r.participant_id, x.session, x.path, files.get(x.path, ""), value, mask, msha,
                            f"{r.file}:{r.line}"))
    if missing_mask:
        subs = sorted({p.split("/", 1)[0] for p in missing_mask})
        raise InputError(index.root / "derivatives", f"no segmentation mask for {len(missing_mask)} image(s) of "
                         f"{len(subs)} participant(s) in split '{table.name}': {', '.join(subs[:20])}"
                         + (" ..." if len(subs) > 20 else "") + f" (first image: {missing_mask[0]})",
                         expected="one derivatives/<pipeline>/sub-*/.../*_dseg.nii.gz or *_mask.nii.gz with the "
                         "image's entities for every image of the split")
    if notes is not None:
        name = table.name + ("" if table.fold is None else f" (fold {table.fold})")
        if skipped_label:
            notes.append(f"{name}: {len(skipped_label)} row(s) without a value for '{label}' skipped: "
                         + ", ".join(sorted(set(skipped_label))[:10]))
        if skipped_image:
            notes.append(f"{name}: {len(skipped_image)} row(s) without a {suffix} image skipped: "
                         + ", ".join(sorted(set(skipped_image))[:10]))
    return out
