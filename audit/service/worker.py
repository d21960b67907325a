"""The bounded pool that runs queued audits.

``workers`` dispatcher threads each claim the oldest queued audit from the
store and run it, in a process of a spawn-started process pool (default:
an audit that exhausts memory or crashes takes down only its process, and
the HTTP server keeps the interpreter lock to itself) or in the thread itself
(``executor="thread"``, for tests). Every claimed audit ends ``done`` or
``failed`` with a one-line reason; one that was running when the server
stopped is found by :meth:`Store.recover` at the next start.
"""

from __future__ import annotations

import logging
import os
import shlex
import threading
from concurrent.futures import CancelledError, Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

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
    from audit.api import audit_splits
    from audit.cli import load_options
    from audit.config import find_config
    from audit.service.security import PathRefused, _within, check_links

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
    options = load_options(None, None, Path(config_path) if config_path else None,
                           label=opts.get("label"), site=opts.get("site"), group=opts.get("group"),
                           pretrain=opts.get("pretrain"),
                           ignore_nifti_headers=bool(opts.get("ignore_nifti_headers")),
                           validator_config=Path(validator_config) if validator_config else None,
                           run_validator=not opts.get("no_validator"), workers=job.get("image_workers") or 1)
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
    for key in ("label", "site", "group", "pretrain", "validator_config", "config"):
        if opts.get(key):
            argv += ["--" + key.replace("_", "-"), str(opts[key])]
    for key in ("ignore_nifti_headers", "no_validator"):
        if opts.get(key):
            argv.append("--" + key.replace("_", "-"))
    return shlex.join(argv)


def describe_error(err: BaseException) -> str:
    """One line for the audit's ``error`` field: the input error as the CLI would print it, no traceback."""
    from audit.errors import BidsauditError
    from audit.service.security import PathRefused

    if isinstance(err, (BidsauditError, PathRefused)):
        return str(err)
    if isinstance(err, BrokenProcessPool):
        return "the audit's worker process died (out of memory, or killed); the audit was not finished"
    if isinstance(err, RecursionError):
        return "input nested too deeply (a symbolic-link loop?)"
    return f"internal error: {type(err).__name__}: {err}"


class WorkerPool:
    def __init__(self, store: Store, *, roots: tuple[Path, ...], workers: int = 2, executor: str = "process",
                 poll_seconds: float = 0.5, extra_roots: tuple[Path, ...] = ()) -> None:
        self.store = store
        self.roots = roots
        self.extra_roots = extra_roots  # the upload folder: where uploaded split files live
        self.workers = max(1, workers)
        self.executor_kind = executor
        self.poll_seconds = poll_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._pool: Executor | None = None
        self._pool_lock = threading.Lock()
        self.running: set[str] = set()

    def start(self) -> None:
        for i in range(self.workers):
            t = threading.Thread(target=self._loop, name=f"bidsaudit-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop claiming; audits still running stay ``running`` and are recovered at the next start."""
        self._stop.set()
        self._wake.set()
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            _terminate(pool)
        for t in self._threads:
            t.join(timeout)

    def _executor(self) -> Executor:
        with self._pool_lock:
            if self._stop.is_set():
                raise RuntimeError("the worker pool is stopping")
            if self._pool is None:
                import multiprocessing

                self._pool = ProcessPoolExecutor(max_workers=self.workers,
                                                 mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=_watch_parent, initargs=(os.getpid(),))
            return self._pool

    def _drop_broken(self, pool: Executor) -> None:
        with self._pool_lock:
            if self._pool is pool:
                self._pool = None
        _terminate(pool)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                record = self.store.claim_next()
            except Exception:  # a database hiccup: log, wait, retry
                log.exception("claiming an audit failed")
                record = None
            if record is None:
                self._wake.wait(self.poll_seconds)
                self._wake.clear()
                continue
            self.run_one(record)

    def job(self, record: AuditRecord) -> dict[str, Any]:
        return {"id": record.id, "dataset_path": record.dataset_path, "splits_path": record.splits_path,
                "options": record.options, "source": record.source, "roots": [str(r) for r in self.roots],
                "extra_roots": [str(r) for r in self.extra_roots]}

    def run_one(self, record: AuditRecord) -> None:
        job = self.job(record)
        self.running.add(record.id)
        try:
            if self.executor_kind == "thread":
                result = run_audit(job)
            else:
                pool = self._executor()
                try:
                    result = pool.submit(run_audit, job).result()
                except BrokenProcessPool:
                    self._drop_broken(pool)
                    raise
        except BaseException as err:  # every claimed audit ends done or failed
            if self._stop.is_set() and isinstance(err, (BrokenProcessPool, RuntimeError, CancelledError)):
                return  # stopping: leave it running, recovered (re-run) at the next start
            log.info("audit %s failed: %s", record.id, describe_error(err), exc_info=not _expected(err))
            self.store.fail(record.id, describe_error(err))
            if not isinstance(err, Exception):
                raise
        else:
            self.store.finish(record.id, result)
        finally:
            self.running.discard(record.id)


def _terminate(pool: Executor) -> None:
    """Stop a process pool now: audits still running are abandoned (recovered at the next start)."""
    processes = list((getattr(pool, "_processes", None) or {}).values()) if isinstance(pool, ProcessPoolExecutor) else []
    for proc in processes:
        if proc.is_alive():
            proc.terminate()
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in processes:
        proc.join(5)


def _expected(err: BaseException) -> bool:
    from audit.errors import BidsauditError
    from audit.service.security import PathRefused

    return isinstance(err, (BidsauditError, PathRefused))
