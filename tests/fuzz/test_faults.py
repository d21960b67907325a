"""Faults: kill -9 in the middle of every kind of write, a full disk, a damaged hash cache (issue #14 item 4).

A write killed with SIGKILL leaves the old file (or none), never a partial
one, and the next run writes it and removes the killed writer's temporary
file. The kills are real: the command runs in a child process whose
``os.replace`` or ``os.fsync`` sends SIGKILL to itself when it reaches the
file under test.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.builders import invoke, make_bids

ROOT = Path(__file__).resolve().parents[2]

KILLER = '''
import os, signal, sys
target, where = sys.argv[1], sys.argv[2]
real = getattr(os, where)
def killer(*args, **kwargs):
    names = [os.fspath(a) for a in args if isinstance(a, (str, os.PathLike))]
    if ARMED[0] and (where == "fsync" or any(n.endswith(target) for n in names)):
        if where != "fsync" or KILL_FSYNC[0]:
            os.kill(os.getpid(), signal.SIGKILL)
    return real(*args, **kwargs)
KILL_FSYNC = [False]
ARMED = [True]
real_open = os.fdopen
def fdopen(fd, *a, **k):  # arm the fsync kill only for the temporary file of the target
    name = os.readlink(f"/proc/self/fd/{fd}")
    KILL_FSYNC[0] = os.path.basename(name).startswith("." + os.path.basename(target) + ".")
    return real_open(fd, *a, **k)
if where == "fsync":
    os.fdopen = fdopen
setattr(os, where, killer)
'''


def run_killed(target: str, where: str, code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``code`` in a child that SIGKILLs itself at ``os.<where>`` on the file named ``target``."""
    prog = KILLER + code
    return subprocess.run([sys.executable, "-c", prog, target, where], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, cwd=ROOT, timeout=300)


def cli(*args: object) -> str:
    return f"from audit.cli import app\nsys.argv = ['bidsaudit', *{[str(a) for a in args]!r}]\napp()\n"


def _temps(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("where", ["fsync", "replace"])
def test_kill_during_the_result_write_leaves_the_old_result(tmp_path, where):
    ds = make_bids(tmp_path / "ds")
    out = tmp_path / "out" / "result.json"
    out.parent.mkdir()
    out.write_text("OLD")
    env = {"BIDSAUDIT_CACHE_DIR": str(tmp_path / "cache")}
    proc = run_killed("result.json", where, cli("validate", ds, "--no-validator", "--json", out), env)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert out.read_text() == "OLD" and len(_temps(out.parent)) == 1  # old result; the killed writer's temp
    r = invoke("validate", ds, "--no-validator", "--json", out)
    assert r.exit_code == 0, r.output
    assert json.loads(out.read_text())["status"] == "pass" and not _temps(out.parent)  # recovered, swept


def _splits(ds: Path) -> Path:
    folder = ds.parent / "splits"
    folder.mkdir()
    subs = sorted(p.name for p in ds.glob("sub-*"))
    (folder / "train.tsv").write_text("participant_id\n" + "\n".join(subs[:-2]) + "\n")
    (folder / "test.tsv").write_text("participant_id\n" + "\n".join(subs[-2:]) + "\n")
    return folder


def test_kill_during_the_certificate_write_leaves_no_certificate(tmp_path):
    ds = make_bids(tmp_path / "ds", [f"{i:02d}" for i in range(1, 9)])
    splits = _splits(ds)
    env = {"BIDSAUDIT_CACHE_DIR": str(tmp_path / "cache")}
    proc = run_killed("bidsaudit-certificate.json", "fsync", cli("audit", ds, "--splits", splits, "--no-validator",
                                                                 "--json", tmp_path / "r.json"), env)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert not (splits / "bidsaudit-certificate.json").exists()
    r = invoke("audit", ds, "--splits", splits, "--no-validator", "--json", tmp_path / "r.json")
    assert r.exit_code == 0, r.output
    cert = json.loads((splits / "bidsaudit-certificate.json").read_text())
    assert cert and not _temps(splits)


def test_kill_during_a_checkpoint_write_keeps_the_last_checkpoint(tmp_path):
    pytest.importorskip("torch")
    ckpt = tmp_path / "run" / "checkpoint.pt"
    code = (f"from pathlib import Path\nfrom train.loop import save_torch\np = Path({str(ckpt)!r})\n"
            "ARMED[0] = False\nsave_torch({'epoch': 1}, p)\nARMED[0] = True\nsave_torch({'epoch': 2}, p)\n")
    proc = run_killed("checkpoint.pt", "replace", code)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    from train.loop import load_torch, save_torch

    assert load_torch(ckpt, "cpu")["epoch"] == 1 and len(_temps(ckpt.parent)) == 1
    save_torch({"epoch": 2}, ckpt)  # the resumed run writes the next one
    assert load_torch(ckpt, "cpu")["epoch"] == 2 and not _temps(ckpt.parent)


def test_full_disk_is_exit_2_naming_the_file_and_leaves_nothing(tmp_path, monkeypatch):
    from audit import fsutil

    ds = make_bids(tmp_path / "ds")
    out = tmp_path / "out" / "result.json"

    def enospc(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(fsutil.os, "fsync", enospc)
    monkeypatch.setenv("BIDSAUDIT_CACHE_DIR", str(tmp_path / "cache"))
    r = invoke("validate", ds, "--no-validator", "--json", out)
    assert r.exit_code == 2, r.output
    assert str(out) in r.output and "No space left on device" in r.output and "internal error" not in r.output
    assert not out.exists() and not _temps(out.parent)


# ---------------------------------------------------------------- the hash cache
def _fingerprint(root, cache):
    from audit.bidsindex import index_dataset
    from audit.hashing import dataset_fingerprint

    fp = dataset_fingerprint(index_dataset(root), cache)
    return fp.fingerprint, dict(fp.files)


def _summaries(root, cache):
    from audit.bidsindex import index_dataset
    from audit.images.summary import summarise_images

    return summarise_images(index_dataset(root), workers=1, cache=cache)


def test_kill_during_the_hash_cache_write_loses_nothing_but_that_write(tmp_path):
    from audit.hashing import HashCache

    ds = make_bids(tmp_path / "ds", [f"{i:02d}" for i in range(1, 7)])
    cache_dir = tmp_path / "cache"
    code = ("import sqlite3\nfrom audit import hashing\n"
            "def store(self, sql, rows):\n"
            "    self._conn.execute('BEGIN IMMEDIATE')\n"
            "    self._conn.executemany(sql, rows)\n"
            "    os.kill(os.getpid(), signal.SIGKILL)  # mid-transaction\n"
            "hashing.HashCache._store = store\n" + cli("validate", ds, "--no-validator"))
    proc = run_killed("never", "replace", code, {"BIDSAUDIT_CACHE_DIR": str(cache_dir)})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    with HashCache(cache_dir) as cache:  # the next run opens it: rolled back, not damaged
        assert cache.problem is None and len(cache) == 0
        assert _fingerprint(ds, cache) == _fingerprint(ds, HashCache(memory=True))
        assert len(cache) > 0


def _filled(tmp_path):
    from audit.hashing import HashCache

    ds = make_bids(tmp_path / "ds", [f"{i:02d}" for i in range(1, 7)])
    folder = tmp_path / "cache"
    with HashCache(folder) as cache:
        truth = _fingerprint(ds, cache)
        _summaries(ds, cache)
    with sqlite3.connect(folder / HashCache.FILENAME) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return ds, folder, truth


@pytest.mark.parametrize("damage", ["garbage", "truncated", "page_noise"])
def test_damaged_hash_cache_file_is_rebuilt_with_a_warning(tmp_path, damage, caplog):
    from audit.hashing import HashCache

    ds, folder, truth = _filled(tmp_path)
    db = folder / HashCache.FILENAME
    raw = bytearray(db.read_bytes())
    if damage == "garbage":
        raw = bytearray(b"not a database" * 400)
    elif damage == "truncated":
        raw = raw[:len(raw) // 3 + 7]
    else:  # noise over the second page onwards (the table's b-tree)
        raw[4096:8192] = os.urandom(4096)
    db.write_bytes(bytes(raw))
    with HashCache(folder) as cache:
        assert not cache.in_memory, cache.problem
        assert _fingerprint(ds, cache) == truth  # never a wrong hash
        assert _fingerprint(ds, cache) == truth
    assert cache.problem is None or "damaged" in cache.problem or "failed" in cache.problem


def test_a_damaged_entry_is_a_miss_never_a_wrong_hash(tmp_path, caplog):
    from audit.hashing import HashCache

    ds, folder, truth = _filled(tmp_path)
    with sqlite3.connect(folder / HashCache.FILENAME) as conn:  # one flipped character in every stored value
        conn.execute("UPDATE entries SET sha256 = 'f' || substr(sha256, 2), summary = replace(summary, '1', '2')")
    with HashCache(folder) as cache:
        assert _fingerprint(ds, cache) == truth
        assert cache.damaged > 0 and "damaged entries ignored" in cache.problem
        fresh = _summaries(ds, HashCache(memory=True))
        assert _summaries(ds, cache).images == fresh.images
    assert "damaged entries ignored" in caplog.text
