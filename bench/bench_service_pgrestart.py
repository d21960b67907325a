"""Load held by ``bidsaudit serve`` while its PostgreSQL server restarts (issue #14, items 4 and 6).

A throwaway PostgreSQL cluster on loopback (Debian's or PATH's initdb/pg_ctl)
and a ``bidsaudit serve --database postgresql://...`` subprocess. Two runs of
``--audits`` small audits each (a tiny BIDS dataset, validator off), submitted
by ``--clients`` threads that retry a refused or unanswered submission with
the same ``Idempotency-Key`` (as a careful client does):

1. baseline: nothing happens to the database (``--audits`` + ``--late``
   audits, so that both runs do the same work);
2. restart: once ``--restart-after`` audits are done and one is running, the
   database is stopped (``--mode fast``: every session is terminated;
   ``immediate``: the server is killed and recovers from its log at the next
   start), left down ``--down`` seconds (0: ``pg_ctl restart``) and started
   again, while ``--late`` more audits are submitted from the moment it stops
   and the running ones finish and want their outcome stored.

For each run: audits a minute (the first submission to the last audit
finished) and the accounting: lost (acknowledged and not ``done``, or never
acknowledged), duplicated (more audits in the database than submitted, or a
submission that got two ids), run twice (``attempts > 1``), stuck; the
restart run's audits a minute is also given as a ratio to the baseline
measured in the same process, and the server log is counted: claims and
outcome writes retried, claims adopted, requests answered 503, 500s.

Usage::

    .venv/bin/python bench/bench_service_pgrestart.py [--audits 40] [--clients 4] [--workers 2]
        [--restart-after 5] [--mode fast|immediate] [--down 5] [--late 4] [--json OUT.json]

Exit code 0 when nothing was lost, duplicated, run twice or left stuck; 1 otherwise.
"""

from __future__ import annotations

import argparse
import glob
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_service import TOKEN, Server, close_connection, free_port, make_root  # noqa: E402

__all__ = ["PgCluster", "pg_bin", "run_once", "main"]


def pg_bin() -> Path | None:
    """The folder of the PostgreSQL server binaries (initdb, pg_ctl): on PATH, else Debian's newest."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(candidates[-1]).parent if candidates else None


class PgCluster:
    """A PostgreSQL cluster in a temporary folder on a free loopback port (trust auth, no fsync)."""

    def __init__(self) -> None:
        bindir = pg_bin()
        if bindir is None:
            raise RuntimeError("no PostgreSQL server binaries (initdb) on PATH or in /usr/lib/postgresql")
        self.bindir = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="bidsaudit-pgbench-"))
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # initdb refuses root
            import pwd

            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.data = self.dir / "data"
        self._run("initdb", "-D", str(self.data), "-U", "bidsaudit", "--auth=trust", "-E", "UTF8", "--no-sync")
        self._pg_ctl("start")

    def _run(self, tool: str, *args: str) -> None:
        proc = subprocess.run([*self.as_user, str(self.bindir / tool), *args], capture_output=True, text=True,
                              timeout=120)
        if proc.returncode != 0:
            log = (self.dir / "log").read_text() if (self.dir / "log").exists() else ""
            raise RuntimeError(f"{tool} {' '.join(args)} failed: {proc.stderr or proc.stdout}\n{log[-2000:]}")

    def _pg_ctl(self, action: str, *extra: str) -> None:
        # fsync off (the machine does not crash here, only the server), but synchronous_commit stays on: with it
        # off an immediate stop loses commits the server had acknowledged, which no client can survive
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "log"), "-w", "-t", "60", *extra, "-o",
                  f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} -c fsync=off "
                  "-c full_page_writes=off", action)

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://bidsaudit@127.0.0.1:{self.port}/{db}"

    def new_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def restart(self, mode: str = "fast", down: float = 0.0, on_down: Callable[[], None] | None = None) -> float:
        """``pg_ctl stop -m MODE``, ``on_down()``, ``down`` seconds without a server, ``pg_ctl start``; returns
        the seconds the database was unreachable (``down`` 0: one ``pg_ctl restart``, ``on_down()`` just before)."""
        t = time.perf_counter()
        if down:
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")
            if on_down is not None:
                on_down()
            time.sleep(down)
            self._pg_ctl("start")
        else:
            if on_down is not None:
                on_down()
            self._pg_ctl("restart", "-m", mode)
        return time.perf_counter() - t

    def stop(self) -> None:
        subprocess.run([*self.as_user, str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                        "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)


def _call(port: int, method: str, path: str, body: Any = None,
          headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """One request on a fresh connection: (status, JSON) or (0, the error) when nothing came back."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=json.dumps(body).encode() if body is not None else None,
                     headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json",
                              **(headers or {})})
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, json.loads(raw) if raw else None
    except (OSError, http.client.HTTPException) as err:
        return 0, str(err)
    finally:
        conn.close()


def _submit(port: int, i: int, key: str, outcome: dict[str, Any]) -> None:
    """Submit audit ``i`` until it is acknowledged, the same key every time (a refused or lost answer is retried)."""
    body = {"dataset": "ds", "splits": "leaky" if i % 2 else "clean", "no_validator": True}
    for _ in range(600):
        status, got = _call(port, "POST", "/api/audits", body, {"Idempotency-Key": key})
        if status == 202:
            outcome["ids"].append(got["id"])
            return
        outcome["retries"] += 1
        outcome["refusals"][str(status)] = outcome["refusals"].get(str(status), 0) + 1
        time.sleep(0.2)
    outcome["unacknowledged"] += 1


def run_once(port: int, audits: int, clients: int, tag: str, restart: Any = None,
             restart_after: int = 5, timeout: float = 600.0, late: int = 0) -> dict[str, Any]:
    """Submit ``audits`` from ``clients`` threads (``restart(on_down)`` called once ``restart_after`` are done and one
    runs, ``late`` more submitted from the moment it begins) and wait until none is queued or running; returns
    the figures and the accounting."""
    outcomes = [{"ids": [], "retries": 0, "refusals": {}, "unacknowledged": 0} for _ in range(audits + late)]
    counter = iter(range(audits))
    lock = threading.Lock()

    def client() -> None:
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            _submit(port, i, f"{tag}-{i}", outcomes[i])
            time.sleep(0.05)

    import datetime as dt
    from urllib.parse import quote

    since = quote(dt.datetime.now(dt.timezone.utc).isoformat())
    listing = f"/api/audits?limit=1000&since={since}"
    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    restart_s = None
    restarted_at: dict[str, int] = {}
    listed: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, got = _call(port, "GET", listing)
        if status == 200:
            listed = got
            done = sum(1 for a in listed if a["status"] in ("done", "failed"))
            running = sum(1 for a in listed if a["status"] == "running")
            if restart is not None and restart_s is None and done >= restart_after and running:
                restarted_at = {"done": done, "running": running, "submitted": len(listed)}
                late_threads = [threading.Thread(target=_submit, args=(port, i, f"{tag}-{i}", outcomes[i]))
                                for i in range(audits, audits + late)]
                threads += late_threads
                # submissions that meet the database down: started once it has stopped (started before the
                # stop, they could all be answered first on an idle machine)
                restart_s = restart(lambda: [t.start() for t in late_threads])
            acknowledged = sum(len(o["ids"]) + o["unacknowledged"] for o in outcomes)
            if acknowledged == len(outcomes) and done == len(listed) and not any(t.is_alive() for t in threads):
                break
        time.sleep(0.1)
    wall = time.perf_counter() - t0
    for t in threads:
        t.join(5)
    ids = [i for o in outcomes for i in o["ids"]]
    by_id = {a["id"]: a for a in listed}
    submitted = len(outcomes)
    accounting = {
        "submitted": submitted, "acknowledged": len(ids), "unique_ids": len(set(ids)),
        "in_database": len(listed),
        "lost": sum(1 for i in set(ids) if by_id.get(i, {}).get("status") != "done")
        + sum(o["unacknowledged"] for o in outcomes),
        "duplicated": max(0, len(listed) - submitted) + (len(ids) - len(set(ids))),
        "run_twice": sum(1 for a in listed if a["attempts"] > 1),
        "stuck": sum(1 for a in listed if a["status"] in ("queued", "running")),
        "failed": [a["error"] for a in listed if a["status"] == "failed"][:5],
    }
    ok = (accounting["lost"] == 0 and accounting["duplicated"] == 0 and accounting["run_twice"] == 0
          and accounting["stuck"] == 0 and accounting["acknowledged"] == submitted and not accounting["failed"])
    refusals: dict[str, int] = {}
    for o in outcomes:
        for k, v in o["refusals"].items():
            refusals[k] = refusals.get(k, 0) + v
    return {"audits": submitted, "wall_s": round(wall, 1), "audits_per_minute": round(submitted / wall * 60, 1),
            "restart_s": None if restart_s is None else round(restart_s, 2), "restarted_at": restarted_at or None,
            "submission_retries": sum(o["retries"] for o in outcomes),
            "refusals_by_status": refusals, "accounting": accounting, "ok": ok}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--audits", type=int, default=40)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--restart-after", type=int, default=5)
    p.add_argument("--mode", choices=("fast", "immediate"), default="fast")
    p.add_argument("--down", type=float, default=5.0, help="seconds the database stays stopped (0: pg_ctl restart)")
    p.add_argument("--late", type=int, default=4, help="audits submitted from the moment the database stops")
    p.add_argument("--json", dest="json_out", default=None)
    args = p.parse_args(argv)
    out = run(args.audits, args.clients, args.workers, args.restart_after, args.mode, down=args.down, late=args.late)
    print(json.dumps(out, indent=2))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(out, indent=2) + "\n")
    print("OK: nothing lost, duplicated or run twice" if out["ok"] else "FAILED: see the accounting above")
    return 0 if out["ok"] else 1


def run(audits: int, clients: int, workers: int, restart_after: int, mode: str, *, down: float = 5.0,
        late: int = 4, timeout: float = 600.0) -> dict[str, Any]:
    """Baseline then restart, on one server and one cluster; the restart run has ``late`` more audits (the
    baseline runs ``audits + late`` too, so that the two rates compare like with like)."""
    out: dict[str, Any] = {"cpus": os.cpu_count(), "workers": workers, "clients": clients, "mode": mode,
                           "down_s": down}
    pg = PgCluster()
    try:
        url = pg.new_database("bench")
        with tempfile.TemporaryDirectory(prefix="bench-pgrestart-") as tmp:
            root = Path(tmp) / "root"
            make_root(root)
            (Path(tmp) / "run").mkdir()
            server = Server(root, Path(tmp) / "run" / "state", workers, url).start()
            close_connection()  # start() polled /api/health on this thread's keep-alive connection
            try:
                run_once(server.port, max(2, workers), clients, "warm")  # start the forkserver: not measured
                out["baseline"] = run_once(server.port, audits + late, clients, "base", timeout=timeout)
                out["restart"] = run_once(server.port, audits, clients, "restart", late=late, timeout=timeout,
                                          restart=lambda on_down: pg.restart(mode, down, on_down),
                                          restart_after=restart_after)
            finally:
                server.stop()
            log = (Path(tmp) / "run" / "server.log").read_text(errors="replace")
            out["server_log"] = {"tracebacks": log.count("Traceback"),
                                 "claims_retried": log.count("claiming an audit failed"),
                                 "outcomes_retried": log.count("the database is unreachable; retrying"),
                                 "claims_adopted": log.count("claimed before a database error"),
                                 "requests_answered_503": log.count("database unavailable on"),
                                 "internal_errors_500": log.count("internal error on")}
    finally:
        pg.stop()
    base, hit = out["baseline"]["audits_per_minute"], out["restart"]["audits_per_minute"]
    out["restart_vs_baseline"] = round(hit / base, 2) if base else None
    out["ok"] = (out["baseline"]["ok"] and out["restart"]["ok"] and out["restart"]["restart_s"] is not None
                 and out["server_log"]["internal_errors_500"] == 0)
    return out


if __name__ == "__main__":
    raise SystemExit(main())
