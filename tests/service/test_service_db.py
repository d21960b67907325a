"""Storage of the service, on SQLite and on a real PostgreSQL server: migrations, claims, recovery."""

from __future__ import annotations

import os
import threading

import pytest

from tests.service.test_service_support import AUTH, db_url, make_root, postgres, settings_for, wait_for  # noqa: F401

pytest.importorskip("sqlalchemy", reason="the service extra is not installed")


@pytest.fixture
def store(db_url):  # noqa: F811
    from audit.service.db import make_engine, upgrade
    from audit.service.store import Store

    engine = make_engine(db_url)
    upgrade(engine)
    yield Store(engine)
    engine.dispose()


def test_migrations_build_exactly_the_models(db_url):  # noqa: F811
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import inspect

    from audit.service.db import Base, make_engine, upgrade

    engine = make_engine(db_url)
    upgrade(engine)
    upgrade(engine)  # a second start finds the schema current
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        assert MigrationContext.configure(conn).get_current_revision() == "0002"
    assert "audits" in inspect(engine).get_table_names()
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    engine.dispose()


def test_downgrade_and_upgrade_again(db_url):  # noqa: F811
    from alembic import command
    from sqlalchemy import inspect

    from audit.service.db import alembic_config, make_engine, upgrade

    engine = make_engine(db_url)
    upgrade(engine)
    cfg = alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")
    assert "audits" not in inspect(engine).get_table_names()
    upgrade(engine)
    assert "audits" in inspect(engine).get_table_names()
    engine.dispose()


def _submit(store, n=1, dataset="ds"):
    return [store.submit(dataset=dataset, dataset_path=None, splits_path=f"/s/{i}", source="paths",
                         options={"label": "dx"}) for i in range(n)]


def test_lifecycle(store):
    a, b, c = _submit(store, 3)
    assert store.get(a.id).status == "queued" and store.get(a.id).options == {"label": "dx"}
    claimed = store.claim_next()
    assert claimed.id == a.id and claimed.status == "running" and claimed.attempts == 1
    result = {"status": "fail", "counts": {"error": 2, "warning": 1, "info": 0}, "readiness": {"level": "C1"},
              "findings": []}
    assert store.finish(a.id, result)
    assert not store.finish(a.id, result)  # only a running audit can finish, once
    done = store.get(a.id)
    assert (done.status, done.verdict, done.readiness_level, done.counts, done.result) == \
        ("done", "fail", "C1", {"error": 2, "warning": 1, "info": 0}, result)
    assert done.finished_at >= done.started_at >= done.created_at
    assert store.claim_next().id == b.id
    assert store.fail(b.id, "bad input")
    assert store.get(b.id).error == "bad input"
    assert [r.id for r in store.list()] == [c.id, b.id, a.id]
    assert [r.id for r in store.list(status="done")] == [a.id]
    assert store.list(since=done.created_at, oldest_first=True)[0].id == a.id
    [entry] = store.datasets()
    assert entry["dataset"] == "ds" and entry["audits"] == 3 and entry["latest"]["id"] == a.id
    assert store.counts_by_status() == {"done": 1, "failed": 1, "queued": 1}


def test_recover_requeues_once_then_fails(store):
    (a,) = _submit(store, 1)
    store.claim_next()
    assert store.recover(max_attempts=2) == {"requeued": 1, "failed": 0, "queued": 1}
    assert store.get(a.id).status == "queued" and "re-queued" in store.get(a.id).note
    assert store.claim_next().attempts == 2
    assert store.recover(max_attempts=2) == {"requeued": 0, "failed": 1, "queued": 0}
    failed = store.get(a.id)
    assert failed.status == "failed" and "interrupted" in failed.error


def test_concurrent_claims_never_run_an_audit_twice(store):
    ids = {r.id for r in _submit(store, 40)}
    claimed: list[str] = []
    lock = threading.Lock()

    def worker():
        while (record := store.claim_next()) is not None:
            with lock:
                claimed.append(record.id)
            store.finish(record.id, {"status": "pass", "counts": {}})

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(claimed) == sorted(ids)  # each exactly once
    assert store.counts_by_status() == {"done": 40}


def test_api_end_to_end_on_each_database(db_url, tmp_path):  # noqa: F811
    from fastapi.testclient import TestClient

    from audit.service.app import create_app

    root = make_root(tmp_path)
    settings = settings_for(root, tmp_path / "state", database_url=db_url)
    with TestClient(create_app(settings)) as c:
        r = c.post("/api/audits", json={"dataset": "ds1", "splits": "leaky", "no_validator": True}, headers=AUTH)
        body = wait_for(c, r.json()["id"])
        assert body["status"] == "done" and body["verdict"] == "fail"
        assert c.get("/api/datasets").json()[0]["latest"]["id"] == body["id"]
    with TestClient(create_app(settings)) as c:  # a restart keeps the history
        assert c.get(f"/api/audits/{body['id']}").json()["result"] == body["result"]


def test_upgrade_from_0001_keeps_audits_and_recovers_their_running_ones(db_url):  # noqa: F811
    from alembic import command
    from sqlalchemy import text

    from audit.service.db import alembic_config, make_engine, upgrade
    from audit.service.store import Store

    engine = make_engine(db_url)
    cfg = alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
    with engine.begin() as conn:  # a server of the first schema was running this audit when it stopped
        conn.execute(text("INSERT INTO audits (id, status, dataset, splits_path, source, options, created_at, "
                          "attempts) VALUES ('a' || :pad, 'running', 'ds', '/s', 'paths', '{}', :now, 1)"),
                     {"pad": "0" * 31, "now": "2026-01-01 00:00:00+00:00"})
    upgrade(engine)
    store = Store(engine)
    record = store.get("a" + "0" * 31)
    assert record.status == "running" and record.dataset == "ds"
    assert store.recover(max_attempts=2)["requeued"] == 1
    assert store.get(record.id).status == "queued"
    engine.dispose()


def test_several_servers_share_a_database_without_stealing_each_others_audits(store):
    import datetime as dt
    import socket

    from sqlalchemy import update

    from audit.service.db import AuditRow
    from audit.service.worker import _LIVE, owner_alive

    host = socket.gethostname()
    live = f"{host}:{os.getpid()}:live0001"
    dead_here = f"{host}:999999999:dead0001"  # a pid that cannot exist: a server on this machine that exited
    far = "other-host.example:4242:far00001"  # another machine: only its lease says whether it is alive
    a, b, c, d = _submit(store, 4)
    _LIVE.add(live)
    try:
        for owner in (live, dead_here, far, far):
            store.claim_next(owner)
        with store.session() as s, s.begin():  # d's server stopped renewing its lease long ago
            s.execute(update(AuditRow).where(AuditRow.id == d.id)
                      .values(heartbeat_at=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)))
        assert owner_alive(live) and not owner_alive(dead_here) and owner_alive(far)
        assert store.recover(max_attempts=2, lease_seconds=60, owner_alive=owner_alive)["requeued"] == 2
        assert [store.get(x.id).status for x in (a, b, c, d)] == ["running", "queued", "running", "queued"]
        assert store.heartbeat(live) == 1
        assert not store.finish(a.id, {"status": "pass"}, owner=far)  # only its own server closes an audit
        assert store.finish(a.id, {"status": "pass"}, owner=live)
    finally:
        _LIVE.discard(live)
