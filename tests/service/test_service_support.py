"""Fixtures and helpers shared by the service tests (this module holds no test)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the service extra is not installed (pip install -e '.[service]')")

from bench.bench_service_pgrestart import pg_bin  # noqa: E402  (the bench's throwaway server needs the same binaries)

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def write_splits(folder: Path, train: list[str], test: list[str], validation: list[str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, ids in (("train", train), ("test", test), ("validation", validation)):
        if ids is not None:
            (folder / f"{name}.tsv").write_text("participant_id\n" + "".join(f"sub-{i}\n" for i in ids))
    return folder


def make_root(tmp_path: Path, n: int = 8) -> Path:
    """A root with one tiny BIDS dataset ``ds1`` (n subjects), a clean split and a leaking split."""
    from tests.builders import make_bids

    root = tmp_path / "root"
    ids = [f"{i:02d}" for i in range(1, n + 1)]
    make_bids(root / "ds1", subjects=ids)
    half = n // 2
    write_splits(root / "clean", ids[:half], ids[half:])
    write_splits(root / "leaky", ids[: half + 1], ids[half:])
    return root


def settings_for(root: Path | None, state: Path, **kw):  # type: ignore[no-untyped-def]
    from audit.service.settings import Settings

    base = dict(roots=(root,) if root else (), state_dir=state, tokens=frozenset({TOKEN}), executor="thread",
                workers=1, poll_seconds=0.05, rate_per_address=0, rate_per_token=0)  # tests poll fast
    base.update(kw)
    return Settings(**base)


def wait_for(client, audit_id: str, timeout: float = 60.0, headers=None) -> dict:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(f"/api/audits/{audit_id}", headers=headers or {}).json()
        if body["status"] in ("done", "failed"):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"audit {audit_id} still {body['status']} after {timeout} s")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- a throwaway PostgreSQL server on loopback ----------------------------------------------------
class PostgresServer:
    def __init__(self) -> None:
        bindir = pg_bin()
        if bindir is None:
            pytest.skip("no PostgreSQL server binaries (initdb); .ci/run installs Debian's postgresql")
        self.bindir = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="bidsaudit-pg-"))
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # initdb refuses root: run the cluster as the postgres user
            import pwd

            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                pytest.skip("running as root and there is no 'postgres' user to own a test cluster")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        data = self.dir / "data"
        self._run([str(bindir / "initdb"), "-D", str(data), "-U", "bidsaudit", "--auth=trust", "-E", "UTF8",
                   "--no-sync"])
        self._run([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(self.dir / "log"), "-w", "-t", "60", "-o",
                   f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} -c fsync=off "
                   "-c full_page_writes=off -c synchronous_commit=off", "start"])
        self.data = data
        self.count = 0

    def _run(self, argv: list[str]) -> None:
        proc = subprocess.run([*self.as_user, *argv], capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            log = (self.dir / "log").read_text() if (self.dir / "log").exists() else ""
            raise RuntimeError(f"{argv[0]} failed: {proc.stderr or proc.stdout}\n{log}")

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://bidsaudit@127.0.0.1:{self.port}/{db}"

    def new_database(self) -> str:
        import psycopg

        self.count += 1
        name = f"t{os.getpid()}_{self.count}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        subprocess.run([*self.as_user, str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                        "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres():  # type: ignore[no-untyped-def]
    pytest.importorskip("psycopg", reason="psycopg is not installed (the service extra)")
    server = PostgresServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):  # type: ignore[no-untyped-def]
    """A fresh, empty database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db.sqlite'}"
    return request.getfixturevalue("postgres").new_database()


# -- a real server on loopback --------------------------------------------------------------------
class LiveServer:
    """``bidsaudit serve`` in a subprocess on a free loopback port (start, kill, restart)."""

    def __init__(self, root: Path, state: Path, *, workers: int = 1, extra: tuple[str, ...] = ()) -> None:
        self.root, self.state, self.workers, self.extra = root, state, workers, extra
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = state.parent / f"server-{self.port}.log"

    def start(self, timeout: float = 60.0) -> LiveServer:
        import sys
        import urllib.request

        repo = Path(__file__).resolve().parents[2]
        env = {**os.environ, "BIDSAUDIT_TOKEN": TOKEN, "PYTHONPATH": str(repo)}
        argv = [sys.executable, "-m", "audit.cli", "serve", "--port", str(self.port), "--root", str(self.root),
                "--state-dir", str(self.state), "--workers", str(self.workers), "--rate-limit", "0",
                "--token-rate-limit", "0", *self.extra]  # browser tests poll
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(argv, cwd=repo, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/api/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("server did not answer in time")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(15)
