"""Structure-aware fuzzing of bidsaudit's text parsers: valid seeds per format, mutated with format tokens.

Each :data:`TARGETS` entry names a parser, the valid files it starts from and
how to run it on a folder holding the mutated file. :func:`mutate` applies a
few mutations to the bytes of a seed (a token of the format inserted or
replaced: delimiters, quotes, brackets, line ends, a byte-order mark, invalid
UTF-8, huge or negative numbers, NaN, ``sub-``; a range deleted, duplicated or
cut off). :func:`run_one` says what happened: ``ok``, ``refused`` (a
:class:`~audit.errors.BidsauditError`, exit 2 on the command line), or
``crash`` (any other exception: a traceback or an "internal error" for a
user), with the time it took.
"""

from __future__ import annotations

import json
import random
import shutil
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["TARGETS", "Target", "mutate", "run_one"]

TOKENS = [b"\t", b",", b";", b"\n", b"\r\n", b"\r", b'"', b"'", b"\xef\xbb\xbf", b"\xff\xfe", b"\x00", b"\xc3",
          b"sub-", b"ses-", b"sub-01", b"n/a", b"", b" ", b"{", b"}", b"[", b"]", b":", b"null", b"true", b"1e999",
          b"-1", b"NaN", b"Infinity", b"9" * 30, b"\\u0000", b"\\", b"=", b"[tool.bidsaudit]", b"[[", b"]]",
          b"split", b"train", b"test", b"fold", b"participant_id", b"session_id", b"#", b"\xe2\x80\x8b"]


def mutate(rng: random.Random, seed: bytes, n: int | None = None) -> bytes:
    """``seed`` with 1-4 random mutations (module docstring)."""
    b = bytearray(seed)
    for _ in range(n if n is not None else rng.randint(1, 4)):
        op = rng.randrange(6)
        i = rng.randint(0, len(b))
        if op == 0:
            b[i:i] = rng.choice(TOKENS)
        elif op == 1 and b:
            j = min(len(b), i + rng.randint(1, 8))
            b[i:j] = rng.choice(TOKENS)
        elif op == 2 and b:
            del b[i:i + rng.randint(1, 16)]
        elif op == 3 and b:
            j = min(len(b), i + rng.randint(1, 40))
            b[j:j] = b[i:j] * rng.randint(1, 3)
        elif op == 4:
            del b[i:]
        elif b:
            b[min(i, len(b) - 1)] = rng.getrandbits(8)
    return bytes(b)


@dataclass
class Target:
    """A parser under fuzzing: its file name, its valid seeds, and how to run it on ``folder``."""

    name: str
    filename: str
    seeds: list[bytes]
    run: Callable[[Path, Path], Any]  # (folder holding the file, the file) -> anything
    setup: Callable[[Path], None] | None = None  # what the folder needs beside the file


def _tsv(rows: list[list[str]]) -> bytes:
    return ("\n".join("\t".join(r) for r in rows) + "\n").encode()


def _splits(folder: Path, file: Path) -> Any:
    from audit.splits.readers import read_splits

    return read_splits(file if file.suffix in (".json", ".tsv", ".csv") and file.parent == folder and
                       file.name not in ("train.tsv",) else folder)


def _config(folder: Path, file: Path) -> Any:
    from audit.config import load_options

    return load_options(None, None, file)


def _certificate(folder: Path, file: Path) -> Any:
    from audit.certificate import load_certificate

    return load_certificate(file)


def _suite(folder: Path, file: Path) -> Any:
    from audit.expectations import load_suite

    return load_suite(file)


def _dataset(folder: Path, file: Path) -> Any:
    """The index and every check that reads participants.tsv and sidecars (images and validator off)."""
    from audit.bidsindex import index_dataset
    from audit.context import AuditContext, AuditOptions
    from audit.runner import run_checks

    ctx = AuditContext(options=AuditOptions(run_validator=False, check_images=False), index=index_dataset(folder))
    return run_checks(ctx, None, out_of_scope=("splits",))


def _bids(folder: Path) -> None:
    (folder / "dataset_description.json").write_text(json.dumps({"Name": "f", "BIDSVersion": "1.10.0"}))
    for s in ("01", "02", "03", "04"):
        anat = folder / f"sub-{s}" / "anat"
        anat.mkdir(parents=True, exist_ok=True)
        (anat / f"sub-{s}_T1w.nii.gz").write_bytes(b"")
        if s != "01":
            (anat / f"sub-{s}_T1w.json").write_text(json.dumps({"Manufacturer": "GE", "MagneticFieldStrength": 3}))
    (folder / "participants.tsv").write_bytes(_tsv([["participant_id", "age", "sex", "diagnosis"],
                                                    ["sub-01", "60", "F", "CN"], ["sub-02", "61", "M", "AD"],
                                                    ["sub-03", "62", "F", "CN"], ["sub-04", "n/a", "M", "AD"]]))


def _split_folder(folder: Path) -> None:
    (folder / "test.tsv").write_bytes(_tsv([["participant_id"], ["sub-03"], ["sub-04"]]))


#: Seed files too long to write inline (a certificate written by a passing audit of a tiny dataset).
SEEDS = Path(__file__).parent / "fuzz_seeds"
SPLIT_TSV = _tsv([["participant_id", "session_id", "diagnosis"], ["sub-01", "ses-01", "CN"], ["02", "n/a", "AD"]])
TARGETS = [
    Target("split folder (TSV)", "train.tsv", [SPLIT_TSV], _splits, _split_folder),
    Target("split table (split column, CSV)", "splits.csv",
           [b"participant_id,split,diagnosis\nsub-01,train,CN\nsub-02,test,AD\nsub-03,validation,CN\n"], _splits),
    Target("nnU-Net splits_final.json", "splits_final.json",
           [json.dumps([{"train": ["sub-01", "sub-02"], "val": ["sub-03"]},
                        {"train": ["sub-02", "sub-03"], "val": ["sub-01"]}]).encode()], _splits),
    Target("MONAI datalist JSON", "datalist.json",
           [json.dumps({"training": [{"image": "sub-01/anat/sub-01_T1w.nii.gz", "label": 1, "fold": 0},
                                     {"image": ["sub-02/anat/sub-02_T1w.nii.gz"], "fold": 1}],
                        "test": [{"image": "sub-03/anat/sub-03_T1w.nii.gz"}]}).encode()], _splits),
    Target("path table (TSV)", "paths.tsv",
           [_tsv([["image", "split"], ["/data/sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz", "train"],
                  ["/data/sub-02/anat/sub-02_T1w.nii.gz", "test"]])], _splits),
    Target("participants.tsv", "participants.tsv",
           [_tsv([["participant_id", "age", "sex", "diagnosis", "site"], ["sub-01", "60", "F", "CN", "a"],
                  ["sub-02", "61.5", "M", "AD", "b"], ["sub-03", "n/a", "F", "CN", "a"],
                  ["sub-04", "70", "M", "AD", "b"]])], _dataset, _bids),
    Target("sidecar JSON", "sub-01/anat/sub-01_T1w.json",
           [json.dumps({"Manufacturer": "Siemens", "ManufacturersModelName": "Prisma", "MagneticFieldStrength": 3,
                        "RepetitionTime": 2.3, "InstitutionName": "X"}).encode()], _dataset, _bids),
    Target("bidsaudit.toml", "bidsaudit.toml",
           [b'[severity]\n"shift.covariate" = "error"\n"shift.image" = { level = "off", reason = "defaced", '
            b'expires = 2026-06-30 }\n\n[thresholds."shift.covariate"]\nsmd = 0.3\n\n[columns]\nlabel = '
            b'"diagnosis"\nsite = "site"\n\n[certificate]\nlimited_pass = "allow"\n\n[[waivers]]\ncheck = '
            b'"leakage.subject_overlap"\nsubjects = ["sub-03", "17"]\nreason = "phantoms"\nexpires = 2026-01-31\n'],
           _config),
    Target("certificate", "bidsaudit-certificate.json", [(SEEDS / "certificate.json").read_bytes()], _certificate),
    Target("expectation suite", "suite.json",
           [json.dumps({"name": "s", "expectations": [
               {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "age"}, "table": "participants"},
               {"type": "expect_column_values_to_be_between", "kwargs": {"column": "age", "min_value": 18}}]}
                       ).encode()], _suite),
]


def run_one(target: Target, data: bytes, folder: Path) -> tuple[str, float, str]:
    """Write ``data`` as the target's file in a fresh ``folder`` and run its parser: (outcome, seconds, detail)."""
    from audit.errors import BidsauditError

    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    if target.setup is not None:
        target.setup(folder)
    file = folder / target.filename
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_bytes(data)
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            target.run(folder, file)
        return "ok", time.perf_counter() - t0, ""
    except BidsauditError as err:
        return "refused", time.perf_counter() - t0, str(err)
    except Exception:  # noqa: BLE001 - what a user would see as an internal error
        return "crash", time.perf_counter() - t0, traceback.format_exc()
