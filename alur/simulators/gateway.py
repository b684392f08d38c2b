"""A payment gateway simulator that talks HTTP like a real one, as its own process.

Outcomes are deterministic by token: `tok_decline` is declined, `tok_insufficient_funds` fails
for insufficient funds, anything else succeeds. A token ending in `_flaky` (e.g.
`tok_decline_flaky`) first answers 503 once per Idempotency-Key, as an overloaded gateway
would, then behaves as the token without the suffix: the caller's retry path in one test. A
token ending in `_slow` answers its first request per key after SLOW_SECONDS (a slow issuer
or 3-D Secure check), within the services' 5 s client timeout; a replay answers at once.
Every charge needs an `Idempotency-Key`: the same key with the same request returns the first
answer (never a second charge); the same key with a different request is refused with 422.
Charges are kept in PostgreSQL (schema `gateway_sim`), so they survive restarts and tests can
count them.

Bank transfers: `POST /v1/virtual-accounts` opens an account for an order (idempotent like a
charge). `POST /v1/virtual-accounts/{number}/transfers` plays the customer's bank paying into
it (before or after the account's deadline, as a real bank may): the simulator records the
transfer and, in the same transaction, a callback to the account's callback URL, signed
(HMAC-SHA256, `Gateway-Timestamp` / `Gateway-Signature`, see alur.runtime.signing). The
callback is tried at once, then again with backoff (0.5 s doubling to 30 s) for as long as
the merchant answers 5xx or nothing, until a 2xx acknowledges it; a 4xx refuses it for good.
`GET /v1/virtual-accounts/{number}/transfers` answers what was paid into an account: what a
merchant asks before it gives up on a transfer. An account is opened at a bank (`bank`: bca,
mandiri, bni or bri; bca by default), whose made-up company code starts its number.

App payments: `POST /v1/payment-requests` (idempotent per key) asks for a payment the
customer makes in an app: `qris`, a dynamic QRIS code for the amount (its payload in
`qr_string`; rupiah only, 422 otherwise), or `ewallet`, a push to the wallet app (`wallet`,
gopay by default) linked to `token`. `POST /v1/payment-requests/{id}/pay` plays the customer
scanning the code or approving the push: paid once (a second time is 409, as a dynamic QR
cannot be paid twice), and not after its deadline (410: the app no longer offers it). The
merchant hears of it by a signed `payment.completed` callback, retried like a transfer's.
`GET /v1/payment-requests/{id}/payments` answers what was paid on it.

Refunds (`POST /v1/refunds`) are idempotent per key like charges.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Literal

import asyncpg
import httpx
from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, Field

from alur.runtime.alarm import Alarm, next_look
from alur.runtime.db import transaction_only_reset
from alur.runtime.signing import signed_headers
from services.payments import qris
from services.payments.gateway import VA_PREFIXES

log = logging.getLogger("alur.gateway_sim")

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
CREATE TABLE IF NOT EXISTS {SCHEMA}.virtual_accounts (
    idempotency_key text PRIMARY KEY,
    account_number  text NOT NULL UNIQUE,
    reference       text NOT NULL,
    amount          bigint NOT NULL,
    currency        text NOT NULL,
    expires_at      timestamptz NOT NULL,
    callback_url    text NOT NULL,
    request_hash    text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE {SCHEMA}.virtual_accounts ADD COLUMN IF NOT EXISTS bank text NOT NULL
    DEFAULT 'bca';
CREATE TABLE IF NOT EXISTS {SCHEMA}.payment_requests (
    idempotency_key text PRIMARY KEY,
    id              text NOT NULL UNIQUE,
    reference       text NOT NULL,
    method          text NOT NULL,  -- qris | ewallet
    amount          bigint NOT NULL,
    currency        text NOT NULL,
    expires_at      timestamptz NOT NULL,
    callback_url    text NOT NULL,
    token           text,
    wallet          text,
    qr_string       text,
    request_hash    text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
-- Set when the merchant withdrew the request (its order was cancelled): it cannot be paid.
ALTER TABLE {SCHEMA}.payment_requests ADD COLUMN IF NOT EXISTS withdrawn_at timestamptz;
-- Set when the customer declined the e-wallet push in the app: it cannot be paid.
ALTER TABLE {SCHEMA}.payment_requests ADD COLUMN IF NOT EXISTS declined_at timestamptz;
-- Money in: a transfer into a virtual account, or the payment of a request (its id in
-- account_number).
CREATE TABLE IF NOT EXISTS {SCHEMA}.transfers (
    id             text PRIMARY KEY,
    account_number text NOT NULL,
    amount         bigint NOT NULL,
    currency       text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {SCHEMA}.refunds (
    idempotency_key   text PRIMARY KEY,
    id                text NOT NULL UNIQUE,
    reference         text NOT NULL,
    amount            bigint NOT NULL,
    currency          text NOT NULL,
    payment_reference text NOT NULL,
    request_hash      text NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS refunds_reference ON {SCHEMA}.refunds (reference);
CREATE INDEX IF NOT EXISTS transfers_account ON {SCHEMA}.transfers (account_number);
CREATE TABLE IF NOT EXISTS {SCHEMA}.callbacks (
    transfer_id     text PRIMARY KEY REFERENCES {SCHEMA}.transfers (id),
    url             text NOT NULL,
    body            text NOT NULL,
    status          text NOT NULL DEFAULT 'pending',  -- pending | acknowledged | refused
    attempts        integer NOT NULL DEFAULT 0,
    last_status     integer,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now()
);
-- A callback reports money in (its transfer's id) or a declined push (the decline's id).
ALTER TABLE {SCHEMA}.callbacks DROP CONSTRAINT IF EXISTS callbacks_transfer_id_fkey;
CREATE INDEX IF NOT EXISTS callbacks_due ON {SCHEMA}.callbacks (next_attempt_at)
    WHERE status = 'pending';
"""
CALLBACK_FIRST_BACKOFF, CALLBACK_MAX_BACKOFF = 0.5, 30.0
CALLBACK_ROUND = 0.5  # seconds between rounds of due callbacks
CALLBACK_IDLE = 5.0  # seconds an idle gateway sleeps at most between looks
CALLBACK_LEASE = 30.0  # a callback being tried is not due to anyone else meanwhile
OUTCOMES = {"tok_decline": "card_declined", "tok_insufficient_funds": "insufficient_funds"}
FLAKY = "_flaky"
SLOW, SLOW_SECONDS = "_slow", 4.0
MERCHANT_NMID = "ID1026000000001"  # the simulated merchant's QRIS national merchant id


class VirtualAccountRequest(BaseModel):
    reference: str = Field(min_length=1, description="The merchant's order id.")
    amount: int = Field(gt=0, description="Minor units the customer must transfer.")
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    expires_at: AwareDatetime
    callback_url: str = Field(min_length=1, description="Where the transfer is reported.")
    bank: Literal["bca", "mandiri", "bni", "bri"] = "bca"


class PaymentRequestBody(BaseModel):
    reference: str = Field(min_length=1, description="The merchant's order id.")
    amount: int = Field(gt=0, description="Minor units the customer pays.")
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    method: Literal["qris", "ewallet"]
    expires_at: AwareDatetime
    callback_url: str = Field(min_length=1, description="Where the payment is reported.")
    token: str | None = Field(None, description="ewallet: the customer's linked account.")
    wallet: Literal["gopay", "ovo", "dana", "shopeepay"] | None = None


class TransferRequest(BaseModel):
    amount: int = Field(gt=0)
    currency: str = Field(pattern=r"^[A-Z]{3}$")


class RefundRequest(BaseModel):
    reference: str = Field(min_length=1)
    amount: int = Field(gt=0)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    payment_reference: str = Field(min_length=1, description="The capture paid back.")


class ChargeRequest(BaseModel):
    reference: str = Field(min_length=1, description="The merchant's order id.")
    amount: int = Field(gt=0, description="Minor units.")
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    token: str | None = None


def _public(r: asyncpg.Record) -> dict[str, object]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in r.items()
            if k not in ("idempotency_key", "request_hash")}


async def _post_callback(client: httpx.AsyncClient, url: str, body: bytes,
                         secret: str) -> int:
    """POST the signed report once; its status (0 when the merchant did not answer)."""
    headers = {"Content-Type": "application/json",
               **signed_headers(secret, "POST", httpx.URL(url).raw_path.decode(), body,
                                prefix="Gateway")}
    try:
        return (await client.post(url, content=body, headers=headers)).status_code
    except httpx.HTTPError:
        return 0


async def deliver_callbacks(pool: asyncpg.Pool, client: httpx.AsyncClient, secret: str,
                            transfer_id: str | None = None) -> int:
    """Try the due callbacks (or the one of `transfer_id`) once; how many were tried. The
    rows are leased first and the POSTs made with no connection held: the merchant's answer
    may wait on a call it makes to this gateway."""
    rows = await pool.fetch(
        f"UPDATE {SCHEMA}.callbacks SET next_attempt_at = now() + make_interval(secs => $2)"
        f" WHERE transfer_id IN (SELECT transfer_id FROM {SCHEMA}.callbacks"
        "   WHERE status = 'pending' AND ($1::text IS NULL AND next_attempt_at <= now()"
        "     OR transfer_id = $1) ORDER BY next_attempt_at LIMIT 50 FOR UPDATE SKIP LOCKED)"
        " RETURNING transfer_id, url, body, attempts", transfer_id, CALLBACK_LEASE)
    statuses = await asyncio.gather(*(_post_callback(client, r["url"], r["body"].encode(),
                                                     secret) for r in rows))
    for r, status in zip(rows, statuses, strict=True):
        attempts = r["attempts"] + 1
        outcome = "acknowledged" if 200 <= status < 300 else \
            "refused" if 400 <= status < 500 else "pending"
        backoff = min(CALLBACK_MAX_BACKOFF, CALLBACK_FIRST_BACKOFF * 2 ** (attempts - 1))
        await pool.execute(
            f"UPDATE {SCHEMA}.callbacks SET status = $2, attempts = $3, last_status = $4,"
            " next_attempt_at = now() + make_interval(secs => $5) WHERE transfer_id = $1",
            r["transfer_id"], outcome, attempts, status, backoff)
    return len(rows)


def _row(r: asyncpg.Record) -> dict[str, object]:
    return {"id": r["id"], "reference": r["reference"], "amount": r["amount"],
            "currency": r["currency"], "status": r["status"],
            "failure_reason": r["failure_reason"]}


def _digest(body: BaseModel) -> str:
    return hashlib.sha256(body.model_dump_json().encode()).hexdigest()


def create_app(dsn: str, callback_secret: str) -> FastAPI:
    pools: dict[str, asyncpg.Pool] = {}

    client = httpx.AsyncClient(timeout=5.0)
    alarm = Alarm()

    async def retry_callbacks() -> None:
        """Retry the callbacks the merchant did not acknowledge, each when it is due: an idle
        gateway looks every CALLBACK_IDLE seconds, and a new callback wakes it (`alarm`)."""
        while True:
            wait = CALLBACK_ROUND
            try:
                if not await deliver_callbacks(pools["db"], client, callback_secret):
                    due = await pools["db"].fetchval(
                        f"SELECT extract(epoch FROM min(next_attempt_at) - now())"
                        f" FROM {SCHEMA}.callbacks WHERE status = 'pending'")
                    wait = next_look(due, CALLBACK_ROUND, CALLBACK_IDLE)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("cannot deliver callbacks: %s", exc)
            await alarm.sleep(wait, at_least=CALLBACK_ROUND)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("SELECT pg_advisory_lock(4242)")
            await conn.execute(DDL)
        finally:
            await conn.close()
        pools["db"] = await asyncpg.create_pool(dsn, min_size=1, max_size=10,
                                                   reset=transaction_only_reset)
        retrying = asyncio.create_task(retry_callbacks())
        yield
        retrying.cancel()
        await client.aclose()
        await pools["db"].close()

    app = FastAPI(title="Alur payment gateway simulator", lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Alive and its database answers."""
        await pools["db"].fetchval("SELECT 1")
        return {"status": "ok"}

    async def once(table: str, key: str, digest: str, values: dict[str, object],
                   render: Callable[[asyncpg.Record], dict[str, object]] = _public,
                   ) -> JSONResponse:
        """Insert the row for a new key; the same key again answers with the first row, and
        with another request (`digest`) 422."""
        columns = ["idempotency_key", "request_hash", *values]
        row = await pools["db"].fetchrow(
            f"INSERT INTO {SCHEMA}.{table} ({', '.join(columns)}) VALUES "
            f"({', '.join(f'${i + 1}' for i in range(len(columns)))}) "
            "ON CONFLICT (idempotency_key) DO NOTHING RETURNING *",
            key, digest, *values.values())
        if row is not None:
            return JSONResponse(render(row), status_code=201)
        first = await pools["db"].fetchrow(
            f"SELECT * FROM {SCHEMA}.{table} WHERE idempotency_key = $1", key)
        if first["request_hash"] != digest:
            return JSONResponse({"error": "idempotency key reused with another request"},
                                status_code=422)
        return JSONResponse(render(first), headers={"Idempotent-Replayed": "true"})

    stumbled: set[str] = set()  # idempotency keys a _flaky or _slow token met already

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
        if token.endswith(SLOW):
            token = token.removesuffix(SLOW)
            if idempotency_key not in stumbled:
                stumbled.add(idempotency_key)
                await asyncio.sleep(SLOW_SECONDS)
        digest = hashlib.sha256(json.dumps(body.model_dump(), sort_keys=True).encode()).hexdigest()
        reason = OUTCOMES.get(token)
        return await once("charges", idempotency_key, digest, {
            "id": f"ch_{uuid.uuid4().hex[:24]}", "reference": body.reference,
            "amount": body.amount, "currency": body.currency,
            "status": "failed" if reason else "succeeded", "failure_reason": reason}, _row)

    @app.post("/v1/virtual-accounts")
    async def open_virtual_account(body: VirtualAccountRequest,
                                   idempotency_key: str = Header(min_length=1)) -> JSONResponse:
        """Open a virtual account for one bank transfer; idempotent per Idempotency-Key."""
        return await once("virtual_accounts", idempotency_key, _digest(body), {
            "account_number": f"{VA_PREFIXES[body.bank]}{uuid.uuid4().int % 10**11:011d}",
            **body.model_dump()})

    @app.post("/v1/payment-requests")
    async def request_payment(body: PaymentRequestBody,
                              idempotency_key: str = Header(min_length=1)) -> JSONResponse:
        """A QRIS code or an e-wallet push for one payment; idempotent per Idempotency-Key."""
        if body.method == "qris" and body.currency != "IDR":
            return JSONResponse({"error": "QRIS pays rupiah (IDR) only"}, status_code=422)
        if body.method == "ewallet" and not body.token:
            return JSONResponse({"error": "an e-wallet push needs the customer's linked "
                                 "account (token)"}, status_code=422)
        request_id = f"pr_{uuid.uuid4().hex[:22]}"  # 25 characters: a QRIS bill number
        qr_string = qris.payload(
            merchant_id=MERCHANT_NMID, merchant_name="ALUR SIM", city="JAKARTA",
            postal_code="10110", amount=body.amount, bill_number=request_id) \
            if body.method == "qris" else None
        wallet = (body.wallet or "gopay") if body.method == "ewallet" else None
        return await once("payment_requests", idempotency_key, _digest(body), {
            "id": request_id, **body.model_dump(exclude={"wallet"}),
            "wallet": wallet, "qr_string": qr_string})

    async def locked_request(conn: asyncpg.Connection,
                             request_id: str) -> tuple[asyncpg.Record | None, bool]:
        """The payment request's row, locked until the caller's transaction ends (its payment,
        its decline and its withdrawal take turns, each seeing what the one before did), and
        whether it was paid."""
        request = await conn.fetchrow(
            f"SELECT * FROM {SCHEMA}.payment_requests WHERE id = $1 FOR UPDATE", request_id)
        paid = request is not None and bool(await conn.fetchval(
            f"SELECT true FROM {SCHEMA}.transfers WHERE account_number = $1", request_id))
        return request, paid

    @app.post("/v1/payment-requests/{request_id}/pay")
    async def pay_request(request_id: str) -> JSONResponse:
        """Simulation only: the customer scans the QR code or approves the push."""
        payment_id = f"py_{uuid.uuid4().hex[:24]}"
        async with pools["db"].acquire() as conn, conn.transaction():
            request, paid = await locked_request(conn, request_id)
            if request is None:
                return JSONResponse({"error": "no such payment request"}, status_code=404)
            if request["expires_at"] <= datetime.now(UTC):
                return JSONResponse({"error": "the payment request has expired"},
                                    status_code=410)
            if request["withdrawn_at"] is not None:
                return JSONResponse({"error": "the merchant withdrew the payment request"},
                                    status_code=410)
            if request["declined_at"] is not None:
                return JSONResponse({"error": "the customer declined the push"},
                                    status_code=410)
            if paid:  # one payment per request
                return JSONResponse({"error": "already paid"}, status_code=409)
            report = json.dumps({
                "type": "payment.completed", "id": payment_id,
                "reference": request["reference"], "request_id": request_id,
                "amount": request["amount"], "currency": request["currency"]})
            await record_money_in(conn, payment_id, request_id, request["amount"],
                                  request["currency"], request["callback_url"], report)
        return await report_now(payment_id)

    @app.post("/v1/payment-requests/{request_id}/decline")
    async def decline_request(request_id: str) -> JSONResponse:
        """Simulation only: the customer declines the e-wallet push in the app. The merchant
        is told by a signed callback (`payment.declined`). A QRIS code cannot be declined (it
        lapses); a paid or withdrawn request no longer can be."""
        decline_id = f"dc_{uuid.uuid4().hex[:24]}"
        async with pools["db"].acquire() as conn, conn.transaction():
            request, paid = await locked_request(conn, request_id)
            if request is None:
                return JSONResponse({"error": "no such payment request"}, status_code=404)
            if request["method"] != "ewallet":
                return JSONResponse({"error": "only an e-wallet push can be declined"},
                                    status_code=409)
            if request["declined_at"] is not None:
                return JSONResponse({"error": "declined already"}, status_code=409)
            if request["withdrawn_at"] is not None or request["expires_at"] <= datetime.now(UTC):
                return JSONResponse({"error": "the push is gone"}, status_code=410)
            if paid:
                return JSONResponse({"error": "already paid"}, status_code=409)
            await conn.execute(f"UPDATE {SCHEMA}.payment_requests SET declined_at = now()"
                               " WHERE id = $1", request_id)
            report = json.dumps({
                "type": "payment.declined", "id": decline_id,
                "reference": request["reference"], "request_id": request_id,
                "amount": request["amount"], "currency": request["currency"]})
            await queue_callback(conn, decline_id, request["callback_url"], report)
        return await report_now(decline_id)

    @app.post("/v1/payment-requests/{request_id}/withdraw")
    async def withdraw_request(request_id: str) -> JSONResponse:
        """The merchant withdraws a request nobody has paid (its order was cancelled): the code
        or push can no longer be paid. 409 once it was paid; asked again, the same answer."""
        async with pools["db"].acquire() as conn, conn.transaction():
            request, paid = await locked_request(conn, request_id)
            if request is None:
                return JSONResponse({"error": "no such payment request"}, status_code=404)
            if paid:
                return JSONResponse({"error": "already paid"}, status_code=409)
            await conn.execute(f"UPDATE {SCHEMA}.payment_requests SET withdrawn_at ="
                               " coalesce(withdrawn_at, now()) WHERE id = $1", request_id)
        return JSONResponse({"id": request_id, "status": "withdrawn"})

    @app.post("/v1/virtual-accounts/{account_number}/transfers")
    async def transfer(account_number: str, body: TransferRequest) -> JSONResponse:
        """Simulation only: the customer's bank pays into the account; the merchant is told."""
        account = await pools["db"].fetchrow(
            f"SELECT * FROM {SCHEMA}.virtual_accounts WHERE account_number = $1", account_number)
        if account is None:
            return JSONResponse({"error": "no such account"}, status_code=404)
        transfer_id = f"tr_{uuid.uuid4().hex[:24]}"
        report = json.dumps({
            "type": "transfer.received", "id": transfer_id, "reference": account["reference"],
            "account_number": account_number, "amount": body.amount,
            "currency": body.currency})
        async with pools["db"].acquire() as conn, conn.transaction():
            await record_money_in(conn, transfer_id, account_number, body.amount,
                                  body.currency, account["callback_url"], report)
        return await report_now(transfer_id)

    async def record_money_in(conn: asyncpg.Connection, money_id: str, into: str, amount: int,
                              currency: str, callback_url: str, report: str) -> None:
        """The money and its callback, in the caller's transaction."""
        await conn.execute(
            f"INSERT INTO {SCHEMA}.transfers (id, account_number, amount, currency) "
            "VALUES ($1, $2, $3, $4)", money_id, into, amount, currency)
        await queue_callback(conn, money_id, callback_url, report)

    async def queue_callback(conn: asyncpg.Connection, callback_id: str, url: str,
                             report: str) -> None:
        """A callback to deliver (money in, or a declined push), in the caller's transaction.
        Due for the retry loop only after the request's own first try (report_now)."""
        await conn.execute(
            f"INSERT INTO {SCHEMA}.callbacks (transfer_id, url, body, next_attempt_at)"
            " VALUES ($1, $2, $3, now() + make_interval(secs => $4))", callback_id, url, report,
            CALLBACK_FIRST_BACKOFF)

    async def report_now(callback_id: str) -> JSONResponse:
        """Try the callback once now; the retry loop has it after that."""
        await deliver_callbacks(pools["db"], client, callback_secret, callback_id)
        alarm.due(datetime.now(UTC) + timedelta(seconds=CALLBACK_FIRST_BACKOFF))
        status = await pools["db"].fetchval(
            f"SELECT last_status FROM {SCHEMA}.callbacks WHERE transfer_id = $1", callback_id)
        return JSONResponse({"id": callback_id, "callback_status": status}, status_code=201)

    @app.get("/v1/virtual-accounts/{account_number}/transfers")
    async def transfers_into(account_number: str) -> JSONResponse:
        """What was paid into the account so far, oldest first."""
        return await money_in("virtual_accounts", "account_number", account_number,
                              "no such account")

    @app.get("/v1/payment-requests/{request_id}/payments")
    async def paid_on_request(request_id: str) -> JSONResponse:
        """What was paid on the request so far."""
        return await money_in("payment_requests", "id", request_id, "no such payment request")

    async def money_in(table: str, column: str, into: str, unknown: str) -> JSONResponse:
        """The money paid into an account or on a request (`into`, a row of `table`), oldest
        first; 404 with `unknown` when there is no such row."""
        if not await pools["db"].fetchval(
                f"SELECT true FROM {SCHEMA}.{table} WHERE {column} = $1", into):
            return JSONResponse({"error": unknown}, status_code=404)
        rows = await pools["db"].fetch(
            f"SELECT id, amount, currency, created_at FROM {SCHEMA}.transfers"
            " WHERE account_number = $1 ORDER BY created_at, id", into)
        return JSONResponse([_public(r) for r in rows])

    @app.post("/v1/refunds")
    async def refund(body: RefundRequest,
                     idempotency_key: str = Header(min_length=1)) -> JSONResponse:
        """Pay (part of) a capture back; idempotent per Idempotency-Key."""
        return await once("refunds", idempotency_key, _digest(body), {
            "id": f"re_{uuid.uuid4().hex[:24]}", **body.model_dump()})

    @app.get("/v1/refunds")
    async def list_refunds(reference: str) -> list[dict[str, object]]:
        """Refunds made for one merchant reference (order id)."""
        rows = await pools["db"].fetch(
            f"SELECT * FROM {SCHEMA}.refunds WHERE reference = $1 ORDER BY created_at", reference)
        return [_public(r) for r in rows]

    @app.get("/v1/charges")
    async def list_charges(reference: str) -> list[dict[str, object]]:
        """Charges made for one merchant reference (order id)."""
        rows = await pools["db"].fetch(
            f"SELECT * FROM {SCHEMA}.charges WHERE reference = $1 ORDER BY created_at", reference)
        return [_row(r) for r in rows]

    return app
