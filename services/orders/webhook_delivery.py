"""Delivering the shops' webhooks from the delivery log (`webhook_deliveries`).

A trigger on the event store queues one delivery per subscription and event, in the same
transaction as the event (see migration 102), so nothing is lost and nothing queued twice.
This loop leases due deliveries (one statement: `FOR UPDATE SKIP LOCKED`, then their next
attempt pushed past the POST's timeout, so any replica of the orders service may run it and
none takes another's), POSTs each event's CloudEvents JSON to the subscription's URL with no
transaction open and no row locked, then records every outcome in one statement:

- `Alur-Timestamp`, `Alur-Signature`: HMAC-SHA256 (alur.runtime.signing) over timestamp,
  method, path and body with the subscription's secret; during a rotation the header holds
  two signatures, new secret first, separated by a space.
- `Alur-Delivery`: the event id. A delivery whose answer was lost (a crash between the POST
  and its record) is sent again with the same id once its lease lapses, so the shop can tell
  it saw it already.
- Any 2xx is delivered. Anything else (a redirect too: none is followed), or no answer within
  the timeout, is tried again after `backoff * 2 ** (attempts - 1)` seconds, up to
  `max_attempts`; then the delivery is marked failed. Every attempt leaves its status code or
  error in the log.
- Before each POST the URL's host is resolved and checked against the egress policy
  (alur.runtime.egress), and the POST goes to the address that was checked. A URL the policy
  refuses is marked failed at once, without a request.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import asyncpg
import httpx

from alur.runtime import alarm, keyring
from alur.runtime.db import DATABASE_ERRORS
from alur.runtime.egress import EgressPolicy, EgressRefused
from alur.runtime.signing import sign, signed_headers
from schemas import decode, encode
from schemas.orders import OrderPlacedData
from services.orders import customers

log = logging.getLogger("alur.orders.webhooks")
IDLE = 5.0  # seconds an idle delivery loop sleeps at most


@dataclass(frozen=True)
class DeliveryPolicy:
    backoff: float = 1.0
    max_attempts: int = 8
    timeout: float = 5.0
    batch: int = 50


def signature_headers(secret: str, previous: str | None, url: str, body: bytes) -> dict[str, str]:
    split = urlsplit(url)
    path = split.path or "/"
    if split.query:
        path += "?" + split.query
    headers = signed_headers(secret, "POST", path, body)
    if previous is not None:
        headers["Alur-Signature"] += " " + sign(previous, headers["Alur-Timestamp"], "POST",
                                                 path, body)
    return headers


def next_attempt(now: datetime, attempts: int, policy: DeliveryPolicy) -> datetime:
    return now + timedelta(seconds=policy.backoff * 2 ** (attempts - 1))


async def run(pool: asyncpg.Pool, client: httpx.AsyncClient, policy: DeliveryPolicy,
              egress: EgressPolicy, interval: float, idle: float = IDLE) -> None:
    """Deliver for good: a round every `interval` seconds while there is work; otherwise sleep
    until the next retry is due, at most `idle` seconds, or until this process commits new
    events (alur.runtime.alarm). An idle service costs a query every few seconds."""
    clock = alarm.WRITES = alarm.Alarm()
    while True:
        wait = interval
        try:
            if not await deliver_due(pool, client, policy, egress):
                wait = alarm.next_look(await pool.fetchval(
                    "SELECT extract(epoch FROM min(next_attempt_at) - now())"
                    " FROM webhook_deliveries WHERE status = 'pending'"), interval, idle)
        except DATABASE_ERRORS as exc:
            log.warning("cannot deliver webhooks: %s", exc)
            wait = interval
        await clock.sleep(wait, at_least=interval)


# A leased delivery comes due again this long after its POST's timeout (a crashed round).
LEASE_MARGIN = 30.0


async def deliver_due(pool: asyncpg.Pool, client: httpx.AsyncClient,
                      policy: DeliveryPolicy, egress: EgressPolicy) -> int:
    """One round: POST every due delivery (up to `policy.batch`); how many were attempted."""
    rows = await pool.fetch(
        "WITH due AS (SELECT webhook_id, event_id FROM webhook_deliveries"
        " WHERE status = 'pending' AND next_attempt_at <= now()"
        " ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)"
        " UPDATE webhook_deliveries d"
        " SET next_attempt_at = now() + make_interval(secs => $2)"
        " FROM due JOIN webhooks w USING (webhook_id) JOIN events e USING (event_id)"
        " WHERE d.webhook_id = due.webhook_id AND d.event_id = due.event_id"
        " RETURNING d.webhook_id, d.event_id, d.attempts, w.url, w.secret,"
        " CASE WHEN w.previous_until > now() THEN w.previous_secret END AS previous,"
        " e.body::text AS body, now() AS now", policy.batch, policy.timeout + LEASE_MARGIN)
    if not rows:
        return 0
    bodies = [await for_the_shop(pool, r["body"]) for r in rows]
    outcomes = await asyncio.gather(*(_post(client, r, body, egress)
                                      for r, body in zip(rows, bodies, strict=True)))
    recorded: list[tuple[object, ...]] = []
    for r, (status, error) in zip(rows, outcomes, strict=True):
        attempts = r["attempts"] + 1
        ok = status is not None and 200 <= status < 300
        refused = status is None and error is not None and error.startswith(REFUSED)
        state = "delivered" if ok else \
            "failed" if attempts >= policy.max_attempts or refused else "pending"
        if state == "failed":
            log.warning("webhook %s gave up on event %s after %d attempts: %s",
                        r["webhook_id"], r["event_id"], attempts, error or status)
        recorded.append((r["webhook_id"], r["event_id"], state, attempts, status, error,
                         next_attempt(r["now"], attempts, policy)))
    await pool.execute(
        "UPDATE webhook_deliveries d SET status = o.status, attempts = o.attempts,"
        " last_status = o.last_status, last_error = o.last_error,"
        " next_attempt_at = o.next_at,"
        " delivered_at = CASE WHEN o.status = 'delivered' THEN now() END"
        " FROM unnest($1::text[], $2::uuid[], $3::text[], $4::int[], $5::int[], $6::text[],"
        " $7::timestamptz[]) AS o(webhook_id, event_id, status, attempts, last_status,"
        " last_error, next_at)"
        " WHERE d.webhook_id = o.webhook_id AND d.event_id = o.event_id",
        *(list(column) for column in zip(*recorded, strict=True)))
    return len(rows)


REFUSED = "refused by the egress policy: "


async def for_the_shop(pool: asyncpg.Pool, body: str) -> bytes:
    """The event as the shop reads it: an order's sealed personal data opened (its own
    customer's), or left out once the customer was forgotten."""
    if '"personal": {' not in body:  # jsonb's text: one space after each colon
        return body.encode()
    event = decode(body)
    data = event.data
    if isinstance(data, OrderPlacedData) and data.personal is not None:
        try:
            data = customers.opened(data, await keyring.open_sealed(pool, data.personal))
        except keyring.Erased:
            data = data.model_copy(update={"personal": None})
        event = event.model_copy(update={"data": data})
    return encode(event)


async def _post(client: httpx.AsyncClient, row: asyncpg.Record, body: bytes,
                egress: EgressPolicy) -> tuple[int | None, str | None]:
    try:
        target = await egress.resolve(row["url"])
    except EgressRefused as exc:
        return None, f"{REFUSED}{exc}"[:500]
    except (OSError, TimeoutError) as exc:
        return None, f"cannot resolve the URL's host: {exc}"[:500]
    url = httpx.URL(row["url"])
    headers = {"Content-Type": "application/cloudevents+json",
               "Alur-Delivery": str(row["event_id"]), "Host": url.netloc.decode("ascii"),
               **signature_headers(row["secret"], row["previous"], row["url"], body)}
    try:
        # To the address just checked, not to the name: a second lookup could answer another.
        response = await client.post(
            url.copy_with(host=target.address), content=body, headers=headers,
            extensions={"sni_hostname": target.host}, follow_redirects=False)
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"[:500]
    error = None if response.is_success else response.text[:200] or response.reason_phrase
    return response.status_code, error
