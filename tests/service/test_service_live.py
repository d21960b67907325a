"""A real server killed with SIGKILL in the middle of a run and restarted: every audit accounted for."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi", reason="the service extra is not installed")


@pytest.mark.slow  # two server starts with spawned workers: about 25 s on 2 shared cores
def test_kill_mid_run_and_restart_accounts_for_every_audit(tmp_path):
    from bench.bench_service import Server, fault_phase, make_root

    make_root(tmp_path / "root")
    (tmp_path / "fault").mkdir()
    server = Server(tmp_path / "root", tmp_path / "fault" / "state", workers=2, database=None).start()
    try:
        report = fault_phase(server, audits=8, kill_after=1)
    finally:
        server.stop()
    acc = report["accounting"]
    assert acc["lost"] == 0 and acc["unknown_extra"] == 0 and acc["stuck"] == 0
    assert acc["running_at_kill"] >= 1 and acc["rerun_after_restart"] >= 1  # the killed ones ran again
    assert acc["rerun_without_note"] == 0 and acc["run_more_than_twice"] == 0
    assert acc["done"] == 8, report
    assert report["ok"]
