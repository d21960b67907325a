"""Certificates: what a passing audit vouches for, content, not locations.

``bidsaudit audit`` writes a certificate when it passes (and the policy lets
a limited pass have one, see :mod:`audit.coverage`): the dataset fingerprint
and every file's content hash under its path relative to the dataset root,
every split file's sha256 under its path relative to the certificate's
folder, the options that shaped the audit (label, site, group, pretrain), a
hash of the configuration and waivers, the tool version, the time and the
findings summary. No absolute path is written: the gate opens for the same
content wherever it lies (a copied split folder with its certificate, a moved
or re-cloned dataset) and refuses any change of content, naming it. With
``BIDSAUDIT_SIGNING_KEY`` set the certificate carries an HMAC-SHA256
signature over its canonical JSON, so a CI can sign and a trainer elsewhere
can require a valid signature.

:func:`verify_certificate` is THE verification, also what the trainer's gate
calls: it always re-hashes the split files and compares the dataset (every
file's content hash, subject folders, segmentation masks, the fingerprint and
the name its ``dataset_description.json`` gives) file by file, through the
hash cache by default or a full re-hash on request, and returns every
difference in words. A version-1 certificate (bound to absolute paths, written
before certificates were portable) closes the gate with a message saying to
audit again.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit import __version__
from audit.bidsindex import DatasetIndex, index_dataset, read_json
from audit.errors import InputError
from audit.fsutil import atomic_write_text
from audit.hashing import HashCache, dataset_fingerprint, file_sha256
from schemas import json_schema

__all__ = [
    "CERTIFICATE_NAME",
    "SIGNING_KEY_ENV",
    "Verification",
    "build_certificate",
    "canonical",
    "certificate_target",
    "config_hash",
    "describe_changes",
    "load_certificate",
    "mask_changes",
    "mask_files",
    "mask_hashes",
    "sign",
    "split_file_hashes",
    "split_file_keys",
    "verify_certificate",
    "write_certificate",
]

CERTIFICATE_NAME = "bidsaudit-certificate.json"
SIGNING_KEY_ENV = "BIDSAUDIT_SIGNING_KEY"
CERT_VERSION = "2"
MAX_LISTED = 20


def canonical(data: Mapping[str, Any]) -> bytes:
    """Canonical JSON bytes of a certificate without its signature."""
    body = {k: v for k, v in data.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sign(data: Mapping[str, Any], key: str) -> str:
    return hmac.new(key.encode("utf-8"), canonical(data), hashlib.sha256).hexdigest()


def split_file_hashes(files: list[str]) -> dict[str, str]:
    out = {}
    for name in files:
        try:
            out[name] = "sha256:" + hashlib.sha256(Path(name).read_bytes()).hexdigest()
        except OSError as err:
            raise InputError(name, f"cannot read split file: {err.strerror or err}") from None
    return out


def split_file_keys(files: list[str], folder: Path) -> dict[str, str]:
    """``{path relative to folder: sha256:<hex>}`` of the split files (``/`` separators).

    ``folder`` is the certificate's folder. A split file outside it is named
    with ``..`` steps, so a split folder copied together with its certificate
    keeps every name.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp()); _ = (d / "train.tsv").write_text("participant_id\\nsub-01\\n")
    >>> list(split_file_keys([str(d / "train.tsv")], d))
    ['train.tsv']
    """
    base = Path(folder).resolve()
    out = {}
    for name, digest in split_file_hashes(files).items():
        out[Path(os.path.relpath(Path(name).resolve(), base)).as_posix()] = digest
    return out


def _split_root(split_files: list[str], split_root: Path | None) -> Path:
    if split_root is not None:
        return Path(split_root)
    return Path(os.path.commonpath([str(Path(f).resolve().parent) for f in split_files])) if split_files else Path()


def _relative(path: Path, folder: Path) -> str:
    return Path(os.path.relpath(Path(path).resolve(), Path(folder).resolve())).as_posix()


def describe_changes(want: Mapping[str, str], have: Mapping[str, str], what: str, *,
                     removed: str = "was removed", added: str = "was added", changed: str = "changed") -> list[str]:
    """One sentence per key whose hash differs between what was certified and what is there now."""
    out = []
    for key in sorted(set(want) | set(have)):
        if key not in have:
            out.append(f"{what} {key} {removed}")
        elif key not in want:
            out.append(f"{what} {key} {added}")
        elif want[key] != have[key]:
            out.append(f"{what} {key} {changed}")
    return out


_MASK_RE = re.compile(r"^.+_(dseg|mask)\.nii(\.gz)?$")


def mask_files(root: Path) -> list[str]:
    """Segmentation masks a trainer may read: ``derivatives/<pipeline>/sub-*/**/*_{dseg,mask}.nii[.gz]``.

    The dataset index leaves ``derivatives/`` out, so these are certified
    separately (``dataset.masks`` of a certificate). Paths are relative to
    ``root`` with ``/`` separators, sorted.
    """
    deriv = Path(root) / "derivatives"
    out: list[str] = []
    if not deriv.is_dir():
        return out
    for pipeline in sorted(p for p in deriv.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for sub in sorted(pipeline.glob("sub-*")):
            for dirpath, dirs, files in os.walk(sub):
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                for f in files:
                    if _MASK_RE.match(f):
                        out.append(Path(dirpath, f).relative_to(root).as_posix())
    return sorted(out)


def mask_hashes(root: Path) -> dict[str, str]:
    """``{relative path: sha256:<hex>}`` of every file :func:`mask_files` finds (``unreadable``: cannot be read)."""
    out = {}
    for rel in mask_files(root):
        try:
            out[rel] = "sha256:" + file_sha256(Path(root) / rel)
        except OSError:
            out[rel] = "unreadable"
    return out


def mask_changes(cdata: Mapping[str, Any], root: Path) -> list[str]:
    """Every segmentation mask that differs from the certificate's ``dataset.masks`` (none when it has no record)."""
    if not isinstance(cdata.get("masks"), Mapping):
        return []
    want = {str(k): str(v) for k, v in cdata["masks"].items()}
    return describe_changes(want, mask_hashes(root), "segmentation mask", changed="changed since the audit",
                            added="was added after the audit")


def config_hash(config: Mapping[str, Any]) -> str:
    return "sha256:" + hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def build_certificate(result: Mapping[str, Any], *, dataset_files: Mapping[str, str] | None,
                      split_files: list[str], options: Mapping[str, Any], config: Mapping[str, Any],
                      where: Path, split_root: Path | None = None, key: str | None = None) -> dict[str, Any]:
    """The certificate of a passing result (``result`` is the JSON result as a dict).

    ``where`` is where the certificate will be written: split files are named
    relative to its folder, and ``split_root`` (the split input's folder,
    default: the split files' common folder) is recorded relative to it too,
    so a certificate kept apart from the split files still finds them by their
    names under that folder. The dataset is bound by content only (its
    fingerprint, every file's hash under its path relative to the dataset
    root, segmentation masks likewise); its location is not recorded.
    """
    if result.get("status") != "pass":
        raise ValueError("a certificate is only written for a passing audit")
    dataset = result.get("dataset")
    root = Path(dataset["path"]) if dataset and dataset.get("path") else None
    cert: dict[str, Any] = {
        "certificate_version": CERT_VERSION,
        "tool": {"name": "bidsaudit", "version": __version__},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "dataset": None if dataset is None else {
            "name": dataset.get("name"), "fingerprint": dataset.get("fingerprint"),
            "files": dict(sorted((dataset_files or {}).items())),
            # derivatives/ is outside the index and its fingerprint: the masks a segmentation trainer reads
            "masks": mask_hashes(root) if root is not None and root.is_dir() else {},
        },
        "splits": {
            "format": (result.get("splits") or {}).get("format"),
            "fingerprint": (result.get("splits") or {}).get("fingerprint"),
            "files": split_file_keys(split_files, Path(where).parent),
            "root": _relative(_split_root(split_files, split_root), Path(where).parent),
        },
        "options": {k: options.get(k) for k in ("label", "site", "group", "pretrain")}
        | {k: options[k] for k in ("id_pattern", "path_column") if options.get(k)},
        "config_hash": config_hash(config),
        "status": "pass",
        "counts": dict(result.get("counts") or {}),
        "signature": None,
    }
    if key:
        cert["signature"] = {"algorithm": "HMAC-SHA256", "value": sign(cert, key)}
    return cert


def certificate_target(splits: Path, given: Path | None, *, reviewer: bool, out_dir: Path) -> Path | None:
    """Where ``bidsaudit audit`` writes the certificate (``None``: the default place beside the split files).

    An audit without a dataset (a reviewer holding published split files)
    writes nothing into the split files' folder: by default its certificate
    goes with the results (``out_dir``), and a ``--certificate`` inside that
    folder is refused (:class:`~audit.errors.InputError`).
    """
    folder = Path(splits) if Path(splits).is_dir() else Path(splits).parent
    if not reviewer:
        return given
    if given is None:
        return Path(out_dir) / f"{folder.resolve().name}-{CERTIFICATE_NAME}"
    if folder.resolve() in (Path(given).resolve().parent, *Path(given).resolve().parents):
        raise InputError(given, "an audit without DATASET writes nothing into the split files' folder",
                         field="--certificate", expected=f"a path outside {folder}")
    return given


def write_certificate(cert: Mapping[str, Any], path: Path) -> Path:
    return atomic_write_text(path, json.dumps(cert, indent=2, ensure_ascii=False) + "\n")


def load_certificate(path: Path) -> dict[str, Any]:
    """Read and schema-check a certificate (InputError naming the file and field)."""
    import jsonschema

    if not path.is_file():
        raise InputError(path, "no certificate here", expected="a certificate written by a passing "
                         "'bidsaudit audit' (or give --certificate PATH)")
    data = read_json(path)
    try:
        jsonschema.validate(data, json_schema("certificate"))
    except jsonschema.ValidationError as err:
        where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        message = err.message if len(err.message) <= 200 else err.message[:200] + "..."
        if err.validator == "not":
            message = "a version 2 certificate records no absolute path"
        raise InputError(path, message, field=where, expected="a bidsaudit certificate") from None
    return data


@dataclass(frozen=True)
class Verification:
    """The outcome of checking a certificate against what is on disk now.

    Attributes
    ----------
    ok : bool
        Nothing differs.
    problems : tuple of str
        Every difference, one sentence each.
    index : DatasetIndex or None
        The dataset index built while verifying (``None`` when no dataset was
        compared): a trainer reads exactly what was verified.
    files : Mapping[str, str]
        Content hash (``sha256:<hex>``) of every dataset file now, by relative path.
    """

    ok: bool
    problems: tuple[str, ...]
    index: DatasetIndex | None = field(default=None, compare=False, repr=False)
    files: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def message(self) -> str:
        if self.ok:
            return "certificate verified"
        shown = list(self.problems[:MAX_LISTED])
        more = len(self.problems) - len(shown)
        return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")


def verify_certificate(cert: Mapping[str, Any], *, dataset: Path | None, split_files: list[str], where: Path,
                       split_root: Path | None = None, require_signature: bool = False, key: str | None = None,
                       full: bool = False, splits: Mapping[str, Any] | None = None) -> Verification:
    """Compare a certificate with the dataset and split files as they are now.

    This is the one verification of a certificate: ``bidsaudit train``'s gate
    (:func:`train.gate.open_gate`) calls it too.

    Parameters
    ----------
    cert : mapping
        A loaded certificate (see :func:`load_certificate`).
    dataset : Path or None
        The dataset the trainer is about to read (``None``: the split files alone
        are compared), wherever it lies: every file's content hash, the
        fingerprint, every segmentation mask and the name its
        ``dataset_description.json`` gives are compared.
    split_files : list of str
        The split files the trainer is about to read (always re-hashed), named
        relative to the certificate's folder.
    where : Path
        The certificate file (split files are named relative to its folder).
    split_root : Path, optional
        The split input's folder now (default: the split files' common
        folder). When the names relative to the certificate differ (the
        certificate was kept apart from the split files), the names relative
        to this folder are compared with the certificate's, relative to the
        split folder it recorded: the same files, byte for byte, open.
    require_signature : bool
        Refuse an unsigned certificate or a wrong signature.
    key : str, optional
        The signing key (default: ``$BIDSAUDIT_SIGNING_KEY``).
    full : bool
        Re-hash every dataset file instead of trusting the hash cache's
        (path, size, mtime, inode) entries.
    splits : mapping, optional
        ``format`` and ``fingerprint`` of the split input as read now (the
        ``splits`` block of a result): compared with the certificate's record
        (the fingerprint only when every split file is as certified).
    """
    problems: list[str] = []
    if str(cert.get("certificate_version")) != CERT_VERSION:
        old = (f"the certificate is version {cert.get('certificate_version')}, bound to absolute paths (written "
               f"before certificates were portable): audit again to write a version {CERT_VERSION} certificate")
        return Verification(ok=False, problems=(old,))
    key = key if key is not None else os.environ.get(SIGNING_KEY_ENV)
    sig = cert.get("signature")
    if sig:
        if not key:
            if require_signature:
                problems.append(f"the certificate is signed but no key is set ({SIGNING_KEY_ENV})")
        elif not hmac.compare_digest(str(sig.get("value", "")), sign(cert, key)):
            problems.append("the signature does not match: the certificate was edited or signed with another key")
    elif require_signature:
        problems.append("the certificate is not signed and a signature is required")
    if cert.get("status") != "pass":
        problems.append(f"the certificate records status '{cert.get('status')}', not 'pass'")
    if (cert.get("counts") or {}).get("error", 0):
        problems.append("the certificate records error findings")

    want = {str(k): str(v) for k, v in dict((cert.get("splits") or {}).get("files") or {}).items()}
    have = split_file_keys(split_files, Path(where).parent)
    split_changes = _split_changes(want, have)
    recorded_root = (cert.get("splits") or {}).get("root")
    if split_changes and isinstance(recorded_root, str) and split_files:
        # the certificate lies elsewhere than at the audit: the same names under the split folder will do
        now = split_file_keys(split_files, _split_root(split_files, split_root))
        then = {Path(os.path.relpath(k, recorded_root)).as_posix(): v for k, v in want.items()}
        if now == then:
            split_changes = []
    problems.extend(split_changes)
    if splits is not None:
        problems.extend(_split_identity(cert, splits, files_ok=not split_changes))

    cdata = cert.get("dataset")
    if dataset is None:
        return Verification(ok=not problems, problems=tuple(problems))
    if not cdata:
        problems.append("the certificate was written for the split files alone (an audit without DATASET); "
                        "it vouches for no dataset: audit the split with the dataset")
        return Verification(ok=False, problems=tuple(problems))
    index, files, changes = _dataset_changes(cdata, Path(dataset), full=full)
    problems.extend(changes)
    return Verification(ok=not problems, problems=tuple(problems), index=index, files=files)


def _split_changes(want: Mapping[str, str], have: Mapping[str, str]) -> list[str]:
    """Split files that differ from the certificate's record; a file found under another name is said so once."""
    removed = {k: v for k, v in want.items() if k not in have}
    added = {k: v for k, v in have.items() if k not in want}
    out = []
    for name, digest in sorted(added.items()):
        same = sorted(k for k, v in removed.items() if v == digest)
        if same:
            out.append(f"split file {name} has the content certified as {same[0]}, under another path relative "
                       "to the certificate: keep the certificate beside the split files as at the audit "
                       "(split files are named relative to it)")
            removed.pop(same[0])
            continue
        out.append(f"split file {name} was not audited")
    out.extend(f"split file {name} was audited but is not among the files given now" for name in sorted(removed))
    out.extend(f"split file {name} changed since the audit" for name in sorted(set(want) & set(have))
               if want[name] != have[name])
    return out


def _split_identity(cert: Mapping[str, Any], splits: Mapping[str, Any], *, files_ok: bool) -> list[str]:
    """Format and fingerprint recorded for the split files, compared with what they are now."""
    out = []
    csplits = cert.get("splits") or {}
    if csplits.get("format") is not None and csplits.get("format") != splits.get("format"):
        out.append(f"the certificate records split format '{csplits.get('format')}'; "
                   f"the split input is read as '{splits.get('format')}'")
    if files_ok and csplits.get("fingerprint") is not None and splits.get("fingerprint") != csplits.get("fingerprint"):
        out.append("the split fingerprint recorded in the certificate does not match the split files "
                   "(the certificate was edited)")
    return out


def _dataset_changes(cdata: Mapping[str, Any], dataset: Path, *,
                     full: bool) -> tuple[DatasetIndex, dict[str, str], list[str]]:
    """Index and fingerprint the dataset; every way its content differs from the certificate's record.

    Unreadable files, every file's content hash (always, even when the
    fingerprints agree: an edited ``files`` list is caught without a
    signature), subject folders added, segmentation masks, the fingerprint
    itself, and the name when ``dataset_description.json`` gives one (a name
    taken from the folder is a location: not compared).
    """
    index = index_dataset(dataset)
    cache = HashCache(memory=True) if full else HashCache.default()
    try:
        fp = dataset_fingerprint(index, cache)
    finally:
        cache.close()
    want = {str(k): str(v) for k, v in dict(cdata.get("files") or {}).items()}
    have = dict(fp.files)
    problems: list[str] = []
    cname, described = cdata.get("name"), index.description.get("Name")
    if described and cname != index.name:
        problems.append(f"the certificate was written for dataset '{cname}', not for '{index.name}' ({index.root})")
    for path, msg in fp.unreadable:
        problems.append(f"dataset file {path} cannot be read: {msg}")
    problems.extend(describe_changes(want, have, "dataset file"))
    problems.extend(mask_changes(cdata, index.root))
    new_subjects = sorted({f.split("/", 1)[0] for f in set(have) - set(want) if f.startswith("sub-")}
                          - {f.split("/", 1)[0] for f in want if f.startswith("sub-")})
    if new_subjects:
        problems.insert(0, f"{len(new_subjects)} subject folder(s) added: {', '.join(new_subjects[:MAX_LISTED])}")
    if fp.fingerprint != cdata.get("fingerprint") and have == want:
        problems.append("the dataset fingerprint recorded in the certificate does not match the dataset "
                        "(the certificate was edited)")
    return index, have, problems
