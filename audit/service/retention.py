"""The retention policy: finished audits lose their result and uploaded files by age and by total size.

:func:`clean_up` is run by the server every ``retention_interval`` seconds
(a thread started with the workers) and on demand (``POST
/api/admin/cleanup``, admin role). An audit that is queued or running is
never touched. A pruned audit keeps its row (verdict, counts, readiness
level, its place in its dataset's history) with a note saying when and why
its result went; its report answers 410. Upload folders that belong to no
audit (a submission interrupted between the upload and its record) are
removed once they are an hour old.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import threading
from pathlib import Path
from typing import Any

from audit.service.db import utcnow
from audit.service.settings import Settings
from audit.service.store import Store

__all__ = ["clean_up", "RetentionTask", "folder_bytes", "ORPHAN_AGE_S"]

log = logging.getLogger("bidsaudit.service")

#: An upload folder that no audit names is removed after this many seconds.
ORPHAN_AGE_S = 3600.0


def folder_bytes(path: Path) -> int:
    """Bytes of the regular files under ``path`` (links not followed; 0 when it is gone)."""
    total = 0
    for folder, _dirs, files in os.walk(path, followlinks=False):
        for name in files:
            try:
                st = os.lstat(os.path.join(folder, name))
            except OSError:
                continue
            total += st.st_size
    return total


def clean_up(store: Store, settings: Settings, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """Apply the policy once; returns what it removed: ``{"pruned", "bytes_freed", "orphans", "kept_bytes"}``."""
    now = now or utcnow()
    uploads = settings.upload_dir
    entries = []  # (id, finished at, bytes held)
    for audit_id, source, at, result_bytes in store.retained():
        held = result_bytes + (folder_bytes(uploads / audit_id) if source == "upload" else 0)
        entries.append((audit_id, at, held))
    doomed: dict[str, str] = {}
    if settings.retention_days is not None:
        cutoff = now - dt.timedelta(days=settings.retention_days)
        for audit_id, at, _held in entries:
            if at < cutoff:
                doomed[audit_id] = f"finished more than {settings.retention_days:g} days ago"
    total = sum(held for audit_id, _at, held in entries if audit_id not in doomed)
    if settings.retention_bytes is not None:
        for audit_id, _at, held in entries:  # oldest first
            if total <= settings.retention_bytes:
                break
            if audit_id not in doomed:
                doomed[audit_id] = f"results and uploads over {settings.retention_bytes} bytes, oldest first"
                total -= held
    freed = 0
    pruned = 0
    held_by = {audit_id: held for audit_id, _at, held in entries}
    for audit_id, reason in doomed.items():
        stamp = now.strftime("%Y-%m-%d %H:%M UTC")
        if store.prune(audit_id, f"{reason} ({stamp})"):
            shutil.rmtree(uploads / audit_id, ignore_errors=True)
            pruned += 1
            freed += held_by[audit_id]
    orphans = _orphans(store, uploads, now)
    if pruned or orphans:
        log.info("retention: %d results removed (%d bytes), %d orphaned upload folders", pruned, freed, orphans)
    return {"pruned": pruned, "bytes_freed": freed, "orphans": orphans, "kept_bytes": total}


def _orphans(store: Store, uploads: Path, now: dt.datetime) -> int:
    """Remove upload folders older than :data:`ORPHAN_AGE_S` that no audit names."""
    try:
        names = [p for p in uploads.iterdir() if p.is_dir() and not p.is_symlink()]
    except OSError:
        return 0
    removed = 0
    for path in names:
        try:
            age = now.timestamp() - path.stat().st_mtime
        except OSError:
            continue
        if age > ORPHAN_AGE_S and store.get(path.name) is None:
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    return removed


class RetentionTask:
    """A daemon thread that runs :func:`clean_up` every ``settings.retention_interval`` seconds."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store, self.settings = store, settings
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last: dict[str, Any] | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="bidsaudit-retention", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.retention_interval):
            try:
                self.last = clean_up(self.store, self.settings)
            except Exception:  # a database hiccup: try again at the next interval
                log.warning("retention clean-up failed", exc_info=True)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
