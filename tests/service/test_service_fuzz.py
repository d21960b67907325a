"""Structure-aware fuzzing of the service's inputs (issue #14, item 2, service part).

Hypothesis builds JSON submissions (the AuditRequest fields and strangers,
every JSON type, traversal spellings, control characters, long strings,
broken JSON and bytes that are not UTF-8), multipart uploads (file names
with traversal, odd characters and depth; split tables, bytes, ZIP archives
with unsafe entries; known and unknown form fields) and query strings of
the read routes and pages. Every answer must be a 2xx/3xx or a 4xx whose
``detail`` names the field or the part at fault: never a 500, never a
traceback, each within hypothesis's deadline (10 s, a hang detector, not a
timing claim). A short campaign runs by default; ``-m slow`` runs a long one.
"""

from __future__ import annotations

import collections
import io
import json
import os
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest

from tests.service.test_service_support import AUTH, make_root, settings_for

pytest.importorskip("fastapi", reason="the service extra is not installed")
hypothesis = pytest.importorskip("hypothesis")

from fastapi.testclient import TestClient  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

FIELDS = ("dataset", "splits", "label", "site", "group", "pretrain", "id_pattern", "path_column",
          "ignore_nifti_headers", "no_validator", "validator_config", "config")
FORM_FIELDS = ("label", "site", "group", "name", "id_pattern", "path_column")
ALLOWED = {200, 202, 303, 400, 401, 403, 404, 409, 410, 411, 413, 415, 422}
SHORT, LONG = 40, 400

PATHS = st.sampled_from(["ds1", "clean", "leaky", "clean/train.tsv", "../etc", "..%2f..%2fetc", "%252e%252e/x",
                         "/etc/passwd", "ds1/../../x", "ds1\\..\\..\\x", "", ".", "nothere", "ds1/sub-01",
                         "clean/\x00x", "~", "\u202etxt.exe", "a" * 5000])
TEXT = st.one_of(st.text(max_size=40), st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x2FF),
                                                max_size=300), PATHS)
JSON_VALUE = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), TEXT),
                          lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                  st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                          max_leaves=6)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from audit.service.app import create_app

    tmp = tmp_path_factory.mktemp("fuzz")
    app = create_app(settings_for(make_root(tmp), tmp / "state", max_file_bytes=20_000, max_total_bytes=60_000,
                                  max_files=8, max_archive_files=8), start_workers=False)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c
    if os.environ.get("BIDSAUDIT_FUZZ_TALLY"):  # the figures of docs/reliability.md ("The service")
        Path(os.environ["BIDSAUDIT_FUZZ_TALLY"]).write_text(json.dumps(dict(sorted(TALLY.items())), indent=1))


TALLY: collections.Counter[str] = collections.Counter()  # inputs tried, by route kind and answer


def _check(r, sent_fields=()) -> None:  # type: ignore[no-untyped-def]
    TALLY[f"{r.request.method} {r.status_code}"] += 1
    assert r.status_code in ALLOWED, (r.status_code, r.text[:500])
    assert "Traceback" not in r.text and "internal error" not in r.text
    if r.status_code < 400 or r.headers.get("content-type", "").startswith("text/html"):
        return
    detail = r.json()["detail"]
    if isinstance(detail, list):  # pydantic: every error has a location, the field at fault
        assert detail and all(e["loc"] and e["msg"] for e in detail), detail
    else:
        assert isinstance(detail, str) and detail.strip(), detail


def _names_a_place(detail: str, sent_fields) -> bool:  # type: ignore[no-untyped-def]
    words = (*FIELDS, *FORM_FIELDS, "files", "file", "archive", "upload", "split", "Content-", "field", "token",
             "path", "entry", "name", "bytes", "JSON", "json", "body", "dataset", "no such audit")
    return any(w in detail for w in (*words, *sent_fields))


# -- JSON submissions -----------------------------------------------------------------------------
JSON_BODY = st.one_of(
    st.dictionaries(st.one_of(st.sampled_from(FIELDS), st.text(max_size=12)), st.one_of(PATHS, JSON_VALUE),
                    max_size=6),
    # near-valid requests reach the path checks and the split readers
    st.fixed_dictionaries({"splits": PATHS}, optional={"dataset": st.one_of(st.none(), PATHS), "label": TEXT,
                                                       "site": TEXT, "id_pattern": TEXT, "path_column": TEXT,
                                                       "no_validator": st.booleans()}))


def _json_case(client, body) -> None:  # type: ignore[no-untyped-def]
    raw = json.dumps(body).encode()  # NaN and Infinity written as JavaScript does: not JSON, to be refused
    r = client.post("/api/audits", content=raw, headers={**AUTH, "Content-Type": "application/json"})
    _check(r)
    if r.status_code in (403, 422) and isinstance(r.json()["detail"], str):
        assert _names_a_place(r.json()["detail"], body), r.json()


def _raw_case(client, raw: bytes, ctype: str) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/api/audits", content=raw, headers={**AUTH, "Content-Type": ctype})
    _check(r)


RAW = st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode),
                JSON_BODY.map(lambda b: json.dumps(b)[: len(json.dumps(b)) // 2].encode()))
CTYPES = st.sampled_from(["application/json", "application/json; charset=latin-1", "text/plain",
                          "multipart/form-data", "multipart/form-data; boundary=x", "application/x-www-form-urlencoded",
                          ""])


@settings(max_examples=SHORT, deadline=timedelta(seconds=10), suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture], database=None)
@given(body=JSON_BODY)
def test_fuzz_json_submissions(client, body):
    _json_case(client, body)


@settings(max_examples=SHORT, deadline=timedelta(seconds=10), suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture], database=None)
@given(raw=RAW, ctype=CTYPES)
def test_fuzz_raw_bodies(client, raw, ctype):
    _raw_case(client, raw, ctype)


# -- multipart uploads ----------------------------------------------------------------------------
NAMES = st.one_of(st.sampled_from(["train.tsv", "test.tsv", "validation.csv", "split-0/train.tsv", "../train.tsv",
                                   "/etc/train.tsv", "a/../../b.tsv", "C:\\x\\train.tsv", ".hidden.tsv", "x.exe",
                                   "splits_final.json", "dataset.json", "paths.txt", "s.zip", "", "a/" * 12 + "t.tsv",
                                   "tr\x00ain.tsv", "trаin.tsv", "train.TSV"]),
                  st.text(max_size=30).map(lambda s: s + ".tsv"))
TABLE = st.lists(st.sampled_from(["sub-01", "sub-02", "01", "", "sub 03", "\x00", "n/a", "sub-01\tses-1",
                                  "=cmd|' /C calc'!A0", "<script>"]), max_size=6).map(
    lambda rows: ("participant_id\n" + "\n".join(rows) + "\n").encode())
ZIP_ENTRIES = st.lists(st.tuples(NAMES, st.one_of(TABLE, st.binary(max_size=60))), max_size=5)


def _zip(entries, link: str | None) -> bytes:  # type: ignore[no-untyped-def]
    import warnings

    buf = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        warnings.simplefilter("ignore")  # a name twice is one of the cases
        for name, data in entries:
            if name:
                z.writestr(name, data)
        if link:
            info = zipfile.ZipInfo("link.tsv")
            info.external_attr = (0o120777 << 16)
            z.writestr(info, link)
    return buf.getvalue()


CONTENT = st.one_of(TABLE, st.binary(max_size=300), st.builds(_zip, ZIP_ENTRIES, st.one_of(st.none(),
                                                                                         st.just("/etc/passwd"))),
                    st.binary(min_size=1, max_size=1).map(lambda b: b * 30_000))
FILES = st.one_of(
    st.lists(st.tuples(st.sampled_from(["files", "files", "file", "other"]), NAMES, CONTENT), max_size=4),
    # near-valid uploads reach the split readers
    st.lists(st.tuples(st.just("files"), st.sampled_from(["train.tsv", "test.tsv", "validation.tsv", "split.tsv"]),
                       TABLE), min_size=1, max_size=3))
FORM = st.dictionaries(st.one_of(st.sampled_from(FORM_FIELDS), st.text(min_size=1, max_size=10)), TEXT, max_size=3)


def _multipart_case(client, files, form) -> None:  # type: ignore[no-untyped-def]
    parts = [(key, (name, data)) for key, name, data in files]
    try:
        r = client.post("/api/audits", files=parts or None, data=form or None, headers=AUTH)
    except ValueError:  # the test client refuses to encode this form itself (e.g. a NUL in a header)
        return
    _check(r)
    if r.status_code in (403, 413, 422) and isinstance(r.json()["detail"], str):
        assert _names_a_place(r.json()["detail"], [n for _k, n, _d in files] + list(form)), r.json()


@settings(max_examples=SHORT, deadline=timedelta(seconds=10), suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture, HealthCheck.data_too_large], database=None)
@given(files=FILES, form=FORM)
def test_fuzz_uploads(client, files, form):
    _multipart_case(client, files, form)


# -- query strings of the reads and pages ---------------------------------------------------------
QUERY_VALUE = st.one_of(TEXT, st.integers().map(str), st.sampled_from(["2026-01-01", "2026-13-40T99:00",
                                                                       "-1", "1e309", "nan", "queued"]))
ROUTES = st.sampled_from(["/api/audits", "/api/datasets", "/history", "/compare", "/", "/upload", "/login",
                          "/api/audits/" + "0" * 32, "/audits/" + "0" * 32, "/api/audits/xyz/report"])
QUERY = st.dictionaries(st.sampled_from(["dataset", "status", "since", "until", "limit", "offset", "a", "b", "x"]),
                        QUERY_VALUE, max_size=4)


def _query_case(client, path, query) -> None:  # type: ignore[no-untyped-def]
    try:
        r = client.get(path, params=query, headers={"Accept": "text/html"} if not path.startswith("/api") else {})
    except ValueError:
        return
    _check(r)


@settings(max_examples=SHORT, deadline=timedelta(seconds=10), suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture], database=None)
@given(path=ROUTES, query=QUERY)
def test_fuzz_queries(client, path, query):
    _query_case(client, path, query)


# -- the long campaign ----------------------------------------------------------------------------
@pytest.mark.slow
@settings(max_examples=LONG, deadline=timedelta(seconds=10), suppress_health_check=list(HealthCheck),
          database=None)
@given(case=st.one_of(st.tuples(st.just("json"), JSON_BODY), st.tuples(st.just("raw"), RAW, CTYPES),
                      st.tuples(st.just("upload"), FILES, FORM), st.tuples(st.just("query"), ROUTES, QUERY)))
def test_fuzz_service_long(client, case):
    kind, *args = case
    {"json": _json_case, "raw": _raw_case, "upload": _multipart_case, "query": _query_case}[kind](client, *args)
