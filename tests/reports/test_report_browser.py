"""The HTML report in a real headless Chromium (Chrome DevTools Protocol, no download).

Chromium is Debian's ``chromium`` (``.ci/run`` installs it when missing);
it is driven over the DevTools websocket with ``websocket-client``. The
tests skip, saying why, when either is absent.

What is checked: the page loads from ``file://`` with no console message of
level error, no exception and no request other than the file itself and
``data:`` URIs; the verdict banner reads right; a screenshot PNG is saved
(its path is printed: run with ``-s`` to see it). And untrusted strings
planted in a dataset (participant ids, TSV cells, sidecar values, split
files) run through a real audit reach the page escaped: no dialog opens and
no planted script runs.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    env = os.environ.get("BIDSAUDIT_CHROMIUM")
    if env:
        return env if Path(env).exists() else None
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Page:
    """One headless Chromium with one page, driven over the DevTools Protocol."""

    def __init__(self, chromium: str, profile: Path) -> None:
        import websocket  # websocket-client

        self.port = _free_port()
        self.proc = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-default-apps", "--disable-extensions", "--no-default-browser-check",
             "--hide-scrollbars", "--window-size=1200,900", f"--remote-debugging-port={self.port}",
             "--remote-allow-origins=*", f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        targets: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list", timeout=2) as r:
                    targets = [t for t in json.load(r) if t.get("type") == "page"]
                if targets:
                    break
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with status {self.proc.returncode}")
            time.sleep(0.2)
        if not targets:
            self.close()
            raise RuntimeError("chromium's DevTools endpoint did not answer in 30 s")
        self.ws = websocket.create_connection(targets[0]["webSocketDebuggerUrl"], timeout=30)
        self.next_id = 0
        self.events: list[dict[str, Any]] = []
        for domain in ("Page", "Runtime", "Network", "Log"):
            self.call(f"{domain}.enable")

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        my_id = self.next_id
        self.ws.send(json.dumps({"id": my_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == my_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return dict(msg.get("result") or {})
            self._event(msg)

    def _event(self, msg: dict[str, Any]) -> None:
        if "method" not in msg:
            return
        self.events.append(msg)
        if msg["method"] == "Page.javascriptDialogOpening":  # never leave a dialog blocking the page
            self.ws.send(json.dumps({"id": 10**6 + len(self.events), "method": "Page.handleJavaScriptDialog",
                                     "params": {"accept": True}}))

    def wait_for(self, method: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in self.events:
                if e["method"] == method:
                    return e
            self.ws.settimeout(max(0.1, deadline - time.monotonic()))
            self._event(json.loads(self.ws.recv()))
        raise TimeoutError(method)

    def settle(self, seconds: float = 0.5) -> None:
        """Collect events for a while (late requests, console messages)."""
        deadline = time.monotonic() + seconds
        import websocket

        while time.monotonic() < deadline:
            self.ws.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                self._event(json.loads(self.ws.recv()))
            except websocket.WebSocketTimeoutException:
                break
        self.ws.settimeout(30)

    def load(self, url: str) -> None:
        self.events.clear()
        self.call("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")
        self.settle()

    def evaluate(self, expression: str) -> Any:
        res = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return res.get("result", {}).get("value")

    def screenshot(self, path: Path) -> Path:
        size = self.evaluate("JSON.stringify([document.documentElement.scrollWidth, "
                             "document.documentElement.scrollHeight])")
        w, h = json.loads(size)
        self.call("Emulation.setDeviceMetricsOverride", width=max(int(w), 1200), height=min(int(h), 12000),
                  deviceScaleFactor=1, mobile=False)
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    # what happened
    def requests(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.events if e["method"] == "Network.requestWillBeSent"]

    def console_errors(self) -> list[str]:
        out = []
        for e in self.events:
            p = e["params"]
            if e["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(json.dumps(p.get("args"))[:300])
            elif e["method"] == "Runtime.exceptionThrown":
                out.append(json.dumps(p.get("exceptionDetails"))[:300])
            elif e["method"] == "Log.entryAdded" and p["entry"].get("level") == "error":
                out.append(str(p["entry"].get("text"))[:300])
        return out

    def dialogs(self) -> list[str]:
        return [e["params"].get("message", "") for e in self.events if e["method"] == "Page.javascriptDialogOpening"]

    def close(self) -> None:
        try:
            if getattr(self, "ws", None) is not None:
                self.ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def page(tmp_path):
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("no headless Chromium here (apt-get install chromium; .ci/run installs it in CI)")
    pytest.importorskip("websocket", reason="websocket-client is not installed (pip install -e '.[test]')")
    p = Page(chromium, tmp_path / "chromium-profile")
    try:
        yield p
    finally:
        p.close()


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
