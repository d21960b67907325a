"""Rate limits (per token and per client address, 429 with ``Retry-After``), the request body limit (413), headers.

Both are ASGI middleware that answer before a route runs. The rate limits
are token buckets held in this process's memory: several server processes
behind one address each allow the configured rate, and a restart refills
every bucket. The client address is the TCP peer (``serve`` runs uvicorn
without proxy headers): behind a reverse proxy every client shares the
proxy's address, so set the per-address limit there instead.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from audit.service.security import bearer, token_roles
from audit.service.settings import Settings

__all__ = ["TokenBucket", "RateLimiter", "RateLimitMiddleware", "BodyLimitMiddleware", "body_limit", "EXEMPT_PATHS",
           "SECURITY_HEADERS", "SecurityHeadersMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Never limited: a load balancer's health probe.
EXEMPT_PATHS = ("/api/health",)
TOKEN_COOKIE = "bidsaudit_token"  # the same name as deps.TOKEN_COOKIE (deps imports fastapi; this module does not)


class TokenBucket:
    """``capacity`` requests at once, refilled at ``rate`` a second.

    >>> b = TokenBucket(rate=1.0, capacity=2, now=0.0)
    >>> b.take(0.0), b.take(0.0), b.take(0.0)
    (0.0, 0.0, 1.0)
    >>> b.take(1.0)
    0.0
    """

    __slots__ = ("rate", "capacity", "tokens", "stamp")

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate, self.capacity, self.tokens, self.stamp = rate, capacity, capacity, now

    def _refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait(self, now: float) -> float:
        """Seconds until one request is allowed (0: now), without taking it."""
        self._refill(now)
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def take(self, now: float) -> float:
        """Take one request: 0 when allowed, else the seconds to wait (nothing taken)."""
        wait = self.wait(now)
        if wait == 0.0:
            self.tokens -= 1
        return wait


class RateLimiter:
    """Buckets by key (``addr:…`` or ``token:…``), at most ``max_keys`` of them (the least recently used go)."""

    def __init__(self, per_minute: float, burst_seconds: float, *, max_keys: int = 50_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, math.floor(self.rate * burst_seconds))
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def _bucket(self, key: str, now: float) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate, self.capacity, now)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket

    def wait(self, key: str) -> float:
        with self._lock:
            return self._bucket(key, self.clock()).wait(self.clock())

    def take(self, key: str) -> float:
        with self._lock:
            return self._bucket(key, self.clock()).take(self.clock())


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _cookie(scope: Scope, name: str) -> str | None:
    raw = _header(scope, b"cookie")
    if not raw:
        return None
    for part in raw.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


async def _answer(send: Send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class RateLimitMiddleware:
    """429 with ``Retry-After`` once a client address, or a valid token, is over its rate."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.by_address = RateLimiter(settings.rate_per_address, settings.rate_burst_seconds)
        self.by_token = RateLimiter(settings.rate_per_token, settings.rate_burst_seconds)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        checks: list[tuple[RateLimiter, str, str]] = []
        if self.by_address.enabled:
            client = scope.get("client")
            checks.append((self.by_address, f"addr:{client[0] if client else '-'}", "this address"))
        if self.by_token.enabled:
            given = bearer(_header(scope, b"authorization")) or _cookie(scope, TOKEN_COOKIE)
            if given and token_roles(given, self.settings.token_roles) is not None:  # a wrong token: 401 later
                checks.append((self.by_token, "token:" + hashlib.sha256(given.encode()).hexdigest()[:32],
                               "this token"))
        waits = [(limiter.wait(key), who, limiter) for limiter, key, who in checks]
        worst = max(waits, default=(0.0, "", None), key=lambda w: w[0])
        if worst[0] > 0:
            limiter = worst[2]
            per_minute = round(limiter.rate * 60) if limiter is not None else 0
            await _answer(send, 429, f"too many requests from {worst[1]} (at most {per_minute} a minute); "
                                     f"retry in {math.ceil(worst[0])} s",
                          {"Retry-After": str(max(1, math.ceil(worst[0])))})
            return
        for limiter, key, _who in checks:
            limiter.take(key)
        await self.app(scope, receive, send)


def body_limit(settings: Settings, content_type: str | None) -> int:
    """The most bytes a request body of that type may hold: an upload's limits, else ``max_json_bytes``."""
    if (content_type or "").split(";")[0].strip().lower() == "multipart/form-data":
        return settings.max_total_bytes + 64 * 1024 + 1024 * settings.max_files
    return settings.max_json_bytes


class BodyTooLarge(Exception):
    """Raised from ``receive`` when a body without Content-Length grows past the limit."""


class BodyLimitMiddleware:
    """413 for a body over :func:`body_limit`: at once from ``Content-Length``, else while it streams."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = body_limit(self.settings, _header(scope, b"content-type"))
        length = _header(scope, b"content-length")
        if length is not None:
            if not length.strip().isdigit():
                await _answer(send, 400, "Content-Length: not a number")
                return
            if int(length) > limit:
                await _answer(send, 413, f"request body of {int(length)} bytes; at most {limit} bytes accepted "
                                         "for this content type")
                return
            await self.app(scope, receive, send)
            return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message.get("type") == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge()
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            if message.get("type") == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except Exception as exc:  # BodyTooLarge, maybe inside an ExceptionGroup (a middleware's task group)
            if not _only_too_large(exc):
                raise
            if not started:
                await _answer(send, 413, f"request body over {limit} bytes, the most accepted for this "
                                         "content type")


def _only_too_large(exc: BaseException) -> bool:
    if isinstance(exc, BodyTooLarge):
        return True
    inner = getattr(exc, "exceptions", None)  # an ExceptionGroup
    return bool(inner) and all(_only_too_large(e) for e in inner)


#: Headers on every answer, whichever layer gives it (a route, an error handler, a limit, the host check).
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                               "frame-src 'self'; form-action 'self'; frame-ancestors 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "SAMEORIGIN",
    "Cache-Control": "no-store",
}
_SECURITY_RAW = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]


class SecurityHeadersMiddleware:
    """Adds :data:`SECURITY_HEADERS` (where a layer below did not set its own) to every HTTP answer.

    Added last, it wraps the limits and the host check too, whose 429, 413 and 400 answers never reach
    the application's own middleware.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message.get("type") == "http.response.start":
                raw = list(message.get("headers", ()))
                have = {k.lower() for k, _v in raw}
                raw += [(k, v) for k, v in _SECURITY_RAW if k not in have]
                message = {**message, "headers": raw}
            await send(message)

        await self.app(scope, receive, with_headers)
