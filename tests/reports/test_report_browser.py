"""The HTML report in a real headless Chromium (Debian's chromium and chromium-driver, driven by Selenium).

The same driver as the service's browser test (tests/service/test_service_browser.py);
the tests skip, saying why, when selenium, chromium or chromedriver is absent
(``.ci/run`` installs them). Console messages come from ChromeDriver's
``browser`` log, requests and dialogs from its ``performance`` log (DevTools
``Network`` and ``Page`` events).

What is checked: the page loads from ``file://`` with no console message of
level error, no exception and no request other than the file itself and
``data:`` URIs; the verdict banner reads right; a screenshot PNG is saved
(its path is printed: run with ``-s`` to see it). And untrusted strings
planted in a dataset (participant ids, TSV cells, sidecar values, split
files) run through a real audit reach the page escaped: no dialog opens and
no planted script runs.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests.builders import chromium_driver

pytestmark = pytest.mark.browser

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--no-default-browser-check",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=1200,900"]


class Page:
    """One headless Chromium page under Selenium, with what happened on it since the last load."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver
        self.events: list[dict[str, Any]] = []  # DevTools events from the performance log
        self.logs: list[dict[str, Any]] = []  # the browser (console) log
        self.alerts: list[str] = []  # dialogs ChromeDriver met (and accepted) while running a command

    def _run(self, fn: Any, *args: Any) -> Any:
        from selenium.common.exceptions import UnexpectedAlertPresentException

        for _ in range(20):  # a dialog never blocks the page: it is accepted, noted, and the command re-run
            try:
                return fn(*args)
            except UnexpectedAlertPresentException as e:
                self.alerts.append(str(e.alert_text or ""))
        raise RuntimeError("dialogs keep opening")

    def _collect(self) -> None:
        self.logs += self._run(self.driver.get_log, "browser")
        for entry in self._run(self.driver.get_log, "performance"):
            message = json.loads(entry["message"])["message"]
            self.events.append({"method": message.get("method"), "params": message.get("params") or {}})

    def load(self, url: str) -> None:
        self._collect()
        self.events.clear()
        self.logs.clear()
        self.alerts.clear()
        self._run(self.driver.get, url)
        time.sleep(0.5)  # late requests, console messages
        self._collect()

    def evaluate(self, expression: str) -> Any:
        return self._run(self.driver.execute_script, f"return ({expression});")

    def screenshot(self, path: Path) -> Path:
        w, h = self.evaluate("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
        self._run(self.driver.execute_cdp_cmd, "Emulation.setDeviceMetricsOverride",
                  {"width": max(int(w), 1200), "height": min(int(h), 12000), "deviceScaleFactor": 1,
                   "mobile": False})
        path.write_bytes(self._run(self.driver.get_screenshot_as_png))
        return path

    # what happened
    def requests(self) -> list[str]:
        self._collect()
        return [e["params"]["request"]["url"] for e in self.events if e["method"] == "Network.requestWillBeSent"]

    def console_errors(self) -> list[str]:
        self._collect()
        return [str(e.get("message"))[:300] for e in self.logs if e.get("level") == "SEVERE"]

    def dialogs(self) -> list[str]:
        self._collect()
        seen = [str(e["params"].get("message", "")) for e in self.events
                if e["method"] == "Page.javascriptDialogOpening"]
        return seen or list(self.alerts)


@pytest.fixture(scope="module")
def browser():
    with chromium_driver(FLAGS, observe=True) as driver:
        yield driver


@pytest.fixture
def page(browser):
    p = Page(browser)
    yield p
    browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def _only_the_file(requests: list[str], url: str) -> list[str]:
    return [u for u in requests if u != url and not u.startswith("data:")]


def _audit(tmp_path: Path, *, confounded: bool = False, plant: str | None = None) -> tuple[dict[str, Any], Path]:
    from audit.api import audit_splits
    from audit.context import AuditOptions
    from audit.splits.making import SplitPlan, split_dataset
    from audit.synthetic import make_dataset
    from reports.render import render_report

    ds, splits = tmp_path / "ds", tmp_path / "splits"
    make_dataset(ds, n_subjects=24, seed=3, confounded=confounded)
    split_dataset(ds, SplitPlan(label="diagnosis", seed=0), splits, layout="folder")
    if plant is not None:
        _plant(ds, splits, plant)
    result = audit_splits(ds, splits, AuditOptions(label="diagnosis", run_validator=False, workers=1)).to_dict()
    html = tmp_path / "report.html"
    html.write_text(render_report(result), encoding="utf-8")
    return result, html


def _plant(ds: Path, splits: Path, payload: str) -> None:
    """Payloads in a participant id, label and site cells, sidecar strings and a split file's cells."""
    tsv = ds / "participants.tsv"
    lines = tsv.read_text().splitlines()
    header = lines[0].split("\t")
    rows = [line.split("\t") for line in lines[1:]]
    if "site" not in header:
        header.append("site")
        rows = [r + ["siteA"] for r in rows]
    lab, site = header.index("diagnosis"), header.index("site")
    for r in rows[:4]:  # a label value and a site value that reach the contingency table and the charts
        r[lab] = payload
        r[site] = payload
    bad = [""] * len(header)
    bad[0] = "sub-" + payload
    bad[lab] = "CN"
    rows.append(bad)
    tsv.write_text("\n".join("\t".join(r) for r in [header, *rows]) + "\n")
    for sidecar in sorted(ds.glob("sub-*/**/anat/*_T1w.json"))[:3] + sorted(ds.glob("sub-*/anat/*_T1w.json"))[:3]:
        meta = json.loads(sidecar.read_text())
        meta["Manufacturer"] = payload
        meta["InstitutionName"] = payload
        sidecar.write_text(json.dumps(meta))
    # split files accept only letter-and-digit ids (anything else is refused, exit 2): plant in a cell instead
    test = splits / "test.tsv"
    t_lines = test.read_text().splitlines()
    cols = t_lines[0].split("\t") + ["note"]
    rows = [line.split("\t") + [payload] for line in t_lines[1:] if line.strip()]
    test.write_text("\n".join("\t".join(r) for r in [cols, *rows]) + "\n")


def test_report_loads_offline_with_the_right_verdict(page, tmp_path):
    result, html = _audit(tmp_path, confounded=True)
    assert result["status"] == "fail"
    url = html.resolve().as_uri()
    page.load(url)
    assert page.console_errors() == []
    assert _only_the_file(page.requests(), url) == []
    assert page.dialogs() == []
    assert page.evaluate("document.querySelector('.banner .verdict').textContent.trim()") == "FAIL"
    assert page.evaluate("document.querySelectorAll('svg.chart').length") >= 4
    body = page.evaluate("document.body.innerText")
    assert "confound.label_site" in body and "Why the gate is closed" in body
    for word in ("NaN", "undefined", "None"):
        assert word not in body
    shot = page.screenshot(tmp_path / "report.png")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    print(f"\nscreenshot: {shot}")


def test_passing_report_says_pass(page, tmp_path):
    from reports.render import render_report

    data = {"schema_version": "1", "tool": {"name": "bidsaudit", "version": "0"}, "command": "audit",
            "dataset": None, "splits": None, "status": "pass", "findings": [], "readiness": None, "skipped": []}
    html = tmp_path / "pass.html"
    html.write_text(render_report(data), encoding="utf-8")
    page.load(html.resolve().as_uri())
    assert page.evaluate("document.querySelector('.banner .verdict').textContent.trim()") == "PASS"
    assert page.console_errors() == []


PLANTED = ('<script>window.__pwned=1;alert(1)</script>'
           '<img src=x onerror="window.__pwned=2;alert(2)">')


def test_planted_markup_is_inert(page, tmp_path):
    result, html = _audit(tmp_path, plant=PLANTED)
    text = html.read_text(encoding="utf-8")
    dumped = json.dumps(result)
    assert "__pwned" in dumped  # the payload did reach the result (ids, cells, sidecars)...
    assert "__pwned" in text  # ...and the page, as text
    assert not re.search(r"<script|<img\s+src=x", text, re.I)  # no planted tag survives as markup
    assert not re.search(r"<[^>]*\sonerror\s*=", text, re.I)  # no handler inside any real tag
    assert "&lt;script&gt;window.__pwned=1" in text
    url = html.resolve().as_uri()
    page.load(url)
    assert page.dialogs() == []
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.evaluate("document.querySelectorAll('script').length") == 0
    assert page.evaluate("Array.from(document.images).every(i => i.src.startsWith('data:image/png;base64,'))")
    assert _only_the_file(page.requests(), url) == []
    assert page.console_errors() == []
    shown = page.evaluate("document.body.innerText")
    assert PLANTED in shown  # shown as the text it is


def test_the_harness_sees_console_errors_requests_and_dialogs(page, tmp_path):
    """The "nothing happened" assertions above are not vacuous: a page that misbehaves is seen misbehaving."""
    bad = tmp_path / "bad.html"
    bad.write_text('<html><body><p>x</p><script>console.error("boom"); window.__pwned = 3; alert("hi")</script>'
                   '<img src="http://127.0.0.1:9/leak.png"></body></html>', encoding="utf-8")
    url = bad.resolve().as_uri()
    page.load(url)
    assert page.dialogs() == ["hi"]
    assert page.evaluate("typeof window.__pwned") == "number"
    assert "http://127.0.0.1:9/leak.png" in _only_the_file(page.requests(), url)
    assert any("boom" in e for e in page.console_errors())


def test_training_report_shows_cis_and_the_curve(page, tmp_path):
    """The training report (issue #13): same banner as the audit report, CIs in the results, a curve per epoch."""
    from train.report import render_training_report

    history = [{"epoch": str(e), "train_loss": str(1 - 0.1 * e), "validation_loss": str(0.9 - 0.05 * e),
                "validation_balanced_accuracy": str(0.5 + 0.05 * e)} for e in range(1, 7)]
    meta = {"status": "complete", "config": {"task": "classification", "model": "conv5fc3", "lr": 1e-3,
                                             "selection": "loss", "folds": None},
            "folds": [0, 1], "seeds": [0], "dataset": {"name": "demo"}, "device": "cpu", "tool": {"version": "0"},
            "gate": {"certificate": "c.json"}, "summary": {"n_runs": 2, "over_runs": {"test": {
                "balanced_accuracy": {"mean": 0.75, "sd": 0.05, "n": 2}}}}}
    runs = [{"fold": f, "seed": 0, "epochs_run": 6, "stopped_early": False, "checkpoint_epoch": 4,
             "history": history, "metrics": {"test": {"balanced_accuracy": {
                 "value": 0.7 + 0.1 * f, "ci_low": 0.55, "ci_high": 0.95}}}} for f in (0, 1)]
    html = tmp_path / "training.html"
    html.write_text(render_training_report(meta, None, {"runs": runs, "warnings": [], "selection": "loss",
                                                        "metric": "balanced_accuracy"}), encoding="utf-8")
    url = html.resolve().as_uri()
    page.load(url)
    assert page.console_errors() == [] and _only_the_file(page.requests(), url) == []
    assert page.evaluate("document.querySelector('.banner .verdict').textContent.trim()") == "TRAINED"
    cis = page.evaluate("Array.from(document.querySelectorAll('table.results .ci')).map(e => e.textContent)")
    assert cis == ["[0.55, 0.95]", "[0.55, 0.95]"]
    assert "0.75 ± 0.05" in page.evaluate("document.querySelector('table.results td.mean').textContent")
    curves = page.evaluate("document.querySelectorAll('svg.epoch-curve').length")
    assert curves == 4  # loss and metric, for each of the two runs
    box = page.evaluate("(() => { const r = document.querySelector('svg.epoch-curve path').getBoundingClientRect();"
                        " return [r.width, r.height]; })()")
    assert box[0] > 100 and box[1] > 20  # the curve is drawn, not collapsed to a point
    assert page.evaluate("document.querySelectorAll('svg.epoch-curve line.checkpoint').length") == 4
    body = page.evaluate("document.body.innerText")
    assert "best-loss" in body and "2 (k-fold: 0, 1)" in body and "None" not in body
    shot = page.screenshot(tmp_path / "training.png")
    assert shot.stat().st_size > 10_000
