"""pybids is the index's oracle: file by file, bidsaudit's index and pybids agree, or the BIDS rule says who is right.

For every file of the bids-examples datasets (``$BIDSAUDIT_SHARED_DATA/bids-examples``)
and of synthetic trees, the entities, datatype, suffix and extension that
:func:`audit.bidsindex.index_dataset` gives are compared with
:func:`bids.layout.parse_file_entities` and with a ``BIDSLayout``'s files; the
sidecar metadata resolved by inheritance (:meth:`DatasetIndex.sidecar`) with
``BIDSLayout.get_metadata``; the set of files with the layout's.

Every disagreement must be one of :data:`LISTED`, each with the BIDS rule
that decides it; a new one fails the test (fix the index if it is wrong by
the specification, otherwise list it here with the rule).

Timings (2 shared cores, 16 datasets, 1,700 files): ``parse_file_entities``
over every file ~2 s; a ``BIDSLayout(validate=False)`` of every dataset with
every data file's metadata 8 s warm, 14 s cold (7t_trt is half of it). Under
the ~20 s line, so the whole sweep is in the default run, not marked slow.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pytest

from audit.bidsindex import DatasetIndex, entity_pairs, index_dataset
from audit.synthetic import make_dataset
from tests.builders import SHARED_DATA, make_bids

bids = pytest.importorskip("bids", reason="pybids is the oracle (the test extra installs it)")
from bids import BIDSLayout  # noqa: E402
from bids.layout import parse_file_entities  # noqa: E402

EXAMPLES = SHARED_DATA / "bids-examples"


@dataclass(frozen=True)
class Disagreement:
    dataset: str
    path: str
    what: str  # entities | datatype | suffix | extension | metadata | only-ours | only-pybids
    ours: object
    theirs: object
    role: str | None = None


@dataclass(frozen=True)
class Listed:
    """A known disagreement: which side BIDS says is right, and the rule that says so."""

    name: str
    right: str  # "bidsaudit" | "neither (undefined)" | ...
    rule: str
    applies: Callable[[Disagreement], bool]


def _in_ds_folder(d: Disagreement) -> bool:
    return ".ds/" in d.path or d.path.endswith(".ds")


LISTED = (
    Listed("top-level files have no suffix", "neither: no suffix is defined",
           "BIDS schema rules.files.common.core: top-level files (dataset_description.json, README, CHANGES, "
           "genetic_info.json, ...) are named by a fixed stem, with no entities and no suffix; pybids takes the "
           "text after the last '_' ('description', 'info') and nothing for a name without an extension, "
           "bidsaudit the stem when it has no '_'. Nothing reads a top-level file's suffix.",
           lambda d: d.what == "suffix" and d.role == "top"),
    Listed("a CTF .ds folder is one data file", "bidsaudit",
           "BIDS MEG (schema objects.extensions '.ds/'): a CTF recording is a folder that is one data file; its "
           "sidecar sub-*_meg.json applies to the folder by inheritance. pybids lists the files inside the "
           "folder and gives the folder no metadata.",
           lambda d: d.what in ("metadata", "only-ours", "only-pybids") and _in_ds_folder(d)),
    Listed("two applicable sidecars at one level", "neither: the dataset is invalid",
           "BIDS inheritance principle: no more than one applicable metadata file may be defined at a given "
           "level of the hierarchy (the validator reports it); what such a dataset means is not defined. pybids "
           "lets the sidecar with more entities win, bidsaudit applies them in file-name order.",
           lambda d: d.what == "metadata" and d.dataset == "inheritance"
           and d.path.endswith("sub-02_ses-1_task-rest_acq-x_bold.nii.gz")),
    Listed(".bidsignore", "bidsaudit",
           "BIDS (common principles, .bidsignore): files matching it are not BIDS files and are not validated; "
           "pybids does not read .bidsignore, bidsaudit leaves those files out as the official validator does.",
           lambda d: d.what == "only-pybids" and d.dataset == "inheritance"
           and d.path in ("extra/foo.txt", "sub-02/ses-1/anat/sub-02_notes.txt")),
)


@pytest.fixture(scope="module")
def short_names() -> dict[str, str]:
    """pybids entity name -> the key in file names (``acquisition`` -> ``acq``), from pybids's own config."""
    config = json.loads((resources.files("bids.layout") / "config" / "bids.json").read_text(encoding="utf-8"))
    out = {}
    for entity in config["entities"]:
        pattern = entity.get("pattern", "")
        key = pattern.split("-(", 1)[0].rsplit("+", 1)[-1] if "-(" in pattern else None
        if key and key.isalpha():
            out[entity["name"]] = key
    assert {"subject", "session", "acquisition", "run"} <= set(out)
    return out


def _theirs(relpath: str, short: dict[str, str], parsed: dict[str, object]) -> tuple[dict[str, str], object, object,
                                                                                        object]:
    ents = {short[k]: str(v) for k, v in parsed.items() if k in short}
    return ents, parsed.get("datatype"), parsed.get("suffix"), parsed.get("extension")


def name_disagreements(name: str, index: DatasetIndex, short: dict[str, str],
                       layout: BIDSLayout | None = None) -> Iterator[Disagreement]:
    """Entities, datatype, suffix and extension of every file: parse_file_entities (and the layout's, if given)."""
    files = {Path(f.path).relative_to(index.root).as_posix(): f for f in layout.get()} if layout else {}
    for row in index.rows:
        sources = [parse_file_entities("/" + row.path)]
        if row.path in files:
            sources.append(dict(files[row.path].get_entities()))
        for parsed in sources:
            ents, datatype, suffix, extension = _theirs(row.path, short, parsed)
            ours = dict(entity_pairs(row.entities))
            for what, a, b in (("entities", ours, ents), ("datatype", row.datatype, datatype),
                               ("suffix", row.suffix, suffix), ("extension", row.extension or None, extension)):
                if a != b:
                    yield Disagreement(name, row.path, what, a, b, row.role)


def layout_disagreements(name: str, index: DatasetIndex, layout: BIDSLayout) -> Iterator[Disagreement]:
    """The set of files, and every data file's metadata by inheritance."""
    theirs = {Path(f).relative_to(index.root).as_posix() for f in layout.get(return_type="file")}
    ours = {r.path for r in index.rows}
    for path in sorted(ours - theirs):
        yield Disagreement(name, path, "only-ours", True, False)
    for path in sorted(theirs - ours):
        yield Disagreement(name, path, "only-pybids", False, True)
    for row in index.rows:
        if row.role != "data":
            continue
        try:
            meta = dict(layout.get_metadata(str(index.root / row.path)))
        except (KeyError, ValueError) as err:  # a path pybids has not indexed (a .ds folder)
            meta = {"<pybids error>": type(err).__name__}
        mine = index.sidecar(row.path)
        if meta != mine:
            keys = sorted(k for k in set(meta) | set(mine) if meta.get(k, ...) != mine.get(k, ...))
            yield Disagreement(name, row.path, "metadata", {k: mine.get(k) for k in keys},
                               {k: meta.get(k) for k in keys})


def _layout(root: Path) -> BIDSLayout:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pybids's own deprecation notes are not what is tested
        return BIDSLayout(Path(root).resolve(), validate=False)  # the index resolves its root (../shared may be a link)


def unexplained(found: list[Disagreement]) -> list[str]:
    return [f"{d.dataset}: {d.path}: {d.what}: bidsaudit {d.ours!r}, pybids {d.theirs!r}"
            for d in found if not any(rule.applies(d) for rule in LISTED)]


def _examples() -> list[Path]:
    if not EXAMPLES.is_dir():
        pytest.skip(f"bids-examples not found at {EXAMPLES} (set BIDSAUDIT_SHARED_DATA to the shared data folder)")
    return sorted(p for p in EXAMPLES.iterdir() if (p / "dataset_description.json").is_file())


# --------------------------------------------------------------------------- bids-examples
def test_every_file_name_parses_alike_in_every_example_dataset(short_names):
    found: list[Disagreement] = []
    datasets = _examples()
    assert len(datasets) >= 10
    for root in datasets:
        found += name_disagreements(root.name, index_dataset(root), short_names)
    assert not unexplained(found), "\n".join(unexplained(found)[:40])
    assert any(d.what == "suffix" for d in found), "the listed top-level difference is no longer seen: update LISTED"


def _check_layouts(names: list[str], short: dict[str, str]) -> list[Disagreement]:
    found: list[Disagreement] = []
    for name in names:
        root = EXAMPLES / name
        index = index_dataset(root)
        layout = _layout(root)
        found += name_disagreements(name, index, short, layout)
        found += layout_disagreements(name, index, layout)
    assert not unexplained(found), "\n".join(unexplained(found)[:40])
    return found


def test_layouts_and_inherited_metadata_agree_on_every_example(short_names):
    found = _check_layouts([p.name for p in _examples()], short_names)
    if (EXAMPLES / "ds000246").is_dir():  # the CTF rule is exercised, not just listed
        assert any(d.what == "metadata" and d.path.endswith(".ds") for d in found)


# --------------------------------------------------------------------------- synthetic trees
def _inheritance_tree(root: Path) -> Path:
    """Sessions, metadata at the top, subject, session and file levels, an entity-specific sidecar, .bidsignore."""
    make_bids(root, subjects=("01", "02"), sessions={"01": ["1", "2"], "02": ["1"]}, images=False)

    def put(rel: str, data: dict | None = None) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if data is None:
            path.write_bytes(b"")
        else:
            path.write_text(json.dumps(data))

    put("T1w.json", {"A": "top", "B": "top"})
    put("acq-fast_T1w.json", {"A": "acq-top"})
    put("sub-01/sub-01_T1w.json", {"B": "subject", "C": 1})
    put("sub-01/ses-1/sub-01_ses-1_T1w.json", {"D": "session"})
    put("task-rest_bold.json", {"RepetitionTime": 2, "TaskName": "rest"})
    put("task-rest_acq-x_bold.json", {"RepetitionTime": 9})
    put("sub-01/ses-1/func/sub-01_ses-1_task-rest_bold.nii.gz")
    put("sub-01/ses-1/func/sub-01_ses-1_task-rest_acq-x_bold.nii.gz")
    put("sub-01/ses-1/func/sub-01_ses-1_task-rest_acq-x_bold.json", {"RepetitionTime": 3})
    put("sub-02/ses-1/func/sub-02_ses-1_task-rest_acq-x_bold.nii.gz")  # two applicable top-level sidecars
    put("sub-02/ses-1/anat/sub-02_ses-1_acq-fast_T1w.nii.gz")
    put("sub-02/ses-1/func/sub-02_ses-1_task-rest_run-1_bold.nii.gz")
    put("sub-02/ses-1/func/sub-02_ses-1_task-rest_run-1_events.tsv")
    put("task-rest_events.json", {"onset": {"Description": "start"}})
    put("sub-02/ses-1/dwi/sub-02_ses-1_dwi.nii.gz")
    put("sub-02/ses-1/dwi/sub-02_ses-1_dwi.bval")
    put("dwi.bvec")
    (root / ".bidsignore").write_text("extra/\n*_notes.txt\n")
    put("extra/foo.txt")
    put("sub-02/ses-1/anat/sub-02_notes.txt")
    return root


@pytest.mark.parametrize("tree", ["synthetic", "make_bids", "inheritance"])
def test_synthetic_trees_agree_file_by_file(tree, tmp_path, short_names):
    if tree == "synthetic":
        root = tmp_path / tree
        make_dataset(root, n_subjects=8, shape=(8, 10, 8), voxel_size=(24.0, 24.0, 24.0))
    elif tree == "make_bids":
        root = make_bids(tmp_path / tree, subjects=("01", "02", "03"), sessions={"02": ["a", "b"]})
    else:
        root = _inheritance_tree(tmp_path / tree)
    index = index_dataset(root)
    layout = _layout(root)
    found = list(name_disagreements(tree, index, short_names, layout)) + list(
        layout_disagreements(tree, index, layout))
    assert not unexplained(found), "\n".join(unexplained(found))
    checked = [r for r in index.rows if r.role == "data"]
    assert checked and sum(bool(index.sidecar(r.path)) for r in checked) >= len(checked) / 2  # metadata compared
    if tree == "inheritance":  # the closest sidecar wins, key by key, in both
        meta = index.sidecar("sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz")
        assert meta == {"A": "top", "B": "subject", "C": 1, "D": "session",
                        "Manufacturer": "Siemens", "ManufacturersModelName": "Prisma",
                        "MagneticFieldStrength": 3, "RepetitionTime": 2.3}
        listed = {rule.name for rule in LISTED if any(rule.applies(d) for d in found)}
        assert listed >= {"two applicable sidecars at one level", ".bidsignore"}
