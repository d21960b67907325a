"""PostgreSQL restarted in the middle of a run (issue #14, item 4): the service recovers, no audit is lost,
queued twice or run twice."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi", reason="the service extra is not installed")
pytest.importorskip("psycopg", reason="psycopg is not installed (the service extra)")


@pytest.mark.slow  # a PostgreSQL cluster, a server subprocess and about 20 small audits: about 40 s on 2 cores
@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_a_database_restart_mid_run_loses_and_repeats_nothing(mode):
    from bench import bench_service_pgrestart as bench

    if bench.pg_bin() is None:
        pytest.skip("no PostgreSQL server binaries (initdb); .ci/run installs Debian's postgresql")
    out = bench.run(audits=6, clients=3, workers=2, restart_after=2, mode=mode, down=3, late=3, timeout=240)
    hit = out["restart"]
    assert hit["restart_s"] is not None and hit["restarted_at"]["running"] >= 1  # it happened mid-audit
    acc = hit["accounting"]
    assert (acc["lost"], acc["duplicated"], acc["run_twice"], acc["stuck"]) == (0, 0, 0, 0), out
    assert acc["acknowledged"] == acc["in_database"] == 9 and not acc["failed"]
    assert hit["submission_retries"] >= 1  # the late submissions met the database down, and were retried
    assert out["server_log"]["internal_errors_500"] == 0 and out["ok"]
