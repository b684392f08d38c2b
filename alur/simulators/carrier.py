"""A parcel carrier simulator that talks HTTP like a real courier, as its own process.

Two carriers run from this module, each as its own process with its own port and secret:
`kilat` and `nusapost` (see CARRIERS). A merchant books a shipment (`POST /v1/shipments`,
idempotent per `Idempotency-Key`) and gets a shipment id and a tracking number. From then on
the carrier moves the parcel by itself and reports every status change to the booking's
`callback_url`, signed (HMAC-SHA256, `Carrier-Timestamp` / `Carrier-Signature`, see
alur.runtime.signing), as a real carrier's webhook would. Its steps are those of
services/shipping/parcels.py, the model the shipping service's carrier port is written
against (home delivery, to a store, a return).

The first step comes `pickup_after` seconds after booking, each later one `step_after` seconds
after the previous. `POST /v1/shipments/{tracking}/cancel` stops a parcel: one not collected
yet is cancelled; one on its way (or waiting in the store) is turned back, and reported as
`returned_to_sender` once it is back at the warehouse, a step later; one that has arrived
cannot be stopped (409). The next step waits until the merchant has
acknowledged the report with a 2xx: a report that fails is sent again, with the same id, after
a growing delay. Parcels live in PostgreSQL (schema `carrier_sim`), so a restarted carrier goes
on where it stopped.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import aiohttp
import asyncpg
from fastapi import FastAPI, Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, model_validator
from yarl import URL

from alur.runtime.alarm import Alarm, next_look
from alur.runtime.db import transaction_only_reset
from alur.runtime.signing import signed_headers
from alur.settings import CARRIERS
from services.shipping.parcels import (
    Service,
    next_status,
    next_step_in,
    report,
    stop,
    tracking_for,
)

SIGNATURE_PREFIX = "Carrier"
REPORT_TIMEOUT = 5.0
GIVE_UP_AFTER_REFUSALS = 10  # 4xx answers to one report before the carrier stops reporting
log = logging.getLogger("alur.carrier")


def retry_after(attempts: int) -> float:
    """Seconds before a report that failed `attempts` times is sent again."""
    return min(0.25 * 2.0 ** (attempts - 1), 30.0)


SCHEMA = "carrier_sim"
DDL = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {SCHEMA}.parcels (
    carrier         text NOT NULL,
    idempotency_key text NOT NULL,
    request_hash    text NOT NULL,
    shipment_id     text NOT NULL,
    tracking_number text NOT NULL UNIQUE,
    reference       text NOT NULL,
    service         text NOT NULL,
    postal_code     text,
    store_id        text,
    callback_url    text NOT NULL,
    status          text NOT NULL DEFAULT 'created',
    seq             integer NOT NULL DEFAULT 0,
    failed_attempts integer NOT NULL DEFAULT 0,
    next_step_at    timestamptz,  -- when the next step happens (NULL: nothing more to come)
    report_attempts integer NOT NULL DEFAULT 0,
    retry_at        timestamptz,
    last_report     integer,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (carrier, idempotency_key)
);
CREATE INDEX IF NOT EXISTS parcels_due ON {SCHEMA}.parcels
    (carrier, (coalesce(retry_at, next_step_at))) WHERE next_step_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS parcels_reference ON {SCHEMA}.parcels (reference);
"""


class AddressIn(BaseModel):
    line1: str = Field(min_length=1)
    city: str = Field(min_length=1)
    postal_code: str = Field(min_length=1)
    country: str = Field(min_length=2, max_length=2)


class ShipmentRequest(BaseModel):
    reference: str = Field(min_length=1, description="The merchant's order id.")
    service: Service = Field(description="home delivery, to a store, or a return.")
    address: AddressIn | None = Field(None, description="Deliver to / collect from here.")
    store_id: str | None = Field(None, description="The store for click-and-collect (or "
                                 "where a return is dropped off).")
    callback_url: str = Field(min_length=1, description="Where status updates are sent.")

    @model_validator(mode="after")
    def _somewhere(self) -> ShipmentRequest:
        if self.service == "store" and not self.store_id:
            raise ValueError("a store shipment needs store_id")
        if self.service == "home" and self.address is None:
            raise ValueError("a home delivery needs an address")
        if self.address is None and not self.store_id:
            raise ValueError("a shipment needs an address or a store")
        return self


def _public(row: asyncpg.Record) -> dict[str, object]:
    return {"shipment_id": row["shipment_id"], "tracking_number": row["tracking_number"],
            "reference": row["reference"], "service": row["service"], "status": row["status"],
            "failed_attempts": row["failed_attempts"], "updates_acknowledged": row["seq"],
            "last_report_status": row["last_report"]}


class Courier:
    """Moves one carrier's due parcels and reports each step to the merchant."""

    def __init__(self, carrier: str, pool: asyncpg.Pool, secret: str, pickup_after: float,
                 step_after: float, concurrency: int = 32) -> None:
        self.carrier, self.pool, self.secret = carrier, pool, secret
        self.pickup_after, self.step_after = pickup_after, step_after
        self._slots = asyncio.Semaphore(concurrency)
        self.alarm = Alarm()

    async def run(self, interval: float = 0.1, idle: float = 5.0) -> None:
        """Round after round while parcels are due; otherwise sleep until the next is (at
        most `idle` seconds, woken by a booking or a recall: `self.alarm`)."""
        # aiohttp, not httpx: the courier posts a report per parcel step, and httpx's client
        # cost the simulator several times its server's CPU (bench/README.md).
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REPORT_TIMEOUT),
                                         connector=aiohttp.TCPConnector(limit=64)) as client:
            while True:
                wait = interval
                try:
                    if await self.round(client):
                        continue
                    due = await self.pool.fetchval(
                        f"SELECT extract(epoch FROM min(coalesce(retry_at, next_step_at)) - now())"
                        f" FROM {SCHEMA}.parcels WHERE carrier = $1 AND next_step_at IS NOT NULL",
                        self.carrier)
                    wait = next_look(due, interval, idle)
                except Exception:  # the courier keeps going: a bad round is retried
                    log.exception("carrier round failed; trying again")
                await self.alarm.sleep(wait, at_least=interval)

    async def round(self, client: aiohttp.ClientSession, limit: int = 200) -> int:
        """Report the next step of every due parcel (locked meanwhile: a cancel is refused
        while a report is in flight); returns how many were reported."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                f"SELECT * FROM {SCHEMA}.parcels WHERE carrier = $1 AND next_step_at IS NOT NULL"
                " AND coalesce(retry_at, next_step_at) <= now()"
                " ORDER BY coalesce(retry_at, next_step_at) LIMIT $2 FOR UPDATE SKIP LOCKED",
                self.carrier, limit)
            answers = await asyncio.gather(*(self._report(client, r) for r in rows))
            for row, (status, answer) in zip(rows, answers, strict=True):
                await self._after_report(conn, row, status, answer)
        return len(rows)

    async def _report(self, client: aiohttp.ClientSession, parcel: asyncpg.Record
                      ) -> tuple[str, int]:
        status = next_status(parcel["service"], parcel["status"], parcel["failed_attempts"],
                             parcel["postal_code"])
        if status is None:
            return "", 0
        # The step happened when it was due; a retried report says the same.
        body = json.dumps(report(self.carrier, dict(parcel), status, parcel["next_step_at"],
                                 self.step_after)).encode()
        url = str(parcel["callback_url"])
        split = urlsplit(url)
        path = (split.path or "/") + (f"?{split.query}" if split.query else "")
        headers = {"Content-Type": "application/json",
                   **signed_headers(self.secret, "POST", path, body, prefix=SIGNATURE_PREFIX)}
        async with self._slots:
            try:
                async with client.post(URL(url, encoded=True), data=body,
                                       headers=headers) as answer:
                    await answer.read()
                    return status, answer.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.info("report %s of %s failed: %r", status, parcel["tracking_number"], exc)
                return status, 0

    async def _after_report(self, conn: asyncpg.Connection, row: asyncpg.Record, status: str,
                            answer: int) -> None:
        table = f"{SCHEMA}.parcels"
        key = (row["carrier"], row["idempotency_key"])
        if not status:  # nothing further (should not be due)
            await conn.execute(f"UPDATE {table} SET next_step_at = NULL WHERE carrier = $1 AND "
                               "idempotency_key = $2", *key)
            return
        if 200 <= answer < 300:
            wait = next_step_in(row["service"], status, row["failed_attempts"]
                                + (status == "delivery_failed"), row["postal_code"],
                                self.pickup_after, self.step_after)
            await conn.execute(
                f"UPDATE {table} SET status = $3, seq = seq + 1, "
                "failed_attempts = failed_attempts + $4::int, report_attempts = 0, "
                "retry_at = NULL, last_report = $5, "
                "next_step_at = now() + make_interval(secs => $6) "
                "WHERE carrier = $1 AND idempotency_key = $2",
                *key, status, int(status == "delivery_failed"), answer, wait)
            return
        attempts = row["report_attempts"] + 1
        give_up = 400 <= answer < 500 and attempts >= GIVE_UP_AFTER_REFUSALS
        if give_up:
            log.error("%s: %s refused the %s report of %s %d times (last %d); giving up",
                      self.carrier, row["callback_url"], status, row["tracking_number"],
                      attempts, answer)
        await conn.execute(
            f"UPDATE {table} SET report_attempts = $3, last_report = $4, "
            "retry_at = now() + make_interval(secs => $5), "
            "next_step_at = CASE WHEN $6 THEN NULL ELSE next_step_at END "
            "WHERE carrier = $1 AND idempotency_key = $2",
            *key, attempts, answer, retry_after(attempts), give_up)


def create_app(carrier: str, dsn: str, secret: str, pickup_after: float,
               step_after: float) -> FastAPI:
    if carrier not in CARRIERS:
        raise ValueError(f"unknown carrier {carrier!r}; one of {', '.join(CARRIERS)}")
    pools: dict[str, asyncpg.Pool] = {}
    couriers: dict[str, Courier] = {}

    def moves(after: float) -> None:
        """A parcel's next step is due in `after` seconds: the courier should know."""
        if "courier" in couriers:
            couriers["courier"].alarm.due(datetime.now(UTC) + timedelta(seconds=after))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("SELECT pg_advisory_lock(4243)")  # two carriers, one schema
            await conn.execute(DDL)
        finally:
            await conn.close()
        pools["db"] = pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4,
                                                          reset=transaction_only_reset)
        couriers["courier"] = courier = Courier(carrier, pool, secret, pickup_after, step_after)
        moving = asyncio.create_task(courier.run(), name=f"{carrier}-courier")
        yield
        moving.cancel()
        with suppress(asyncio.CancelledError):
            await moving
        await pool.close()

    app = FastAPI(title=f"Alur carrier simulator: {carrier}", lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Alive and its database answers."""
        await pools["db"].fetchval("SELECT 1")
        return {"status": "ok", "carrier": carrier}

    @app.post("/v1/shipments")
    async def book(body: ShipmentRequest,
                   idempotency_key: str = Header(min_length=1)) -> JSONResponse:
        """Book a parcel; the same key returns the first booking, another request 422."""
        digest = hashlib.sha256(body.model_dump_json().encode()).hexdigest()
        shipment_id, tracking = tracking_for(carrier, idempotency_key)
        row = await pools["db"].fetchrow(
            f"INSERT INTO {SCHEMA}.parcels (carrier, idempotency_key, request_hash, shipment_id,"
            " tracking_number, reference, service, postal_code, store_id, callback_url,"
            " next_step_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,"
            " now() + make_interval(secs => $11)) ON CONFLICT DO NOTHING RETURNING *",
            carrier, idempotency_key, digest, shipment_id, tracking, body.reference,
            body.service, body.address.postal_code if body.address else None, body.store_id,
            body.callback_url, pickup_after)
        if row is not None:
            moves(pickup_after)
            return JSONResponse(_public(row), status_code=201)
        first = await pools["db"].fetchrow(
            f"SELECT * FROM {SCHEMA}.parcels WHERE carrier = $1 AND idempotency_key = $2",
            carrier, idempotency_key)
        if first is None or first["request_hash"] != digest:
            return JSONResponse({"error": "idempotency key reused with another request"},
                                status_code=422)
        return JSONResponse(_public(first), headers={"Idempotent-Replayed": "true"})

    @app.post("/v1/shipments/{tracking_number}/cancel")
    async def cancel(tracking_number: str) -> JSONResponse:
        """Stop a parcel: `cancelled` if the courier had not collected it, `recalled` if it
        was on its way and now comes back; 409 once it has arrived (or for a return on its
        way). The same call again answers the same."""
        async with pools["db"].acquire() as conn, conn.transaction():
            await conn.execute("SET LOCAL lock_timeout = '4s'")
            try:  # the courier may be reporting a step of it right now
                row = await conn.fetchrow(
                    f"SELECT * FROM {SCHEMA}.parcels WHERE carrier = $1 AND tracking_number = $2"
                    " FOR UPDATE", carrier, tracking_number)
            except asyncpg.LockNotAvailableError:
                return JSONResponse({"error": "the courier is moving the parcel; try again"},
                                    status_code=503, headers={"Retry-After": "1"})
            if row is None:
                return JSONResponse({"error": "no such parcel"}, status_code=404)
            was = row["status"]
            stopped, moved_to = stop(row["service"], was)
            if stopped == "arrived":
                return JSONResponse({"error": f"the parcel is already {was}", "status": was},
                                    status_code=409)
            if moved_to is None:
                return JSONResponse({"tracking_number": tracking_number, "status": stopped})
            await conn.execute(
                f"UPDATE {SCHEMA}.parcels SET status = $3, report_attempts = 0, retry_at = NULL,"
                " next_step_at = CASE WHEN $3 = 'cancelled' THEN NULL"
                " ELSE now() + make_interval(secs => $4) END"
                " WHERE carrier = $1 AND tracking_number = $2",
                carrier, tracking_number, stopped, step_after)
        moves(step_after)
        return JSONResponse({"tracking_number": tracking_number, "status": stopped, "was": was})

    @app.get("/v1/shipments")
    async def list_shipments(reference: str) -> list[dict[str, object]]:
        """Parcels booked for one merchant reference (order id)."""
        rows = await pools["db"].fetch(
            f"SELECT * FROM {SCHEMA}.parcels WHERE carrier = $1 AND reference = $2 "
            "ORDER BY created_at", carrier, reference)
        return [_public(r) for r in rows]

    return app
