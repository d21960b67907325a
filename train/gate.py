"""The gate: nothing is trained until the certificate matches what is on disk.

:func:`open_gate` is the first thing ``bidsaudit train`` does, before any
image is decoded and before torch is imported. It

1. finds the certificate (``--certificate``, or ``bidsaudit-certificate.json``
   beside the split files) and checks its schema (missing or malformed:
   :class:`~audit.errors.InputError`, exit 2);
2. re-hashes every split file, always, and compares the hashes (split files
   are named relative to the certificate's folder), the split fingerprint and
   the split format with the certificate's;
3. checks the signature (required with ``require_signature``), the recorded
   status and error count;
4. indexes the dataset, wherever it lies now, and compares every file's
   content hash (by path relative to the dataset root), the segmentation
   masks, the fingerprint and the described name with the certificate's: through the hash cache by default (``verify="cache"``: a
   file whose path, size, mtime and inode are unchanged is not read again), or
   by re-reading every byte (``verify="full"``).

Steps 2 to 4 are :func:`audit.certificate.verify_certificate`, the one
verification of a certificate; this module finds the certificate, reads the
split input and turns the verdict into :class:`GateClosed` or :class:`GatePass`.

The certificate binds content, not locations: a split folder copied with its
certificate, a dataset moved or re-cloned elsewhere, open the gate as long as
every byte is as audited. Any difference closes the gate: :class:`GateClosed` (exit 1) with one line per
difference naming what changed. There is no option that skips the gate.

What an unsigned certificate cannot protect: fields that nothing on disk can
be compared with (``created``, ``tool.version``, ``config_hash``,
``options``). Editing those is caught only by a signature
(``BIDSAUDIT_SIGNING_KEY`` when auditing, ``require_signature`` here).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from audit.api import splits_block
from audit.certificate import CERTIFICATE_NAME, load_certificate, verify_certificate
from audit.errors import InputError, Refused
from audit.splits import read_splits

if TYPE_CHECKING:
    from audit.bidsindex import DatasetIndex
    from audit.splits import SplitSet

__all__ = ["VERIFY_MODES", "GateClosed", "GatePass", "Refused", "certificate_path", "open_gate"]

VERIFY_MODES = ("cache", "full")


class GateClosed(Refused):
    """The certificate does not vouch for the dataset and split files given."""


@dataclass(frozen=True)
class GatePass:
    """What the gate verified; the trainer reads only what is listed here.

    Attributes
    ----------
    certificate : dict
        The loaded certificate.
    certificate_path : Path
        Where it was read.
    certificate_sha256 : str
        ``sha256:<hex>`` of the certificate file's bytes.
    splits : SplitSet
        The split files as read after verification.
    index : DatasetIndex
        The dataset index built during verification.
    files : Mapping[str, str]
        Content hash (``sha256:<hex>``) of every dataset file, by relative
        path, as certified: the data loader compares the bytes it decodes with
        these.
    verify : str
        ``"cache"`` or ``"full"``.
    notes : tuple of str
        Things worth knowing that do not close the gate.
    """

    certificate: dict[str, Any]
    certificate_path: Path
    certificate_sha256: str
    splits: SplitSet
    index: DatasetIndex
    files: Mapping[str, str]
    verify: str
    notes: tuple[str, ...] = field(default=())

    @property
    def masks(self) -> dict[str, str] | None:
        """Certified segmentation masks (``{relative path: sha256:<hex>}``); ``None`` without that record."""
        m = (self.certificate.get("dataset") or {}).get("masks")
        return {str(k): str(v) for k, v in m.items()} if isinstance(m, Mapping) else None

    @property
    def dataset(self) -> Path:
        return self.index.root

    def record(self) -> dict[str, Any]:
        """What a model folder keeps of this verification (``maps.json``)."""
        cert = self.certificate
        return {
            "certificate": str(self.certificate_path),
            "certificate_sha256": self.certificate_sha256,
            "certificate_created": cert.get("created"),
            "signed": bool(cert.get("signature")),
            "dataset_fingerprint": (cert.get("dataset") or {}).get("fingerprint"),
            "split_fingerprint": (cert.get("splits") or {}).get("fingerprint"),
            "audited_options": dict(cert.get("options") or {}),
            "verify": self.verify,
            "notes": list(self.notes),
        }


def certificate_path(splits: str | os.PathLike[str], certificate: str | os.PathLike[str] | None = None) -> Path:
    """The certificate to read: the one given, or the one beside the split files."""
    if certificate is not None:
        return Path(certificate)
    s = Path(splits)
    return (s if s.is_dir() else s.parent) / CERTIFICATE_NAME


def open_gate(dataset: str | os.PathLike[str], splits: str | os.PathLike[str], *,
              certificate: str | os.PathLike[str] | None = None, label: str | None = None,
              verify: str = "cache", require_signature: bool = False, key: str | None = None) -> GatePass:
    """Verify the certificate against the dataset and split files; raise unless everything matches.

    Parameters
    ----------
    dataset : path-like
        The BIDS dataset the trainer will read.
    splits : path-like
        The split input (any format :func:`audit.splits.read_splits` accepts).
    certificate : path-like, optional
        Default: ``bidsaudit-certificate.json`` beside the split files.
    label : str, optional
        The label column the split tables are read with.
    verify : {"cache", "full"}
        How dataset files are re-hashed (split files are always re-read).
    require_signature : bool
        Refuse an unsigned certificate, or a signed one without the key.
    key : str, optional
        Signing key (default ``$BIDSAUDIT_SIGNING_KEY``).

    Returns
    -------
    GatePass

    Raises
    ------
    InputError
        ``verify`` is not a mode; the certificate is unreadable or malformed;
        the dataset or the split input is missing or malformed (and the split
        files are as certified).
    GateClosed
        There is no certificate, or anything differs from what it records.
    """
    if verify not in VERIFY_MODES:
        raise InputError(None, field="--verify", expected=" or ".join(repr(m) for m in VERIFY_MODES),
                         got=repr(verify))
    splits_path = Path(splits)
    if not splits_path.exists():
        raise InputError(splits_path, "no such file or folder", field="--splits",
                         expected="split files audited by 'bidsaudit audit'")
    cert_path = certificate_path(splits_path, certificate)
    if not cert_path.exists():  # the contract: a missing certificate is a closed gate (exit 1), not bad input
        raise GateClosed(f"the gate is closed: no certificate here ({cert_path})", [
            "run 'bidsaudit audit DATASET --splits SPLITS' (a passing audit writes the certificate beside the "
            "split files) or give --certificate PATH"])
    cert = load_certificate(cert_path)
    cert_sha = "sha256:" + hashlib.sha256(cert_path.read_bytes()).hexdigest()
    headline = f"the gate is closed: certificate {cert_path} does not match"

    # split files: always re-hashed; a split input that no longer parses is first compared byte for byte
    try:
        audited = cert.get("options") if isinstance(cert.get("options"), dict) else {}
        split_set = read_splits(splits_path, label=label, id_pattern=audited.get("id_pattern"),
                                path_column=audited.get("path_column"))
    except InputError:
        audited = [cert_path.parent / f for f in sorted((cert.get("splits") or {}).get("files") or {})]
        check = verify_certificate(cert, dataset=None, split_files=[str(f) for f in audited if f.is_file()],
                                   where=cert_path, require_signature=require_signature, key=key)
        if not check.ok:
            raise GateClosed(headline, check.problems) from None
        raise
    block = splits_block(split_set)
    # the one verification (audit.certificate): signature, status, split files and identity, then the dataset
    check = verify_certificate(cert, dataset=Path(dataset), split_files=list(split_set.files), where=cert_path,
                               split_root=splits_path if splits_path.is_dir() else splits_path.parent,
                               require_signature=require_signature, key=key, full=verify == "full",
                               splits={"format": block["format"], "fingerprint": block["fingerprint"]})
    if check.index is None:  # no dataset was compared: a certificate for split files alone
        raise GateClosed(headline, check.problems)
    notes: list[str] = []
    audited_label = (cert.get("options") or {}).get("label")
    if label and audited_label and label != audited_label:
        notes.append(f"the audit checked label '{audited_label}' (confounds, label shift, conflicts); "
                     f"this run trains on '{label}', which the audit did not check")
    if not check.ok:
        raise GateClosed(headline, check.problems)
    return GatePass(certificate=cert, certificate_path=cert_path.resolve(), certificate_sha256=cert_sha,
                    splits=split_set, index=check.index, files=dict(check.files), verify=verify, notes=tuple(notes))
