"""The hardened service (issue #14, item 5): token roles, rate limits, body and archive limits, retention,
TLS options, the missing ``service`` extra, idempotent submissions and database outages answered with 503."""

from __future__ import annotations

import datetime as dt
import io
import sys
import zipfile

import pytest

from tests.service.test_service_support import AUTH, TOKEN, make_root, settings_for, wait_for

pytest.importorskip("fastapi", reason="the service extra is not installed")

from fastapi.testclient import TestClient  # noqa: E402

READER = "reader-token-0123456789"
SUBMITTER = "submit-token-0123456789"
ADMIN = "admin-token-01234567890"
ROLES = {READER: ["read"], SUBMITTER: ["submit"], ADMIN: ["admin"]}


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def root(tmp_path):
    return make_root(tmp_path)


def client_for(root, tmp_path, **kw):
    from audit.service.app import create_app

    return TestClient(create_app(settings_for(root, tmp_path / "state", **kw)))


def submit(client, headers=AUTH, **body):
    body = {"dataset": "ds1", "splits": "clean", "no_validator": True, **body}
    return client.post("/api/audits", json=body, headers=headers)


# -- roles ----------------------------------------------------------------------------------------
def test_tokens_file_roles_and_the_old_format(tmp_path):
    from audit.service.settings import Settings, read_tokens_file

    path = tmp_path / "tokens"
    path.write_text("# old lines: name:token or token\nci:old-token-0123456789abc\nbare-token-0123456789abc\n"
                    f"alice:{READER} read\nbob:{SUBMITTER}  submit # comment\nops:{ADMIN} admin\n"
                    "both:two-roles-0123456789ab read,admin\n")
    tokens = read_tokens_file(path)
    assert tokens["old-token-0123456789abc"] == tokens["bare-token-0123456789abc"] == {"read", "submit"}
    assert tokens[READER] == {"read"} and tokens[SUBMITTER] == {"read", "submit"}
    assert tokens[ADMIN] == tokens["two-roles-0123456789ab"] == {"read", "submit", "admin"}
    assert Settings(tokens=tokens).token_roles == tokens
    assert Settings(tokens=frozenset({"x" * 16})).token_roles == {"x" * 16: {"read", "submit"}}


@pytest.mark.parametrize(("text", "needle"), [
    (f"alice:{READER} raed\n", "line 1, roles: expected read, submit or admin (did you mean 'read'?), got 'raed'"),
    (f"alice:{READER} read extra\n", "line 1"),
    (f"a:{READER}\nb:{READER} admin\n", "line 2: the same token twice"),
    ("short read\n", "token too short"),
])
def test_tokens_file_errors_name_the_line(tmp_path, text, needle):
    from audit.errors import InputError
    from audit.service.settings import read_tokens_file

    (tmp_path / "tokens").write_text(text)
    with pytest.raises(InputError) as err:
        read_tokens_file(tmp_path / "tokens")
    assert needle in str(err.value) and "tokens" in str(err.value)


def test_each_role_may_do_what_it_grants(root, tmp_path):
    with client_for(root, tmp_path, tokens=ROLES, public_read=False) as c:
        r = submit(c, headers=bearer(READER))
        assert r.status_code == 403 and "may not submit audits" in r.json()["detail"] and "read" in r.json()["detail"]
        assert submit(c, headers=bearer("wrong-token-0123456789")).status_code == 401
        audit_id = submit(c, headers=bearer(SUBMITTER)).json()["id"]
        assert wait_for(c, audit_id, headers=bearer(READER))["status"] == "done"
        assert c.get("/api/audits").status_code == 401  # --private: reading needs a token
        assert c.get("/api/audits", headers=bearer(READER)).status_code == 200
        r = c.post("/api/admin/cleanup", headers=bearer(SUBMITTER))
        assert r.status_code == 403 and "needed: admin" in r.json()["detail"]
        assert c.post("/api/admin/cleanup").status_code == 401
        assert c.post("/api/admin/cleanup", headers=bearer(ADMIN)).status_code == 200
        assert submit(c, headers=bearer(ADMIN)).status_code == 202  # admin implies submit


def test_the_upload_page_refuses_a_read_only_token(root, tmp_path):
    with client_for(root, tmp_path, tokens=ROLES) as c:
        page = c.get("/upload")
        csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        r = c.post("/upload", data={"csrf": csrf, "token": READER},
                   files=[("files", ("train.tsv", b"participant_id\nsub-01\n"))])
        assert r.status_code == 403 and "may not submit" in r.text


# -- rate limits ----------------------------------------------------------------------------------
def test_token_bucket_and_limiter_with_a_fake_clock():
    from audit.service.limits import RateLimiter

    now = [0.0]
    limiter = RateLimiter(per_minute=60, burst_seconds=3, clock=lambda: now[0], max_keys=2)
    assert [limiter.take("a") for _ in range(4)] == [0.0, 0.0, 0.0, 1.0]  # 3 at once, then 1 a second
    now[0] = 0.5
    assert limiter.take("a") == pytest.approx(0.5)
    now[0] = 1.0
    assert limiter.take("a") == 0.0 and limiter.take("b") == 0.0
    limiter.take("c")  # a third key evicts the least recently used one ("a"), which starts full again
    assert "a" not in limiter._buckets and len(limiter._buckets) == 2


def test_per_address_limit_answers_429_with_retry_after(root, tmp_path):
    with client_for(root, tmp_path, rate_per_address=60, rate_burst_seconds=5) as c:  # 5 at once, 1 a second
        codes = [c.get("/api/datasets").status_code for _ in range(5)]
        r = c.get("/api/datasets")
        assert codes == [200] * 5 and r.status_code == 429
        assert int(r.headers["retry-after"]) >= 1 and "this address" in r.json()["detail"]
        assert "60 a minute" in r.json()["detail"]
        assert submit(c).status_code == 429  # submissions share the address's bucket
        assert c.get("/api/health").status_code == 200  # the health probe is never limited


def test_per_token_limit_is_per_token(root, tmp_path):
    tokens = {TOKEN: ["submit"], SUBMITTER: ["submit"]}
    with client_for(root, tmp_path, tokens=tokens, rate_per_address=0, rate_per_token=60,
                    rate_burst_seconds=3) as c:
        codes = [c.get("/api/datasets", headers=AUTH).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        r = c.get("/api/datasets", headers=AUTH)
        assert "this token" in r.json()["detail"] and r.headers["retry-after"]
        assert c.get("/api/datasets", headers=bearer(SUBMITTER)).status_code == 200  # another token: its own
        assert c.get("/api/datasets").status_code == 200  # no token: only the address limit (off here)
        # a wrong token gets no bucket of its own (it is answered 401 by the route, never 429)
        assert all(c.get("/api/datasets", headers=bearer("nope-0123456789abcdef")).status_code == 200
                   for _ in range(5))


# -- body and archive limits ----------------------------------------------------------------------
def test_a_json_body_over_the_limit_is_413_before_it_is_read(root, tmp_path):
    with client_for(root, tmp_path, max_json_bytes=1000) as c:
        r = submit(c, label="x" * 2000)
        assert r.status_code == 413 and "at most 1000 bytes" in r.json()["detail"]

        def chunks():  # no Content-Length: counted while it streams
            yield b'{"splits": "clean", "label": "'
            for _ in range(20):
                yield b"x" * 100
            yield b'"}'

        r = c.post("/api/audits", content=chunks(), headers={**AUTH, "Content-Type": "application/json"})
        assert r.status_code == 413 and "over 1000 bytes" in r.json()["detail"]
        r = c.post("/api/audits", content=b"{}", headers={**AUTH, "Content-Type": "application/json",
                                                          "Content-Length": "abc"})
        assert r.status_code == 400 and "Content-Length" in r.json()["detail"]


def _zip(entries):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in entries:
            z.writestr(name, data)
    return buf.getvalue()


def test_an_archive_with_too_many_entries_is_413(root, tmp_path):
    with client_for(root, tmp_path, max_archive_files=3) as c:
        data = _zip([("train.tsv", b"participant_id\nsub-01\n")] + [(f"docs/{i}.md", b"") for i in range(40)])
        r = c.post("/api/audits", files=[("files", ("s.zip", data))], headers=AUTH)
        assert r.status_code == 413 and "41 entries" in r.json()["detail"] and "s.zip" in r.json()["detail"]


# -- retention ------------------------------------------------------------------------------------
def _upload(c, name="train.tsv"):
    r = c.post("/api/audits", headers=AUTH, files=[
        ("files", ("train.tsv", b"participant_id\nsub-01\nsub-02\n")),
        ("files", ("test.tsv", b"participant_id\nsub-03\n"))], data={"name": name})
    assert r.status_code == 202, r.text
    return wait_for(c, r.json()["id"])


def test_retention_by_age_prunes_results_and_uploads_but_keeps_the_history(root, tmp_path):
    from audit.service.retention import clean_up

    tokens = {TOKEN: ["admin"]}
    with client_for(root, tmp_path, tokens=tokens, retention_days=30) as c:
        old = _upload(c)
        recent = wait_for(c, submit(c).json()["id"])
        store, settings = c.app.state.store, c.app.state.settings
        assert (settings.upload_dir / old["id"]).is_dir()
        assert clean_up(store, settings)["pruned"] == 0  # nothing is 30 days old yet
        with store.session() as s, s.begin():  # make the first one 40 days old
            from sqlalchemy import update

            from audit.service.db import AuditRow, utcnow

            s.execute(update(AuditRow).where(AuditRow.id == old["id"])
                      .values(finished_at=utcnow() - dt.timedelta(days=40)))
        report = c.post("/api/admin/cleanup", headers=AUTH).json()  # on demand
        assert report["pruned"] == 1 and report["bytes_freed"] > 0
        assert not (settings.upload_dir / old["id"]).exists()
        body = c.get(f"/api/audits/{old['id']}").json()
        assert body["status"] == "done" and body["result"] is None and body["verdict"] == old["verdict"]
        assert "retention policy" in body["note"] and "30 days" in body["note"]
        r = c.get(f"/api/audits/{old['id']}/report")
        assert r.status_code == 410 and "retention policy" in r.json()["detail"]
        assert c.get(f"/api/audits/{recent['id']}").json()["result"] is not None
        assert c.get(f"/audits/{old['id']}").status_code == 200  # its page still shows the verdict
        assert clean_up(store, settings)["pruned"] == 0  # pruned once


def test_retention_by_size_prunes_the_oldest_first_and_never_a_running_audit(root, tmp_path):
    from audit.service.retention import clean_up

    with client_for(root, tmp_path) as c:
        done = [wait_for(c, submit(c, splits=s).json()["id"]) for s in ("clean", "leaky", "clean")]
        store = c.app.state.store
        queued = store.submit(dataset="x", dataset_path=None, splits_path="/nowhere", source="paths", options={})
        store.claim_next("someone-else")  # running elsewhere: never touched
        sizes = [len(__import__("json").dumps(store.get(d["id"]).result)) for d in done]
        import dataclasses

        settings = dataclasses.replace(c.app.state.settings, retention_bytes=sizes[2] + 10)
        report = clean_up(store, settings)
        assert report["pruned"] == 2 and report["kept_bytes"] <= settings.retention_bytes
        kept = [store.get(d["id"]).result is not None for d in done]
        assert kept == [False, False, True]  # the oldest went first
        assert store.get(queued.id).status == "running"


def test_orphaned_upload_folders_go_after_an_hour_and_the_task_runs_by_itself(root, tmp_path):
    import os
    import time

    from audit.service.retention import ORPHAN_AGE_S, RetentionTask

    with client_for(root, tmp_path) as c:
        kept = _upload(c)
        settings = c.app.state.settings
        orphan = settings.upload_dir / ("0" * 32)
        (orphan / "sub").mkdir(parents=True)
        young = settings.upload_dir / ("1" * 32)
        young.mkdir()
        stale = time.time() - ORPHAN_AGE_S - 60
        os.utime(orphan, (stale, stale))
        os.utime(settings.upload_dir / kept["id"], (stale, stale))
        import dataclasses

        task = RetentionTask(c.app.state.store, dataclasses.replace(settings, retention_interval=0.05))
        task.start()
        try:
            deadline = time.monotonic() + 30
            while task.last is None and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            task.stop()
        assert task.last is not None and task.last["orphans"] == 1
        assert not orphan.exists() and young.exists() and (settings.upload_dir / kept["id"]).exists()


# -- serve: TLS and the missing extra -------------------------------------------------------------
def test_serve_without_the_service_extra_names_it(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from audit.cli import app

    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if fastapi were not installed
    monkeypatch.setitem(sys.modules, "python_multipart", None)
    monkeypatch.setitem(sys.modules, "multipart", None)
    r = CliRunner().invoke(app, ["serve", "--state-dir", str(tmp_path)])
    assert r.exit_code == 2
    assert "needs the 'service' extra (missing: fastapi, python-multipart)" in r.output
    assert "pip install 'bidsaudit[service]'" in r.output and "Traceback" not in r.output


def _self_signed(tmp_path):
    pytest.importorskip("cryptography")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    import ipaddress

    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    return tmp_path / "cert.pem", tmp_path / "key.pem"


def test_serve_passes_tls_to_uvicorn_and_marks_cookies_secure(tmp_path, monkeypatch):
    import uvicorn
    from typer.testing import CliRunner

    from audit.cli import app

    cert, key = _self_signed(tmp_path)
    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app_, **kw: seen.update(kw, app=app_))
    r = CliRunner().invoke(app, ["serve", "--state-dir", str(tmp_path / "s"), "--ssl-certfile", str(cert),
                                 "--ssl-keyfile", str(key)])
    assert r.exit_code == 0, r.output
    assert seen["ssl_certfile"] == str(cert) and seen["ssl_keyfile"] == str(key) and "https://" in r.output
    assert seen["app"].state.settings.secure_cookies
    with TestClient(seen["app"], base_url="http://127.0.0.1:8000") as c:
        assert "secure" in c.get("/login").headers["set-cookie"].lower()


@pytest.mark.parametrize(("args", "needle"), [
    (["--ssl-certfile", "CERT"], "--ssl-keyfile: TLS needs both"),
    (["--ssl-certfile", "CERT", "--ssl-keyfile", "nothere.pem"], "nothere.pem, --ssl-keyfile: no such file"),
    (["--ssl-certfile", "KEY", "--ssl-keyfile", "KEY"], "cannot be loaded"),
])
def test_serve_bad_tls_files_exit_2(tmp_path, args, needle):
    from typer.testing import CliRunner

    from audit.cli import app

    cert, key = _self_signed(tmp_path)
    args = [str(cert) if a == "CERT" else str(key) if a == "KEY" else str(tmp_path / a) if a.endswith(".pem")
            else a for a in args]
    r = CliRunner().invoke(app, ["serve", "--state-dir", str(tmp_path / "s"), *args])
    assert r.exit_code == 2 and needle in r.output and "Traceback" not in r.output


# -- idempotency and database outages -------------------------------------------------------------
def test_the_same_idempotency_key_queues_one_audit(root, tmp_path):
    with client_for(root, tmp_path) as c:
        first = c.post("/api/audits", json={"splits": "clean", "no_validator": True},
                       headers={**AUTH, "Idempotency-Key": "job-1"})
        again = c.post("/api/audits", json={"splits": "clean", "no_validator": True},
                       headers={**AUTH, "Idempotency-Key": "job-1"})
        other = c.post("/api/audits", json={"splits": "clean", "no_validator": True},
                       headers={**AUTH, "Idempotency-Key": "job-2"})
        assert first.status_code == again.status_code == other.status_code == 202
        assert first.json()["id"] == again.json()["id"] != other.json()["id"]
        wait_for(c, other.json()["id"])
        assert len(c.get("/api/audits").json()) == 2
        r = c.post("/api/audits", json={"splits": "clean"}, headers={**AUTH, "Idempotency-Key": "a b"})
        assert r.status_code == 422 and "Idempotency-Key" in r.json()["detail"]


def test_a_database_outage_is_503_with_retry_after(root, tmp_path, monkeypatch):
    from sqlalchemy.exc import OperationalError

    from audit.service.store import Store

    with client_for(root, tmp_path) as c:
        def down(*_a, **_k):
            raise OperationalError("SELECT", {}, Exception("connection refused"))

        monkeypatch.setattr(Store, "list", down)
        monkeypatch.setattr(Store, "get", down)
        r = c.get("/api/audits")
        assert r.status_code == 503 and r.headers["retry-after"] == "2" and "retry" in r.json()["detail"]
        r = c.get("/api/audits/" + "0" * 32)
        assert r.status_code == 503 and "Traceback" not in r.text


def test_a_submission_whose_commit_answer_was_lost_is_not_queued_twice(tmp_path, monkeypatch):
    """The insert committed but the connection dropped before the answer: the retry finds the row."""
    from sqlalchemy.exc import OperationalError
    from sqlalchemy.orm import Session

    from audit.service.db import make_engine, upgrade
    from audit.service.store import Store

    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    upgrade(engine)
    store = Store(engine)
    real_commit = Session.commit
    calls = []

    def commit_then_drop(self):
        real_commit(self)
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("COMMIT", {}, Exception("server closed the connection unexpectedly"))

    monkeypatch.setattr(Session, "commit", commit_then_drop)
    record = store.submit(dataset="d", dataset_path=None, splits_path="/s", source="paths", options={},
                          audit_id="a" * 32)
    monkeypatch.setattr(Session, "commit", real_commit)
    assert record.id == "a" * 32 and store.counts_by_status() == {"queued": 1}


def test_a_claim_whose_answer_was_lost_is_adopted_once(tmp_path, monkeypatch):
    from sqlalchemy.exc import OperationalError

    from audit.service.db import make_engine, upgrade
    from audit.service.store import Store
    from audit.service.worker import WorkerPool

    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    upgrade(engine)
    store = Store(engine)
    a = store.submit(dataset="d", dataset_path=None, splits_path="/s", source="paths", options={})
    b = store.submit(dataset="d", dataset_path=None, splits_path="/s", source="paths", options={})
    pool = WorkerPool(store, roots=(), executor="thread")
    real = Store.claim_next

    def claim_then_drop(self, owner=""):
        record = real(self, owner)
        raise OperationalError("COMMIT", {}, Exception("terminating connection due to administrator command"))

    monkeypatch.setattr(Store, "claim_next", claim_then_drop)
    assert pool.claim() is None  # the claim of `a` committed, but the pool never heard of it
    monkeypatch.setattr(Store, "claim_next", real)
    first = pool.claim()
    assert first.id == a.id and first.attempts == 1  # adopted, not claimed again
    second = pool.claim()
    assert second.id == b.id  # `a` is in hand: never adopted twice
    assert pool.claim() is None and pool._in_hand == {a.id, b.id}


def test_an_outcome_the_database_lost_is_found_by_the_heartbeat_and_run_again(tmp_path):
    from audit.service.db import make_engine, upgrade
    from audit.service.store import Store
    from audit.service.worker import WorkerPool

    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    upgrade(engine)
    store = Store(engine)
    a = store.submit(dataset="d", dataset_path=None, splits_path="/s", source="paths", options={})
    pool = WorkerPool(store, roots=(), executor="thread")
    assert pool.claim().id == a.id and pool.orphans() == []  # in hand: not an orphan
    pool._in_hand.discard(a.id)  # its thread wrote the outcome, the database acknowledged it, then lost it
    assert pool.orphans() == [a.id]
    assert pool.claim().id == a.id and pool.orphans() == []


@pytest.mark.slow  # a real server start: about 10 s on 2 shared cores
def test_a_live_server_speaks_tls_with_the_given_certificate(tmp_path):
    import os
    import ssl
    import subprocess
    import time
    import urllib.request
    from pathlib import Path

    from tests.service.test_service_support import free_port

    cert, key = _self_signed(tmp_path)
    port = free_port()
    repo = Path(__file__).resolve().parents[2]
    argv = [sys.executable, "-m", "audit.cli", "serve", "--port", str(port), "--state-dir", str(tmp_path / "s"),
            "--ssl-certfile", str(cert), "--ssl-keyfile", str(key)]
    with open(tmp_path / "log", "wb") as log:
        proc = subprocess.Popen(argv, cwd=repo, env={**os.environ, "PYTHONPATH": str(repo)}, stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        context = ssl.create_default_context(cafile=str(cert))
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"https://127.0.0.1:{port}/api/health", context=context,
                                            timeout=2) as r:
                    assert r.status == 200 and json_ok(r.read())
                break
            except OSError:
                assert proc.poll() is None, (tmp_path / "log").read_text()
                assert time.monotonic() < deadline, "the server did not answer over TLS"
                time.sleep(0.3)
        import http.client

        with pytest.raises((OSError, http.client.HTTPException)):  # plain HTTP on the TLS port: no HTTP answer
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=5).read()
    finally:
        proc.terminate()
        proc.wait(20)
    assert "https://127.0.0.1" in (tmp_path / "log").read_text()


def json_ok(raw: bytes) -> bool:
    import json

    return json.loads(raw)["status"] == "ok"


def test_an_uploaded_id_that_is_a_nul_is_422_naming_the_line(root, tmp_path):
    """Found by tests/service/test_service_fuzz.py: the split reader's IndexError was a 500 here (the same fix as
    the parsers' fuzzing made in audit/splits/readers.py)."""
    with client_for(root, tmp_path) as c:
        r = c.post("/api/audits", headers=AUTH, files=[("files", ("train.tsv", b"participant_id\n\x00\n"))])
        assert r.status_code == 422 and "line 2" in r.json()["detail"] and "participant_id" in r.json()["detail"]


# -- security headers on every answer ---------------------------------------------------------------
def _has_security_headers(r) -> bool:
    return (r.headers.get("x-content-type-options") == "nosniff" and "default-src 'none'"
            in r.headers.get("content-security-policy", "") and r.headers.get("cache-control") == "no-store")


def test_answers_from_the_limits_and_the_outage_handler_carry_the_security_headers(root, tmp_path, monkeypatch):
    from sqlalchemy.exc import OperationalError

    from audit.service.store import Store

    with client_for(root, tmp_path, rate_per_address=60, rate_burst_seconds=1, max_json_bytes=1000) as c:
        r = c.post("/api/audits", content=b"{" + b" " * 2000 + b"}", headers={"content-type": "application/json"})
        assert r.status_code == 413 and _has_security_headers(r)
        r = c.get("/api/datasets")
        assert r.status_code == 429 and _has_security_headers(r)
    with client_for(root, tmp_path) as c:
        def down(*_a, **_k):
            raise OperationalError("SELECT", {}, Exception("connection refused"))

        monkeypatch.setattr(Store, "list", down)
        r = c.get("/api/audits")
        assert r.status_code == 503 and _has_security_headers(r)
        assert _has_security_headers(c.get("/api/health"))
        assert r.headers["x-content-type-options"].count("nosniff") == 1  # set once, not once per layer
