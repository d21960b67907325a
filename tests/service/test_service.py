"""``bidsaudit serve``: the HTTP API, its security rules, restart recovery, the committed OpenAPI schema."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.service.test_service_support import AUTH, TOKEN, make_root, settings_for, wait_for, write_splits

pytest.importorskip("fastapi", reason="the service extra is not installed")

from fastapi.testclient import TestClient  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def root(tmp_path):
    return make_root(tmp_path)


def make_client(root, tmp_path, **kw):
    from audit.service.app import create_app

    return TestClient(create_app(settings_for(root, tmp_path / "state", **kw)))


@pytest.fixture
def client(root, tmp_path):
    with make_client(root, tmp_path) as c:
        yield c


def submit(client, **body):
    body.setdefault("no_validator", True)
    return client.post("/api/audits", json=body, headers=AUTH)


# -- the contract ---------------------------------------------------------------------------------
def test_submit_paths_then_result_report_list_and_datasets(client):
    import jsonschema

    from schemas import json_schema

    r = submit(client, dataset="ds1", splits="leaky")
    assert r.status_code == 202
    assert set(r.json()) == {"id", "status"} and r.json()["status"] == "queued"
    assert r.headers["location"] == f"/api/audits/{r.json()['id']}"
    body = wait_for(client, r.json()["id"])
    assert body["status"] == "done", body["error"]
    result = body["result"]
    jsonschema.validate(result, json_schema("result"))
    assert result["status"] == "fail" and body["verdict"] == "fail"
    overlap = [f for f in result["findings"] if f["check"] == "leakage.subject_overlap"]
    assert overlap and overlap[0]["subjects"] == ["sub-05"]
    assert result["reproduce"]["command_line"].startswith("bidsaudit audit ")
    report = client.get(f"/api/audits/{body['id']}/report")
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
    assert "sandbox" in report.headers["content-security-policy"]
    assert "leakage.subject_overlap" in report.text
    listed = client.get("/api/audits").json()
    assert [a["id"] for a in listed] == [body["id"]] and "result" not in listed[0]
    datasets = client.get("/api/datasets").json()
    assert datasets == [{"dataset": "ds1", "audits": 1, "latest": {
        "id": body["id"], "verdict": "fail", "readiness_level": result["readiness"]["level"],
        "errors": result["counts"]["error"], "warnings": result["counts"]["warning"],
        "finished_at": body["finished_at"], "created_at": body["created_at"]}}]


def test_clean_split_passes_and_list_filters(client):
    ids = {}
    for splits in ("clean", "leaky"):
        ids[splits] = submit(client, dataset="ds1", splits=splits).json()["id"]
    assert wait_for(client, ids["clean"])["verdict"] == "pass"
    wait_for(client, ids["leaky"])
    assert [a["id"] for a in client.get("/api/audits").json()] == [ids["leaky"], ids["clean"]]
    assert client.get("/api/audits", params={"status": "queued"}).json() == []
    assert len(client.get("/api/audits", params={"dataset": "ds1", "status": "done"}).json()) == 2
    assert client.get("/api/audits", params={"dataset": "other"}).json() == []
    assert client.get("/api/audits", params={"since": "2999-01-01T00:00:00Z"}).json() == []
    assert len(client.get("/api/audits", params={"until": "2999-01-01T00:00:00"}).json()) == 2
    assert client.get("/api/audits", params={"status": "lost"}).status_code == 422
    assert client.get("/api/audits", params={"limit": 1}).json()[0]["id"] == ids["leaky"]


def test_reviewer_uploads_split_files_without_dataset(client):
    files = [("files", ("train.tsv", b"participant_id\tdiagnosis\nsub-01\tAD\nsub-02\tCN\nsub-03\tAD\n")),
             ("files", ("test.tsv", b"participant_id\tdiagnosis\nsub-03\tAD\nsub-04\tCN\n"))]
    r = client.post("/api/audits", files=files, data={"label": "diagnosis", "name": "Paper 2024"}, headers=AUTH)
    assert r.status_code == 202, r.text
    body = wait_for(client, r.json()["id"])
    assert body["status"] == "done" and body["dataset"] == "Paper 2024"
    result = body["result"]
    assert result["dataset"] is None
    assert any(f["check"] == "leakage.subject_overlap" for f in result["findings"])
    assert any(s["reason"] == "no dataset given" for s in result["skipped"])


def test_process_pool_runs_an_audit(root, tmp_path):
    with make_client(root, tmp_path, executor="process") as c:
        body = wait_for(c, submit(c, dataset="ds1", splits="clean").json()["id"], timeout=120)
    assert body["status"] == "done" and body["verdict"] == "pass"


# -- tokens ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-token-0123456789"},
                                     {"Authorization": f"Basic {TOKEN}"}, {"Authorization": "Bearer"}])
def test_write_needs_the_right_token(client, headers):
    r = client.post("/api/audits", json={"splits": "clean"}, headers=headers)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert client.get("/api/audits").json() == []


def test_no_token_configured_refuses_writes(root, tmp_path):
    with make_client(root, tmp_path, tokens=frozenset()) as c:
        r = c.post("/api/audits", json={"splits": "clean"}, headers=AUTH)
    assert r.status_code == 401 and "BIDSAUDIT_TOKEN" in r.json()["detail"]


def test_reads_can_require_a_token(root, tmp_path):
    with make_client(root, tmp_path, public_read=False) as c:
        for path in ("/api/audits", "/api/datasets", "/", "/upload"):
            assert c.get(path).status_code == 401, path
        assert c.get("/api/audits", headers=AUTH).status_code == 200
        assert "/login" in c.get("/", headers={"Accept": "text/html"}).text
        c.get("/login")
        csrf = c.cookies.get("bidsaudit_csrf")
        assert c.post("/login", data={"token": "wrong-token-0123456789", "csrf": csrf}).status_code == 401
        assert c.post("/login", data={"token": TOKEN, "csrf": "x" * 43}).status_code == 403
        r = c.post("/login", data={"token": TOKEN, "csrf": csrf}, follow_redirects=False)
        assert r.status_code == 303 and "httponly" in r.headers["set-cookie"].lower()
        assert c.get("/").status_code == 200 and c.get("/api/datasets").status_code == 200


# -- paths ----------------------------------------------------------------------------------------
@pytest.fixture
def outside(tmp_path):
    folder = write_splits(tmp_path / "outside", ["01", "02"], ["03"])
    return folder


@pytest.mark.parametrize("spelling", ["../outside", "clean/../../outside", "%2e%2e/outside", "%252e%252e/outside",
                                      "..%2foutside", "ABS", "/etc", "/etc/passwd", "LINK", "LINK/train.tsv",
                                      "..\\outside"])
def test_paths_outside_the_roots_are_refused(client, root, outside, spelling):
    (root / "link").symlink_to(outside)
    raw = {"ABS": str(outside), "LINK": "link", "LINK/train.tsv": "link/train.tsv"}.get(spelling, spelling)
    r = submit(client, splits=raw)
    assert r.status_code == 403, r.text
    assert "root" in r.json()["detail"] or ".." in r.json()["detail"]
    r = submit(client, dataset=raw, splits="clean")
    assert r.status_code == 403
    assert submit(client, splits="clean", pretrain=raw).status_code == 403
    assert client.get("/api/audits").json() == []


def test_absolute_path_inside_a_root_is_accepted(client, root):
    r = submit(client, dataset=str(root / "ds1"), splits=str(root / "clean"))
    assert r.status_code == 202
    assert wait_for(client, r.json()["id"])["status"] == "done"


def test_a_link_inside_the_dataset_leading_out_fails_the_audit(client, root, tmp_path):
    secret = tmp_path / "secret.json"
    secret.write_text('{"Manufacturer": "leaked"}')
    (root / "ds1" / "sub-01" / "anat" / "sub-01_T2w.json").symlink_to(secret)
    body = wait_for(client, submit(client, dataset="ds1", splits="clean").json()["id"])
    assert body["status"] == "failed" and "outside the server's roots" in body["error"]
    assert "sub-01_T2w.json" in body["error"] and body["result"] is None


@pytest.mark.parametrize("path", ["/api/audits/..%2f..%2fetc%2fpasswd", "/api/audits/%2e%2e/report",
                                  "/api/audits/../../etc/passwd", "/audits/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
                                  "/api/audits/" + "0" * 32, "/static/../../etc/passwd", "/uploads/x/train.tsv"])
def test_url_traversal_finds_nothing(client, path):
    r = client.get(path)
    assert r.status_code in (404, 422) and "root:" not in r.text


# -- uploads --------------------------------------------------------------------------------------
def post_files(client, files, **data):
    return client.post("/api/audits", files=files, data=data, headers=AUTH)


def test_upload_limits(root, tmp_path):
    with make_client(root, tmp_path, max_file_bytes=1000, max_files=3, max_total_bytes=2500) as c:
        row = b"participant_id\n" + b"sub-01\n" * 10
        big = b"participant_id\n" + b"sub-01\n" * 200
        r = post_files(c, [("files", ("train.tsv", big))])
        assert r.status_code == 413 and "1000 bytes" in r.json()["detail"]
        r = post_files(c, [("files", (f"s{i}.tsv", row)) for i in range(4)])
        assert r.status_code == 413 and "too many files" in r.json()["detail"].lower()
        r = post_files(c, [("files", (f"s{i}.tsv", b"participant_id\n" + b"sub-01\n" * 130)) for i in range(3)])
        assert r.status_code == 413 and "total" in r.json()["detail"]
        r = post_files(c, [("files", ("train.tsv", b"x" * 100_000))])
        assert r.status_code == 413
        assert c.get("/api/audits").json() == []
        assert not any((tmp_path / "state" / "uploads").iterdir())


@pytest.mark.parametrize("name,data,why", [
    ("train.exe", b"MZ\x90\x00", "unknown split format"),
    ("run.py", b"import os\nos.system('touch /tmp/pwned')\n", "unknown split format"),
    ("../train.tsv", b"participant_id\nsub-01\n", "not accepted"),
    (".htaccess.tsv", b"participant_id\nsub-01\n", "not accepted"),
    ("train.tsv", b"\x00\x01\x02binary", "uploaded split files"),
    ("train.tsv", b"name\tage\nx\t3\n", "uploaded split files"),
    ("splits_final.json", b"{not json", "uploaded split files"),
])
def test_upload_in_an_unknown_or_malformed_format_is_422(client, name, data, why):
    r = post_files(client, [("files", (name, data))])
    assert r.status_code == 422, r.text
    assert why in r.json()["detail"]
    assert "Traceback" not in r.text and "/state/uploads" not in r.text


def test_uploaded_files_are_data_not_code_and_never_served(client, tmp_path):
    payload = b"participant_id\tdiagnosis\nsub-01\tAD\nsub-02\tCN\n"
    r = post_files(client, [("files", ("train.tsv", payload)), ("files", ("test.tsv", payload))], label="diagnosis")
    body = wait_for(client, r.json()["id"])
    stored = list((tmp_path / "state" / "uploads" / body["id"]).iterdir())
    assert sorted(p.name for p in stored) == ["test.tsv", "train.tsv"]
    assert all(not (p.stat().st_mode & 0o111) for p in stored)  # never executable
    for path in (f"/uploads/{body['id']}/train.tsv", f"/api/audits/{body['id']}/files/train.tsv",
                 f"/api/uploads/{body['id']}/train.tsv"):
        assert client.get(path).status_code == 404


def test_every_page_escapes_untrusted_values(client):
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    payload = b"participant_id\tdiagnosis\nsub-01\t<b>AD</b>\nsub-02\tCN\n"
    r = post_files(client, [("files", ("train.tsv", payload)), ("files", ("test.tsv", payload))],
                   name=evil, label="diagnosis")
    body = wait_for(client, r.json()["id"])
    from urllib.parse import quote

    for path in ("/", f"/audits/{body['id']}", f"/history?dataset={quote(evil)}",
                 f"/compare?a={body['id']}&b={body['id']}", f"/api/audits/{body['id']}/report"):
        page = client.get(path)
        assert page.status_code == 200, path
        assert "<script>" not in page.text and "<img src=x" not in page.text, path
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert page.headers["x-content-type-options"] == "nosniff"
    assert "&lt;script&gt;" in client.get("/").text


# -- CSRF on the upload form ----------------------------------------------------------------------
def test_form_post_needs_the_csrf_token(client):
    form = client.get("/upload")
    assert form.status_code == 200
    cookie = client.cookies.get("bidsaudit_csrf")
    assert cookie and f'value="{cookie}"' in form.text
    files = [("files", ("train.tsv", b"participant_id\nsub-01\n")), ("files", ("test.tsv", b"participant_id\nsub-02\n"))]
    r = client.post("/upload", files=files, data={"token": TOKEN}, follow_redirects=False)
    assert r.status_code == 403 and "CSRF" in r.text
    r = client.post("/upload", files=files, data={"token": TOKEN, "csrf": "forged" * 8}, follow_redirects=False)
    assert r.status_code == 403
    client.cookies.clear()
    r = client.post("/upload", files=files, data={"token": TOKEN, "csrf": cookie}, follow_redirects=False)
    assert r.status_code == 403  # a token without its cookie (another site's form) is refused
    client.cookies.clear()
    client.cookies.set("bidsaudit_csrf", cookie)
    r = client.post("/upload", files=files, data={"token": "wrong-token-0123456789", "csrf": cookie},
                    follow_redirects=False)
    assert r.status_code == 401
    assert client.get("/api/audits").json() == []
    client.cookies.clear()
    client.cookies.set("bidsaudit_csrf", cookie)
    r = client.post("/upload", files=files, data={"token": TOKEN, "csrf": cookie}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/audits/")
    audit_id = r.headers["location"].rsplit("/", 1)[1]
    assert wait_for(client, audit_id)["status"] == "done"
    page = client.get(r.headers["location"])
    assert 'id="verdict"' in page.text


# -- bad input: a clear 4xx, never a traceback ----------------------------------------------------
@pytest.mark.parametrize("body,ctype,status,needle", [
    (b"{not json", "application/json", 422, "json"),
    (b"[]", "application/json", 422, "model_type"),
    (json.dumps({"splits": "clean", "colour": "red"}).encode(), "application/json", 422, "colour"),
    (json.dumps({"splits": "clean", "no_validator": "maybe"}).encode(), "application/json", 422, "no_validator"),
    (json.dumps({"dataset": "ds1"}).encode(), "application/json", 422, "splits"),
    (json.dumps({"dataset": "clean", "splits": "clean"}).encode(), "application/json", 422, "not a BIDS dataset"),
    (json.dumps({"dataset": "nope", "splits": "clean"}).encode(), "application/json", 422, "no such file"),
    (json.dumps({"splits": "ds1/participants.tsv", "label": "x\n"}).encode(), "application/json", 422, "label"),
    (json.dumps({"splits": "ds1/dataset_description.json"}).encode(), "application/json", 422, "splits"),
    (b"splits=clean", "application/x-www-form-urlencoded", 415, "multipart"),
    (b"--x\r\nbroken", "multipart/form-data; boundary=x", 422, "upload"),
])
def test_bad_requests_get_a_clear_4xx(client, body, ctype, status, needle):
    r = client.post("/api/audits", content=body, headers={**AUTH, "Content-Type": ctype})
    assert r.status_code == status, r.text
    assert needle.lower() in r.text.lower()
    assert "Traceback" not in r.text and 'File "' not in r.text


def test_an_unexpected_error_is_a_plain_500(root, tmp_path, monkeypatch):
    from audit.service.store import Store

    def boom(self):
        raise RuntimeError("secret detail /etc/passwd")

    monkeypatch.setattr(Store, "datasets", boom)
    from audit.service.app import create_app

    with TestClient(create_app(settings_for(root, tmp_path / "s")), raise_server_exceptions=False) as c:
        r = c.get("/api/datasets")
    assert r.status_code == 500
    assert r.json() == {"detail": "internal error; the server log has the details"}


def test_audit_errors_are_reported_not_raised(client, root):
    (root / "ds1" / "participants.tsv").write_text("participant_id\tage\nsub-01\t1\n")
    r = submit(client, dataset="ds1", splits="clean", label="diagnosis")
    assert r.status_code == 202
    body = wait_for(client, r.json()["id"])
    assert body["status"] == "failed" and "diagnosis" in body["error"] and "Traceback" not in body["error"]
    assert client.get(f"/api/audits/{body['id']}/report").status_code == 409


# -- restart --------------------------------------------------------------------------------------
def test_restart_runs_queued_and_recovers_interrupted_audits(root, tmp_path):
    from sqlalchemy import update

    from audit.service.db import AuditRow, make_engine, upgrade
    from audit.service.store import Store

    settings = settings_for(root, tmp_path / "state")
    engine = make_engine(settings.db_url)
    upgrade(engine)
    store = Store(engine)
    common = dict(dataset="ds1", dataset_path=str(root.resolve() / "ds1"), source="paths",
                  options={"no_validator": True})
    interrupted = store.submit(splits_path=str(root.resolve() / "clean"), **common)
    queued = store.submit(splits_path=str(root.resolve() / "leaky"), **common)
    twice = store.submit(splits_path=str(root.resolve() / "clean"), **common)
    assert store.claim_next().id == interrupted.id  # the server dies while these run
    assert store.claim_next().id == queued.id
    with store.session() as s, s.begin():
        s.execute(update(AuditRow).where(AuditRow.id == queued.id).values(status="queued", started_at=None, attempts=0))
        s.execute(update(AuditRow).where(AuditRow.id == twice.id).values(status="running", attempts=2))
    engine.dispose()
    with make_client(root, tmp_path) as c:
        first, second, third = (wait_for(c, a.id) for a in (interrupted, queued, twice))
    assert first["status"] == "done" and first["attempts"] == 2 and "re-queued" in first["note"]
    assert second["status"] == "done" and second["attempts"] == 1
    assert third["status"] == "failed" and "interrupted" in third["error"] and third["attempts"] == 2


# -- OpenAPI --------------------------------------------------------------------------------------
def test_openapi_schema_is_served_and_committed(client):
    from audit.service.openapi import generate

    served = client.get("/openapi.json").json()
    committed = json.loads((REPO / "schemas" / "openapi.json").read_text())
    assert served == committed == generate(), \
        "schemas/openapi.json is stale: run python -m audit.service.openapi --write"
    assert {"/api/audits", "/api/audits/{audit_id}", "/api/audits/{audit_id}/report",
            "/api/datasets"} <= set(committed["paths"])
    assert "AuditRequest" in committed["components"]["schemas"]


# -- the command ----------------------------------------------------------------------------------
def test_serve_with_an_unreachable_database_exits_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "audit.cli", "serve", "--state-dir", str(tmp_path),
                           "--database", "postgresql://nobody@127.0.0.1:1/none"],
                          capture_output=True, text=True, timeout=60, cwd=REPO,
                          env={**os.environ, "BIDSAUDIT_TOKEN": TOKEN})
    assert proc.returncode == 2, proc.stderr
    assert "bidsaudit: error:" in proc.stderr and "--database" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("args,needle", [(["--root", "/no/such/folder"], "--root"),
                                         (["--database", "mysql://x"], "--database"),
                                         (["--tokens-file", "/no/such/file"], "--tokens-file")])
def test_serve_bad_options_exit_2(tmp_path, args, needle):
    proc = subprocess.run([sys.executable, "-m", "audit.cli", "serve", "--state-dir", str(tmp_path), *args],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 2 and needle in proc.stderr and "Traceback" not in proc.stderr


# -- the audit processes --------------------------------------------------------------------------
def test_a_fifo_is_refused_before_anything_reads_it(client, root):
    os.mkfifo(root / "clean" / "validation.tsv")
    r = submit(client, dataset="ds1", splits="clean")
    assert r.status_code == 403 and "FIFO" in r.json()["detail"]
    os.mkfifo(root / "ds1" / "sub-01" / "anat" / "sub-01_T2w.nii.gz")
    body = wait_for(client, submit(client, dataset="ds1", splits="leaky").json()["id"])
    assert body["status"] == "failed" and "FIFO" in body["error"]


def test_an_audit_over_its_time_limit_is_stopped_and_marked_failed(root, tmp_path):
    with make_client(root, tmp_path, executor="process", audit_timeout=0.001) as c:
        body = wait_for(c, submit(c, dataset="ds1", splits="clean").json()["id"], timeout=120)
    assert body["status"] == "failed" and "--audit-timeout" in body["error"]


def test_a_dead_audit_process_fails_only_its_own_audit(root, tmp_path):
    import time

    with make_client(root, tmp_path, executor="process") as c:
        pool = c.app.state.pool
        first = submit(c, dataset="ds1", splits="clean").json()["id"]
        deadline = time.monotonic() + 60
        while first not in pool.running and time.monotonic() < deadline:
            time.sleep(0.002)
        with pool._lock:
            pool._children[first].kill()  # what the kernel's OOM killer would do
        body = wait_for(c, first, timeout=60)
        assert body["status"] == "failed" and "process died" in body["error"]
        second = wait_for(c, submit(c, dataset="ds1", splits="clean").json()["id"], timeout=120)
        assert second["status"] == "done" and second["verdict"] == "pass"


def test_a_foreign_host_header_is_refused_where_hosts_are_pinned(root, tmp_path):
    from audit.service.app import create_app

    app = create_app(settings_for(root, tmp_path / "state", allowed_hosts=("127.0.0.1", "localhost")))
    with TestClient(app, base_url="http://127.0.0.1:8000") as c:
        assert c.get("/api/datasets").status_code == 200
        r = c.get("/api/datasets", headers={"Host": "rebound.example:8000"})
        assert r.status_code == 400 and "Traceback" not in r.text


def test_a_database_hiccup_while_storing_an_outcome_is_retried(root, tmp_path, monkeypatch):
    from audit.service.store import Store

    real = Store.finish
    calls = []

    def flaky(self, audit_id, result, owner=None):
        calls.append(audit_id)
        if len(calls) == 1:
            from sqlalchemy.exc import OperationalError

            raise OperationalError("UPDATE audits", {}, Exception("database is locked"))
        return real(self, audit_id, result, owner=owner)

    monkeypatch.setattr(Store, "finish", flaky)
    with make_client(root, tmp_path) as c:
        body = wait_for(c, submit(c, dataset="ds1", splits="clean").json()["id"])
    assert body["status"] == "done" and len(calls) == 2


def test_audits_use_the_configured_dask_scheduler(root, tmp_path, monkeypatch):
    """`serve --scheduler ADDRESS`: every audit's image pass runs on that cluster, with the same result."""
    distributed = pytest.importorskip("dask.distributed")
    from audit.images import imagepass as imaging

    # a hash cache of its own for each server, so that each one reads the images
    monkeypatch.setenv("BIDSAUDIT_CACHE_DIR", str(tmp_path / "cache-local"))
    with make_client(root, tmp_path / "local") as c:
        local = wait_for(c, submit(c, dataset="ds1", splits="leaky").json()["id"])
    assert local["status"] == "done", local["error"]
    monkeypatch.setenv("BIDSAUDIT_CACHE_DIR", str(tmp_path / "cache-dask"))
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster:
        with make_client(root, tmp_path / "dask", scheduler=cluster.scheduler_address) as c:
            viadask = wait_for(c, submit(c, dataset="ds1", splits="leaky").json()["id"])
    assert viadask["status"] == "done", viadask["error"]
    strip = ("reproduce", "created", "duration_s", "timing")
    assert ({k: v for k, v in viadask["result"].items() if k not in strip}
            == {k: v for k, v in local["result"].items() if k not in strip})
    # and the option really reaches the image pass: an unreachable scheduler fails the audit, saying so
    monkeypatch.setattr(imaging, "DASK_CONNECT_TIMEOUT", "1s")
    monkeypatch.setenv("BIDSAUDIT_CACHE_DIR", str(tmp_path / "cache-gone"))
    with make_client(root, tmp_path / "gone", scheduler="tcp://127.0.0.1:1") as c:
        gone = wait_for(c, submit(c, dataset="ds1", splits="leaky").json()["id"])
    assert gone["status"] == "failed" and "Dask scheduler" in gone["error"]
