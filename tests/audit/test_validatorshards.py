"""Sharded validation: the merged result equals one run of the official validator, file for file.

The exactness tests run the real validator (``bids-validator-deno``) on every
bids-examples dataset in ``$BIDSAUDIT_SHARED_DATA`` and on synthetic trees
with planted errors in several shards; they skip, saying why, without them.
The merge rules for top-level issues are also tested on hand-made results.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import audit.validatorsharded as sharded
from audit.hashing import HashCache
from audit.validator import ValidatorError, run_validator, validator_command
from audit.validatorshards import FAILED_CODE, ShardResult, dataset_subjects, merge, plan_shards
from audit.validatorstore import ShardStore
from tests.builders import SHARED_DATA

EXAMPLES = SHARED_DATA / "bids-examples"
CONFIG = EXAMPLES / "default-config.json"
MAKER = SHARED_DATA.parent / "make_synthetic_bids.py"
NAMES = sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir()) if EXAMPLES.is_dir() else []


def _has_validator() -> bool:
    try:
        validator_command()
    except ValidatorError:
        return False
    return True


needs_validator = pytest.mark.skipif(not _has_validator(), reason="bids-validator-deno is not installed")
needs_examples = pytest.mark.skipif(not NAMES, reason=f"bids-examples not found at {EXAMPLES} "
                                    "(set BIDSAUDIT_SHARED_DATA to the shared data folder)")
needs_maker = pytest.mark.skipif(not MAKER.is_file(), reason=f"{MAKER} not found (the ../shared folder is absent)")


def _key(issue: dict[str, Any]) -> tuple[Any, ...]:
    return (issue.get("code"), issue.get("subCode"), issue.get("severity"), issue.get("location"),
            issue.get("line"), issue.get("character"))


def _single_issues(ds: Path, config: Path | None) -> Counter:
    """Every issue of one run of the official validator (JSON), as a multiset."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        argv = [*validator_command(), str(ds), "--ignoreNiftiHeaders", "--format", "json", "--outfile", str(out)]
        argv += ["--config", str(config)] if config else []
        subprocess.run(argv, capture_output=True, check=False)
        issues = json.loads(out.read_text())["issues"]["issues"]
    return Counter(_key(i) for i in issues)


def _summaries(run) -> dict[str, Any]:
    return {c: (dict(s.severities), dict(s.subcodes), sorted(s.subjects), s.count) for c, s in run.codes.items()}


def _sharded(ds: Path, size: int, config: Path | None, tmp: Path, **kw: Any):
    return sharded.sharded_run(ds, dataset_subjects(ds), ignore_nifti_headers=True, config=config, shard_size=size,
                               jobs=2, store=ShardStore(memory=True), cache=HashCache(memory=True),
                               keep_issues=True, **kw)


# ----------------------------------------------------------------------------- every bids-examples dataset
@needs_examples
@needs_validator
@pytest.mark.parametrize("name", NAMES)
def test_sharded_result_is_the_single_run_on_every_bids_example(name, tmp_path):
    ds = EXAMPLES / name
    subjects = dataset_subjects(ds)
    size = max(1, len(subjects) // 3)  # three or four shards where there are subjects enough
    run, issues = _sharded(ds, size, CONFIG, tmp_path)
    assert Counter(_key(i) for i in issues) == _single_issues(ds, CONFIG)  # code, count, file, severity
    single = run_validator(ds, ignore_nifti_headers=True, config=CONFIG, output="json")
    assert _summaries(run) == _summaries(single)
    assert run.exit_code == single.exit_code and run.errors == single.errors and run.warnings == single.warnings
    assert run.sharding["shards"] == len(plan_shards(subjects, size))


OPENNEURO = SHARED_DATA / "openneuro" / "ds000117"


@needs_validator
@pytest.mark.skipif(not OPENNEURO.is_dir(), reason=f"{OPENNEURO} not found (the ../shared folder is absent)")
def test_sharded_result_is_the_single_run_on_a_real_datalad_clone(tmp_path):
    """ds000117: sessions, absent annex content, MEG sidecars naming sub-emptyroom's recordings."""
    run, issues = _sharded(OPENNEURO, 5, None, tmp_path)
    assert Counter(_key(i) for i in issues) == _single_issues(OPENNEURO, None)
    assert "ASSOCIATED_EMPTY_ROOM" not in run.codes  # sub-emptyroom is a witness in every shard without it


# ----------------------------------------------------------------------------- planted errors
def _planted_tree(root: Path, n: int = 12) -> Path:
    subprocess.run([sys.executable, str(MAKER), str(root), "--subjects", str(n), "--sessions", "1"], check=True,
                   capture_output=True)
    subs = dataset_subjects(root)
    # shard 1: a sidecar that is not JSON
    bad = next((root / subs[1]).rglob("*_T1w.json"))
    bad.write_text("{not json")
    # shard 2: a file named against BIDS, and an fmap only this subject has (others need a witness)
    anat = next((root / subs[5]).rglob("anat"))
    (anat / "not_bids_name.txt").write_text("x")
    fmap = anat.parent / "fmap"
    fmap.mkdir()
    (fmap / f"{subs[5]}_ses-01_phasediff.nii.gz").write_bytes(b"")
    (fmap / f"{subs[5]}_ses-01_phasediff.json").write_text(json.dumps({"EchoTime1": 0.004, "EchoTime2": 0.006,
                                                                       "IntendedFor": []}))
    # shard 3: a subject folder that participants.tsv does not list
    shutil.copytree(root / subs[-1], root / "sub-zz99", symlinks=True)
    for p in sorted((root / "sub-zz99").rglob("*"), key=lambda p: -len(p.parts)):
        if subs[-1] in p.name:
            p.rename(p.with_name(p.name.replace(subs[-1], "sub-zz99")))
    # top level: a sidecar no data file uses, and one every T1w inherits with a wrong type
    (root / "task-nothing_bold.json").write_text(json.dumps({"RepetitionTime": 2.0, "TaskName": "nothing"}))
    (root / "T1w.json").write_text(json.dumps({"MagneticFieldStrength": "three"}))
    return root


@needs_maker
@needs_validator
@pytest.mark.parametrize("config", [None, CONFIG], ids=["no-config", "examples-config"])
def test_planted_errors_in_several_shards_merge_exactly(tmp_path, config):
    if config is not None and not config.is_file():
        pytest.skip(f"{config} not found")
    ds = _planted_tree(tmp_path / "ds")
    run, issues = _sharded(ds, 4, config, tmp_path)
    single = _single_issues(ds, config)
    assert Counter(_key(i) for i in issues) == single
    codes = {k[0] for k in single}
    assert {"JSON_INVALID", "NOT_INCLUDED", "PARTICIPANT_ID_MISMATCH"} <= codes  # the plants were seen
    assert run.sharding["witness_views"] >= 1  # the shards without fmap saw it through a witness
    assert _summaries(run) == _summaries(run_validator(ds, ignore_nifti_headers=True, config=config, output="json"))


# ----------------------------------------------------------------------------- incremental runs
@needs_maker
@needs_validator
def test_rerun_validates_only_changed_shards(tmp_path):
    ds = tmp_path / "ds"
    subprocess.run([sys.executable, str(MAKER), str(ds), "--subjects", "9", "--sessions", "1"], check=True,
                   capture_output=True)
    store, cache = ShardStore(tmp_path / "store"), HashCache(tmp_path / "store")

    def run():
        return sharded.validate_with_shards(ds, ignore_nifti_headers=True, shard_size=3, jobs=2, store=store,
                                            cache=cache)

    first = run()
    assert first.sharding["validated_shards"] == 3 and first.sharding["top_view"] == "validated"
    again = run()
    assert again.sharding["validated_shards"] == 0 and again.sharding["reused_shards"] == 3
    assert again.sharding["top_view"] == "reused" and _summaries(again) == _summaries(first)
    sidecar = next((ds / "sub-00005").rglob("*_T1w.json"))
    sidecar.write_text("{broken")
    edited = run()
    # the shard is validated for its changed subject only, the other two kept from the stored result
    assert (edited.sharding["validated_shards"], edited.sharding["validated_subjects"]) == (1, 1)
    assert edited.sharding["patched_shards"] == 1
    assert "JSON_INVALID" in edited.errors
    assert _summaries(edited) == _summaries(run_validator(ds, ignore_nifti_headers=True, output="json"))
    assert any("1 shard(s) (1 subjects) validated now" in c for c in edited.corrections)
    stored_patch = run()  # the patched shard was stored whole: nothing validated again
    assert stored_patch.sharding["validated_shards"] == 0 and _summaries(stored_patch) == _summaries(edited)
    (ds / "T1w.json").write_text(json.dumps({"MagneticFieldStrength": 3}))  # every T1w inherits it
    inherited = run()
    assert inherited.sharding["validated_shards"] == 3 and inherited.sharding["top_view"] == "validated"
    assert _summaries(inherited) == _summaries(run_validator(ds, ignore_nifti_headers=True, output="json"))


@needs_maker
@needs_validator
def test_a_patched_shard_stays_exact_when_its_changed_subject_alone_used_a_top_level_file(tmp_path):
    """A top-level sidecar that only sub-00002's bold uses: patching sub-00002 alone is right while it still
    uses it; once it does not, the rest of its shard cannot be known from the stored result (which reported
    the sidecar as used), and the shard is validated whole."""
    ds = tmp_path / "ds"
    subprocess.run([sys.executable, str(MAKER), str(ds), "--subjects", "8", "--sessions", "1"], check=True,
                   capture_output=True)
    (ds / "task-nothing_bold.json").write_text(json.dumps({"RepetitionTime": 2.0, "TaskName": "nothing"}))
    func = ds / "sub-00002" / "ses-01" / "func"
    (func / "sub-00002_ses-01_task-nothing_bold.nii.gz").write_bytes(b"")
    store, cache = ShardStore(tmp_path / "store"), HashCache(tmp_path / "store")

    def run():
        got = sharded.validate_with_shards(ds, ignore_nifti_headers=True, shard_size=4, jobs=2, store=store,
                                           cache=cache)
        assert _summaries(got) == _summaries(run_validator(ds, ignore_nifti_headers=True, output="json"))
        return got

    run()
    t1w = next((ds / "sub-00002").rglob("*_T1w.json"))
    t1w.write_text(json.dumps({"MagneticFieldStrength": 3, "Edited": True}))
    still_used = run()
    assert still_used.sharding["patched_shards"] == 1 and still_used.sharding["validated_subjects"] == 1
    (func / "sub-00002_ses-01_task-nothing_bold.nii.gz").unlink()
    unused = run()
    assert unused.sharding["patched_shards"] == 0 and unused.sharding["validated_subjects"] == 4
    assert "SIDECAR_WITHOUT_DATAFILE" in unused.codes and "SIDECAR_WITHOUT_DATAFILE" not in still_used.codes


@needs_maker
@needs_validator
def test_stored_witnessed_shards_are_reused_and_patched(tmp_path):
    """Shards without the one fmap are validated with a witness: their stored results come back (witnesses
    and all) on a re-run, and an edit in such a shard is patched with the same witness."""
    ds = _planted_tree(tmp_path / "ds")
    store, cache = ShardStore(tmp_path / "store"), HashCache(tmp_path / "store")

    def run():
        return sharded.validate_with_shards(ds, ignore_nifti_headers=True, shard_size=4, jobs=2, store=store,
                                            cache=cache)

    first = run()
    assert first.sharding["witness_views"] >= 1
    again = run()
    assert again.sharding["validated_shards"] == 0 and _summaries(again) == _summaries(first)
    sidecar = next((ds / dataset_subjects(ds)[9]).rglob("*_T1w.json"))  # a shard without fmap
    sidecar.write_text(json.dumps({"MagneticFieldStrength": 3, "Edited": True}))
    edited = run()
    assert edited.sharding["validated_subjects"] < 4
    assert _summaries(edited) == _summaries(run_validator(ds, ignore_nifti_headers=True, output="json"))


# ----------------------------------------------------------------------------- failing shards
def _wrapper(tmp_path: Path, body: str) -> list[str]:
    script = tmp_path / "validator.sh"
    real = " ".join(validator_command())
    script.write_text(f'#!/bin/sh\nview="$1"\n{body}\nexec {real} "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return [str(script)]


@needs_maker
@needs_validator
def test_a_shard_the_validator_crashes_on_is_retried_alone_and_reported(tmp_path, monkeypatch):
    ds = tmp_path / "ds"
    subprocess.run([sys.executable, str(MAKER), str(ds), "--subjects", "8", "--sessions", "1"], check=True,
                   capture_output=True)
    crash = 'if [ -e "$view/sub-00003" ]; then echo "error: Uncaught TypeError: boom in sub-00003" >&2; exit 1; fi'
    monkeypatch.setattr(sharded, "validator_command", lambda: _wrapper(tmp_path, crash))
    run, issues = _sharded(ds, 4, None, tmp_path)
    failed = run.codes[FAILED_CODE]
    assert failed.severity == "error" and failed.subjects == {"sub-00003"}
    assert "sub-00003" in failed.examples[0]["message"] and "boom in sub-00003" in failed.examples[0]["message"]
    assert run.sharding["failed_shards"] == 1 and run.sharding["retries"] >= 2
    # every other subject's issues stand, exactly as in one run
    single = _single_issues(ds, None)
    lost = Counter({k: n for k, n in single.items() if (k[3] or "").startswith("/sub-00003/")})
    assert Counter(_key(i) for i in issues) == single - lost
    assert run.exit_code == 16 and not run.valid


@needs_maker
@needs_validator
def test_a_shard_out_of_memory_is_split_and_retried(tmp_path, monkeypatch):
    ds = tmp_path / "ds"
    subprocess.run([sys.executable, str(MAKER), str(ds), "--subjects", "8", "--sessions", "1"], check=True,
                   capture_output=True)
    oom = ('n=$(ls -d "$view"/sub-* 2>/dev/null | wc -l); if [ "$n" -gt 2 ]; then '
           'echo "FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory" >&2; exit 134; fi')
    monkeypatch.setattr(sharded, "validator_command", lambda: _wrapper(tmp_path, oom))
    run, issues = _sharded(ds, 4, None, tmp_path, memory_mib=64)
    assert FAILED_CODE not in run.codes and run.sharding["retries"] == 4  # two shards, each split in two
    assert Counter(_key(i) for i in issues) == _single_issues(ds, None)


def test_memory_budget_reaches_the_validator(tmp_path, monkeypatch):
    seen: dict[str, str] = {}

    def fake_run(argv, **kw):
        seen.update(kw["env"])
        Path(argv[argv.index("--outfile") + 1]).write_text('{"issues":{"issues":[],"codeMessages":{}},"summary":{}}')
        return subprocess.CompletedProcess(argv, 0)

    monkeypatch.setattr(subprocess, "run", fake_run)
    from audit.validatorshards import ShardOptions, run_shard

    (tmp_path / "ds" / "sub-1").mkdir(parents=True)
    r = run_shard(str(tmp_path / "ds"), ["sub-1"], ShardOptions(command=("v",), memory_mib=300))
    assert r.failure is None and seen["DENO_V8_FLAGS"] == "--max-old-space-size=300"


# ----------------------------------------------------------------------------- Dask
@needs_examples
@needs_validator
def test_shards_on_a_dask_cluster_give_the_local_result(tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    ds = EXAMPLES / "ds001"
    local, _ = _sharded(ds, 6, CONFIG, tmp_path)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster:
        remote, _ = _sharded(ds, 6, CONFIG, tmp_path, scheduler=cluster.scheduler_address)
    assert _summaries(remote) == _summaries(local) and remote.sharding["scheduler"] == cluster.scheduler_address
    assert remote.sharding["jobs"] is None and remote.sharding["shards"] == 3


# ----------------------------------------------------------------------------- merge rules, no validator
def _issue(code: str, location: str, sub: str | None = None) -> dict[str, Any]:
    return {"code": code, "severity": "warning", "location": location, **({"subCode": sub} if sub else {})}


def test_top_level_merge_rules():
    top = ShardResult(subjects=(), top=True, top_issues=[
        _issue("README_FILE_SMALL", "/README"),  # top level alone: everywhere
        _issue("SIDECAR_WITHOUT_DATAFILE", "/task-a_bold.json"),  # unused in the whole dataset?
        _issue("SIDECAR_WITHOUT_DATAFILE", "/task-b_bold.json"),
        _issue("PARTICIPANT_ID_MISMATCH", "/participants.tsv"),  # the top view has no subject folder
    ])
    a = ShardResult(subjects=("sub-1",), top_issues=[
        _issue("README_FILE_SMALL", "/README"), _issue("SIDECAR_WITHOUT_DATAFILE", "/task-a_bold.json"),
        *[_issue("TSV_COLUMN_TYPE_REDEFINED", "/task-x_events.json", "onset")] * 3])
    b = ShardResult(subjects=("sub-2",), witnesses=("sub-9",), top_issues=[
        _issue("README_FILE_SMALL", "/README"), _issue("SIDECAR_WITHOUT_DATAFILE", "/task-a_bold.json"),
        _issue("SIDECAR_WITHOUT_DATAFILE", "/task-b_bold.json"), _issue("PARTICIPANT_ID_MISMATCH", "/participants.tsv"),
        *[_issue("TSV_COLUMN_TYPE_REDEFINED", "/task-x_events.json", "onset")] * 5])
    witness = ShardResult(subjects=("sub-9",), top_issues=[
        *[_issue("TSV_COLUMN_TYPE_REDEFINED", "/task-x_events.json", "onset")] * 2])
    codes, kept = merge(top, [a, b], {("sub-9",): witness})
    got = Counter((i["code"], i["location"]) for i in kept)
    assert got == Counter({
        ("README_FILE_SMALL", "/README"): 1,
        ("SIDECAR_WITHOUT_DATAFILE", "/task-a_bold.json"): 1,  # in every shard: no subject uses it
        ("PARTICIPANT_ID_MISMATCH", "/participants.tsv"): 1,  # one shard has an unlisted subject
        ("TSV_COLUMN_TYPE_REDEFINED", "/task-x_events.json"): 3 + 5 - 2,  # per inheriting file, witness's off
    })
    assert codes["TSV_COLUMN_TYPE_REDEFINED"].subcodes == {"onset": 6}


def test_patch_rule_on_hand_made_results():
    """Which stored shards may be kept for their unchanged subjects (audit.validatorpatch), without the validator."""
    from audit.validatorpatch import fits, patchable, without

    top = ShardResult(subjects=(), top=True, top_issues=[
        _issue("README_FILE_SMALL", "/README"), _issue("SIDECAR_WITHOUT_DATAFILE", "/task-a_bold.json"),
        _issue("SUBJECT_FOLDERS", "/dataset_description.json")])
    parts = {("sub-1", "X", "warning", "k"): 2, ("sub-2", "X", "warning", "k"): 1, ("sub-3", "Y", "error", None): 1,
             ("sub-4", "X", "warning", None): 1}
    plain = ShardResult(subjects=("sub-1", "sub-2", "sub-3", "sub-4"), parts=parts,
                        top_issues=[_issue("README_FILE_SMALL", "/README")])
    assert patchable(plain, top, ["sub-2"]) and patchable(plain, top, ["sub-2", "sub-3"])
    assert not patchable(plain, top, ["sub-1", "sub-2", "sub-3"])  # more than half changed
    assert not patchable(plain, top, [])
    per_file = ShardResult(subjects=plain.subjects, parts=parts, top_issues=[
        _issue("README_FILE_SMALL", "/README"), _issue("TSV_COLUMN_TYPE_REDEFINED", "/task-x_events.json")])
    assert not patchable(per_file, top, ["sub-2"])  # summed per inheriting file: depends on the subjects
    unlisted = ShardResult(subjects=plain.subjects, parts=parts, top_issues=[
        _issue("README_FILE_SMALL", "/README"), _issue("PARTICIPANT_ID_MISMATCH", "/participants.tsv")])
    assert not patchable(unlisted, top, ["sub-2"])
    # the shard used task-a_bold.json: kept only if the changed subject's fresh run says it is still used
    still = ShardResult(subjects=("sub-2",), top_issues=[_issue("README_FILE_SMALL", "/README")])
    gone = ShardResult(subjects=("sub-2",), top_issues=[_issue("README_FILE_SMALL", "/README"),
                                                        _issue("SIDECAR_WITHOUT_DATAFILE", "/task-a_bold.json")])
    assert fits(plain, [still], top) and not fits(plain, [gone], top)
    assert not fits(plain, [ShardResult(subjects=("sub-2",), failure="boom")], top)
    rest = without(plain, {"sub-2", "sub-3"})
    assert rest.subjects == ("sub-1", "sub-4") and "Y" not in rest.codes
    assert (rest.codes["X"].count, rest.codes["X"].subcodes, sorted(rest.codes["X"].subjects)) == (
        3, {"k": 2}, ["sub-1", "sub-4"])


def test_small_datasets_are_validated_in_one_run(tmp_path, monkeypatch):
    calls: list[Path] = []
    monkeypatch.setattr(sharded, "run_validator", lambda ds, **kw: calls.append(ds) or "single")
    for i in range(3):
        (tmp_path / f"sub-{i}").mkdir()
    assert sharded.validate_with_shards(tmp_path) == "single" and calls == [tmp_path]
    assert sharded.validate_with_shards(tmp_path, shard_size=0) == "single"
    assert sharded.should_shard(sharded.SHARD_MIN_SUBJECTS + 1)
    assert not sharded.should_shard(sharded.SHARD_MIN_SUBJECTS)


def test_store_round_trip_keeps_a_result(tmp_path):
    from audit.validatoroutput import summarise_issues

    codes = summarise_issues([_issue("X", "/sub-1/anat/a.json", "k"), _issue("X", "/sub-1/anat/b.json")])
    r = ShardResult(subjects=("sub-1",), codes=codes, top_issues=[_issue("Y", "/README")], seconds=1.5)
    store = ShardStore(tmp_path)
    store.put("k1", r)
    back = ShardStore(tmp_path).get("k1")
    assert back is not None and back.subjects == ("sub-1",) and back.top_issues == r.top_issues
    assert _summaries(type("R", (), {"codes": back.codes})) == _summaries(type("R", (), {"codes": codes}))
    store.put("k2", ShardResult(subjects=("sub-2",), failure="boom"))
    assert store.get("k2") is None  # failures are never stored
    assert os.path.exists(tmp_path / ShardStore.FILENAME)


# ----------------------------------------------------------------------------- the commands
@needs_examples
@needs_validator
def test_validate_command_shards_on_request_with_the_same_findings(tmp_path, monkeypatch):
    from tests.builders import invoke

    monkeypatch.setenv("BIDSAUDIT_CACHE_DIR", str(tmp_path / "cache"))
    ds = EXAMPLES / "ds001"
    common = ("validate", ds, "--ignore-nifti-headers", "--validator-config", CONFIG, "--workers", "1", "-q",
              "--out-dir", tmp_path)
    one = invoke(*common, "--shard-size", "0", "--json", tmp_path / "one.json")
    shards = invoke(*common, "--shard-size", "6", "--jobs", "2", "--validator-memory", "512",
                    "--json", tmp_path / "shards.json")
    assert one.exit_code == shards.exit_code == 0, shards.output

    def bids(path: Path) -> list[dict[str, Any]]:
        return [f for f in json.loads(path.read_text())["findings"] if f["check"].startswith("bids.")]

    a, b = bids(tmp_path / "one.json"), bids(tmp_path / "shards.json")
    assert [(f["check"], f["evidence"]["code"], f["evidence"]["count"]) for f in a] == \
        [(f["check"], f["evidence"]["code"], f["evidence"]["count"]) for f in b] != []
    sharding = b[0]["evidence"]["sharding"]
    assert (sharding["shards"], sharding["memory_mib"], sharding["jobs"]) == (3, 512, 2)
    assert "sharding" not in a[0]["evidence"]
