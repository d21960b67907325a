"""Turn a request (JSON paths or uploaded split files) into a queued audit, or a clear 4xx.

Everything a worker will read is checked here first: paths are confined to
the roots, the dataset must be a BIDS folder, the split files must parse.
The audit itself runs later, in the worker pool.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from audit.errors import BidsauditError, InputError
from audit.fsutil import atomic_write_bytes
from audit.service.security import (
    PathRefused,
    UploadRefused,
    check_links,
    confine,
    safe_upload_name,
    unpack_zip,
)
from audit.service.settings import Settings
from audit.service.store import AuditRecord, Store, new_id
from audit.splits import KNOWN_SPLITS, SplitSet, read_splits

__all__ = ["AuditRequest", "SubmitError", "submit_paths", "submit_upload", "UPLOAD_FIELDS"]

Column = Field(default=None, max_length=128, pattern=r"^[^\x00-\x1f]*$")


class AuditRequest(BaseModel):
    """``POST /api/audits`` as JSON: paths under a ``--root`` and the CLI's ``audit`` options."""

    model_config = ConfigDict(extra="forbid")

    dataset: str | None = Field(default=None, max_length=4096, description="BIDS dataset folder under a root "
                                "(null: audit the split files alone)")
    splits: str = Field(max_length=4096, description="split files under a root (any of the six formats)")
    label: str | None = Column
    site: str | None = Column
    group: str | None = Column
    pretrain: str | None = Field(default=None, max_length=4096, description="any split input (MONAI datalist, "
                                 "path list, participant TSV) or a model folder, under a root")
    id_pattern: str | None = Field(default=None, max_length=512, description="--id-pattern: participant ids "
                                   "from image paths")
    path_column: str | None = Column
    ignore_nifti_headers: bool = False
    no_validator: bool = False
    validator_config: str | None = Field(default=None, max_length=4096)
    config: str | None = Field(default=None, max_length=4096, description="a bidsaudit.toml under a root")


#: Form fields accepted beside uploaded files (the rest of AuditRequest is about paths).
UPLOAD_FIELDS = ("label", "site", "group", "name", "id_pattern", "path_column")


class SubmitError(Exception):
    """A request that cannot become an audit: ``status`` is the HTTP code, ``detail`` says why."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _dataset_key(path: Path, roots: tuple[Path, ...]) -> str:
    for root in roots:
        if path == root or root in path.parents:
            rel = path.relative_to(root).as_posix()
            rel = rel if rel != "." else root.name
            return rel if len(roots) == 1 else f"{root.name}/{rel}"
    return path.name


def submit_paths(req: AuditRequest, settings: Settings, store: Store, audit_id: str | None = None) -> AuditRecord:
    roots = settings.roots
    try:
        splits = confine(req.splits, roots, field="splits")
        dataset = confine(req.dataset, roots, field="dataset") if req.dataset else None
        extra = {k: str(confine(v, roots, field=k)) for k in ("pretrain", "validator_config", "config")
                 if (v := getattr(req, k))}
    except PathRefused as err:
        raise SubmitError(403, str(err)) from None
    except FileNotFoundError as err:
        raise SubmitError(422, str(err)) from None
    try:  # the split files are read below, in this request: nothing that could block or leave the roots
        check_links(splits, roots, limit=10_000)
        for path in extra.values():
            check_links(Path(path), roots, limit=10_000)
    except PathRefused as err:
        raise SubmitError(403, f"splits: {err}") from None
    if dataset is not None and not (dataset / "dataset_description.json").is_file():
        raise SubmitError(422, f"dataset: {req.dataset} is not a BIDS dataset (no dataset_description.json)")
    try:
        split_set = read_splits(splits, label=req.label, id_pattern=req.id_pattern, path_column=req.path_column)
    except BidsauditError as err:
        raise SubmitError(422, f"splits: {err}") from None
    options = {k: v for k, v in req.model_dump().items()
               if k not in ("dataset", "splits") and v not in (None, False)}
    options.update(extra)
    options["detected"] = detected(split_set)
    key = _dataset_key(dataset if dataset is not None else splits, roots)
    return store.submit(dataset=key, dataset_path=str(dataset) if dataset else None, splits_path=str(splits),
                        source="paths", options=options, audit_id=audit_id)


def submit_upload(files: list[tuple[str, bytes]], fields: dict[str, str], settings: Settings,
                  store: Store, audit_id: str | None = None) -> AuditRecord:
    """Store uploaded split files in a fresh folder, check that they parse, queue the audit."""
    if not files:
        raise SubmitError(422, "no split files uploaded: attach one or more .tsv/.csv/.txt/.json files, a "
                               "folder, or one .zip archive in the 'files' field")
    if len(files) == 1 and files[0][0].lower().endswith(".zip"):
        if len(files[0][1]) > settings.max_total_bytes:
            raise SubmitError(413, f"archive of {len(files[0][1])} bytes; uploads total at most "
                                   f"{settings.max_total_bytes} bytes")
        try:
            unpacked = unpack_zip(files[0][1], max_files=settings.max_archive_files,
                                  max_file_bytes=settings.max_file_bytes, max_total_bytes=settings.max_total_bytes)
        except UploadRefused as err:
            raise SubmitError(err.status, f"{files[0][0]}: {err}") from None
        files = list(unpacked.items())
    elif len(files) > settings.max_files:
        raise SubmitError(413, f"too many files: {len(files)} uploaded, at most {settings.max_files} accepted "
                               "(a zip archive may hold more)")
    total = 0
    names: dict[str, bytes] = {}
    for name, data in files:
        try:
            safe = safe_upload_name(name)
        except UploadRefused as err:
            raise SubmitError(err.status, str(err)) from None
        if len(data) > settings.max_file_bytes:
            raise SubmitError(413, f"{safe}: {len(data)} bytes, more than the {settings.max_file_bytes} "
                                   "bytes accepted per file")
        total += len(data)
        if total > settings.max_total_bytes:
            raise SubmitError(413, f"uploads total more than the {settings.max_total_bytes} bytes accepted")
        if safe in names:
            raise SubmitError(422, f"{safe}: uploaded twice")
        names[safe] = data
    for key in ("label", "site", "group", "path_column"):
        value = fields.get(key)
        if value is not None and (len(value) > 128 or any(ord(c) < 32 for c in value)):
            raise SubmitError(422, f"{key}: expected a column name (at most 128 printable characters)")
    pattern = fields.get("id_pattern")
    if pattern is not None and (len(pattern) > 512 or any(ord(c) < 32 for c in pattern)):
        raise SubmitError(422, "id_pattern: expected a regular expression (at most 512 printable characters)")
    audit_id = audit_id or new_id()
    folder = settings.upload_dir / audit_id
    try:
        folder.mkdir(parents=True, exist_ok=False)
    except FileExistsError:
        raise SubmitError(409, "Idempotency-Key: an upload with this key is being stored; ask for it again "
                               "in a moment") from None
    try:
        for safe, data in names.items():
            atomic_write_bytes(folder / safe, data)
        target = _target(folder, list(names))
        try:
            split_set = read_splits(target, label=fields.get("label") or None,
                                    id_pattern=fields.get("id_pattern") or None,
                                    path_column=fields.get("path_column") or None)
            _recognised(split_set)
        except BidsauditError as err:
            raise SubmitError(422, "uploaded split files: " + str(err).replace(str(folder) + "/", "")
                              .replace(str(folder), "(upload)")) from None
        options = {k: fields[k] for k in ("label", "site", "group", "id_pattern", "path_column") if fields.get(k)}
        options["detected"] = detected(split_set)
        name = (fields.get("name") or "").strip()[:200] or "uploaded split files"
        return store.submit(dataset=name, dataset_path=None, splits_path=str(target), source="upload",
                            options=options, audit_id=audit_id)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _target(folder: Path, names: list[str]) -> Path:
    """What to read: the one file uploaded, else the folder (below a single top folder: a folder upload or zip)."""
    if len(names) == 1:
        return folder / names[0]
    tops = {n.split("/", 1)[0] for n in names}
    if len(tops) == 1 and all("/" in n for n in names):
        return folder / tops.pop()
    return folder


def _recognised(split_set: SplitSet) -> None:
    """Refuse a layout whose splits are only named after files that name no split (never one merged split)."""
    if split_set.format in ("folder", "table", "paths") and not set(split_set.names) & set(KNOWN_SPLITS):
        raise InputError(None, f"layout not recognised: the files name no split ({', '.join(split_set.names)}); "
                         "per-diagnosis lists such as AD.tsv, CN.tsv belong in their split folders",
                         expected="train/validation/test files, a split column, ClinicaDL's folders (upload the "
                         "folder or a zip archive, which keep the relative paths), nnU-Net or MONAI JSON")


def detected(split_set: SplitSet) -> str:
    """One line for the audit page: the format the split input was read as (folds, id rule)."""
    text = split_set.format
    if split_set.folds:
        text += f", {len(split_set.folds)} folds"
    text += ": " + ", ".join(f"{k} {v}" for k, v in split_set.sizes().items())
    if split_set.id_rule:
        text += f"; participant ids by rule {split_set.id_rule.get('rule')}"
    return text


def form_fields(form: Any) -> dict[str, str]:
    return {k: str(form.get(k)) for k in (*UPLOAD_FIELDS, "csrf", "token") if isinstance(form.get(k), str)}
