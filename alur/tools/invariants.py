"""The invariant checker: DESIGN.md's invariants, verified across every service's tables.

Used by the end-to-end tests, the demo's summary and `alur check`. Each check reads the
services' event stores, audit logs and the stock table (and the gateway simulator's ledger,
when there is one) and names every violating order. Reading several schemas at once is what
a checker is for; no service does it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from alur.settings import SERVICES, Settings

TERMINAL = ("OrderCompleted", "OrderCancelled", "OrderReturned")


@dataclass(frozen=True)
class Violation:
    invariant: str
    order_id: str | None
    detail: str


@dataclass
class Report:
    orders: int = 0
    violations: list[Violation] = field(default_factory=list)
    unsettled: list[tuple[str, str]] = field(default_factory=list)  # (order, last event)

    def add(self, invariant: str, rows: Sequence[asyncpg.Record | dict[str, Any]],
            detail: str) -> None:
        self.violations += [Violation(invariant, r["order_id"], detail.format(**dict(r)))
                            for r in rows]

    def by_invariant(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for v in self.violations:
            counts[v.invariant] = counts.get(v.invariant, 0) + 1
        return counts


async def check(conn: asyncpg.Connection, order_ids: Sequence[str] | None = None) -> Report:
    """Check the given orders (all orders when None)."""
    ids = list(order_ids) if order_ids is not None else None
    report = Report(orders=int(await conn.fetchval(
        "SELECT count(*) FROM orders.events WHERE type = 'OrderPlaced'"
        " AND ($1::text[] IS NULL OR stream_id = ANY($1))", ids)))
    await _one_terminal_state(conn, ids, report)
    await _no_oversell(conn, ids, report)
    await _money(conn, ids, report)
    await _loyalty(conn, ids, report)
    await _no_duplicate_effects(conn, ids, report)
    await _nothing_lost(conn, ids, report)
    await _order_and_audit(conn, ids, report)
    return report


async def _one_terminal_state(conn: asyncpg.Connection, ids: list[str] | None,
                              report: Report) -> None:
    rows = await conn.fetch(
        "SELECT stream_id AS order_id,"
        " count(*) FILTER (WHERE type = 'OrderCancelled') AS cancelled,"
        " count(*) FILTER (WHERE type = 'OrderCompleted') AS completed,"
        " count(*) FILTER (WHERE type = 'OrderReturned') AS returned,"
        " bool_or(type = 'Delivered' OR type = 'PickedUp') AS delivered,"
        " bool_or(type = 'ReturnedToSender') AS sent_back,"
        " (array_agg(type ORDER BY version DESC))[1] AS last"
        " FROM orders.events WHERE ($1::text[] IS NULL OR stream_id = ANY($1))"
        " GROUP BY stream_id", ids)
    report.add("1 one terminal state", [
        r for r in rows if r["cancelled"] > 1 or r["completed"] > 1 or r["returned"] > 1
        or (r["cancelled"] and (r["completed"] or r["returned"]))],
        "cancelled {cancelled}x, completed {completed}x, returned {returned}x")
    # A cancel that came after the courier collected the parcel recalls it; delivered anyway,
    # the customer has the goods of an order the platform ended.
    report.add("1 one terminal state", [
        r for r in rows if r["cancelled"] and r["delivered"] and not r["sent_back"]],
        "cancelled, yet its parcel reached the customer")
    # Delivered orders wait for the customer or for auto-completion: settled for the platform.
    report.unsettled = [(r["order_id"], r["last"]) for r in rows
                        if not (r["cancelled"] or r["completed"] or r["returned"]
                                or r["delivered"])]


async def _no_oversell(conn: asyncpg.Connection, ids: list[str] | None, report: Report) -> None:
    report.add("2 no oversell", await conn.fetch(
        "SELECT NULL AS order_id, location, sku, on_hand, reserved FROM inventory.stock"
        " WHERE reserved < 0 OR reserved > on_hand OR on_hand < 0"),
        "{location}/{sku}: reserved {reserved} of {on_hand} on hand")
    report.add("2 no oversell", await conn.fetch(
        "SELECT NULL AS order_id, s.location, s.sku, s.reserved, coalesce(l.held, 0) AS held"
        " FROM inventory.stock s LEFT JOIN (SELECT location, sku, sum(quantity) AS held"
        "   FROM (SELECT location, sku, quantity FROM inventory.reservation_lines"
        "         WHERE status = 'reserved'"
        "         UNION ALL SELECT to_location, sku, quantity FROM inventory.stock_transfers"
        "         WHERE status = 'at_store') AS h GROUP BY 1, 2) l"
        " USING (location, sku) WHERE s.reserved <> coalesce(l.held, 0)"),
        "{location}/{sku}: stock says {reserved} reserved, reservations hold {held}")
    # Returns take back units the customer had: restocked and written off together, never
    # more of a SKU than the order had.
    report.add("2 no oversell", await conn.fetch(
        "WITH back AS (SELECT e.stream_id AS order_id, l->>'sku' AS sku,"
        "   sum((l->>'quantity')::int) AS n FROM inventory.events e,"
        "   jsonb_array_elements(e.body->'data'->'lines') l"
        "   WHERE e.type IN ('StockRestocked', 'StockWrittenOff') AND e.origin = 'own'"
        "   GROUP BY 1, 2),"
        " sold AS (SELECT e.stream_id AS order_id, l->>'sku' AS sku,"
        "   sum((l->>'quantity')::int) AS n FROM orders.events e,"
        "   jsonb_array_elements(e.body->'data'->'lines') l"
        "   WHERE e.type = 'OrderPlaced' GROUP BY 1, 2)"
        " SELECT back.order_id, back.sku, back.n AS back, coalesce(sold.n, 0) AS sold"
        " FROM back LEFT JOIN sold USING (order_id, sku)"
        " WHERE back.n > coalesce(sold.n, 0)"
        "   AND ($1::text[] IS NULL OR back.order_id = ANY($1))", ids),
        "{back} x {sku} taken back of {sold} sold")
    report.add("2 no oversell", await conn.fetch(
        "SELECT DISTINCT r.order_id FROM inventory.reservation_lines r"
        " JOIN orders.events e ON e.stream_id = r.order_id AND e.type = 'OrderCancelled'"
        " WHERE r.status = 'reserved' AND ($1::text[] IS NULL OR r.order_id = ANY($1))", ids),
        "a cancelled order still holds stock")
    # Stock is committed when the parcel ships; by the time it arrives, long after, units
    # still held for it are counted on a shelf they left.
    report.add("2 no oversell", await conn.fetch(
        "SELECT DISTINCT r.order_id FROM inventory.reservation_lines r"
        " JOIN shipping.events e ON e.stream_id = r.order_id AND e.origin = 'own'"
        "   AND e.type IN ('Delivered', 'PickedUp')"
        " WHERE r.status = 'reserved' AND ($1::text[] IS NULL OR r.order_id = ANY($1))", ids),
        "the parcel arrived but its units are still held on the shelf")
    # A transfer to a pickup store: in transit until the parcel is at the store, held there
    # until the customer collects it. Collected, nothing of it is left on the way or held.
    report.add("2 no oversell", await conn.fetch(
        "SELECT DISTINCT t.order_id, t.status FROM inventory.stock_transfers t"
        " JOIN shipping.events e ON e.stream_id = t.order_id AND e.origin = 'own'"
        "   AND e.type = 'PickedUp'"
        " WHERE t.status IN ('in_transit', 'at_store')"
        "   AND ($1::text[] IS NULL OR t.order_id = ANY($1))", ids),
        "picked up, but its transfer to the store is still {status}")
    # Every transfer is of an order's units that left the warehouse shelf: committed there.
    report.add("2 no oversell", await conn.fetch(
        "SELECT DISTINCT t.order_id, t.from_location FROM inventory.stock_transfers t"
        " LEFT JOIN inventory.reservation_lines r ON r.order_id = t.order_id"
        "   AND r.sku = t.sku AND r.location = t.from_location AND r.status = 'committed'"
        "   AND r.quantity = t.quantity"
        " WHERE r.order_id IS NULL AND ($1::text[] IS NULL OR t.order_id = ANY($1))", ids),
        "a transfer of units that were not committed at {from_location}")


async def _money(conn: asyncpg.Connection, ids: list[str] | None, report: Report) -> None:
    rows = await conn.fetch(
        "WITH p AS (SELECT stream_id AS order_id,"
        "   count(*) FILTER (WHERE type = 'PaymentConfirmed') AS captures,"
        "   coalesce(sum((body->'data'->'amount'->>'amount')::bigint)"
        "     FILTER (WHERE type = 'PaymentConfirmed'), 0) AS captured,"
        "   coalesce(sum((body->'data'->'amount'->>'amount')::bigint)"
        "     FILTER (WHERE type = 'RefundIssued'), 0) AS refunded,"
        "   coalesce(sum((body->'data'->'amount'->>'amount')::bigint)"
        "     FILTER (WHERE type = 'RefundIssued' AND body->'data'->>'reason' = 'goodwill'),"
        "     0) AS goodwill,"
        "   coalesce(sum((body->'data'->'amount'->>'amount')::bigint)"
        "     FILTER (WHERE type = 'RefundIssued' AND body->'data'->>'return_id' IN ("
        "       SELECT r.body->'data'->>'return_id' FROM orders.events r"
        "       WHERE r.type = 'ReturnRequested' AND r.stream_id = payments.events.stream_id"
        "         AND (r.body->'data'->>'last')::boolean IS FALSE)), 0) AS partial"
        "   FROM payments.events WHERE origin = 'own' GROUP BY stream_id),"
        " o AS (SELECT stream_id AS order_id,"
        "   max((body->'data'->'total'->>'amount')::bigint)"
        "     FILTER (WHERE type = 'OrderPlaced') AS total,"
        "   coalesce(max((body->'data'->'redemption'->'value'->>'amount')::bigint)"
        "     FILTER (WHERE type = 'OrderPlaced'), 0) AS points_value,"
        "   bool_or(type = 'LoyaltyPointsRedeemed') AS spent,"
        "   bool_or(type = 'LoyaltyPointsReleased') AS given_back,"
        "   bool_or(type IN ('OrderCancelled', 'OrderReturned')) AS undone,"
        "   bool_or(type = 'OrderCompleted') AND NOT bool_or(type = 'OrderReturned') AS kept"
        "   FROM orders.events GROUP BY stream_id)"
        " SELECT o.order_id, o.total, o.total - o.points_value AS due, o.points_value,"
        "   o.spent, o.given_back, coalesce(p.captures, 0) AS captures,"
        "   coalesce(p.captured, 0) AS captured, coalesce(p.refunded, 0) AS refunded,"
        "   coalesce(p.goodwill, 0) AS goodwill, coalesce(p.partial, 0) AS partial,"
        "   o.undone, o.kept"
        " FROM o LEFT JOIN p USING (order_id)"
        " WHERE ($1::text[] IS NULL OR o.order_id = ANY($1))", ids)
    report.add("3 money", [r for r in rows if r["captures"] > 1],
               "{captures} captures")
    # Loyalty points pay part of an order: the payment method owes the rest (`due`). Goodwill
    # refunds pay part of that back, never all of it, and so do partial returns: captured -
    # refunded = total - refunded lines - goodwill.
    report.add("3 money", [r for r in rows
                           if r["captured"] - r["refunded"]
                           not in (0, r["due"] - r["goodwill"] - r["partial"])
                           or r["captured"] - r["refunded"] < 0],
               "captured {captured} - refunded {refunded} is neither 0 nor {due} less "
               "{goodwill} in goodwill and {partial} for partial returns")
    report.add("3 money", [r for r in rows if r["goodwill"]
                           and r["goodwill"] >= r["captured"]],
               "{goodwill} in goodwill refunds of {captured} captured")
    report.add("3 money", [r for r in rows if r["undone"]
                           and r["captured"] - r["refunded"] != 0],
               "cancelled or returned but {captured} captured, {refunded} refunded")
    report.add("3 money", [r for r in rows if r["kept"] and r["captured"] - r["refunded"]
                           + r["goodwill"] + r["partial"]
                           + (r["points_value"] if r["spent"] and not r["given_back"] else 0)
                           != r["total"]],
               "completed but {captured} captured, {refunded} refunded ({goodwill} of it "
               "goodwill, {partial} for partial returns) and {points_value} in points spent "
               "of {total}")
    report.add("3 money", [r for r in rows if r["points_value"] and r["undone"]
                           and not r["given_back"]],
               "cancelled or returned, but the loyalty points it spent were not given back")
    if await conn.fetchval("SELECT to_regclass('gateway_sim.charges') IS NOT NULL"):
        report.add("3 money", await conn.fetch(
            "SELECT reference AS order_id, count(*) AS n FROM gateway_sim.charges"
            " WHERE status = 'succeeded' AND ($1::text[] IS NULL OR reference = ANY($1))"
            " GROUP BY reference HAVING count(*) > 1", ids), "the gateway charged {n} times")
        report.add("3 money", await conn.fetch(
            "SELECT reference AS order_id, payment_reference, count(*) AS n"
            " FROM gateway_sim.refunds WHERE ($1::text[] IS NULL OR reference = ANY($1))"
            # goodwill refunds and partial returns' refunds pay part of a capture back
            "   AND idempotency_key NOT LIKE '%:goodwill:%'"
            "   AND idempotency_key NOT LIKE '%:return:%'"
            " GROUP BY reference, payment_reference HAVING count(*) > 1", ids),
            "the gateway paid {payment_reference} back {n} times")
        await _gateway_ledger(conn, ids, report)


async def _loyalty(conn: asyncpg.Connection, ids: list[str] | None, report: Report) -> None:
    """Invariant 8: no customer's loyalty balance ever goes below zero; every order that
    spent points was allowed them when it was placed (services/orders/customers.py)."""
    from services.orders.customers import ledger  # the fold the orders service decides with

    expiry = timedelta(days=Settings().loyalty_expiry_days)

    rows = await conn.fetch(
        "SELECT customer_id, kind, order_id, points, at FROM orders.loyalty_ledger"
        " WHERE customer_id IN (SELECT customer_id FROM orders.customer_orders"
        "   WHERE $1::text[] IS NULL OR order_id = ANY($1))"
        " ORDER BY customer_id, at", ids)
    by_customer: dict[str, list[tuple[str, str, int, datetime]]] = {}
    for r in rows:
        by_customer.setdefault(r["customer_id"], []).append(
            (r["kind"], r["order_id"], r["points"], r["at"]))
    report.add("8 loyalty", [
        {"order_id": order_id, "customer": customer, "short": short}
        for customer, entries in by_customer.items()
        for order_id, short in ledger(entries, datetime.now(UTC), expiry).overdrawn
        if ids is None or order_id in ids],
        "{customer} spent {short} loyalty points more than they held")


async def _gateway_ledger(conn: asyncpg.Connection, ids: list[str] | None,
                          report: Report) -> None:
    """Invariant 7: what the gateway received for an order (card captures, money paid into its
    virtual account, its QRIS code or e-wallet request paid) is what payments captured through
    it plus the transfers it sent back, and what the gateway paid back is what payments
    refunded through it (not at a till, not by a shop's manual payout) plus those transfers.
    Money a transfer brought that payments never recorded is a customer's money kept."""
    rows = await conn.fetch(
        "WITH g AS (SELECT reference AS order_id, sum(amount) AS received FROM ("
        "   SELECT reference, amount FROM gateway_sim.charges WHERE status = 'succeeded'"
        "   UNION ALL SELECT coalesce(a.reference, r.reference), t.amount"
        "   FROM gateway_sim.transfers t"
        "   LEFT JOIN gateway_sim.virtual_accounts a USING (account_number)"
        "   LEFT JOIN gateway_sim.payment_requests r ON r.id = t.account_number) x"
        "   GROUP BY reference),"
        " gr AS (SELECT reference AS order_id, sum(amount) AS paid_back"
        "   FROM gateway_sim.refunds GROUP BY reference),"
        " p AS (SELECT stream_id AS order_id,"
        "   coalesce(sum((body->'data'->'amount'->>'amount')::bigint) FILTER ("
        "     WHERE type = 'PaymentConfirmed' AND body->>'channel' <> 'pos'"
        "     AND body->'data'->>'method' <> 'cod'), 0) AS captured,"
        "   coalesce(sum((body->'data'->'amount'->>'amount')::bigint)"
        "     FILTER (WHERE type = 'RefundIssued'"  # a till pays its returns back itself,
        "       AND body->'data'->>'refund_id' NOT LIKE 'till:%'"  # and a shop its COD by hand
        "       AND body->'data'->>'refund_id' NOT LIKE 'manual:%'), 0) AS refunded,"
        "   coalesce(sum((body->'data'->'amount'->>'amount')::bigint)"
        "     FILTER (WHERE type = 'TransferReturned'), 0) AS returned"
        "   FROM payments.events WHERE origin = 'own' GROUP BY stream_id)"
        " SELECT o.stream_id AS order_id, coalesce(g.received, 0) AS received,"
        "   coalesce(gr.paid_back, 0) AS paid_back, coalesce(p.captured, 0) AS captured,"
        "   coalesce(p.refunded, 0) AS refunded, coalesce(p.returned, 0) AS returned"
        " FROM orders.events o LEFT JOIN g ON g.order_id = o.stream_id"
        " LEFT JOIN gr ON gr.order_id = o.stream_id LEFT JOIN p ON p.order_id = o.stream_id"
        " WHERE o.type = 'OrderPlaced' AND ($1::text[] IS NULL OR o.stream_id = ANY($1))", ids)
    report.add("7 no money kept", [
        r for r in rows if r["received"] != r["captured"] + r["returned"]],
        "the gateway received {received}, payments captured {captured} and sent {returned} back")
    report.add("7 no money kept", [
        r for r in rows if r["paid_back"] != r["refunded"] + r["returned"]],
        "the gateway paid back {paid_back}, payments refunded {refunded} and sent {returned} back")


async def _no_duplicate_effects(conn: asyncpg.Connection, ids: list[str] | None,
                                report: Report) -> None:
    for event_type, schema in (("ShipmentCreated", "shipping"), ("PaymentPending", "payments"),
                               ("PaymentRequested", "payments"), ("RefundIssued", "payments"),
                               ("StockReserved", "inventory"), ("StockRestocked", "inventory"),
                               ("StockWrittenOff", "inventory")):
        # Refunds and restocks come once per return (or recalled parcel); goodwill refunds
        # once per request, below.
        report.add("4 no duplicate effect", await conn.fetch(
            f"SELECT stream_id AS order_id, count(*) AS n FROM {schema}.events"
            " WHERE type = $1 AND origin = 'own'"
            " AND ($2::text[] IS NULL OR stream_id = ANY($2))"
            " AND body->'data'->>'reason' IS DISTINCT FROM 'goodwill'"
            " GROUP BY stream_id, body->'data'->>'return_id' HAVING count(*) > 1",
            event_type, ids),
            f"{event_type} recorded {{n}} times")
    report.add("4 no duplicate effect", await conn.fetch(
        "WITH paid AS (SELECT stream_id, count(*) AS n FROM payments.events"
        "   WHERE type = 'RefundIssued' AND origin = 'own'"
        "     AND body->'data'->>'reason' = 'goodwill' GROUP BY stream_id),"
        " asked AS (SELECT stream_id, count(*) AS n FROM orders.events"
        "   WHERE type = 'GoodwillRefundRequested' GROUP BY stream_id)"
        " SELECT paid.stream_id AS order_id, paid.n, coalesce(asked.n, 0) AS asked"
        " FROM paid LEFT JOIN asked USING (stream_id)"
        " WHERE paid.n > coalesce(asked.n, 0)"
        "   AND ($1::text[] IS NULL OR paid.stream_id = ANY($1))", ids),
        "{n} goodwill refunds paid for {asked} asked for")
    report.add("4 no duplicate effect", await conn.fetch(
        "SELECT stream_id AS order_id, body->'data'->>'about_event_id' AS about,"
        " body->'data'->>'channel' AS channel, count(*) AS n FROM notifications.events"
        " WHERE type = 'NotificationSent' AND ($1::text[] IS NULL OR stream_id = ANY($1))"
        " GROUP BY 1, 2, 3 HAVING count(*) > 1", ids), "{n} {channel} messages about {about}")


async def _nothing_lost(conn: asyncpg.Connection, ids: list[str] | None,
                        report: Report) -> None:
    """A dead-lettered event is lost to its order until it is redriven and handled."""
    for service in SERVICES:
        report.add("4 loses nothing", await conn.fetch(
            f"SELECT d.order_id, d.type, d.error FROM {service}.audit d"
            " WHERE d.direction = 'in' AND d.outcome = 'dead_lettered'"
            " AND ($1::text[] IS NULL OR d.order_id = ANY($1))"
            f" AND NOT EXISTS (SELECT 1 FROM {service}.audit h WHERE h.event_id = d.event_id"
            "   AND h.direction = 'in' AND h.outcome IN ('processed', 'ignored') AND h.id > d.id)",
            ids), f"{service} dead-lettered {{type}}: {{error}}")


async def _order_and_audit(conn: asyncpg.Connection, ids: list[str] | None,
                           report: Report) -> None:
    for service in SERVICES:
        report.add("5 per-order order", await conn.fetch(
            f"SELECT stream_id AS order_id, count(*) AS n, max(version) AS top"
            f" FROM {service}.events WHERE ($1::text[] IS NULL OR stream_id = ANY($1))"
            " GROUP BY stream_id HAVING count(*) <> max(version)", ids),
            f"{service}: {{n}} events but version {{top}}")
        report.add("6 audit reconstructs", await conn.fetch(
            f"SELECT e.stream_id AS order_id, count(*) AS n FROM {service}.events e"
            f" WHERE e.origin = 'own' AND ($1::text[] IS NULL OR e.stream_id = ANY($1))"
            f" AND NOT EXISTS (SELECT 1 FROM {service}.audit a WHERE a.event_id = e.event_id"
            "   AND a.direction = 'out') GROUP BY e.stream_id", ids),
            f"{service}: {{n}} emitted events missing from the audit log")
