"""The bounded pool that runs queued audits.

``workers`` dispatcher threads each claim the oldest queued audit from the
store and run it in a process of its own (forked from a forkserver that has
the library imported, so starting one costs milliseconds): an audit that
crashes, exhausts memory or outlives ``audit_timeout`` takes down only its
own process and ends ``failed`` with that reason, and the HTTP server keeps
the interpreter lock to itself. ``executor="thread"`` runs audits in the
dispatcher thread instead (tests). Every claimed audit ends ``done`` or
``failed`` with a one-line reason; one that was running when the server
stopped is found by :meth:`Store.recover` at the next start. Audit processes
watch their parent and exit when the server is gone, even after SIGKILL.
"""

from __future__ import annotations

import logging
import os
import shlex
import threading
from pathlib import Path
from typing import Any

from audit.api import audit_splits
from audit.config import find_config, load_options
from audit.errors import BidsauditError
from audit.service.db import transient
from audit.service.security import PathRefused, _within, check_links
from audit.service.store import AuditRecord, Store

__all__ = ["WorkerPool", "run_audit"]

log = logging.getLogger("bidsaudit.service")


def _watch_parent(parent: int) -> None:
    """In a worker process: exit as soon as the server that started it is gone (even after SIGKILL)."""
    import time

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(1)
            time.sleep(0.5)

    threading.Thread(target=watch, name="bidsaudit-parent-watch", daemon=True).start()


def run_audit(job: dict[str, Any]) -> dict[str, Any]:
    """Run one audit (in a worker process or thread) and return the JSON result as a dict.

    Raises the library's :class:`~audit.errors.BidsauditError` for bad input, and
    :class:`~audit.service.security.PathRefused` for a link out of the roots.
    """
    roots = tuple(Path(r) for r in job["roots"])
    opts = dict(job["options"])
    dataset = Path(job["dataset_path"]) if job.get("dataset_path") else None
    splits = Path(job["splits_path"])
    for path in (dataset, splits, opts.get("pretrain")):
        if path is not None:
            check_links(Path(path), roots + tuple(Path(r) for r in job.get("extra_roots", ())))
    config_path = opts.pop("config", None)
    if config_path is None and job.get("source") == "paths":
        found = find_config(dataset, splits)
        if found is not None:
            if _within(Path(os.path.realpath(found[0])), roots) is not None:
                config_path = str(found[0])
            else:
                log.info("audit %s: ignoring %s (outside the roots)", job.get("id"), found[0])
    if config_path is not None and _within(Path(os.path.realpath(config_path)), roots) is None:
        raise PathRefused("config: outside the server's roots")
    validator_config = opts.get("validator_config")
    options, notes = load_options(None, None, Path(config_path) if config_path else None,
                           label=opts.get("label"), site=opts.get("site"), group=opts.get("group"),
                           pretrain=opts.get("pretrain"), id_pattern=opts.get("id_pattern"),
                           path_column=opts.get("path_column"),
                           ignore_nifti_headers=bool(opts.get("ignore_nifti_headers")),
                           validator_config=Path(validator_config) if validator_config else None,
                           run_validator=not opts.get("no_validator"), workers=job.get("image_workers") or 1,
                           scheduler=job.get("scheduler"))
    for note in notes:
        log.info("audit %s: %s", job.get("id"), note)
    result = audit_splits(dataset, splits, options).to_dict()  # type: ignore[arg-type]
    reproduce = result.get("reproduce") or {}
    reproduce["command_line"] = cli_equivalent(job)
    result["reproduce"] = reproduce
    return result


def cli_equivalent(job: dict[str, Any]) -> str:
    """The ``bidsaudit audit`` command that repeats this audit on the server's machine."""
    opts = job["options"]
    argv = ["bidsaudit", "audit"]
    if job.get("dataset_path"):
        argv.append(job["dataset_path"])
    argv += ["--splits", job["splits_path"]]
    for key in ("label", "site", "group", "pretrain", "id_pattern", "path_column", "validator_config", "config"):
        if opts.get(key):
            argv += ["--" + key.replace("_", "-"), str(opts[key])]
    for key in ("ignore_nifti_headers", "no_validator"):
        if opts.get(key):
            argv.append("--" + key.replace("_", "-"))
    return shlex.join(argv)


def describe_error(err: BaseException) -> str:
    """One line for the audit's ``error`` field: the input error as the CLI would print it, no traceback."""
    if isinstance(err, (BidsauditError, PathRefused, _ChildError)):
        return str(err)
    if isinstance(err, RecursionError):
        return "input nested too deeply (a symbolic-link loop?)"
    return f"internal error: {type(err).__name__}: {err}"


class AuditAborted(Exception):
    """An audit's process died or ran out of time (the message says which)."""


class Stopping(Exception):
    """The server is stopping: the audit stays ``running`` and is recovered at the next start."""


PRELOAD = ["audit.service.worker", "audit.service.warmup", "audit.api", "audit.checks", "audit.splits", "audit.bidsindex", "audit.config"]


def _child(job: dict[str, Any], conn: Any) -> None:
    """In the audit's own process: run it and send back ("ok", result) or ("error", message, expected)."""
    _watch_parent(os.getppid())
    try:
        conn.send(("ok", run_audit(job)))
    except BaseException as err:  # noqa: BLE001 - reported to the parent as one line
        conn.send(("error", describe_error(err), _expected(err)))
    finally:
        conn.close()


def new_owner() -> str:
    """This server's name in the ``owner`` column: ``host:pid:nonce``."""
    import socket
    import uuid

    return f"{socket.gethostname()[:80]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_alive(owner: str) -> bool:
    """False when ``owner`` ran on this machine and is gone (its process exited, or its pool in this process
    stopped); True otherwise (for another machine, its lease decides)."""
    import socket

    parts = owner.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return False
    host, pid = parts[0], int(parts[1])
    if host != socket.gethostname()[:80]:
        return True
    if pid == os.getpid():
        return owner in _LIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_LIVE: set[str] = set()  # owners of the pools running in this process


class WorkerPool:
    def __init__(self, store: Store, *, roots: tuple[Path, ...], workers: int = 2, executor: str = "process",
                 poll_seconds: float = 0.5, extra_roots: tuple[Path, ...] = (),
                 audit_timeout: float | None = None, lease_seconds: float = 120.0,
                 max_attempts: int = 2, scheduler: str | None = None) -> None:
        self.owner = new_owner()
        self.scheduler = scheduler  # every audit's image pass runs on this Dask cluster when set
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self.store = store
        self.roots = roots
        self.extra_roots = extra_roots  # the upload folder: where uploaded split files live
        self.workers = max(1, workers)
        self.executor_kind = executor
        self.poll_seconds = poll_seconds
        self.audit_timeout = audit_timeout
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._children: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._claim_lock = threading.Lock()  # claims are made one at a time, so _in_hand is exact between them
        self._in_hand: set[str] = set()  # audits a dispatcher thread of this pool is running
        self._lost_claim = False  # a claim failed: its UPDATE may have committed without us hearing of it
        self._ctx: Any = None

    @property
    def running(self) -> set[str]:
        with self._lock:
            return set(self._children)

    def recover(self) -> dict[str, int]:
        """Re-queue (or fail) audits whose server is gone; audits of live servers sharing the database stay."""
        return self.store.recover(self.max_attempts, lease_seconds=self.lease_seconds, owner_alive=owner_alive)

    def start(self) -> None:
        _LIVE.add(self.owner)
        for i in range(self.workers):
            t = threading.Thread(target=self._loop, name=f"bidsaudit-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        t = threading.Thread(target=self._heartbeat, name="bidsaudit-heartbeat", daemon=True)
        t.start()
        self._threads.append(t)

    def _heartbeat(self) -> None:
        """Renew this server's leases; now and then take over the audits of a server that is gone."""
        import time

        last_recovery = time.monotonic()
        while not self._stop.wait(self.lease_seconds / 4):
            try:
                self.store.heartbeat(self.owner)
                if self.orphans():
                    self.wake()
                if time.monotonic() - last_recovery > self.lease_seconds / 2:
                    last_recovery = time.monotonic()
                    if any(self.recover()[k] for k in ("requeued", "failed")):
                        self.wake()
            except Exception:  # a database hiccup: try again at the next beat
                log.warning("heartbeat failed", exc_info=True)

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop claiming and kill the audits' processes; their audits stay ``running`` and are re-run at the next start."""
        self._stop.set()
        self._wake.set()
        _LIVE.discard(self.owner)
        with self._lock:
            children = list(self._children.values())
        for proc in children:
            if proc is not None and proc.is_alive():
                proc.kill()
        for t in self._threads:
            t.join(timeout)

    def _context(self) -> Any:
        with self._lock:
            if self._ctx is None:
                import multiprocessing

                method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
                self._ctx = multiprocessing.get_context(method)
                if method == "forkserver":  # each audit forks from a process with the library imported
                    self._ctx.set_forkserver_preload(PRELOAD)
            return self._ctx

    def orphans(self) -> list[str]:
        """Audits the database says this pool runs but no thread of it holds: a claim whose answer was lost, or
        an outcome the database lost (a commit acknowledged, then gone in a crash). The next claims adopt them."""
        with self._claim_lock:
            mine = self.store.running_of(self.owner)
            with self._lock:
                found = [i for i in mine if i not in self._in_hand]
            if found:
                self._lost_claim = True
            return found

    def claim(self) -> AuditRecord | None:
        """The next audit for this pool to run, added to ``_in_hand``; None when there is none.

        After a failed claim (the database restarted, the connection dropped at COMMIT) the claim may have
        been recorded without this pool hearing of it: the audits the database says this pool runs but no
        thread holds are taken first (adopted), so none stays ``running`` for ever and none runs twice.
        """
        with self._claim_lock:
            try:
                if self._lost_claim:
                    mine = self.store.running_of(self.owner)
                    with self._lock:
                        orphans = [i for i in mine if i not in self._in_hand]
                    if orphans:
                        record = self.store.get(orphans[0])
                        if record is not None:
                            log.warning("audit %s: claimed before a database error; running it now", record.id)
                            with self._lock:
                                self._in_hand.add(record.id)
                            return record
                    self._lost_claim = False
                record = self.store.claim_next(self.owner)
            except Exception:  # a database hiccup: log, wait, retry
                self._lost_claim = True
                log.warning("claiming an audit failed; retrying", exc_info=True)
                return None
            if record is not None:
                with self._lock:
                    self._in_hand.add(record.id)
            return record

    def _loop(self) -> None:
        while not self._stop.is_set():
            record = self.claim()
            if record is None:
                self._wake.wait(self.poll_seconds)
                self._wake.clear()
                continue
            try:
                self.run_one(record)
            except Exception:  # the thread must outlive anything; the audit is recovered at the next start
                log.exception("audit %s: could not record its outcome", record.id)
            finally:
                with self._lock:
                    self._in_hand.discard(record.id)

    def job(self, record: AuditRecord) -> dict[str, Any]:
        return {"id": record.id, "dataset_path": record.dataset_path, "splits_path": record.splits_path,
                "options": record.options, "source": record.source, "roots": [str(r) for r in self.roots],
                "extra_roots": [str(r) for r in self.extra_roots], "scheduler": self.scheduler}

    def run_one(self, record: AuditRecord) -> None:
        """Run a claimed audit to ``done`` or ``failed`` (or leave it ``running`` when the server stops)."""
        job = self.job(record)
        try:
            result = run_audit(job) if self.executor_kind == "thread" else self._in_process(record.id, job)
        except Stopping:
            return
        except AuditAborted as err:
            log.warning("audit %s aborted: %s", record.id, err)
            self._record(self.store.fail, record.id, str(err))
        except Exception as err:  # every claimed audit ends done or failed
            log.info("audit %s failed: %s", record.id, describe_error(err), exc_info=not _expected(err))
            self._record(self.store.fail, record.id, describe_error(err))
        else:
            self._record(self.store.finish, record.id, result)

    def _record(self, write: Any, audit_id: str, value: Any, tries: int = 5) -> None:
        """Store an outcome, retrying through a database hiccup.

        A lost connection (the database restarting) is retried every 0.5 to 5 s for up to ``lease_seconds``
        (at least 10 minutes); any other error ``tries`` times (1, 2, 4, 8 s apart). A retried write whose
        first try did commit finds the audit already closed: the outcome is stored once.
        """
        import time

        give_up = time.monotonic() + max(600.0, self.lease_seconds)
        attempt = 0
        while True:
            try:
                if not write(audit_id, value, owner=self.owner):
                    record = self.store.get(audit_id)
                    if record is None or record.status == "running" or attempt == 0:
                        log.warning("audit %s: not recorded (no longer running here: its lease was taken over)",
                                    audit_id)
                return
            except Exception as err:
                attempt += 1
                if self._stop.is_set():
                    raise
                if transient(err):
                    if time.monotonic() > give_up:
                        raise
                    log.warning("audit %s: the database is unreachable; retrying", audit_id)
                    time.sleep(min(5.0, 0.5 * 2 ** min(attempt, 4)))
                    continue
                if attempt >= tries:
                    raise
                log.warning("audit %s: storing its outcome failed; retrying", audit_id, exc_info=True)
                time.sleep(2 ** (attempt - 1))

    def _in_process(self, audit_id: str, job: dict[str, Any]) -> dict[str, Any]:
        import time

        ctx = self._context()
        receive, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_child, args=(job, send), name=f"bidsaudit-audit-{audit_id[:8]}", daemon=True)
        with self._lock:
            if self._stop.is_set():
                raise Stopping()
            self._children[audit_id] = proc
            proc.start()
        send.close()
        deadline = time.monotonic() + self.audit_timeout if self.audit_timeout else None
        try:
            while True:
                if self._stop.is_set():
                    raise Stopping()
                if deadline is not None and time.monotonic() > deadline:
                    raise AuditAborted(f"stopped after {self.audit_timeout:g} s (the server's --audit-timeout); "
                                       "the audit was not finished")
                wait = 0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic()))
                try:
                    if receive.poll(wait):
                        message = receive.recv()
                        break
                except (EOFError, OSError):
                    proc.join(5)
                    raise AuditAborted(f"the audit's process died (exit code {proc.exitcode}: killed, or out of "
                                       "memory?); the audit was not finished") from None
            if message[0] == "ok":
                return message[1]  # type: ignore[no-any-return]
            raise _ChildError(message[1], message[2])
        finally:
            receive.close()
            if proc.is_alive():
                proc.join(2)
                if proc.is_alive():
                    proc.kill()
            proc.join(5)
            with self._lock:
                self._children.pop(audit_id, None)


class _ChildError(Exception):
    """The child's own one-line description of why its audit failed."""

    def __init__(self, message: str, expected: bool) -> None:
        super().__init__(message)
        self.expected = expected


def _expected(err: BaseException) -> bool:
    if isinstance(err, _ChildError):
        return err.expected
    return isinstance(err, (BidsauditError, PathRefused))
