"""The service's configuration: one frozen dataclass built by ``bidsaudit serve`` or by tests."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from audit.errors import InputError

__all__ = ["Settings", "default_state_dir", "TOKEN_ENV"]

TOKEN_ENV = "BIDSAUDIT_TOKEN"


def default_state_dir() -> Path:
    """``$BIDSAUDIT_STATE_DIR``, else ``$XDG_STATE_HOME/bidsaudit``, else ``~/.local/state/bidsaudit``."""
    if os.environ.get("BIDSAUDIT_STATE_DIR"):
        return Path(os.environ["BIDSAUDIT_STATE_DIR"])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "bidsaudit"


@dataclass(frozen=True)
class Settings:
    """What the server may read, where it keeps state, who may write.

    ``roots`` are resolved (symbolic links followed) once, here: every path a
    request names must resolve to a place under one of them.
    """

    roots: tuple[Path, ...] = ()
    state_dir: Path = field(default_factory=default_state_dir)
    database_url: str | None = None  # None: sqlite file in state_dir
    tokens: frozenset[str] = frozenset()
    public_read: bool = True
    workers: int = 2
    executor: str = "process"  # "process" (isolated, default) or "thread" (tests)
    allowed_hosts: tuple[str, ...] = ()  # Host headers accepted (empty: any); serve() fills it on loopback
    audit_timeout: float | None = None  # seconds; None: no limit
    scheduler: str | None = None  # a dask.distributed scheduler address for every audit's image pass
    lease_seconds: float = 120.0  # a server that has not renewed its audits' leases this long is gone
    max_attempts: int = 2  # an audit interrupted by a stop is re-run once, then marked failed
    max_file_bytes: int = 5 * 1024 * 1024
    max_files: int = 64
    max_archive_files: int = 2000  # split files in one uploaded zip archive (ClinicaDL folders hold hundreds)
    max_total_bytes: int = 20 * 1024 * 1024
    poll_seconds: float = 0.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "roots", tuple(Path(os.path.realpath(r)) for r in self.roots))
        object.__setattr__(self, "state_dir", Path(self.state_dir))

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.state_dir / 'bidsaudit.sqlite'}"

    @property
    def upload_dir(self) -> Path:
        return self.state_dir / "uploads"


def read_tokens_file(path: Path) -> frozenset[str]:
    """Tokens, one a line (``name:token`` or ``token``; ``#`` starts a comment; blank lines ignored)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise InputError(path, f"cannot read ({err.strerror})", field="--tokens-file",
                         expected="a file of tokens, one a line") from None
    tokens = set()
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        token = line.split(":", 1)[1].strip() if ":" in line else line
        if len(token) < 16:
            raise InputError(path, "token too short", line=number, expected="at least 16 characters")
        tokens.add(token)
    return frozenset(tokens)
