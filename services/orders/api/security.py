"""Who is calling and may they: bearer API keys, optional HMAC request signatures, per-shop
rate limits, and the request body size limit."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from alur.runtime.http import PROBLEM
from alur.runtime.signing import BadSignature, StaleSignature, verify
from services.orders.api.problems import KINDS, PROBLEM_BASE, ApiError
from services.orders.shops import Shop

bearer = HTTPBearer(auto_error=False, description="An API key made with `alur keys create`.")
bearer_dependency = Depends(bearer)


@dataclass(frozen=True)
class Caller:
    """An authenticated request: its shop, and its signature if the shop signs requests."""

    shop: Shop
    signature: str | None = None


class RateLimiter:
    """A token bucket per shop, in this process. With several API replicas each enforces the
    limit on its own share of the traffic."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}  # shop -> (tokens, at)
        self._clock = clock

    def take(self, shop_id: str, rate: float, burst: int) -> float:
        """Take one token; 0 if granted, else the seconds until one is available."""
        now = self._clock()
        tokens, at = self._buckets.get(shop_id, (float(burst), now))
        tokens = min(float(burst), tokens + (now - at) * rate)
        if tokens >= 1:
            self._buckets[shop_id] = (tokens - 1, now)
            return 0.0
        self._buckets[shop_id] = (tokens, now)
        return (1 - tokens) / rate


@dataclass(frozen=True)
class Limits:
    rate_per_second: float
    burst: int
    signature_tolerance: float


def authenticator(
    authenticate: Callable[[str], Awaitable[Shop | None]], limiter: RateLimiter, limits: Limits,
    clock: Callable[[], float] = time.time,
) -> Callable[..., Awaitable[Caller]]:
    """The FastAPI dependency every route uses."""

    async def caller(
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = bearer_dependency,
        timestamp: str | None = Header(None, alias="Alur-Timestamp", description=(
            "Unix seconds when the request was signed (shops that sign requests).")),
        signature: str | None = Header(None, alias="Alur-Signature", description=(
            "v1=hex(HMAC-SHA256(secret, timestamp.METHOD.path.body)).")),
    ) -> Caller:
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise ApiError("unauthenticated", "Send `Authorization: Bearer <API key>`.")
        shop = await authenticate(credentials.credentials)
        if shop is None:  # wrong and revoked keys look the same to the caller
            raise ApiError("unauthenticated", "The API key is not valid.",
                           headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        wait = limiter.take(shop.shop_id, shop.rate_per_second or limits.rate_per_second,
                            shop.burst or limits.burst)
        if wait > 0:
            raise ApiError("rate-limited", "Slow down; see Retry-After.",
                           headers={"Retry-After": str(max(1, round(wait + 0.5)))})
        if shop.signing_secret is None:
            return Caller(shop)
        if not timestamp or not signature:
            raise ApiError("invalid-signature",
                           "This shop signs its requests: send Alur-Timestamp and Alur-Signature.")
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        try:
            verify(shop.signing_secret, timestamp, signature, request.method, path,
                   await request.body(), limits.signature_tolerance, now=clock())
        except StaleSignature as exc:
            raise ApiError("signature-expired", f"{str(exc).capitalize()}.") from None
        except BadSignature as exc:
            raise ApiError("invalid-signature", f"{str(exc).capitalize()}.") from None
        return Caller(shop, signature)

    return caller


class BodyLimit:
    """ASGI middleware: a body over `limit` bytes is answered 413 before any handler runs,
    whether it announces its length or streams it.

    The rest of the body is read and dropped first (up to DRAIN_LIMIT): a client that sends its
    whole body before it reads would otherwise find the connection reset (the kernel resets a
    socket closed with unread data) instead of its 413."""

    DRAIN_LIMIT = 16 * 1024 * 1024

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._drain(receive, int(declared))
            await self._refuse(send)
            return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                if message.get("more_body", False):
                    await self._drain(receive, size)
                await self._refuse(send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body, sent = b"".join(chunks), False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _drain(self, receive: Receive, announced: int) -> None:
        if announced > self.DRAIN_LIMIT:
            return  # not worth reading: the client gets its answer, or a reset
        read = 0
        while read <= self.DRAIN_LIMIT:
            message = await receive()
            if message["type"] != "http.request":
                return
            read += len(message.get("body", b""))
            if not message.get("more_body", False):
                return

    async def _refuse(self, send: Send) -> None:
        status, title = KINDS["body-too-large"]
        body = json.dumps({"type": PROBLEM_BASE + "body-too-large", "title": title,
                           "status": status,
                           "detail": f"Bodies are limited to {self.limit} bytes."}).encode()
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", PROBLEM.encode()), (b"content-length", str(len(body)).encode()),
            (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
