"""A payment gateway simulator that talks HTTP like a real one, as its own process.

Outcomes are deterministic by token: `tok_decline` is declined, `tok_insufficient_funds` fails
for insufficient funds, anything else succeeds. A token ending in `_flaky` (e.g.
`tok_decline_flaky`) first answers 503 once per Idempotency-Key, as an overloaded gateway
would, then behaves as the token without the suffix: the caller's retry path in one test.
Every charge needs an `Idempotency-Key`: the same key with the same request returns the first
answer (never a second charge); the same key with a different request is refused with 422.
Charges are kept in PostgreSQL (schema `gateway_sim`), so they survive restarts and tests can
count them.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

SCHEMA = "gateway_sim"
DDL = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {SCHEMA}.charges (
    idempotency_key text PRIMARY KEY,
    id              text NOT NULL UNIQUE,
    reference       text NOT NULL,
    amount          bigint NOT NULL,
    currency        text NOT NULL,
    status          text NOT NULL,
    failure_reason  text,
    request_hash    text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS charges_reference ON {SCHEMA}.charges (reference);
"""
OUTCOMES = {"tok_decline": "card_declined", "tok_insufficient_funds": "insufficient_funds"}
FLAKY = "_flaky"


class ChargeRequest(BaseModel):
    reference: str = Field(min_length=1, description="The merchant's order id.")
    amount: int = Field(gt=0, description="Minor units.")
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    token: str | None = None


def _row(r: asyncpg.Record) -> dict[str, object]:
    return {"id": r["id"], "reference": r["reference"], "amount": r["amount"],
            "currency": r["currency"], "status": r["status"],
            "failure_reason": r["failure_reason"]}


def create_app(dsn: str) -> FastAPI:
    pools: dict[str, asyncpg.Pool] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("SELECT pg_advisory_lock(4242)")
            await conn.execute(DDL)
        finally:
            await conn.close()
        pools["db"] = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
        yield
        await pools["db"].close()

    app = FastAPI(title="Alur payment gateway simulator", lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Alive and its database answers."""
        await pools["db"].fetchval("SELECT 1")
        return {"status": "ok"}

    stumbled: set[str] = set()  # idempotency keys a _flaky token already failed once

    @app.post("/v1/charges")
    async def charge(body: ChargeRequest, request: Request,
                     idempotency_key: str = Header(min_length=1)) -> JSONResponse:
        """Capture a payment; idempotent per Idempotency-Key."""
        token = body.token or ""
        if token.endswith(FLAKY):
            if idempotency_key not in stumbled:
                stumbled.add(idempotency_key)
                return JSONResponse({"error": "temporarily unavailable"}, status_code=503)
            token = token.removesuffix(FLAKY)
        digest = hashlib.sha256(json.dumps(body.model_dump(), sort_keys=True).encode()).hexdigest()
        reason = OUTCOMES.get(token)
        row = await pools["db"].fetchrow(
            f"INSERT INTO {SCHEMA}.charges (idempotency_key, id, reference, amount, currency,"
            " status, failure_reason, request_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            " ON CONFLICT (idempotency_key) DO NOTHING RETURNING *",
            idempotency_key, f"ch_{uuid.uuid4().hex[:24]}", body.reference, body.amount,
            body.currency, "failed" if reason else "succeeded", reason, digest)
        if row is not None:
            return JSONResponse(_row(row), status_code=201)
        first = await pools["db"].fetchrow(
            f"SELECT * FROM {SCHEMA}.charges WHERE idempotency_key = $1", idempotency_key)
        if first["request_hash"] != digest:
            return JSONResponse({"error": "idempotency key reused with another request"},
                                status_code=422)
        return JSONResponse(_row(first), status_code=200, headers={"Idempotent-Replayed": "true"})

    @app.get("/v1/charges")
    async def list_charges(reference: str) -> list[dict[str, object]]:
        """Charges made for one merchant reference (order id)."""
        rows = await pools["db"].fetch(
            f"SELECT * FROM {SCHEMA}.charges WHERE reference = $1 ORDER BY created_at", reference)
        return [_row(r) for r in rows]

    return app
