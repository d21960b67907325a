"""Server-rendered pages (Jinja2, autoescaped, no script): dashboard, audit, history, comparison, upload."""

from __future__ import annotations

import functools
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from audit.service.deps import (
    TOKEN_COOKIE,
    get_record,
    read_upload,
    require_read,
    require_write,
)
from audit.service.security import CSRF_COOKIE, csrf_ok, new_csrf_token, token_ok
from audit.service.store import AuditRecord, Store
from audit.service.submission import SubmitError, submit_upload

__all__ = ["router", "error_page", "history_chart", "compare_results"]

router = APIRouter(include_in_schema=False)


@functools.lru_cache(maxsize=1)
def _env() -> Any:
    from jinja2 import ChainableUndefined, Environment, PackageLoader, select_autoescape

    return Environment(loader=PackageLoader("reports", "templates"), undefined=ChainableUndefined,
                       autoescape=select_autoescape(default=True, default_for_string=True),
                       trim_blocks=True, lstrip_blocks=True)


def render(name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
    return HTMLResponse(_env().get_template(f"service/{name}.html.j2").render(**ctx), status_code=status)


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    return render("error", status, title=f"Error {status}", message=message)


@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request) -> Response:
    require_read(request)
    store: Store = request.app.state.store
    return render("dashboard", title="bidsaudit", datasets=store.datasets(),
                  recent=[r.summary() for r in store.list(limit=20)], counts=store.counts_by_status())


@router.get("/audits/{audit_id}", response_class=HTMLResponse)
def audit_page(request: Request, audit_id: str) -> Response:
    require_read(request)
    record = get_record(request, audit_id)
    result = record.result or {}
    return render("audit", title=f"Audit {record.id[:8]}", a=record.summary(), options=record.options,
                  result=result, findings=(result.get("findings") or [])[:200],
                  readiness=result.get("readiness") or {}, refresh=record.status in ("queued", "running"))


@router.get("/history", response_class=HTMLResponse)
def history(request: Request, dataset: str = Query(..., max_length=512)) -> Response:
    require_read(request)
    store: Store = request.app.state.store
    records = store.list(dataset=dataset, limit=500)[::-1]  # the newest 500, oldest first
    if not records:
        raise HTTPException(404, "no audits of this dataset")
    done = [r for r in records if r.status == "done"]
    return render("history", title=f"History: {dataset}", dataset=dataset, audits=[r.summary() for r in records],
                  chart=history_chart(done))


@router.get("/compare", response_class=HTMLResponse)
def compare(request: Request, a: str = Query(...), b: str = Query(...)) -> Response:
    require_read(request)
    first, second = get_record(request, a), get_record(request, b)
    if first.result is None or second.result is None:
        raise HTTPException(409, "both audits must be done to be compared")
    return render("compare", title="Comparison", a=first.summary(), b=second.summary(),
                  diff=compare_results(first.result, second.result))


def _csrf_for(request: Request) -> str:
    token = request.cookies.get(CSRF_COOKIE)
    return token if token and len(token) >= 32 else new_csrf_token()


def _upload_form(request: Request, status: int = 200, error: str | None = None,
                 values: dict[str, str] | None = None) -> HTMLResponse:
    settings = request.app.state.settings
    csrf = _csrf_for(request)
    response = render("upload", status, title="Audit published split files", csrf=csrf, error=error,
                      values=values or {}, need_token=True, no_tokens=not settings.tokens,
                      limits={"files": settings.max_files, "file_kb": settings.max_file_bytes // 1024,
                              "total_kb": settings.max_total_bytes // 1024})
    response.set_cookie(CSRF_COOKIE, csrf, httponly=True, samesite="strict", path="/",
                        secure=request.app.state.settings.secure_cookies)
    return response


@router.get("/upload", response_class=HTMLResponse)
def upload_form(request: Request) -> Response:
    require_read(request)
    return _upload_form(request)


@router.post("/upload", response_class=HTMLResponse)
async def upload_submit(request: Request) -> Response:
    from fastapi.concurrency import run_in_threadpool

    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "multipart/form-data":
        return _upload_form(request, 415, "the form must be sent as multipart/form-data")
    try:
        files, fields = await read_upload(request)
    except HTTPException as err:
        return _upload_form(request, err.status_code, str(err.detail))
    values = {k: v for k, v in fields.items() if k in ("label", "site", "group", "name", "id_pattern", "path_column")}
    if not csrf_ok(request.cookies.get(CSRF_COOKIE), fields.get("csrf")):
        return _upload_form(request, 403, "the form expired or came from another site (CSRF check failed): "
                                          "submit it again from this page", values)
    try:
        require_write(request, token=fields.get("token") or "")
    except HTTPException as err:
        return _upload_form(request, err.status_code, str(err.detail), values)
    try:
        record: AuditRecord = await run_in_threadpool(submit_upload, [f for f in files if f[0] or f[1]], values,
                                                      request.app.state.settings, request.app.state.store)
    except SubmitError as err:
        return _upload_form(request, err.status, err.detail, values)
    request.app.state.pool.wake()
    return RedirectResponse(f"/audits/{record.id}", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> Response:
    return _login_form(request)


def _login_form(request: Request, status: int = 200, error: str | None = None) -> HTMLResponse:
    csrf = _csrf_for(request)
    response = render("login", status, title="Sign in", csrf=csrf, error=error)
    response.set_cookie(CSRF_COOKIE, csrf, httponly=True, samesite="strict", path="/",
                        secure=request.app.state.settings.secure_cookies)
    return response


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    """Keep a token in an HttpOnly, SameSite=Strict cookie so that a browser can read a --private server."""
    try:
        form = await request.form(max_files=0, max_fields=4, max_part_size=4096)
    except Exception:
        return _login_form(request, 422, "malformed form")
    token, csrf = form.get("token"), form.get("csrf")
    if not csrf_ok(request.cookies.get(CSRF_COOKIE), csrf if isinstance(csrf, str) else None):
        return _login_form(request, 403, "the form expired or came from another site (CSRF check failed)")
    if not isinstance(token, str) or not token_ok(token, request.app.state.settings.tokens):
        return _login_form(request, 401, "wrong token")
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict", path="/",
                        secure=request.app.state.settings.secure_cookies)
    return response


# -- views' data ----------------------------------------------------------------------------------
def history_chart(done: list[AuditRecord], width: int = 640, height: int = 220) -> dict[str, Any]:
    """Coordinates of an inline SVG: errors and warnings per finished audit, oldest on the left."""
    pad_l, pad_r, pad_t, pad_b = 40, 12, 12, 28
    n = len(done)
    top = max([1] + [max((r.counts or {}).get("error", 0), (r.counts or {}).get("warning", 0)) for r in done])
    inner_w, inner_h = width - pad_l - pad_r, height - pad_t - pad_b

    def x(i: int) -> float:
        return round(pad_l + (inner_w * i / (n - 1) if n > 1 else inner_w / 2), 1)

    def y(v: int) -> float:
        return round(pad_t + inner_h * (1 - v / top), 1)

    series = []
    for key, colour in (("error", "#b3261e"), ("warning", "#b26a00")):
        points = [{"x": x(i), "y": y((r.counts or {}).get(key, 0)), "value": (r.counts or {}).get(key, 0),
                   "id": r.id, "when": r.summary()["created_at"], "verdict": r.verdict} for i, r in enumerate(done)]
        series.append({"name": key + "s", "colour": colour, "points": points,
                       "polyline": " ".join(f"{p['x']},{p['y']}" for p in points)})
    ticks = sorted({0, top, top // 2})
    return {"width": width, "height": height, "series": series, "n": n,
            "yticks": [{"y": y(t), "label": t} for t in ticks], "x0": pad_l, "x1": width - pad_r,
            "ybottom": y(0), "labels": [{"x": x(i), "text": (r.summary()["created_at"] or "")[:10],
                                         "anchor": "start" if i == 0 and n > 1 else "end" if i == n - 1 and n > 1
                                         else "middle"} for i, r in enumerate(done)] if n <= 12 else []}


def _finding_key(f: dict[str, Any]) -> tuple[Any, ...]:
    subjects = tuple(sorted(f.get("subjects") or []))
    return (f.get("check"), subjects, tuple(sorted(f.get("splits") or [])),
            "" if subjects else str(f.get("message", "")))


def compare_results(old: dict[str, Any], new: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Findings added, fixed (gone) and newly waived between two results; unchanged ones counted."""
    before = {_finding_key(f): f for f in old.get("findings") or []}
    after = {_finding_key(f): f for f in new.get("findings") or []}

    def waiver_key(w: dict[str, Any]) -> tuple[Any, ...]:
        return (w.get("check"), tuple(sorted(w.get("subjects") or [])))

    old_waivers = {waiver_key(w) for w in old.get("waivers") or []}
    return {
        "added": [after[k] for k in after if k not in before],
        "fixed": [before[k] for k in before if k not in after],
        "waived": [w for w in new.get("waivers") or [] if waiver_key(w) not in old_waivers],
        "unchanged": [after[k] for k in after if k in before],
    }
