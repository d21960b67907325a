"""The service's configuration: one frozen dataclass built by ``bidsaudit serve`` or by tests."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from audit.errors import InputError, did_you_mean

__all__ = ["Settings", "default_state_dir", "TOKEN_ENV", "read_tokens_file", "require_service_extra",
           "SERVICE_MODULES", "parse_size", "ROLES", "DEFAULT_ROLES", "expand_roles"]

#: What each role grants (a role implies the ones it lists).
ROLES = {"read": ("read",), "submit": ("submit", "read"), "admin": ("admin", "submit", "read")}
#: The roles of a token written without any (the format before roles: such a token could submit and read).
DEFAULT_ROLES = frozenset({"submit", "read"})


def expand_roles(names: Iterable[str]) -> frozenset[str]:
    """The roles ``names`` grant, implied ones included.

    >>> sorted(expand_roles(["submit"]))
    ['read', 'submit']
    """
    return frozenset(r for name in names for r in ROLES[name])


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
    #: token -> roles; a plain set of tokens gives each the DEFAULT_ROLES (read, submit). Normalised to a
    #: read-only mapping of token -> roles (implied roles included).
    tokens: frozenset[str] | Mapping[str, Iterable[str]] = frozenset()
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
    max_json_bytes: int = 64 * 1024  # a JSON or form body (not an upload)
    # Rate limits, requests a minute (0: off), each a token bucket holding `rate_burst_seconds` of requests;
    # per process (several server processes each allow this much).
    rate_per_address: float = 600.0
    rate_per_token: float = 600.0
    rate_burst_seconds: float = 10.0
    # Retention (None: keep forever): finished audits older than this lose their result and uploaded files,
    # and the oldest finished ones do too while results and uploads together exceed `retention_bytes`.
    retention_days: float | None = None
    retention_bytes: int | None = None
    retention_interval: float = 3600.0  # seconds between two clean-ups (also on demand: POST /api/admin/cleanup)
    secure_cookies: bool = False  # served over TLS: cookies get the Secure flag

    def __post_init__(self) -> None:
        object.__setattr__(self, "roots", tuple(Path(os.path.realpath(r)) for r in self.roots))
        object.__setattr__(self, "state_dir", Path(self.state_dir))
        if isinstance(self.tokens, Mapping):
            roles = {t: expand_roles(r) for t, r in self.tokens.items()}
        else:
            roles = {t: DEFAULT_ROLES for t in self.tokens}
        object.__setattr__(self, "tokens", MappingProxyType(roles))

    @property
    def token_roles(self) -> Mapping[str, frozenset[str]]:
        """token -> its roles (implied ones included)."""
        return self.tokens  # type: ignore[return-value]

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.state_dir / 'bidsaudit.sqlite'}"

    @property
    def upload_dir(self) -> Path:
        return self.state_dir / "uploads"


def read_tokens_file(path: Path) -> dict[str, frozenset[str]]:
    """Tokens and their roles, one a line: ``[name:]token [role,role...]``.

    ``#`` starts a comment; blank lines are ignored. Roles are ``read``,
    ``submit`` and ``admin`` (each implies the ones before it); a line without
    roles (the format before roles existed) gives ``read`` and ``submit``.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(path, f"cannot read ({getattr(err, 'strerror', None) or err})", field="--tokens-file",
                         expected="a file of tokens, one a line") from None
    tokens: dict[str, frozenset[str]] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        if len(words) > 2:
            raise InputError(path, f"{len(words)} words", line=number,
                             expected="[name:]token, then optionally roles separated by commas (read,submit,admin)")
        first = words[0]
        token = first.split(":", 1)[1].strip() if ":" in first else first
        if len(token) < 16:
            raise InputError(path, "token too short", line=number, expected="at least 16 characters")
        names = [r for r in words[1].lower().split(",") if r] if len(words) == 2 else list(DEFAULT_ROLES)
        for role in names:
            if role not in ROLES:
                raise InputError(path, line=number, field="roles", got=repr(role),
                                 expected=f"read, submit or admin{did_you_mean(role, ROLES)}")
        if token in tokens:
            raise InputError(path, "the same token twice", line=number, expected="each token once")
        tokens[token] = expand_roles(names)
    return tokens


def parse_size(text: str, field: str) -> int:
    """Bytes of ``500M``, ``20G``, ``1.5T`` or a plain number of bytes.

    >>> parse_size("500M", "--retention-size"), parse_size("2k", "--retention-size")
    (524288000, 2048)
    """
    import re

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)[bB]?\s*", text or "")
    if not m:
        raise InputError(None, field=field, got=repr(text), expected="a size such as 500M, 20G or 1000000")
    return int(float(m.group(1)) * 1024 ** " KMGT".index(m.group(2).upper() or " "))


#: What ``bidsaudit serve`` imports (modules -> the distribution that provides them; any one module will do).
SERVICE_MODULES = {("fastapi",): "fastapi", ("uvicorn",): "uvicorn", ("sqlalchemy",): "sqlalchemy",
                   ("alembic",): "alembic", ("python_multipart", "multipart"): "python-multipart"}


def require_service_extra(database_url: str | None = None) -> None:
    """Raise :class:`InputError` (exit 2) naming the ``service`` extra when one of its packages is missing."""
    import importlib
    import warnings

    modules = dict(SERVICE_MODULES)
    if database_url and database_url.startswith(("postgresql", "postgres:")):
        modules[("psycopg",)] = "psycopg"
    missing = []
    for names, dist in modules.items():
        for name in names:
            try:
                with warnings.catch_warnings():  # python-multipart < 0.0.13 is only importable as `multipart`
                    warnings.simplefilter("ignore")
                    importlib.import_module(name)
                break
            except ImportError:
                continue
        else:
            missing.append(dist)
    if missing:
        raise InputError(None, f"bidsaudit serve needs the 'service' extra (missing: {', '.join(missing)}); "
                               "install it with: pip install 'bidsaudit[service]'")
