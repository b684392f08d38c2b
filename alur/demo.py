"""`alur demo`: the real stack, simulated shops placing orders (over HTTP; the last one, a
marketplace, on Kafka with its own credentials), a summary, teardown."""

from __future__ import annotations

import asyncio
import email
import random
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx

from alur.infra import prometheus, stack
from alur.infra.kafka_access import KafkaAccess, grant
from alur.infra.procs import StartError
from alur.progress import Progress
from alur.settings import SERVICES, Settings
from alur.simulators.customers import (
    CATALOGUE,
    CURRENCY,
    SCARCE,
    STORE_CATALOGUE,
    STORES,
    Customers,
    order_body,
    plan,
    till_plan,
    till_sale,
)
from alur.simulators.marketplace import publish_orders
from alur.simulators.smtp import read_messages
from alur.tools.invariants import Report, check
from schemas.money import format_money
from services.inventory.domain import Site
from services.inventory.seed import set_locations, set_stock
from services.notifications.domain import CUSTOMER_FACING, POS_FACING
from services.orders.admin import onboard
from services.orders.domain import ShopTerms

# Deadlines short enough to be seen within a demo run: an unpaid bank transfer expires after
# 20 s (a real one has a day), a paid order is released to shipping after 3 s (really 300 s).
# The simulated shops' terms: PPN 11% in their prices, id_ID, and Rp5.000 for cash on delivery.
DEMO_TERMS = ShopTerms(locale="id_ID", cod_fee=5_000)
# Where the stock is: a warehouse in Jakarta (postal region 1) and one in Surabaya (6); the
# Jakarta store serves its till and pickups, the Bandung one (4) ships online orders too.
DEMO_SITES = {"WH-1": Site("warehouse", "1"), "WH-2": Site("warehouse", "6"),
              "ST-JAKARTA": Site("store", "1", ships=False),
              "ST-BANDUNG": Site("store", "4", ships=True)}
DEMO_DEADLINES = {"bank_transfer_ttl": 20.0, "app_payment_ttl": 20.0, "release_after": 3.0}
PLACE_ATTEMPTS = 5  # connection failures in a row before a shop gives up on the API


@dataclass
class Run:
    customers: Customers
    orders: list[str] = field(default_factory=list)
    placing_seconds: float = 0.0
    slowed_down: int = 0  # 429 answers waited out
    unanswered: int = 0   # placements sent again after the connection failed
    till_batches: int = 0
    kafka_orders: list[str] = field(default_factory=list)  # the marketplace's, on Kafka
    kafka_rejected: int = 0

    @property
    def till_orders(self) -> list[str]:
        return [o for o, (_, p) in self.customers.orders.items() if p.till]


async def _place(total: int, customers: Customers, marketplace: KafkaAccess | None) -> Run:
    """Each shop was registered with an API key, as a real one would be onboarded, and sends
    its orders like a well-behaved client: an Idempotency-Key per order, kept across retries,
    a pause for as long as a 429 asks, and the same request again when one got no answer."""
    # The seeded rng repeats the mix of branches from run to run; Idempotency-Keys (and the
    # tills' receipt numbers) are new in every run, or a second demo on the same state would
    # be answered with the first run's orders.
    run, progress, rng = Run(customers), Progress("placing", total), random.Random(7)
    shop_ids = list(customers.keys)
    started = time.monotonic()

    async def patiently(path: str, body: object, headers: dict[str, str]) -> httpx.Response:
        """POST, waiting as long as a 409 (same key in flight) or a 429 asks, and trying
        again a few times when the connection fails (the key makes that safe)."""
        failures = 0
        while True:
            try:
                response = await customers.api.post(path, json=body, headers=headers)
            except httpx.TransportError:
                failures += 1
                if failures == PLACE_ATTEMPTS:
                    raise
                run.unanswered += 1
                await asyncio.sleep(1.0)
                continue
            if response.status_code not in (409, 429):
                return response
            run.slowed_down += 1
            await asyncio.sleep(float(response.headers.get("Retry-After", "1")))

    async def shop(shop_id: str, count: int) -> None:
        for _ in range(count):
            p = plan(rng)
            body = order_body(shop_id, p, rng)
            headers = {"Authorization": f"Bearer {customers.keys[shop_id]}",
                       "Idempotency-Key": f"demo-{uuid.uuid4().hex}"}
            response = await patiently("/v1/orders", body, headers)
            if response.status_code != 202:
                raise RuntimeError(f"{shop_id}: {response.status_code} {response.text}")
            run.orders.append(response.json()["order_id"])
            customers.add(run.orders[-1], shop_id, p, body)
            progress.show(len(run.orders))

    async def till(shop_id: str, count: int) -> None:
        """A store's till, offline for hours, uploads its sales in batches of up to 10."""
        store = rng.choice(STORES)
        while count > 0:
            plans = [till_plan(rng) for _ in range(min(10, count))]
            sales = [till_sale(p, rng, datetime.now(UTC) - timedelta(hours=rng.uniform(1, 8)))
                     for p in plans]
            headers = {"Authorization": f"Bearer {customers.keys[shop_id]}",
                       "Idempotency-Key": f"demo-till-{uuid.uuid4().hex}"}
            body = {"store_id": store, "sales": sales}
            response = await patiently("/v1/pos/sales", body, headers)
            if response.status_code != 202:
                raise RuntimeError(f"{shop_id} till: {response.status_code} {response.text}")
            for p, sale, recorded in zip(plans, sales, response.json()["sales"], strict=True):
                run.orders.append(recorded["order_id"])
                customers.add(recorded["order_id"], shop_id, p, sale)
            run.till_batches += 1
            count -= len(plans)
            progress.show(len(run.orders))

    async def on_kafka(access: KafkaAccess, count: int) -> None:
        """The marketplace publishes its orders on its intake topic and reads the outcomes."""
        done = len(run.orders)
        published = await publish_orders(access, count, rng,
                                          lambda n: progress.show(done + n))
        for order_id, p, body in published.accepted.values():
            run.orders.append(order_id)
            run.kafka_orders.append(order_id)
            customers.add(order_id, access.shop_id, p, body)
        run.kafka_rejected = len(published.rejected)
        for reference, why in list(published.rejected.items())[:5]:
            print(f"  marketplace order {reference} rejected: {why}", file=sys.stderr)
        progress.show(len(run.orders))

    shops = len(shop_ids)
    share = [total // shops + (1 if i < total % shops else 0) for i in range(shops)]
    web = shop_ids[:-1] if marketplace is not None else shop_ids
    tills = [n // 10 for n in share]  # a tenth of each shop's sales are made at its tills
    # each shop sends from a few web servers at once, and one store till uploads late; the
    # marketplace publishes on Kafka
    await asyncio.gather(*(shop(s, (n - t) // 4 + (1 if k < (n - t) % 4 else 0))
                           for s, n, t in zip(web, share, tills, strict=False)
                           for k in range(4)),
                         *(till(s, t) for s, t in zip(web, tills, strict=False)),
                         *([on_kafka(marketplace, share[-1])] if marketplace else []))
    run.placing_seconds = time.monotonic() - started
    progress.finish(len(run.orders))
    return run


async def _wait(label: str, total: int, count: Callable[[], Awaitable[int]],
                timeout: float) -> int:
    """Poll `count` until it reaches `total` or the time is up, showing progress."""
    progress, deadline = Progress(label, total), time.monotonic() + timeout
    done = 0
    while time.monotonic() < deadline:
        done = await count()
        progress.show(done)
        if done >= total:
            break
        await asyncio.sleep(0.25)
    progress.finish(done)
    return done


async def _settle(db: asyncpg.Pool, run: Run, timeout: float) -> int:
    """The customers act on their orders until every order has run its course."""
    progress = Progress("settling", len(run.orders))
    left = await run.customers.act_until_done(db, timeout, progress.show)
    progress.finish(len(run.orders) - len(left))
    if left:
        print(f"{len(left)} orders did not run their course; where (up to 20 of) them "
              "stopped:", file=sys.stderr)
        for line in await run.customers.explain(db, left):
            print(f"  {line}", file=sys.stderr)
    return len(run.orders) - len(left)


async def _notify(db: asyncpg.Pool, run: Run, timeout: float) -> int:
    """Wait until every customer-facing event of the run has had its e-mail: each step of an
    online order, a till sale's receipt."""
    # An order that names no e-mail address (an anonymous till sale) is told nothing; the
    # sealed personal data says which fields it holds without showing them.
    mailable = {r["stream_id"] for r in await db.fetch(
        "SELECT stream_id FROM orders.events WHERE type = 'OrderPlaced' AND stream_id ="
        " ANY($1::text[]) AND (body->'data'->'customer'->>'email' IS NOT NULL"
        " OR body->'data'->'personal'->'fields' ? 'email')", run.orders)}
    tills = set(run.till_orders) & mailable
    online = [o for o in run.orders if o not in tills and o in mailable]
    due = sum([int(await db.fetchval(
        f"SELECT count(*) FROM {service}.audit WHERE direction = 'out' "
        "AND type = ANY($1::text[]) AND order_id = ANY($2::text[])",
        list(facing), ids)) for service in ("orders", "payments", "shipping")
        for facing, ids in ((CUSTOMER_FACING, online), (POS_FACING, list(tills)))])

    async def sent() -> int:
        return int(await db.fetchval(
            "SELECT count(*) FROM notifications.events WHERE type = 'NotificationSent' "
            "AND stream_id = ANY($1::text[])", run.orders))

    await _wait("e-mailing", due, sent, timeout)
    return due


def _percentile(values: list[float], q: int) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return float(statistics.quantiles(values, n=100, method="inclusive")[q - 1])


async def _branches(db: asyncpg.Pool, run: Run, report: Report) -> list[tuple[str, str]]:
    """How the run's orders went, branch by branch, from the orders event store."""
    rows = await db.fetch(
        "SELECT type, coalesce(body->'data'->>'reason', '') AS reason, count(*) AS n,"
        " coalesce(sum((body->'data'->>'points')::int), 0) AS points FROM orders.events"
        " WHERE stream_id = ANY($1::text[]) GROUP BY 1, 2", run.orders)
    n: dict[str, int] = {}
    reasons: dict[str, dict[str, int]] = {}
    points: dict[str, int] = {}
    for r in rows:
        n[r["type"]] = n.get(r["type"], 0) + r["n"]
        reasons.setdefault(r["type"], {})[r["reason"]] = r["n"]
        points[r["type"]] = points.get(r["type"], 0) + r["points"]
    plans = [p for _, p in run.customers.orders.values()]
    methods: dict[str, int] = {}
    for p in plans:
        if not p.till:
            methods[p.method] = methods.get(p.method, 0) + 1

    asked = await db.fetch(
        "SELECT type, coalesce(body->'data'->>'bank', body->'data'->>'wallet',"
        " body->'data'->>'method') AS how, count(*) AS n FROM orders.events"
        " WHERE type IN ('PaymentPending', 'PaymentRequested') AND stream_id = ANY($1::text[])"
        " GROUP BY 1, 2 ORDER BY 2", run.orders)
    manual = await db.fetchrow(
        "SELECT count(*) AS n, coalesce(sum((body->'data'->'amount'->>'amount')::bigint), 0)"
        " AS amount FROM orders.events WHERE type = 'RefundIssued'"
        " AND (body->'data'->>'manual_payout')::boolean AND stream_id = ANY($1::text[])",
        run.orders)
    fees = await db.fetchrow(
        "SELECT count(*) AS n, coalesce(sum((body->'data'->'cod_fee'->>'amount')::bigint), 0)"
        " AS amount FROM orders.events WHERE type = 'OrderPlaced'"
        " AND body->'data'->>'cod_fee' IS NOT NULL"  # JSON null reads as SQL NULL
        " AND stream_id = ANY($1::text[])", run.orders)

    def ways(event_type: str) -> str:
        found = [f"{r['how']} {r['n']}" for r in asked if r["type"] == event_type]
        return f"{sum(r['n'] for r in asked if r['type'] == event_type)}" + (
            f" ({', '.join(found)})" if found else "")

    till_returned = await db.fetchval(
        "SELECT count(DISTINCT stream_id) FROM orders.events WHERE type = 'OrderReturned'"
        " AND stream_id = ANY($1::text[])", run.till_orders)

    def by_reason(event_type: str) -> str:
        found = reasons.get(event_type, {})
        return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in sorted(found.items())) or "0"

    carriers = await db.fetch(
        "SELECT type, body->'data'->>'carrier' AS carrier, count(*) AS n FROM orders.events"
        " WHERE type IN ('ShipmentCreated', 'ReturnShipmentCreated')"
        " AND stream_id = ANY($1::text[]) GROUP BY 1, 2 ORDER BY 2", run.orders)
    parcels = ", ".join(f"{r['carrier']} {r['n']}" for r in carriers
                        if r["type"] == "ShipmentCreated")
    shelf = await db.fetchval(
        "SELECT count(*) FROM orders.events r JOIN orders.events p"
        " ON p.stream_id = r.stream_id AND p.type = 'OrderPlaced'"
        " WHERE r.type = 'OrderReadyToShip' AND r.stream_id = ANY($1::text[])"
        " AND r.body->'data'->>'location' = p.body->'data'->'delivery'->>'store_id'",
        run.orders)
    withdrawn = await db.fetchval(
        "SELECT count(*) FROM payments.events WHERE type = 'PaymentRequestWithdrawn'"
        " AND stream_id = ANY($1::text[])", run.orders)
    transfers = await db.fetchrow(
        "SELECT count(DISTINCT order_id) AS n, count(DISTINCT order_id) FILTER"
        " (WHERE status = 'in_transit') AS moving FROM inventory.stock_transfers"
        " WHERE order_id = ANY($1::text[])", run.orders)
    origins = await db.fetch(
        "SELECT body->'data'->>'location' AS location, count(*) AS n FROM orders.events"
        " WHERE type = 'StockReserved' AND stream_id = ANY($1::text[]) GROUP BY 1 ORDER BY 1",
        run.orders)
    returns = ", ".join(f"{r['carrier']} {r['n']}" for r in carriers
                        if r["type"] == "ReturnShipmentCreated")
    violations = report.by_invariant()
    return [
        ("online payment methods", ", ".join(f"{k} {v}" for k, v in sorted(methods.items()))),
        ("till sales (pos)", f"{len(run.till_orders)} uploaded late in {run.till_batches} "
                             "batches"),
        ("click-and-collect", f"{sum(p.pickup for p in plans)} ordered, {shelf} set aside "
                              "on the store's own shelf, "
                              f"{transfers['n']} transferred from a warehouse by parcel "
                              f"({transfers['moving']} still in transit), "
                              f"{n.get('PickedUp', 0)} picked up"),
        ("paid in an app or by transfer", f"virtual accounts {ways('PaymentPending')}; "
                                          f"QRIS codes and e-wallet pushes "
                                          f"{ways('PaymentRequested')}; "
                                          f"{n.get('PaymentExpired', 0)} expired unpaid, "
                                          f"{withdrawn} withdrawn "
                                          "as their order was cancelled"),
        ("declined (cards, e-wallet pushes)", str(n.get("PaymentFailed", 0))),
        ("out of stock", str(n.get("StockRejected", 0))),
        ("cancelled", by_reason("OrderCancelled")),
        ("cancels refused (released)", str(run.customers.refused["cancel"])),
        ("parcels recalled (late no)", f"{n.get('ShipmentRecalled', 0)} recalled, "
                                       f"{n.get('ReturnedToSender', 0)} back"),
        ("parcels by carrier", parcels or "0"),
        ("online orders served from", ", ".join(f"{r['location']} {r['n']}" for r in origins)
         or "0"),
        ("returns collected by", returns or "0"),
        ("delivery re-attempts", str(n.get("DeliveryFailed", 0))),
        ("delivered", str(n.get("Delivered", 0) + n.get("PickedUp", 0))),
        ("completed", str(n.get("OrderCompleted", 0))),
        ("returns closed", f"{n.get('OrderReturned', 0)} of whole orders (the last units), "
                           f"{n.get('ReturnClosed', 0)} of part of one; "
                           f"{n.get('StockWrittenOff', 0)} with broken units written off"),
        ("till sales returned", f"{till_returned} at their store, paid back by the till"),
        ("refunds", by_reason("RefundIssued")),
        ("cash on delivery", f"{fees['n']} orders with a collection fee "
                             f"({format_money(fees['amount'], CURRENCY, 'id_ID')}); "
                             f"{manual['n']} refunds for the shops to pay back by hand "
                             f"({format_money(manual['amount'], CURRENCY, 'id_ID')})"),
        ("reviews", str(n.get("ReviewSubmitted", 0))),
        ("loyalty points", f"{points.get('LoyaltyPointsAccrued', 0)} accrued, "
                           f"{points.get('LoyaltyPointsReversed', 0)} reversed"),
        ("invariant violations", ", ".join(f"{k}: {v}" for k, v in violations.items())
         or f"none ({report.orders} orders checked)"),
    ]


async def _summary(settings: Settings, db: asyncpg.Pool, run: Run, due_mails: int,
                   report: Report) -> str:
    ids = run.orders
    timing = await db.fetch(
        "SELECT p.stream_id, (p.body->>'time')::timestamptz AS placed, "
        "(d.body->>'time')::timestamptz AS delivered FROM orders.events p "
        "JOIN orders.events d ON d.stream_id = p.stream_id AND d.type = 'Delivered' "
        "WHERE p.type = 'OrderPlaced' AND p.stream_id = ANY($1::text[])", ids)
    latencies = [(r["delivered"] - r["placed"]).total_seconds() for r in timing]
    span = await db.fetchrow(
        "SELECT min((body->>'time')::timestamptz) AS first, max((body->>'time')::timestamptz) "
        "AS last FROM orders.events WHERE stream_id = ANY($1::text[])", ids)
    per_topic = {}
    for service in SERVICES:
        per_topic[service] = await db.fetchval(
            f"SELECT count(*) FROM {service}.audit WHERE direction = 'out' "
            "AND order_id = ANY($1::text[])", ids)
    dead = sum([await db.fetchval(f"SELECT count(*) FROM {s}.audit WHERE outcome = "
                                  "'dead_lettered' AND order_id = ANY($1::text[])", ids)
                for s in SERVICES])
    wanted = set(ids)
    mails = sum(1 for raw in read_messages(settings.mail_dir)
                if _order_of(raw) in wanted)
    seconds = (span["last"] - span["first"]).total_seconds() if span["first"] else 0.0
    tills, kafka = len(run.till_orders), len(run.kafka_orders)
    rows = [("orders placed", f"{len(ids)}"),
            ("orders by intake path", f"HTTP {len(ids) - tills - kafka} (web shops), HTTP "
                                      f"{tills} (till uploads), Kafka {kafka} (marketplace, "
                                      f"{run.kafka_rejected} rejected)"),
            ("intake rate", f"{len(ids) / run.placing_seconds:.0f} orders/s"),
            ("rate-limit waits (429)", str(run.slowed_down)),
            ("requests without an answer, sent again",
             str(run.unanswered + sum(run.customers.unanswered.values()))),
            *await _branches(db, run, report),
            *await _customers(db, ids),
            *await _money(db, ids),
            ("accepted -> delivered p50", f"{_percentile(latencies, 50) * 1000:.0f} ms"),
            ("accepted -> delivered p99", f"{_percentile(latencies, 99) * 1000:.0f} ms"),
            ("end-to-end rate", f"{len(ids) / seconds:.0f} orders/s" if seconds else "n/a"),
            *[(f"events on {t}", str(n)) for t, n in per_topic.items()],
            ("dead letters", str(dead)),
            ("e-mails received by SMTP", str(mails)),
            ("e-mails due", str(due_mails))]
    width = max(len(k) for k, _ in rows)
    line = "-" * (width + 24)
    return "\n".join([line, *(f"  {k:<{width}}  {v}" for k, v in rows), line])


async def _customers(db: asyncpg.Pool, ids: list[str]) -> list[tuple[str, str]]:
    """Who bought: customers resolved across channels, and the loyalty points on their
    ledgers (services/orders/customers.py)."""
    row = await db.fetchrow(
        "WITH o AS (SELECT c.customer_id, c.channel FROM orders.customer_orders c"
        "   WHERE c.order_id = ANY($1::text[])),"
        " per AS (SELECT customer_id, count(*) AS n, count(DISTINCT channel) AS channels"
        "   FROM o GROUP BY customer_id)"
        " SELECT (SELECT count(*) FROM per) AS customers,"
        "   (SELECT count(*) FROM per WHERE n > 1) AS returning,"
        "   (SELECT count(*) FROM per WHERE channels > 1) AS omnichannel,"
        "   (SELECT count(*) FROM o) AS named,"
        "   (SELECT coalesce(sum(points) FILTER (WHERE kind = 'accrued'), 0) -"
        "      coalesce(sum(points) FILTER (WHERE kind = 'reversed'), 0)"
        "    FROM orders.loyalty_ledger WHERE order_id = ANY($1::text[])) AS points", ids)
    return [("customers (one per shop, any channel)",
             f"{row['customers']}: {row['returning']} returning, {row['omnichannel']} bought "
             f"on more than one channel; {len(ids) - row['named']} anonymous till sales"),
            ("loyalty points earned, net", str(row["points"]))]


async def _money(db: asyncpg.Pool, ids: list[str]) -> list[tuple[str, str]]:
    """What the run sold, as the shops' books read it: orders paid (online, or at a till),
    the PPN in those totals, and what was refunded."""
    row = await db.fetchrow(
        "WITH placed AS (SELECT stream_id, body->'data' AS d, orders.event_tax(body) AS tax"
        "   FROM orders.events"
        "   WHERE type = 'OrderPlaced' AND stream_id = ANY($1::text[])),"
        " paid AS (SELECT DISTINCT stream_id FROM orders.events"
        "   WHERE type = 'PaymentConfirmed' AND stream_id = ANY($1::text[]))"
        " SELECT coalesce(sum((d->'total'->>'amount')::bigint), 0) AS sold,"
        "   coalesce(sum(tax), 0) AS tax,"
        "   (SELECT coalesce(sum((body->'data'->'amount'->>'amount')::bigint), 0)"
        "      FROM orders.events WHERE type = 'RefundIssued'"
        "       AND stream_id = ANY($1::text[])) AS refunded,"
        "   (SELECT coalesce(sum((body->'data'->'amount'->>'amount')::bigint), 0)"
        "      FROM orders.events WHERE type = 'RefundIssued'"
        "       AND body->'data'->>'reason' = 'goodwill'"
        "       AND stream_id = ANY($1::text[])) AS goodwill"
        " FROM placed WHERE d->'delivery'->>'method' = 'in_store'"
        "   OR stream_id IN (SELECT stream_id FROM paid)", ids)
    shown = {k: format_money(row[k], CURRENCY, "id_ID")
             for k in ("sold", "tax", "refunded", "goodwill")}
    return [("sales paid (PPN in them)", f"{shown['sold']} ({shown['tax']})"),
            ("refunded (goodwill in it)", f"{shown['refunded']} ({shown['goodwill']})")]


async def _as_prometheus_sees_it(settings: Settings, delivered: int) -> str:
    """What an operator sees: a few key series from the local Prometheus, once it scraped the
    end of the run (bounded wait), and the alerts firing."""
    queries = {
        "orders delivered (counter)": 'sum(alur_order_transitions_total{state="delivered"})',
        "placed -> shipment p99 (5m)":
            "histogram_quantile(0.99, sum by (le) (rate("
            'alur_order_since_placed_seconds_bucket{stage="shipment_created"}[5m])))',
        "consumer lag, all services": "sum(alur_consumer_lag_messages)",
        "dead letters (counter)": "sum(alur_dead_letters_total)",
    }
    async with httpx.AsyncClient(base_url=prometheus.url(settings), timeout=5) as client:
        async def value(expr: str) -> float | None:
            body = (await client.get("/api/v1/query", params={"query": expr})).json()
            result = body.get("data", {}).get("result", [])
            return float(result[0]["value"][1]) if result else None

        try:
            deadline = time.monotonic() + 6 * settings.scrape_interval + 10
            while time.monotonic() < deadline:
                seen = await value(queries["orders delivered (counter)"])
                lag = await value(queries["consumer lag, all services"])
                if (seen or 0) >= delivered and lag == 0:
                    break
                await asyncio.sleep(settings.scrape_interval / 2)
            rows = [(k, await value(q)) for k, q in queries.items()]
            alerts = (await client.get("/api/v1/alerts")).json()["data"]["alerts"]
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            return f"  Prometheus at {prometheus.url(settings)} did not answer: {exc}"
    firing = sorted({a["labels"]["alertname"] for a in alerts if a["state"] == "firing"})
    lines = [f"  as Prometheus ({prometheus.url(settings)}) sees it:"]
    for name, v in rows:
        shown = "no data" if v is None else (f"{v * 1000:.0f} ms" if "p99" in name
                                            else f"{v:.0f}")
        lines.append(f"    {name:<28} {shown}")
    lines.append(f"    {'alerts firing':<28} {', '.join(firing) or 'none'}")
    return "\n".join(lines)


def _order_of(raw: bytes) -> str | None:
    """The order id named in an e-mail's subject."""
    subject = str(email.message_from_bytes(raw)["Subject"] or "")
    return next((w for w in subject.split() if w.startswith("ord_")), None)


async def _drive(settings: Settings, orders: int, shops: int) -> tuple[int, str]:
    await set_locations(settings, DEMO_SITES)
    # A pickup of what the stores do not keep on their shelves is sent there from a warehouse.
    await set_stock(settings, [(loc, sku, 100_000) for loc in ("WH-1", "WH-2")
                               for sku, _ in CATALOGUE]
                    + [(loc, sku, 100_000) for loc in STORES for sku, _ in STORE_CATALOGUE]
                    + [("WH-1", SCARCE[0], 6)])
    skus = [sku for sku, _ in CATALOGUE] + [SCARCE[0]]
    keys = {s: (await onboard(settings, s, CURRENCY, skus, terms=DEMO_TERMS))[0]
            for s in (f"shop-{i + 1}" for i in range(shops))}
    # The last shop is a marketplace that publishes on Kafka (it keeps its API key: its
    # customers still cancel, confirm and return through the API).
    marketplace = await grant(settings.kafka_bootstrap, settings.kafka_shop_bootstrap,
                              f"shop-{shops}", partitions=settings.partitions,
                              replication=settings.replication_factor) if shops > 1 else None
    db = await asyncpg.create_pool(settings.pg_dsn, min_size=1, max_size=2)
    try:
        async with httpx.AsyncClient(base_url=settings.api_url, timeout=30) as api, \
                httpx.AsyncClient(base_url=settings.gateway_url, timeout=30) as gateway:
            run = await _place(orders, Customers(api, gateway, keys), marketplace)
            settled = await _settle(db, run, timeout=max(180.0, orders / 4))
        due_mails = await _notify(db, run, timeout=60.0)
        async with db.acquire() as conn:
            report = await check(conn, run.orders)
        summary = await _summary(settings, db, run, due_mails, report)
        delivered = await db.fetchval(
            "SELECT count(DISTINCT stream_id) FROM orders.events WHERE type = 'Delivered' "
            "AND stream_id = ANY($1::text[])", run.orders)
        ops = await _as_prometheus_sees_it(settings, delivered)
        failed = len(run.orders) - settled + len(report.violations)
        return failed, f"{summary}\n{ops}"
    finally:
        await db.close()


def run_demo(settings: Settings, orders: int, shops: int, keep_running: bool) -> int:
    settings = settings.model_copy(update=DEMO_DEADLINES)
    before = {name for name, state, *_ in stack.status(settings) if state.startswith("running")}
    print(f"Alur demo: {orders} orders from {shops} simulated shops "
          f"(state in {settings.state_dir}, logs in {settings.log_dir})")
    try:
        print("starting local infrastructure ...")
        stack.infra_up(settings, say=lambda line: print("  " + line))
        print("starting services ...")
        for name, pid in stack.services_up(settings).items():
            print(f"  {name:<13} pid {pid}  log {stack.proc(settings, name).log_file}")
        unsettled, summary = asyncio.run(_drive(settings, orders, shops))
        print(summary)
        if keep_running:
            print(f"Still running: Prometheus {prometheus.url(settings)}, orders API "
                  f"{settings.api_url}/docs, metrics on ports {settings.metrics_port_base}-"
                  f"{settings.metrics_port_base + len(SERVICES) - 1}; `alur stack down` stops the"
                  f" services, then `alur infra down` the rest")
        if unsettled:
            print(f"{unsettled} orders did not settle or broke an invariant; see the logs in "
                  f"{settings.log_dir} and `alur check`")
        return 1 if unsettled else 0
    except StartError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if not keep_running:
            started = [n for n in SERVICES if n not in before]
            stack.services_down(settings, tuple(started))
            if not before:
                stack.infra_down(settings, say=lambda line: print("  " + line))
            print("stopped what the demo started")

