"""SQLAlchemy models and the engine: SQLite (WAL) by default, PostgreSQL for shared deployments.

The schema is created and upgraded by Alembic (``migrations/``), never by
``metadata.create_all``; a test checks that the migrations produce exactly
these models.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, Index, Integer, String, Text, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = ["Base", "AuditRow", "make_engine", "normalise_url", "upgrade", "utcnow", "DatabaseError", "transient"]


class DatabaseError(Exception):
    """The database cannot be reached or set up (``serve`` exits 2 with this message)."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Base(DeclarativeBase):
    pass


class AuditRow(Base):
    """One submitted audit, from queued to done or failed."""

    __tablename__ = "audits"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), nullable=False)  # queued, running, done, failed
    dataset: Mapped[str] = mapped_column(String(512), nullable=False)  # history key: root-relative path or name
    dataset_path: Mapped[str | None] = mapped_column(Text)  # resolved path under a root; None for uploads
    splits_path: Mapped[str] = mapped_column(Text, nullable=False)
    source: Mapped[str] = mapped_column(String(16), nullable=False)  # "paths" or "upload"
    options: Mapped[str] = mapped_column(Text, nullable=False)  # JSON of the audit options
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    verdict: Mapped[str | None] = mapped_column(String(8))  # pass / fail, once done
    readiness_level: Mapped[str | None] = mapped_column(String(16))
    errors: Mapped[int | None] = mapped_column(Integer)
    warnings: Mapped[int | None] = mapped_column(Integer)
    infos: Mapped[int | None] = mapped_column(Integer)
    result: Mapped[str | None] = mapped_column(Text)  # the contract's JSON result
    error: Mapped[str | None] = mapped_column(Text)  # why it failed
    note: Mapped[str | None] = mapped_column(Text)  # e.g. "re-run after a server restart"
    owner: Mapped[str | None] = mapped_column(String(128))  # the server running it: "host:pid:nonce"
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))  # renewed while it runs

    __table_args__ = (
        Index("ix_audits_status_created", "status", "created_at"),
        Index("ix_audits_dataset_created", "dataset", "created_at"),
    )


def normalise_url(url: str) -> str:
    """``postgresql://`` means psycopg 3; ``sqlite:///file`` stays as it is."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and foreign keys."""
    url = normalise_url(url)
    if not url.startswith(("sqlite:///", "postgresql+psycopg://")):
        raise DatabaseError(f"unsupported database URL {url.split('://', 1)[0]}://...: expected "
                            "sqlite:///FILE or postgresql://USER@HOST[:PORT]/DB")
    kwargs: dict[str, Any] = {"future": True}
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if path and path != ":memory:":
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise DatabaseError(f"cannot create the folder of {path}: {err.strerror}") from None
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
    elif url.startswith("postgresql"):
        kwargs["connect_args"] = {"connect_timeout": 5}
        kwargs["pool_pre_ping"] = True
    try:
        engine = create_engine(url, **kwargs)
    except Exception as err:  # a malformed URL, a missing driver
        raise DatabaseError(f"cannot use the database URL: {type(err).__name__}: {err}") from None
    if url.startswith("sqlite"):
        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()
    return engine


def transient(err: BaseException) -> bool:
    """True for an error that a retry may cure: the connection was lost or refused (a database restarting),
    a SQLite database locked."""
    from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError

    if isinstance(err, (OperationalError, InterfaceError, DisconnectionError)):
        return True
    return isinstance(err, DBAPIError) and bool(err.connection_invalidated)


def alembic_config(engine: Engine) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    return cfg


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest migration (creates it on an empty database)."""
    from alembic import command
    from sqlalchemy.exc import SQLAlchemyError

    cfg = alembic_config(engine)
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    except SQLAlchemyError as err:
        raise DatabaseError(f"cannot reach or set up the database {engine.url.render_as_string()}: "
                            f"{_first_line(err)}") from None


def _first_line(err: BaseException) -> str:
    text = str(getattr(err, "orig", None) or err)
    return text.strip().splitlines()[0] if text.strip() else type(err).__name__
