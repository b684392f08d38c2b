"""Every POST runs in one transaction that also records its signature (replay protection) and
its Idempotency-Key with the response. A request that is refused or fails commits nothing, so
it leaves no row and no event; one that succeeded can be repeated safely."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from alur.runtime.db import advisory_key
from alur.runtime.errors import ConcurrencyConflict
from alur.runtime.postgres import PostgresUnitOfWork
from services.orders.api.problems import ApiError
from services.orders.api.security import Caller

CONFLICT_ATTEMPTS = 5
Work = Callable[[PostgresUnitOfWork], Awaitable[tuple[int, Any]]]


async def request_hash(request: Request) -> bytes:
    return hashlib.sha256(f"{request.method} {request.url.path}\n".encode()
                          + await request.body()).digest()


@dataclass(frozen=True)
class Answer:
    """What a write answers: its status and JSON body, and whether it repeats an earlier one."""

    status: int
    body: Any
    replayed: bool = False

    def response(self) -> JSONResponse:
        return JSONResponse(self.body, status_code=self.status,
                            headers={"Idempotent-Replayed": "true"} if self.replayed else None)


class Writes:
    def __init__(self, new_uow: Callable[[], PostgresUnitOfWork], idempotency_ttl: float) -> None:
        self._new_uow, self._ttl = new_uow, idempotency_ttl

    async def run(self, caller: Caller, request: Request, idempotency_key: str | None,
                  work: Work) -> JSONResponse:
        """An HTTP request's write: `answer`, as the response."""
        return (await self.answer(caller, await request_hash(request), idempotency_key,
                                  work)).response()

    async def answer(self, caller: Caller, fingerprint: bytes, idempotency_key: str | None,
                     work: Work) -> Answer:
        """`work` in one transaction with the request's bookkeeping. If a service appended to
        the same order meanwhile, the whole request is decided again on the new state."""
        for attempt in range(CONFLICT_ATTEMPTS):
            try:
                return await self._once(caller, fingerprint, idempotency_key, work)
            except ConcurrencyConflict:
                if attempt == CONFLICT_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    async def _once(self, caller: Caller, fingerprint: bytes, idempotency_key: str | None,
                    work: Work) -> Answer:
        shop_id = caller.shop.shop_id
        async with self._new_uow() as uow:
            conn = await uow.connection()
            if caller.signature is not None:
                fresh = await conn.fetchval(
                    "INSERT INTO seen_signatures (shop_id, signature) VALUES ($1, $2)"
                    " ON CONFLICT DO NOTHING RETURNING true", shop_id, caller.signature)
                if not fresh:
                    raise ApiError("signature-replayed", "Sign each request anew, retries too.")
            if idempotency_key is not None:
                # The lock is held until commit: a duplicate arriving meanwhile is told to
                # wait (409). Lock and look-up in one round trip (105_idempotency_claim.sql).
                seen = await conn.fetchrow(
                    "SELECT * FROM idempotency_claim($1, $2, $3, $4)",
                    advisory_key(f"idem:{shop_id}:{idempotency_key}"), shop_id,
                    idempotency_key, self._ttl)
                if not seen["locked"]:
                    raise ApiError("idempotency-key-in-use", "The first request with this key "
                                   "is still being handled; retry in a moment.",
                                   headers={"Retry-After": "1"})
                if seen["status"] is not None:
                    if seen["request_hash"] != fingerprint:
                        raise ApiError("idempotency-key-reused", "This Idempotency-Key was sent "
                                       "with another request; use a new key for a new request.")
                    return Answer(seen["status"], json.loads(seen["response"]), replayed=True)
            status, payload = await work(uow)
            body = jsonable_encoder(payload)
            if idempotency_key is not None:  # written with the order, in the flush
                row = (shop_id, idempotency_key, fingerprint, status, json.dumps(body))
                uow.attached("idempotency", lambda _: _Remember(row))
        return Answer(status, body)


class _Remember:
    """The request's Idempotency-Key and answer, an attachment of its unit of work
    (alur.runtime.postgres.Attachment): one statement fewer a request."""

    def __init__(self, row: tuple[str, str, bytes, int, str]) -> None:
        self._row = row

    def mark(self) -> object:
        return None

    def undo(self, mark: object) -> None:
        return None

    def flush(self, array: Callable[[Sequence[object], str], str]) -> list[tuple[str, str]]:
        values = ", ".join(array([v], t) for v, t in zip(
            self._row, ("text", "text", "bytea", "int", "text"), strict=True))
        return [("idempotency", "INSERT INTO idempotency_keys (shop_id, key, request_hash,"
                 " status, response) SELECT s, k, h, st, r::jsonb"
                 f" FROM unnest({values}) AS x(s, k, h, st, r)"
                 " ON CONFLICT (shop_id, key) DO UPDATE"
                 " SET request_hash = excluded.request_hash, status = excluded.status,"
                 " response = excluded.response, created_at = now()")]


async def prune(conn_execute: Callable[..., Awaitable[str]], idempotency_ttl: float,
                signature_tolerance: float) -> None:
    """Forget idempotency keys past their time and signatures their timestamp already refuses."""
    await conn_execute("DELETE FROM idempotency_keys"
                       " WHERE created_at < now() - make_interval(secs => $1)", idempotency_ttl)
    await conn_execute("DELETE FROM seen_signatures"
                       " WHERE seen_at < now() - make_interval(secs => $1)",
                       2 * signature_tolerance)
