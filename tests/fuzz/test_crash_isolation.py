"""Crash isolation: a reader that really dies (abort, segfault, SIGKILL) costs one image, never the audit."""

from __future__ import annotations

import json

import pytest

from audit.bidsindex import index_dataset
from audit.context import AuditContext, AuditOptions
from audit.hashing import HashCache
from audit.images.isolate import HOOK_FLAG, HOOK_VAR, crash_hook
from audit.images.summary import summarise_images
from audit.runner import run_checks
from tests.builders import invoke, make_bids

SUBJECTS = [f"{i:02d}" for i in range(1, 9)]
VICTIM = "sub-05"


@pytest.fixture
def crashing(monkeypatch):
    def arm(how: str, marker: str = VICTIM) -> None:
        monkeypatch.setenv(HOOK_FLAG, "1")
        monkeypatch.setenv(HOOK_VAR, f"{how}:{marker}")
    return arm


def test_the_hook_needs_the_test_flag(monkeypatch):
    monkeypatch.setenv(HOOK_VAR, "abort:sub-05")
    monkeypatch.delenv(HOOK_FLAG, raising=False)
    assert crash_hook() is None
    monkeypatch.setenv(HOOK_FLAG, "1")
    assert crash_hook() == ("abort", "sub-05")
    monkeypatch.setenv(HOOK_VAR, "explode:sub-05")  # an unknown way to die is no hook
    assert crash_hook() is None


@pytest.mark.parametrize(("how", "signal"), [("abort", "SIGABRT"), ("segv", "SIGSEGV"), ("kill", "SIGKILL")])
def test_a_dying_pool_worker_costs_one_image(tmp_path, crashing, how, signal):
    root = make_bids(tmp_path / "ds", SUBJECTS)
    clean = summarise_images(index_dataset(root), workers=2, cache=HashCache(memory=True))
    crashing(how)
    hit = summarise_images(index_dataset(root), workers=2, cache=HashCache(memory=True))
    by = {s.subject: s for s in hit}
    assert by[VICTIM].status == "unreadable" and signal in by[VICTIM].problem, by[VICTIM].problem
    # every other image was read, and read exactly as without the crash
    assert [s for s in hit if s.subject != VICTIM] == [s for s in clean if s.subject != VICTIM]


def test_the_crash_is_an_unreadable_file_finding_and_the_audit_completes(tmp_path, crashing):
    root = make_bids(tmp_path / "ds", SUBJECTS)
    crashing("abort")
    ctx = AuditContext(options=AuditOptions(run_validator=False, workers=2), index=index_dataset(root))
    found, _ = run_checks(ctx, ["quality.corrupt_image", "quality.unreadable_file"])
    [f] = [f for f in found if f.check == "quality.unreadable_file"]
    assert f.subjects == (VICTIM,) and "SIGABRT" in f.message and f"{VICTIM}_T1w.nii.gz" in f.message
    assert not [f for f in found if f.check == "quality.corrupt_image"]


def test_the_cli_audit_survives_a_segfault(tmp_path, crashing, monkeypatch):
    root = make_bids(tmp_path / "ds", SUBJECTS)
    monkeypatch.setenv("BIDSAUDIT_CACHE_DIR", str(tmp_path / "cache"))
    crashing("segv")
    out = tmp_path / "r.json"
    r = invoke("validate", root, "--no-validator", "--workers", "2", "--json", out)
    assert r.exit_code == 1, r.output
    doc = json.loads(out.read_text())
    [f] = [f for f in doc["findings"] if f["check"] == "quality.unreadable_file"]
    assert f["subjects"] == [VICTIM] and "SIGSEGV" in f["message"]


def test_several_crashing_images_each_cost_themselves(tmp_path, crashing):
    root = make_bids(tmp_path / "ds", SUBJECTS)
    crashing("kill", "_T1w")  # every image kills its reader
    hit = summarise_images(index_dataset(root), workers=2, cache=HashCache(memory=True))
    assert {s.status for s in hit} == {"unreadable"} and len(hit) == len(SUBJECTS)
    assert all("SIGKILL" in s.problem for s in hit)


@pytest.mark.slow
def test_a_dying_dask_worker_costs_one_image(tmp_path, crashing):
    distributed = pytest.importorskip("dask.distributed")
    import dask

    root = make_bids(tmp_path / "ds", SUBJECTS)
    clean = summarise_images(index_dataset(root), workers=1, cache=HashCache(memory=True))
    crashing("abort")
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                     dashboard_address=None) as cluster:
        hit = summarise_images(index_dataset(root), scheduler=cluster.scheduler_address,
                               cache=HashCache(memory=True))
    by = {s.subject: s for s in hit}
    assert by[VICTIM].status == "unreadable" and "Dask worker" in by[VICTIM].problem, by[VICTIM].problem
    assert [s for s in hit if s.subject != VICTIM] == [s for s in clean if s.subject != VICTIM]
