"""One customer per shop across channels: identity, the shop's view, the loyalty ledger.

**Identity.** An order names its customer by any of four identifiers: the shop's own
reference (`customer.customer_id`), a loyalty card number, an e-mail address, a phone number
(schemas.orders.Customer normalises them: e-mail compared in lower case, phones in E.164 with
Indonesian `08…` numbers). When the order is placed, in its own transaction, `resolve` finds
the customer they name:
  * the strongest identifier already known decides (reference, then card, then e-mail, then
    phone); none known, the order makes a new customer `cus_…`;
  * the order's identifiers not known before are linked to that customer by a
    `CustomerIdentified` event in the order's stream, so a replay links them again;
  * an identifier known for another customer stays with that one: two customers are never
    merged behind the shop's back;
  * each identifier is looked up under a transaction lock on it (`customer_resolve` in
    migrations/106_customers.sql), so two orders bringing the same new e-mail at once make
    one customer, not two;
  * a till sale may name nobody: it belongs to no customer;
  * identifiers are compared, stored and published as keyed hashes (`digest`), never in
    clear.

**Personal data** (the identifiers, the name, the street) is sealed in the order's event with
the customer's own key (`seal_order`, alur/runtime/keyring.py); the services that need it
open it when they use it (the e-mail's recipient, the parcel's street, a webhook to the
shop). `forget` deletes the key: every copy, in every event store and on every topic, becomes
ciphertext nobody can open, while the orders, their money, stock and points stay as they were.

**Read model.** `customer_identifiers`, `customer_orders` and `loyalty_ledger` are kept from
the events by a trigger (migrations/106_customers.sql); the orders' amounts and dates come
from the sales projection.

**Loyalty.** Points are accrued when an order completes and reversed when it is returned
(services/orders/domain.py). Each accrual is a lot that expires `expiry` after it was earned
(ALUR_LOYALTY_EXPIRY_DAYS, 365 by default); a reversal takes back what is left of its order's
lot. An order may spend points (`loyalty_points`): they are held when it is placed, under a
lock on the customer's ledger (`available_points`), spent when it is paid, and given back when
it is cancelled or returned. Expiry is computed when the ledger is read, from the lots' dates:
nothing needs to run for points to expire, and every reader computes the same balance.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from alur.runtime import keyring
from alur.runtime.errors import ConcurrencyConflict
from schemas.envelope import random_uuid
from schemas.orders import (
    Customer,
    CustomerIdentifier,
    IdentifierKind,
    OrderPlacedData,
    Sealed,
)


@dataclass(frozen=True)
class Resolved:
    """Who an order's customer is: Alur's id (None for an anonymous till sale) and the
    identifiers the order links to it for the first time."""

    customer_id: str | None
    linked: tuple[CustomerIdentifier, ...] = ()
    new: bool = False
    key: bytes | None = None  # the customer's key, which seals the order's personal data


def new_customer_id() -> str:
    return f"cus_{random_uuid().hex}"


def digest(pepper: str, shop_id: str, kind: str, value: str) -> str:
    """The identifier as identity compares it: a keyed hash, never the identifier."""
    return hmac.new(pepper.encode(), f"{shop_id}\n{kind}\n{value}".encode(),
                    hashlib.sha256).hexdigest()


async def resolve(conn: asyncpg.Connection, shop_id: str, customers: Sequence[Customer],
                  pepper: str) -> list[Resolved]:
    """Resolve the customers of orders placed together in one transaction (a till's batch
    holds many), in one round trip that also makes a new customer's key. The transaction
    holds each identifier's lock until it commits, with the links it records."""
    wanted = [[(kind, digest(pepper, shop_id, kind, value)) for kind, value in c.identifiers()]
              for c in customers]
    out = [Resolved(None) for _ in customers]
    flat = [(i, kind, d) for i, ids in enumerate(wanted) for kind, d in ids]
    if not flat:
        return out
    rows = await conn.fetch(
        "SELECT * FROM customer_resolve($1, $2::int[], $3::text[], $4::text[], $5::text[],"
        " $6::bytea[])", shop_id, [i for i, _, _ in flat], [k for _, k, _ in flat],
        [d for _, _, d in flat], [new_customer_id() for _ in customers],
        [os.urandom(32) for _ in customers])
    for r in rows:
        if r["r_key"] is None:  # forgotten after its identifier was read: decide again
            raise ConcurrencyConflict(f"customer {r['r_customer']} was just forgotten")
        out[r["r_order"]] = Resolved(
            r["r_customer"], tuple(CustomerIdentifier(kind=k, digest=d)
                                   for k, d in zip(r["r_kinds"], r["r_digests"], strict=True)),
            new=r["r_new"], key=bytes(r["r_key"]))
    return out


def seal_order(order: OrderPlacedData, customer: Resolved) -> OrderPlacedData:
    """The order as it is recorded: naming its customer, whose personal data (identifiers,
    name, street) is sealed with the customer's key. An order of nobody (an anonymous till
    sale) has nothing to seal."""
    customer_id, key = customer.customer_id, customer.key
    order = order.model_copy(update={"alur_customer_id": customer_id})
    if customer_id is None or key is None:
        return order
    address = order.delivery.address
    who = order.customer.model_dump(mode="json", exclude_none=True)
    personal = {"customer": who, "line1": address.line1 if address else None}
    fields = [*who, *(["line1"] if address and address.line1 else [])]
    delivery = order.delivery if address is None else order.delivery.model_copy(
        update={"address": address.model_copy(update={"line1": None})})
    return order.model_copy(update={"customer": Customer(), "delivery": delivery,
                                    "personal": keyring.seal(key, customer_id, personal, fields)})


def opened(order: OrderPlacedData, personal: dict[str, Any]) -> OrderPlacedData:
    """The order with its sealed personal data put back (`personal` from keyring.unseal)."""
    address = order.delivery.address
    delivery = order.delivery if address is None else order.delivery.model_copy(
        update={"address": address.model_copy(update={"line1": personal.get("line1")})})
    return order.model_copy(update={
        "customer": Customer.model_validate(personal.get("customer", {})),
        "delivery": delivery, "personal": None})


async def forget(conn: asyncpg.Connection, shop_id: str, customer_id: str) -> list[str]:
    """Forget the shop's customer in the caller's transaction: delete their key (every copy
    of their personal data in every event, on every topic, is ciphertext nobody can open any
    more) and their identifiers. Orders, money, stock and points stay. Refused while an order
    of theirs is still on its way (it needs the address and e-mail): returns those orders,
    and forgets nothing, unless there are none. Raises LookupError for no such customer."""
    if not await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM customer_orders WHERE customer_id = $1 AND"
            " shop_id = $2) OR EXISTS (SELECT 1 FROM customer_identifiers WHERE customer_id = $1"
            " AND shop_id = $2)", customer_id, shop_id):
        raise LookupError(customer_id)
    await conn.execute("SELECT customer_lock($1, $2)", shop_id, customer_id)
    open_orders = [r["order_id"] for r in await conn.fetch(
        "SELECT c.order_id FROM customer_orders c JOIN sales_orders s USING (order_id)"
        " WHERE c.customer_id = $1 AND s.cancelled_at IS NULL AND s.completed_at IS NULL"
        " AND s.returned_at IS NULL AND s.delivered_at IS NULL ORDER BY c.order_id",
        customer_id)]
    if open_orders:
        return open_orders
    await keyring.forget(conn, customer_id)
    await conn.execute("DELETE FROM customer_identifiers WHERE customer_id = $1", customer_id)
    return []


# The loyalty ledger.

@dataclass(frozen=True)
class LedgerEntry:
    kind: str  # accrued, reversed, held, redeemed, released, expired
    order_id: str
    at: datetime
    change: int  # signed, as it moved the balance
    balance: int  # after it


@dataclass
class Ledger:
    balance: int = 0
    entries: list[LedgerEntry] = field(default_factory=list)
    issued: int = 0
    reversed: int = 0
    redeemed: int = 0  # spent on orders that were paid
    held: int = 0  # held for orders not paid yet
    expired: int = 0
    # Holds beyond the balance, (order, points short): never, if every hold took the lock.
    overdrawn: list[tuple[str, int]] = field(default_factory=list)


def ledger(rows: Sequence[tuple[str, str, int, datetime]], now: datetime,
           expiry: timedelta) -> Ledger:
    """The balance and its history from (kind, order_id, points, at) rows.

    Each order's accrual is a lot that expires `expiry` after it was earned. A hold (points
    redeemed on an order) takes from the lots that expire first; the points are spent when
    the order is paid (`redeemed`: no change) or come back to the lots they came from when it
    is cancelled or returned (`released`), expiring at once if their lot expired meanwhile.
    A reversal takes back at most what is left of its order's lot, so the balance is never
    negative."""
    lots: dict[str, list[Any]] = {}  # order -> [points left, expires at]
    holds: dict[str, list[tuple[str, int, datetime]]] = {}  # order -> (lot, points, expiry)
    spent: set[str] = set()
    out = Ledger()

    def book(kind: str, order_id: str, at: datetime, change: int) -> None:
        out.balance += change
        out.entries.append(LedgerEntry(kind, order_id, at, change, out.balance))

    def expire_until(when: datetime) -> None:
        for order_id, (left, at) in sorted(lots.items(), key=lambda kv: kv[1][1]):
            if at > when:
                break
            del lots[order_id]
            if left:
                out.expired += left
                book("expired", order_id, at, -left)

    for kind, order_id, points, at in sorted(rows, key=lambda r: r[3]):
        expire_until(at)
        if kind == "accrued" and order_id not in lots:  # one accrual an order
            lots[order_id] = [points, at + expiry]
            out.issued += points
            book("accrued", order_id, at, points)
        elif kind == "reversed":
            taken = min(points, lots[order_id][0]) if order_id in lots else 0
            if taken:
                lots[order_id][0] -= taken
            out.reversed += taken
            book("reversed", order_id, at, -taken)
        elif kind == "held" and order_id not in holds:
            took, need = [], points
            for lot_id, lot in sorted(lots.items(), key=lambda kv: kv[1][1]):
                part = min(need, lot[0])
                if part:
                    lot[0] -= part
                    need -= part
                    took.append((lot_id, part, lot[1]))
            holds[order_id] = took
            if need:
                out.overdrawn.append((order_id, need))
            out.held += points - need
            book("held", order_id, at, need - points)
        elif kind == "redeemed" and order_id in holds and order_id not in spent:
            spent.add(order_id)
            amount = sum(part for _, part, _ in holds[order_id])
            out.held -= amount
            out.redeemed += amount
            book("redeemed", order_id, at, 0)
        elif kind == "released" and order_id in holds:
            took = holds.pop(order_id)
            amount = sum(part for _, part, _ in took)
            if order_id in spent:
                spent.discard(order_id)
                out.redeemed -= amount
            else:
                out.held -= amount
            for lot_id, part, expires in took:
                lots.setdefault(lot_id, [0, expires])[0] += part
            book("released", order_id, at, amount)
            expire_until(at)
    expire_until(now)
    return out


async def available_points(conn: asyncpg.Connection, customer_id: str, now: datetime,
                           expiry: timedelta) -> int:
    """The customer's balance, read under the customer's loyalty lock, which the transaction
    holds until it commits: an order that spends points checks them against this and holds
    them before anyone else can spend them."""
    rows = await conn.fetch("SELECT kind, order_id, points, at FROM loyalty_ledger_locked($1)",
                            customer_id)
    return ledger([(r["kind"], r["order_id"], r["points"], r["at"]) for r in rows], now,
                  expiry).balance


# The shop's view of a customer.

def order_status(row: asyncpg.Record) -> str:
    """Where the order is in the sales flow, as the sales projection records it."""
    for column, status in (("cancelled_at", "cancelled"), ("returned_at", "returned"),
                           ("completed_at", "completed"), ("delivered_at", "delivered"),
                           ("paid_at", "paid")):
        if row[column] is not None:
            return status
    return "placed"


def _preferred(values: Sequence[str | None]) -> str | None:
    """The most frequent value; a tie goes to the most recent (values are newest first)."""
    counts = Counter(v for v in values if v is not None)
    if not counts:
        return None
    top = max(counts.values())
    return next(v for v in values if v is not None and counts[v] == top)


async def find(conn: asyncpg.Connection, shop_id: str, kind: IdentifierKind, value: str,
               pepper: str) -> str | None:
    return await conn.fetchval(  # type: ignore[no-any-return]
        "SELECT customer_id FROM customer_identifiers WHERE shop_id = $1 AND kind = $2"
        " AND digest = $3", shop_id, kind, digest(pepper, shop_id, kind, value))


async def _identifier_values(conn: asyncpg.Connection, customer_id: str,
                             order_ids: Sequence[str]) -> dict[tuple[str, str], str]:
    """(order, kind) -> the identifier, from the sealed personal data of the orders that
    linked them (empty once the customer is forgotten)."""
    keys = await keyring.keys_of(conn, [customer_id])
    if customer_id not in keys:
        return {}
    out: dict[tuple[str, str], str] = {}
    for r in await conn.fetch(
            "SELECT stream_id, body->'data'->'personal' AS personal FROM events"
            " WHERE stream_id = ANY($1::text[]) AND type = 'OrderPlaced'", list(order_ids)):
        if r["personal"] is None:
            continue
        personal = keyring.unseal(keys[customer_id], Sealed.model_validate_json(r["personal"]))
        for kind, value in Customer.model_validate(personal.get("customer", {})).identifiers():
            out[(r["stream_id"], kind)] = value
    return out


async def view(conn: asyncpg.Connection, shop_id: str, customer_id: str, now: datetime,
               expiry: timedelta) -> dict[str, Any] | None:
    """What the shop sees of its customer, or None if the shop has no such customer. A
    forgotten customer shows as erased: no identifiers, the orders and points as they were."""
    identifiers = await conn.fetch(
        "SELECT kind, linked_at, order_id FROM customer_identifiers"
        " WHERE customer_id = $1 AND shop_id = $2 ORDER BY linked_at, kind", customer_id,
        shop_id)
    erased = bool(await conn.fetchval(
        "SELECT count(*) FROM keyring.forgotten WHERE customer_id = $1 AND shop_id = $2",
        customer_id, shop_id))
    if not identifiers and not erased:
        return None
    shown = await _identifier_values(conn, customer_id, [r["order_id"] for r in identifiers])
    orders = await conn.fetch(
        "SELECT c.order_id, c.channel, c.placed_at, s.payment_method, s.total_amount,"
        " s.currency, s.paid_at, s.delivered_at, s.completed_at, s.cancelled_at, s.returned_at"
        " FROM customer_orders c LEFT JOIN sales_orders s USING (order_id)"
        " WHERE c.customer_id = $1 AND c.shop_id = $2 ORDER BY c.placed_at DESC, c.order_id",
        customer_id, shop_id)
    rows = await conn.fetch(
        "SELECT kind, order_id, points, at FROM loyalty_ledger WHERE customer_id = $1"
        " ORDER BY at, event_id", customer_id)
    points = ledger([(r["kind"], r["order_id"], r["points"], r["at"]) for r in rows], now,
                    expiry)
    listed = [{"order_id": o["order_id"], "channel": o["channel"], "status": order_status(o),
               "payment_method": o["payment_method"], "total_amount": o["total_amount"],
               "currency": o["currency"], "placed_at": o["placed_at"]} for o in orders]
    kept = [o for o in orders if o["paid_at"] is not None and o["cancelled_at"] is None
            and o["returned_at"] is None and o["total_amount"] is not None]
    values: dict[str, int] = {}
    for o in kept:
        values[o["currency"]] = values.get(o["currency"], 0) + o["total_amount"]
    return {
        "customer_id": customer_id,
        "erased": erased,
        "identifiers": [{"kind": r["kind"], "value": shown.get((r["order_id"], r["kind"])),
                         "linked_at": r["linked_at"], "order_id": r["order_id"]}
                        for r in identifiers],
        "orders": listed,
        "order_count": len(listed),
        "lifetime_value": [{"amount": amount, "currency": currency}
                           for currency, amount in sorted(values.items())],
        "first_order_at": orders[-1]["placed_at"] if orders else None,
        "last_order_at": orders[0]["placed_at"] if orders else None,
        "preferred_channel": _preferred([o["channel"] for o in orders]),
        "preferred_payment_method": _preferred([o["payment_method"] for o in orders]),
        "loyalty": {
            "balance": points.balance, "issued": points.issued, "reversed": points.reversed,
            "held": points.held, "redeemed": points.redeemed, "expired": points.expired,
            "expiry_days": expiry / timedelta(days=1),
            "ledger": [{"kind": e.kind, "order_id": e.order_id, "at": e.at,
                        "change": e.change, "balance": e.balance} for e in points.entries]},
    }
