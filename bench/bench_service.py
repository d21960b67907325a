"""Load and fault test of ``bidsaudit serve`` on loopback (bounded: nothing leaves this machine).

Two phases, each against a fresh ``bidsaudit serve`` subprocess on a free
127.0.0.1 port with its own state folder (SQLite by default, or
``--database postgresql://...``):

1. load: ``--clients`` threads submit ``--audits`` small audits in all
   (a tiny BIDS dataset of 8 participants and a split of it, paths under the
   server's --root, validator off) and poll each until it finishes. Reports
   p50/p95/max latency of reads (``GET /api/audits/{id}``, ``GET /api/audits``,
   ``GET /api/datasets``) and of submissions, audits per minute, and checks
   that no audit was lost (every acknowledged id is in the server's list),
   duplicated (each id once, each audit run once: ``attempts == 1``) or stuck
   (every one ``done``).
2. fault: submits ``--fault-audits`` audits, kills the server with SIGKILL
   while some are running (``--kill-after`` finished), restarts it on the same
   state, and waits: every acknowledged audit must end ``done`` (the ones that
   were running are re-run once, with a note) or ``failed`` with the reason;
   none queued or running is left, none appears twice, none runs a third time.

Usage::

    .venv/bin/python bench/bench_service.py [--clients 20] [--audits 200] [--workers 2]
        [--fault-audits 40] [--kill-after 5] [--database URL] [--json OUT.json] [--skip-load] [--skip-fault]

Exit code 0 when every accounting check holds, 1 otherwise.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TOKEN = "bench-token-" + "0" * 20
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


def make_root(root: Path, n: int = 8) -> None:
    """A tiny BIDS dataset (``ds``: n participants, one small T1w each) and a clean and a leaky split."""
    import nibabel as nib
    import numpy as np

    ds = root / "ds"
    ds.mkdir(parents=True)
    (ds / "dataset_description.json").write_text(json.dumps({"Name": "bench", "BIDSVersion": "1.10.0",
                                                              "DatasetType": "raw", "Authors": ["b"]}))
    ids = [f"{i:02d}" for i in range(1, n + 1)]
    lines = ["participant_id\tage\tsex\tdiagnosis"] + [f"sub-{s}\t{60 + i}\t{'MF'[i % 2]}\t{['CN', 'AD'][i % 2]}"
                                                      for i, s in enumerate(ids)]
    (ds / "participants.tsv").write_text("\n".join(lines) + "\n")
    rng = np.random.default_rng(0)
    for s in ids:
        anat = ds / f"sub-{s}" / "anat"
        anat.mkdir(parents=True)
        (anat / f"sub-{s}_T1w.json").write_text(json.dumps({"Manufacturer": "Siemens", "MagneticFieldStrength": 3}))
        img = nib.Nifti1Image(rng.normal(100, 20, (8, 8, 8)).astype(np.float32), np.eye(4))
        nib.save(img, str(anat / f"sub-{s}_T1w.nii.gz"))
    for name, cut in (("clean", n // 2), ("leaky", n // 2 + 1)):
        folder = root / name
        folder.mkdir()
        (folder / "train.tsv").write_text("participant_id\n" + "".join(f"sub-{s}\n" for s in ids[:cut]))
        (folder / "test.tsv").write_text("participant_id\n" + "".join(f"sub-{s}\n" for s in ids[n // 2:]))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, root: Path, state: Path, workers: int, database: str | None) -> None:
        self.root, self.state, self.workers, self.database = root, state, workers, database
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        argv = [sys.executable, "-m", "audit.cli", "serve", "--port", str(self.port), "--root", str(self.root),
                "--state-dir", str(self.state), "--workers", str(self.workers),
                "--rate-limit", "0", "--token-rate-limit", "0"]  # the load is the point: no 429 here
        if self.database:
            argv += ["--database", self.database]
        env = {**os.environ, "BIDSAUDIT_TOKEN": TOKEN, "PYTHONPATH": str(REPO)}
        with open(self.state.parent / "server.log", "ab") as log:
            self.proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited with {self.proc.returncode}; see {self.state.parent}/server.log")
            try:
                status, _ = request(self.port, "GET", "/api/health")
                if status == 200:
                    return self
            except OSError:
                time.sleep(0.2)
        raise SystemExit("server did not answer within 60 s")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


_local = threading.local()


def request(port: int, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """One request on this thread's keep-alive connection; (status, parsed JSON).

    A GET on a connection the server closed while idle is retried once on a new one.
    """
    try:
        return _request(port, method, path, body)
    except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
        if method != "GET":
            raise
        return _request(port, method, path, body)


def _request(port: int, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    conn = getattr(_local, "conn", None)
    if conn is None or getattr(_local, "port", None) != port:
        conn = _local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        _local.port = port
    data = json.dumps(body).encode() if body is not None else None
    try:
        conn.request(method, path, body=data, headers=HEADERS)
        resp = conn.getresponse()
        raw = resp.read()
    except (OSError, http.client.HTTPException):
        conn.close()
        _local.conn = None
        raise
    return resp.status, json.loads(raw) if raw else None


def close_connection() -> None:
    conn = getattr(_local, "conn", None)
    if conn is not None:
        conn.close()
    _local.conn = None


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def ms(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50_ms": round(pct(values, 50) * 1000, 1), "p95_ms": round(pct(values, 95) * 1000, 1),
            "max_ms": round(max(values) * 1000, 1) if values else float("nan")}


def body_for(i: int) -> dict[str, Any]:
    return {"dataset": "ds", "splits": "leaky" if i % 2 else "clean", "no_validator": True}


def load_phase(server: Server, clients: int, audits: int) -> dict[str, Any]:
    reads: list[float] = []
    lists: list[float] = []
    submits: list[float] = []
    ids: list[str] = []
    errors: list[str] = []
    lock = threading.Lock()
    counter = iter(range(audits))
    counter_lock = threading.Lock()

    def client(k: int) -> None:
        while True:
            with counter_lock:
                i = next(counter, None)
            if i is None:
                close_connection()
                return
            t = time.perf_counter()
            status, body = request(server.port, "POST", "/api/audits", body_for(i))
            with lock:
                submits.append(time.perf_counter() - t)
            if status != 202:
                with lock:
                    errors.append(f"submit {i}: {status} {body}")
                continue
            audit_id = body["id"]
            with lock:
                ids.append(audit_id)
            polls = 0
            while True:
                t = time.perf_counter()
                status, got = request(server.port, "GET", f"/api/audits/{audit_id}")
                with lock:
                    reads.append(time.perf_counter() - t)
                polls += 1
                if polls % 10 == 0:
                    path = "/api/datasets" if k % 2 else "/api/audits?limit=50"
                    t = time.perf_counter()
                    request(server.port, "GET", path)
                    with lock:
                        lists.append(time.perf_counter() - t)
                if got["status"] in ("done", "failed"):
                    if got["status"] == "failed":
                        with lock:
                            errors.append(f"audit {audit_id} failed: {got['error']}")
                    break
                time.sleep(0.25)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    listed = request(server.port, "GET", "/api/audits?limit=1000")[1]
    close_connection()
    by_id = {a["id"]: a for a in listed}
    accounting = {
        "submitted": audits, "acknowledged": len(ids), "unique_ids": len(set(ids)),
        "listed_by_server": len(listed), "lost": len(set(ids) - set(by_id)),
        "done": sum(1 for a in listed if a["status"] == "done"),
        "failed": sum(1 for a in listed if a["status"] == "failed"),
        "stuck": sum(1 for a in listed if a["status"] in ("queued", "running")),
        "run_more_than_once": sum(1 for a in listed if a["attempts"] != 1),
    }
    ok = (accounting["acknowledged"] == accounting["unique_ids"] == accounting["listed_by_server"] == audits
          and accounting["done"] == audits and not errors and accounting["run_more_than_once"] == 0)
    return {"clients": clients, "wall_s": round(wall, 1), "audits_per_minute": round(audits / wall * 60, 1),
            "read_audit": ms(reads), "read_lists": ms(lists), "submit": ms(submits), "accounting": accounting,
            "errors": errors[:10], "ok": ok}


def fault_phase(server: Server, audits: int, kill_after: int) -> dict[str, Any]:
    import datetime as dt
    from urllib.parse import quote

    since = quote(dt.datetime.now(dt.timezone.utc).isoformat())  # a shared database may hold earlier audits
    listing = f"/api/audits?limit=1000&since={since}"
    ids = []
    for i in range(audits):
        status, body = request(server.port, "POST", "/api/audits", body_for(i))
        assert status == 202, body
        ids.append(body["id"])
    while True:  # wait until some are done and some are running
        listed = request(server.port, "GET", listing)[1]
        done = sum(1 for a in listed if a["status"] == "done")
        running = [a["id"] for a in listed if a["status"] == "running"]
        if done >= kill_after and running:
            break
        time.sleep(0.05)
    server.kill()
    close_connection()
    at_kill = {"done": done, "running": len(running)}
    t0 = time.perf_counter()
    server.start()
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        listed = request(server.port, "GET", listing)[1]
        if not any(a["status"] in ("queued", "running") for a in listed):
            break
        time.sleep(0.2)
    recovery_s = time.perf_counter() - t0
    close_connection()
    by_id = {a["id"]: a for a in listed}
    rerun = [i for i in ids if by_id.get(i, {}).get("attempts", 0) > 1]
    failed_reasons = [by_id[i]["error"] for i in ids if i in by_id and by_id[i]["status"] == "failed"]
    accounting = {
        "acknowledged": len(ids), "listed_by_server": len(listed), "lost": len(set(ids) - set(by_id)),
        "unknown_extra": len(set(by_id) - set(ids)),
        "done": sum(1 for i in ids if by_id.get(i, {}).get("status") == "done"),
        "failed_with_reason": sum(1 for r in failed_reasons if r),
        "stuck": sum(1 for a in listed if a["status"] in ("queued", "running")),
        # seen running just before the kill (one may still have finished before the signal landed)
        "running_at_kill": len(running),
        "rerun_after_restart": len(rerun),
        "rerun_without_note": sum(1 for i in rerun if "re-queued" not in (by_id[i].get("note") or "")),
        "run_more_than_twice": sum(1 for i in ids if by_id.get(i, {}).get("attempts", 0) > 2),
    }
    ok = (accounting["lost"] == 0 and accounting["unknown_extra"] == 0 and accounting["stuck"] == 0
          and accounting["done"] + accounting["failed_with_reason"] == len(ids)
          and accounting["rerun_without_note"] == 0 and accounting["run_more_than_twice"] == 0)
    return {"audits": audits, "at_kill": at_kill, "after_restart_s": round(recovery_s, 1), "accounting": accounting,
            "failed_reasons": failed_reasons[:5], "ok": ok}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--audits", type=int, default=200)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--fault-audits", type=int, default=40)
    p.add_argument("--kill-after", type=int, default=5)
    p.add_argument("--database", default=None, help="default: SQLite in a temporary state folder")
    p.add_argument("--json", dest="json_out", default=None)
    p.add_argument("--skip-load", action="store_true")
    p.add_argument("--skip-fault", action="store_true")
    args = p.parse_args(argv)
    out: dict[str, Any] = {"cpus": os.cpu_count(), "workers": args.workers,
                           "database": "postgresql" if args.database else "sqlite"}
    with tempfile.TemporaryDirectory(prefix="bench-service-") as tmp:
        root = Path(tmp) / "root"
        make_root(root)
        if not args.skip_load:
            (Path(tmp) / "load").mkdir()
            server = Server(root, Path(tmp) / "load" / "state", args.workers, args.database).start()
            try:
                out["load"] = load_phase(server, args.clients, args.audits)
            finally:
                server.stop()
            print(json.dumps({"load": out["load"]}, indent=2))
        if not args.skip_fault:
            (Path(tmp) / "fault").mkdir()
            database = args.database
            server = Server(root, Path(tmp) / "fault" / "state", args.workers, database).start()
            try:
                out["fault"] = fault_phase(server, args.fault_audits, args.kill_after)
            finally:
                server.stop()
            print(json.dumps({"fault": out["fault"]}, indent=2))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(out, indent=2) + "\n")
    ok = all(out[k]["ok"] for k in ("load", "fault") if k in out)
    print("OK: every audit accounted for" if ok else "FAILED: see the accounting above")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
