"""The FastAPI application: the JSON API (contract, "HTTP API") and the pages; ``serve()``.

Errors never carry a traceback: bad requests get a 4xx with a one-line
``detail``; anything unexpected is logged on the server and answered with a
plain 500 that says so.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from audit.errors import InputError
from audit.service.db import DatabaseError, make_engine, transient, upgrade
from audit.service.deps import get_record, read_upload, require_admin, require_read, require_write
from audit.service.limits import BodyLimitMiddleware, RateLimitMiddleware, SecurityHeadersMiddleware
from audit.service.pages import error_page, router
from audit.service.retention import RetentionTask, clean_up
from audit.service.security import bearer
from audit.service.settings import Settings
from audit.service.store import PRUNED_NOTE, STATUSES, Store
from audit.service.submission import (
    AuditRequest,
    SubmitError,
    submit_paths,
    submit_upload,
)
from audit.service.worker import WorkerPool
from reports.render import render_report

__all__ = ["create_app", "serve", "API_VERSION"]

log = logging.getLogger("bidsaudit.service")
API_VERSION = "1"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


_UPLOAD_SCHEMA = {
    "type": "object",
    "properties": {
        "files": {"type": "array", "items": {"type": "string", "format": "binary"},
                  "description": "split files: train.tsv, validation.tsv, test.tsv ..., one table with a "
                                 "'split' column, ClinicaDL split-N/ files (relative paths kept), splits_final.json "
                                 "or dataset.json, a MONAI datalist, image-path lists, or one .zip archive of any "
                                 "of these"},
        "label": {"type": "string"}, "site": {"type": "string"}, "group": {"type": "string"},
        "id_pattern": {"type": "string", "description": "participant id in image paths (a regular expression)"},
        "path_column": {"type": "string", "description": "the column (or datalist key) of image paths"},
        "name": {"type": "string", "description": "what the history lists this audit under (e.g. a paper)"},
    },
    "required": ["files"],
}


def _submit_openapi() -> dict[str, Any]:
    return {
        "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False, "schema": {"type": "string"},
                        "description": "the same key again (per token) returns the audit the first request queued"}],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/AuditRequest"}},
                "multipart/form-data": {"schema": _UPLOAD_SCHEMA},
            },
        },
        "responses": {
            "202": {"description": "queued", "content": {"application/json": {"schema": {
                "type": "object", "properties": {"id": {"type": "string"}, "status": {"const": "queued"}},
                "required": ["id", "status"]}}}},
            "401": {"description": "missing or wrong bearer token"},
            "403": {"description": "a path outside the server's roots, or a token without the submit role"},
            "409": {"description": "an upload with this Idempotency-Key is still being stored"},
            "411": {"description": "an upload without Content-Length"},
            "413": {"description": "an upload over the size or count limits"},
            "415": {"description": "neither JSON nor multipart"},
            "422": {"description": "malformed body, unknown option, not a BIDS dataset, unreadable split files"},
            "429": {"description": "over the rate limit of this address or token (see Retry-After)"},
            "503": {"description": "the database is unavailable for a moment (see Retry-After); with the same "
                                   "Idempotency-Key a retry never queues a second audit"},
        },
    }


def create_app(settings: Settings, store: Store | None = None, *, start_workers: bool = True) -> FastAPI:
    """The application; its lifespan opens the store, recovers interrupted audits and starts the workers."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        st = app.state.store
        owned = st is None
        if st is None:
            engine = make_engine(settings.db_url)
            upgrade(engine)
            st = app.state.store = Store(engine)
        settings.upload_dir.mkdir(parents=True, exist_ok=True)
        pool = WorkerPool(st, roots=settings.roots, workers=settings.workers, executor=settings.executor,
                          poll_seconds=settings.poll_seconds, audit_timeout=settings.audit_timeout,
                          extra_roots=(settings.upload_dir.resolve(),), lease_seconds=settings.lease_seconds,
                          max_attempts=settings.max_attempts, scheduler=settings.scheduler)
        recovered = pool.recover()
        if recovered["requeued"] or recovered["failed"]:
            log.warning("recovered after a stop: %(requeued)d audits queued again, %(failed)d marked failed",
                        recovered)
        app.state.pool = pool
        retention = app.state.retention = RetentionTask(st, settings)
        if start_workers:
            pool.start()
            retention.start()
        try:
            yield
        finally:
            retention.stop()
            pool.stop()
            if owned:
                st.engine.dispose()
                app.state.store = None

    app = FastAPI(title="bidsaudit", version=API_VERSION, lifespan=lifespan,
                  description="Submit audits of BIDS datasets and their splits; read results, reports and "
                              "each dataset's history.", docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.store = store
    app.state.pool = None
    _install_handlers(app)
    app.add_middleware(BodyLimitMiddleware, settings=settings)  # the last added runs first
    app.add_middleware(RateLimitMiddleware, settings=settings)
    if settings.allowed_hosts:  # a name rebound to 127.0.0.1 by another site gets 400, not our pages
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(settings.allowed_hosts))
    app.add_middleware(SecurityHeadersMiddleware)  # outermost: the limits' and host check's answers get them too
    _install_api(app)
    app.include_router(router)
    app.openapi_schema = None
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = original()
            schema.setdefault("components", {}).setdefault("schemas", {})["AuditRequest"] = \
                AuditRequest.model_json_schema(ref_template="#/components/schemas/{model}")
            schema["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


# -- errors ---------------------------------------------------------------------------------------
def _install_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if _wants_html(request):
            return error_page(request, exc.status_code, str(exc.detail))
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
                  for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    from sqlalchemy.exc import DBAPIError, DisconnectionError

    async def unavailable(request: Request, exc: Exception) -> Response:
        if not transient(exc):
            return await internal(request, exc)
        # the database restarting (or a SQLite file locked): nothing was half-done, the client may try again
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path,
                    str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        return JSONResponse({"detail": "the database is unavailable for a moment; retry"}, status_code=503,
                            headers={"Retry-After": "2"})

    app.add_exception_handler(DBAPIError, unavailable)
    app.add_exception_handler(DisconnectionError, unavailable)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> Response:
        log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"detail": "internal error; the server log has the details"}, status_code=500)


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith("/api/") and "text/html" in request.headers.get("accept", "")


# -- API ------------------------------------------------------------------------------------------
def _install_api(app: FastAPI) -> None:
    from fastapi.concurrency import run_in_threadpool

    @app.post("/api/audits", status_code=202, openapi_extra=_submit_openapi(), tags=["audits"],
              summary="Submit an audit (JSON paths under a root, or uploaded split files)")
    async def submit(request: Request) -> JSONResponse:
        require_write(request)
        settings: Settings = request.app.state.settings
        store: Store = request.app.state.store
        audit_id = idempotent_id(request)
        if audit_id is not None:
            existing = await run_in_threadpool(store.get, audit_id)
            if existing is not None:  # a retry of a submission that was recorded
                return JSONResponse({"id": existing.id, "status": existing.status}, status_code=202,
                                    headers={"Location": f"/api/audits/{existing.id}"})
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            if ctype == "application/json":
                body = await request.body()
                from pydantic import ValidationError

                try:
                    req = AuditRequest.model_validate_json(body)
                except ValidationError as err:
                    errors = [{"loc": list(e["loc"]) or ["body"], "msg": e["msg"], "type": e["type"]}
                              for e in err.errors()]  # a body that is not JSON at all: the place is "body"
                    return JSONResponse({"detail": errors}, status_code=422)
                record = await run_in_threadpool(submit_paths, req, settings, store, audit_id)
            elif ctype == "multipart/form-data":
                files, fields = await read_upload(request)
                fields.pop("csrf", None)
                fields.pop("token", None)
                record = await run_in_threadpool(submit_upload, files, fields, settings, store, audit_id)
            else:
                raise HTTPException(415, "send application/json (paths under a root) or multipart/form-data "
                                         "(split files)")
        except SubmitError as err:
            return JSONResponse({"detail": err.detail}, status_code=err.status)
        request.app.state.pool.wake()
        return JSONResponse({"id": record.id, "status": record.status}, status_code=202,
                            headers={"Location": f"/api/audits/{record.id}"})

    @app.get("/api/audits/{audit_id}", tags=["audits"], summary="An audit: status, and the JSON result once done")
    def get_audit(request: Request, audit_id: str) -> dict[str, Any]:
        require_read(request)
        return get_record(request, audit_id).to_api()

    @app.get("/api/audits/{audit_id}/report", tags=["audits"], response_class=HTMLResponse,
             summary="The HTML report of a finished audit")
    def get_report(request: Request, audit_id: str) -> Response:
        require_read(request)
        record = get_record(request, audit_id)
        if record.status == "done" and record.result is None and (record.note or "").startswith(PRUNED_NOTE):
            raise HTTPException(410, record.note)
        if record.status != "done" or record.result is None:
            raise HTTPException(409, f"audit is {record.status}; the report exists once it is done"
                                + (f" ({record.error})" if record.error else ""))
        return HTMLResponse(render_report(record.result), headers={
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                                       "frame-ancestors 'self'; sandbox"})

    @app.get("/api/audits", tags=["audits"], summary="Audits, newest first (filter by dataset, status, time)")
    def list_audits(request: Request, dataset: str | None = Query(None, max_length=512),
                    status: str | None = Query(None, pattern="^(queued|running|done|failed)$"),
                    since: dt.datetime | None = Query(None, description="created at or after (ISO 8601)"),
                    until: dt.datetime | None = Query(None, description="created before (ISO 8601)"),
                    limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0)) -> list[dict[str, Any]]:
        require_read(request)
        store: Store = request.app.state.store
        return [r.summary() for r in store.list(dataset=dataset, status=status, since=_utc(since),
                                                until=_utc(until), limit=limit, offset=offset)]

    @app.get("/api/datasets", tags=["datasets"], summary="Datasets with their latest finished audit")
    def list_datasets(request: Request) -> list[dict[str, Any]]:
        require_read(request)
        return request.app.state.store.datasets()  # type: ignore[no-any-return]

    @app.post("/api/admin/cleanup", tags=["service"], summary="Apply the retention policy now (admin role)")
    def cleanup(request: Request) -> dict[str, Any]:
        require_admin(request)
        return clean_up(request.app.state.store, request.app.state.settings)

    @app.get("/api/health", tags=["service"], summary="Liveness and the queue")
    def health(request: Request) -> dict[str, Any]:
        counts = request.app.state.store.counts_by_status()
        return {"status": "ok", "audits": {s: counts.get(s, 0) for s in STATUSES}}


def idempotent_id(request: Request) -> str | None:
    """The audit id an ``Idempotency-Key`` header stands for (per token: two clients' keys never meet), or None.

    A client that sends the same key again (its first answer was lost) gets the same audit back.
    """
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not 1 <= len(key) <= 200 or any(ord(c) < 33 or ord(c) > 126 for c in key):
        raise HTTPException(422, "Idempotency-Key: expected 1 to 200 printable characters without spaces")
    token = bearer(request.headers.get("authorization")) or ""
    return hashlib.sha256(f"{token}\x00{key}".encode()).hexdigest()[:32]


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value


# -- bidsaudit serve ------------------------------------------------------------------------------
def serve(settings: Settings, *, host: str = "127.0.0.1", port: int = 8000, echo: Any = print,
          ssl_keyfile: Path | None = None, ssl_certfile: Path | None = None) -> None:
    """Open (and migrate) the database, then run uvicorn (over TLS when given a key and a certificate).

    A database that cannot be reached, a missing root or an unreadable key or certificate is an InputError.
    """
    import uvicorn

    tls = _check_tls(ssl_keyfile, ssl_certfile)
    for root in settings.roots:
        if not root.is_dir():
            raise InputError(root, "no such folder", field="--root", expected="a folder to read datasets from")
    try:
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        engine = make_engine(settings.db_url)
        upgrade(engine)
    except DatabaseError as err:
        raise InputError(None, str(err), field="--database") from None
    except OSError as err:
        raise InputError(settings.state_dir, f"cannot create: {err.strerror}", field="--state-dir") from None
    store = Store(engine)
    import dataclasses

    if host in LOOPBACK and not settings.allowed_hosts:
        settings = dataclasses.replace(settings, allowed_hosts=("127.0.0.1", "localhost", "::1", "[::1]"))
    if tls:
        settings = dataclasses.replace(settings, secure_cookies=True)
    if not settings.tokens:
        echo("bidsaudit serve: no token configured (BIDSAUDIT_TOKEN or --tokens-file): submissions are refused")
    if host not in LOOPBACK:
        echo(f"bidsaudit serve: listening on {host}, beyond this machine"
             + ("" if settings.tokens else " (with no token!)") + ("" if tls else " without TLS (tokens travel "
                                                                  "in clear: use --ssl-certfile/--ssl-keyfile or a "
                                                                  "TLS proxy)"))
    echo(f"bidsaudit serve: {'https' if tls else 'http'}://{host}:{port}/  database {engine.url.render_as_string()}  "
         f"roots {', '.join(map(str, settings.roots)) or '(none: uploads only)'}")
    app = create_app(settings, store)
    uvicorn.run(app, host=host, port=port, log_level="info", proxy_headers=False, server_header=False, **tls)


def _check_tls(keyfile: Path | None, certfile: Path | None) -> dict[str, str]:
    """uvicorn's ``ssl_keyfile``/``ssl_certfile``, both or neither, each a readable PEM file that ``ssl`` loads."""
    if keyfile is None and certfile is None:
        return {}
    if keyfile is None or certfile is None:
        raise InputError(None, "TLS needs both a certificate and its private key",
                         field="--ssl-keyfile" if keyfile is None else "--ssl-certfile",
                         expected="--ssl-certfile CERT.pem --ssl-keyfile KEY.pem")
    import ssl

    for path, name in ((certfile, "--ssl-certfile"), (keyfile, "--ssl-keyfile")):
        if not Path(path).is_file():
            raise InputError(path, "no such file", field=name, expected="a PEM file")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(str(certfile), str(keyfile))
    except (ssl.SSLError, OSError, ValueError) as err:
        raise InputError(certfile, f"the certificate and key cannot be loaded ({err})", field="--ssl-certfile",
                         expected="a PEM certificate (chain) and its matching PEM private key") from None
    return {"ssl_keyfile": str(keyfile), "ssl_certfile": str(certfile)}
