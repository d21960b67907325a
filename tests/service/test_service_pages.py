"""The service's pages: dashboard, history chart, comparison of two audits; configuration confined to the roots."""

from __future__ import annotations

import re

import pytest

from tests.service.test_service_support import AUTH, make_root, settings_for, wait_for

pytest.importorskip("fastapi", reason="the service extra is not installed")

from fastapi.testclient import TestClient  # noqa: E402

WAIVER = """[[waivers]]
check = "leakage.subject_overlap"
subjects = ["sub-05"]
reason = "sub-05 is a phantom scan"
"""


@pytest.fixture
def env(tmp_path):
    from audit.service.app import create_app

    root = make_root(tmp_path)
    with TestClient(create_app(settings_for(root, tmp_path / "state"))) as c:
        yield c, root


def run(client, splits):
    r = client.post("/api/audits", json={"dataset": "ds1", "splits": splits, "no_validator": True}, headers=AUTH)
    return wait_for(client, r.json()["id"])


def test_history_chart_and_comparison_added_fixed_waived(env):
    client, root = env
    leaky = run(client, "leaky")
    clean = run(client, "clean")
    (root / "ds1" / "bidsaudit.toml").write_text(WAIVER)
    waived = run(client, "leaky")
    assert (leaky["verdict"], clean["verdict"], waived["verdict"]) == ("fail", "pass", "pass")
    assert waived["result"]["config"]["source"].endswith("bidsaudit.toml")

    page = client.get("/history", params={"dataset": "ds1"}).text
    svg = re.search(r"<svg id=\"chart\".*?</svg>", page, re.S).group(0)
    assert svg.count("<polyline") == 2 and svg.count("<circle") == 6  # errors and warnings, 3 audits
    assert f"/compare?a={leaky['id']}&amp;b={clean['id']}" in page
    ys = [float(y) for y in re.findall(r'<circle cx="[\d.]+" cy="([\d.]+)"', svg)[:3]]
    assert ys[0] < ys[1] == ys[2]  # errors: 1 then 0 then 0 (a higher count is drawn higher up)

    diff = client.get("/compare", params={"a": leaky["id"], "b": clean["id"]}).text
    assert re.search(r"\d+ added · [1-9]\d* fixed · 0 newly waived", diff)
    assert "leakage.subject_overlap" in re.search(r'<table id="fixed">.*?</table>', diff, re.S).group(0)
    added = re.search(r'<table id="added">.*?</table>', diff, re.S)
    assert added is None or "leakage.subject_overlap" not in added.group(0)
    diff = client.get("/compare", params={"a": clean["id"], "b": waived["id"]}).text
    assert re.search(r"\d+ added · \d+ fixed · 1 newly waived", diff)
    assert "phantom scan" in re.search(r'<table id="waived">.*?</table>', diff, re.S).group(0)

    board = client.get("/").text
    row = re.search(r'<table id="datasets">.*?</table>', board, re.S).group(0)
    assert "ds1" in row and "PASS" in row and waived["id"] in row
    assert client.get("/history", params={"dataset": "nothing"}).status_code == 404
    assert client.get("/compare", params={"a": leaky["id"], "b": "f" * 32}).status_code == 404


def test_a_configuration_above_the_roots_is_not_read(env, tmp_path):
    client, root = env
    (tmp_path / "bidsaudit.toml").write_text(WAIVER)  # above the root: the server must not read it
    body = run(client, "leaky")
    assert body["result"]["config"]["source"] is None
    assert body["verdict"] == "fail"


def test_audit_page_refreshes_until_done_and_shows_failures(env):
    client, root = env
    from audit.service.store import Store

    store: Store = client.app.state.store
    client.app.state.pool.stop()  # nothing runs: the audit stays queued
    r = client.post("/api/audits", json={"dataset": "ds1", "splits": "clean"}, headers=AUTH)
    page = client.get(f"/audits/{r.json()['id']}").text
    assert 'http-equiv="refresh"' in page and 'id="status" class="queued"' in page
    assert store.claim_next().id == r.json()["id"]
    store.fail(r.json()["id"], "splits: <b>bad</b> file")
    page = client.get(f"/audits/{r.json()['id']}").text
    assert 'http-equiv="refresh"' not in page and "&lt;b&gt;bad&lt;/b&gt;" in page
    assert client.get(f"/audits/{'0' * 32}", headers={"Accept": "text/html"}).status_code == 404
