"""Audit records (submit, claim, finish, fail, recover, list), one short transaction per call.

Claiming is an ``UPDATE ... WHERE status = 'queued'`` checked by its row
count, so two workers (or two server processes on one PostgreSQL database)
never run the same audit.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from audit.service.db import AuditRow, transient, utcnow

__all__ = ["Store", "AuditRecord", "STATUSES", "PRUNED_NOTE"]

STATUSES = ("queued", "running", "done", "failed")
#: The note of an audit whose result and uploads the retention policy removed.
PRUNED_NOTE = "result removed by the retention policy:"


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is not None and value.tzinfo is None:  # SQLite gives back naive UTC
        return value.replace(tzinfo=dt.timezone.utc)
    return value


def _iso(value: dt.datetime | None) -> str | None:
    value = _aware(value)
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


@dataclass(frozen=True)
class AuditRecord:
    id: str
    status: str
    dataset: str
    dataset_path: str | None
    splits_path: str
    source: str
    options: dict[str, Any]
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    attempts: int
    verdict: str | None
    readiness_level: str | None
    counts: dict[str, int] | None
    result: dict[str, Any] | None
    error: str | None
    note: str | None

    @classmethod
    def of(cls, row: AuditRow, *, with_result: bool = True) -> AuditRecord:
        counts = None
        if row.errors is not None:
            counts = {"error": row.errors, "warning": row.warnings or 0, "info": row.infos or 0}
        return cls(
            id=row.id, status=row.status, dataset=row.dataset, dataset_path=row.dataset_path,
            splits_path=row.splits_path, source=row.source, options=json.loads(row.options),
            created_at=_aware(row.created_at), started_at=_aware(row.started_at),  # type: ignore[arg-type]
            finished_at=_aware(row.finished_at), attempts=row.attempts, verdict=row.verdict,
            readiness_level=row.readiness_level, counts=counts,
            result=json.loads(row.result) if with_result and row.result else None,
            error=row.error, note=row.note,
        )

    def summary(self) -> dict[str, Any]:
        """The list view: everything but the result."""
        return {"id": self.id, "status": self.status, "dataset": self.dataset, "source": self.source,
                "created_at": _iso(self.created_at), "started_at": _iso(self.started_at),
                "finished_at": _iso(self.finished_at), "attempts": self.attempts, "verdict": self.verdict,
                "readiness_level": self.readiness_level, "counts": self.counts, "error": self.error,
                "note": self.note}

    def to_api(self) -> dict[str, Any]:
        """``GET /api/audits/{id}`` (the contract's shape, plus the list view's fields)."""
        out = self.summary()
        out["options"] = self.options
        out["result"] = self.result
        return out


class Store:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._session = sessionmaker(engine, expire_on_commit=False)

    def session(self) -> Session:
        return self._session()

    # -- writes ---------------------------------------------------------------------------------
    def submit(self, *, dataset: str, dataset_path: str | None, splits_path: str, source: str,
               options: dict[str, Any], audit_id: str | None = None) -> AuditRecord:
        """Queue an audit. Idempotent by id: a retry after a lost connection (or a client's repeated
        ``Idempotency-Key``) whose first insert committed gets that audit back, never a second one."""
        audit_id = audit_id or new_id()
        for attempt in range(5):
            row = AuditRow(id=audit_id, status="queued", dataset=dataset[:512], dataset_path=dataset_path,
                           splits_path=splits_path, source=source, options=json.dumps(options, sort_keys=True),
                           created_at=utcnow(), attempts=0)
            try:
                with self.session() as s, s.begin():
                    s.add(row)
                return AuditRecord.of(row)
            except IntegrityError:
                existing = self.get(audit_id)
                if existing is None:
                    raise
                return existing
            except Exception as err:
                if attempt == 4 or not transient(err):
                    raise
                time.sleep(0.5 * 2 ** attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def claim_next(self, owner: str = "") -> AuditRecord | None:
        """Mark the oldest queued audit running for ``owner`` and return it (None when the queue is empty)."""
        for _ in range(20):
            with self.session() as s, s.begin():
                candidate = s.scalar(select(AuditRow.id).where(AuditRow.status == "queued")
                                     .order_by(AuditRow.created_at, AuditRow.id).limit(1))
                if candidate is None:
                    return None
                now = utcnow()
                claimed = s.execute(
                    update(AuditRow).where(AuditRow.id == candidate, AuditRow.status == "queued")
                    .values(status="running", started_at=now, heartbeat_at=now, owner=owner,
                            attempts=AuditRow.attempts + 1)
                ).rowcount
            if claimed == 1:
                return self.get(candidate)
        return None

    def heartbeat(self, owner: str) -> int:
        """Renew the lease on every audit ``owner`` is running."""
        with self.session() as s, s.begin():
            return int(s.execute(update(AuditRow).where(AuditRow.status == "running", AuditRow.owner == owner)
                                 .values(heartbeat_at=utcnow())).rowcount)

    def finish(self, audit_id: str, result: dict[str, Any], owner: str | None = None) -> bool:
        counts = result.get("counts") or {}
        readiness = result.get("readiness") or {}
        values = dict(status="done", finished_at=utcnow(), result=json.dumps(result, allow_nan=False),
                      verdict=result.get("status"), readiness_level=readiness.get("level"),
                      errors=int(counts.get("error", 0)), warnings=int(counts.get("warning", 0)),
                      infos=int(counts.get("info", 0)), error=None)
        return self._close(audit_id, values, owner)

    def fail(self, audit_id: str, message: str, owner: str | None = None) -> bool:
        return self._close(audit_id, dict(status="failed", finished_at=utcnow(), error=message[:4000]), owner)

    def _close(self, audit_id: str, values: dict[str, Any], owner: str | None) -> bool:
        """Only the server that runs an audit may close it (not one whose lease was taken over)."""
        q = update(AuditRow).where(AuditRow.id == audit_id, AuditRow.status == "running")
        if owner is not None:
            q = q.where(AuditRow.owner == owner)
        with self.session() as s, s.begin():
            n = s.execute(q.values(**values)).rowcount
        return n == 1

    def recover(self, max_attempts: int, *, lease_seconds: float = 120.0,
                owner_alive: Callable[[str], bool] | None = None) -> dict[str, int]:
        """Audits left ``running`` by a server that is gone: queued again (a note says so), or failed with the
        reason after ``max_attempts`` runs.

        A server is gone when ``owner_alive(owner)`` says so (same machine, its process has exited) or when
        it has not renewed its lease for ``lease_seconds`` (another machine). Audits of live servers are
        left alone, so several servers can share one database.
        """
        alive = owner_alive or (lambda _owner: False)
        stale_before = utcnow() - dt.timedelta(seconds=lease_seconds)
        requeued = failed = 0
        with self.session() as s:
            rows = s.execute(select(AuditRow.id, AuditRow.owner, AuditRow.heartbeat_at, AuditRow.attempts)
                             .where(AuditRow.status == "running")).all()
        for audit_id, owner, beat, attempts in rows:
            beat = _aware(beat)
            if owner and alive(owner) and beat is not None and beat >= stale_before:
                continue
            guard = [AuditRow.id == audit_id, AuditRow.status == "running",
                     AuditRow.owner.is_(None) if owner is None else AuditRow.owner == owner]
            with self.session() as s, s.begin():
                if attempts < max_attempts:
                    requeued += s.execute(update(AuditRow).where(*guard).values(
                        status="queued", started_at=None, owner=None, heartbeat_at=None,
                        note="re-queued: the server running this audit stopped")).rowcount
                else:
                    failed += s.execute(update(AuditRow).where(*guard).values(
                        status="failed", finished_at=utcnow(),
                        error=f"interrupted: the server running this audit stopped, {attempts} times; "
                              "not retried again")).rowcount
        with self.session() as s:
            queued = s.scalar(select(func.count()).select_from(AuditRow).where(AuditRow.status == "queued"))
        return {"requeued": requeued, "failed": failed, "queued": int(queued or 0)}

    def running_of(self, owner: str) -> list[str]:
        """Ids of the audits ``owner`` holds ``running`` (a claim whose answer was lost is found here)."""
        with self.session() as s:
            return list(s.scalars(select(AuditRow.id).where(AuditRow.status == "running", AuditRow.owner == owner)
                                  .order_by(AuditRow.started_at, AuditRow.id)))

    def retained(self) -> list[tuple[str, str, dt.datetime, int]]:
        """Finished audits that still hold a result or uploads: (id, source, finished or created at, result
        bytes), oldest first."""
        at = func.coalesce(AuditRow.finished_at, AuditRow.created_at)
        with self.session() as s:
            rows = s.execute(select(AuditRow.id, AuditRow.source, at, func.coalesce(func.length(AuditRow.result), 0))
                             .where(AuditRow.status.in_(("done", "failed")),
                                    (AuditRow.result.is_not(None)) | (AuditRow.source == "upload"),
                                    AuditRow.note.is_(None) | ~AuditRow.note.like(f"{PRUNED_NOTE}%"))
                             .order_by(at, AuditRow.id)).all()
        return [(r[0], r[1], _aware(r[2]), int(r[3])) for r in rows]  # type: ignore[misc]

    def prune(self, audit_id: str, reason: str) -> bool:
        """Drop a finished audit's result (its verdict, counts and place in the history stay); a note says why."""
        with self.session() as s, s.begin():
            n = s.execute(update(AuditRow).where(AuditRow.id == audit_id, AuditRow.status.in_(("done", "failed")))
                          .values(result=None, note=f"{PRUNED_NOTE} {reason}"[:4000])).rowcount
        return n == 1

    # -- reads ----------------------------------------------------------------------------------
    def get(self, audit_id: str) -> AuditRecord | None:
        with self.session() as s:
            row = s.get(AuditRow, audit_id)
            return AuditRecord.of(row) if row is not None else None

    def list(self, *, dataset: str | None = None, status: str | None = None, since: dt.datetime | None = None,
             until: dt.datetime | None = None, limit: int = 100, offset: int = 0,
             oldest_first: bool = False) -> list[AuditRecord]:
        q = select(AuditRow).with_only_columns(*[c for c in AuditRow.__table__.c if c.name != "result"])
        if dataset is not None:
            q = q.where(AuditRow.dataset == dataset)
        if status is not None:
            q = q.where(AuditRow.status == status)
        if since is not None:
            q = q.where(AuditRow.created_at >= since)
        if until is not None:
            q = q.where(AuditRow.created_at < until)
        order = (AuditRow.created_at, AuditRow.id) if oldest_first else (AuditRow.created_at.desc(),
                                                                         AuditRow.id.desc())
        q = q.order_by(*order).limit(limit).offset(offset)
        with self.session() as s:
            rows = s.execute(q).all()
        out = []
        for r in rows:
            row = AuditRow(**{k: v for k, v in r._mapping.items()})
            out.append(AuditRecord.of(row, with_result=False))
        return out

    def datasets(self) -> list[dict[str, Any]]:
        """Every dataset with its number of audits and its latest finished audit."""
        with self.session() as s:
            counts = dict(s.execute(select(AuditRow.dataset, func.count()).group_by(AuditRow.dataset)).all())
            latest_at = (select(AuditRow.dataset, func.max(AuditRow.created_at).label("at"))
                         .where(AuditRow.status == "done").group_by(AuditRow.dataset).subquery())
            rows = s.execute(
                select(AuditRow.dataset, AuditRow.id, AuditRow.verdict, AuditRow.readiness_level, AuditRow.errors,
                       AuditRow.warnings, AuditRow.finished_at, AuditRow.created_at)
                .join(latest_at, (AuditRow.dataset == latest_at.c.dataset) & (AuditRow.created_at == latest_at.c.at))
                .where(AuditRow.status == "done")).all()
        latest = {r.dataset: r for r in rows}
        out = []
        for name in sorted(counts):
            r = latest.get(name)
            out.append({"dataset": name, "audits": int(counts[name]),
                        "latest": None if r is None else {
                            "id": r.id, "verdict": r.verdict, "readiness_level": r.readiness_level,
                            "errors": r.errors, "warnings": r.warnings, "finished_at": _iso(r.finished_at),
                            "created_at": _iso(r.created_at)}})
        return out

    def counts_by_status(self) -> dict[str, int]:
        with self.session() as s:
            rows = s.execute(select(AuditRow.status, func.count()).group_by(AuditRow.status)).all()
        return {status: int(n) for status, n in rows}


def new_id() -> str:
    return uuid.uuid4().hex
