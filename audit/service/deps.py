"""FastAPI dependencies shared by the JSON API and the pages: access checks, the audit asked for, uploads."""

from __future__ import annotations

import re

from fastapi import HTTPException, Request
from starlette.datastructures import UploadFile

from audit.service.limits import BodyTooLarge
from audit.service.security import bearer, token_roles
from audit.service.settings import Settings
from audit.service.store import AuditRecord

__all__ = ["ID_PATTERN", "TOKEN_COOKIE", "get_record", "read_upload", "require_read", "require_write", "require_admin",
           "require_role"]

ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")
TOKEN_COOKIE = "bidsaudit_token"


def _roles_of(request: Request, given: str | None) -> frozenset[str] | None:
    return token_roles(given, request.app.state.settings.token_roles)


def require_role(request: Request, role: str, token: str | None = None, *, cookie: bool = False) -> None:
    """A valid token (given, or as a bearer header; the sign-in cookie when ``cookie``) with ``role``: 401 without
    a valid token, 403 with one that lacks the role."""
    settings: Settings = request.app.state.settings
    given = token or bearer(request.headers.get("authorization")) or (
        request.cookies.get(TOKEN_COOKIE) if cookie else None)
    if not settings.tokens:
        raise HTTPException(401, "this server accepts no submissions: it was started without a token "
                                 "(set BIDSAUDIT_TOKEN or --tokens-file)", headers={"WWW-Authenticate": "Bearer"})
    roles = _roles_of(request, given)
    if roles is None:
        raise HTTPException(401, "wrong token" if given else "missing token: send Authorization: Bearer TOKEN",
                            headers={"WWW-Authenticate": "Bearer"})
    if role not in roles:
        raise HTTPException(403, f"this token may not {_VERB[role]} (its roles: {', '.join(sorted(roles))}; "
                                 f"needed: {role})")


_VERB = {"read": "read results", "submit": "submit audits", "admin": "administer the server"}


def require_write(request: Request, token: str | None = None) -> None:
    """A valid token with the ``submit`` role (given, or as a bearer header); 401/403 otherwise."""
    given = token or bearer(request.headers.get("authorization"))
    require_role(request, "submit", token=given or "")


def require_admin(request: Request) -> None:
    """A valid token with the ``admin`` role."""
    require_role(request, "admin")


def require_read(request: Request) -> None:
    """Reading needs a token with the ``read`` role only on a --private server (bearer header or the sign-in
    cookie)."""
    settings: Settings = request.app.state.settings
    if settings.public_read:
        return
    given = bearer(request.headers.get("authorization")) or request.cookies.get(TOKEN_COOKIE)
    roles = _roles_of(request, given)
    if roles is None:
        raise HTTPException(401, "this server's pages and results need a token (a bearer header, or sign in "
                                 "at /login)", headers={"WWW-Authenticate": "Bearer"})
    if "read" not in roles:
        raise HTTPException(403, f"this token may not read results (its roles: {', '.join(sorted(roles))})")


def get_record(request: Request, audit_id: str) -> AuditRecord:
    """The audit of that id, or 404."""
    if not ID_PATTERN.match(audit_id):
        raise HTTPException(404, "no such audit")
    record = request.app.state.store.get(audit_id)
    if record is None:
        raise HTTPException(404, "no such audit")
    return record


async def read_upload(request: Request) -> tuple[list[tuple[str, bytes]], dict[str, str]]:
    """Files and fields of a multipart body, within the server's limits (413/411/422, never 500)."""
    settings: Settings = request.app.state.settings
    length = request.headers.get("content-length")
    if length is None:
        raise HTTPException(411, "uploads need a Content-Length")
    try:
        n = int(length)
    except ValueError:
        raise HTTPException(400, "Content-Length is not a number") from None
    if n > settings.max_total_bytes + 64 * 1024 + 1024 * settings.max_files:
        raise HTTPException(413, f"request body of {n} bytes; uploads total at most {settings.max_total_bytes} bytes")
    try:
        form = await request.form(max_files=settings.max_files + 1, max_fields=20, max_part_size=64 * 1024)
    except BodyTooLarge:
        raise
    except Exception as err:  # starlette's MultiPartException and parser errors
        text = str(getattr(err, "message", "") or err) or "malformed multipart body"
        status = 413 if "Too many files" in text else 422
        raise HTTPException(status, f"upload: {text}") from None
    files: list[tuple[str, bytes]] = []
    fields: dict[str, str] = {}
    try:  # a refused part must not leave the others' spooled files open (found by the fuzzing)
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                if key != "files":
                    raise HTTPException(422, f"unknown upload field '{key}': send split files as 'files'")
                archive = (value.filename or "").lower().endswith(".zip")  # one archive may hold all the upload
                data = await value.read((settings.max_total_bytes if archive else settings.max_file_bytes) + 1)
                files.append((value.filename or "", data))
            elif key in ("label", "site", "group", "name", "id_pattern", "path_column", "csrf", "token"):
                fields[key] = value
            else:
                raise HTTPException(422, f"unknown field '{key}': expected files, label, site, group, name, "
                                         "id_pattern or path_column")
    finally:
        await form.close()
    return files, fields
