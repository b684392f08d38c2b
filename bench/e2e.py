"""The benchmark of record: the whole flow on one machine, measured in one run (bench/README.md).

Usage: python bench/e2e.py [--rates 25,50,100,200,300,400,600] [--seconds 60]
                           [--profile card|mixed] [--intake-seconds 20] [--hop-events 20000]

It starts its own stack (Kafka, PostgreSQL with pg_stat_statements, the simulators, the five
services under their supervisor; state in .alur/bench, wiped first) and measures:

1. the bare aiokafka consume->produce hop, and the inventory service on as many OrderPlaced
   events (bench/pipeline.py's two stages), on a stack of their own;
2. an open-loop ladder of order rates, `--seconds` each: achieved intake, sustained
   ShipmentCreated per second, p50/p95/p99 of each stage (placed -> reserved -> paid ->
   released -> shipment created) from the events' commit times, CPU milliseconds per order of
   every process, PostgreSQL transactions and statements per order. It stops after the first
   rate the stack cannot sustain (shipments under 90 % of the rate, or p99 over 10 s);
3. closed-loop intake, 64 keep-alive clients: POST /v1/orders with only the orders service
   running, against bench/bare_intake.py (FastAPI + asyncpg, one INSERT per request).

Then it prints the figures and the ratios against the baselines, writes them as JSON under
.alur/bench-results/, and stops everything it started.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from alur.infra import kafka, postgres, stack  # noqa: E402
from alur.infra.procs import Proc  # noqa: E402
from alur.settings import SERVICES, Settings  # noqa: E402
from alur.simulators.customers import (  # noqa: E402
    CATALOGUE,
    CURRENCY,
    Customers,
    order_body,
    plan,
)
from bench.pipeline import bare_loop, bench_settings, inventory_stage  # noqa: E402
from services.inventory.seed import set_stock  # noqa: E402
from services.orders.admin import onboard  # noqa: E402

SHOP = "shop-bench"
STAGES = ("reserved", "paid", "released", "shipment")
BARE_PORT = 8096
TICK = os.sysconf("SC_CLK_TCK")
IDLE_SECONDS = 20.0


def e2e_settings() -> Settings:
    # The release window 0 (shipping books as soon as the order is paid), as a flash sale runs.
    return bench_settings().model_copy(update={"release_after": 0.0, "wedged_after": 120.0})


# --- what each process spent --------------------------------------------------------------

def _cpu(pid: int, children: bool = False) -> float:
    """Seconds of CPU the process used (and, with `children`, the children it reaped)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / TICK


def _children_of(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(stat.parent.name))
        except (FileNotFoundError, ValueError, IndexError):
            continue
    return out


def cpu_by_process(settings: Settings) -> dict[str, float]:
    """CPU seconds so far of every process of the stack, by name. PostgreSQL counts its
    postmaster, the backends it reaped and the ones alive."""
    out: dict[str, float] = {}
    for name in (*SERVICES, *stack.SIMULATORS):
        pid = stack.proc(settings, name).pid()
        out[name] = _cpu(pid) if pid else 0.0
    out["kafka"] = sum(_cpu(p) for n in kafka.nodes(settings)
                       if (p := kafka.proc(settings, n).pid()))
    master = postgres.proc(settings).pid()
    out["postgres"] = (_cpu(master, children=True) + sum(_cpu(c) for c in _children_of(master))
                       if master else 0.0)
    return out


async def pg_counters(db: asyncpg.Pool) -> tuple[int, int]:
    """Transactions committed or rolled back, and statements run, in the database so far."""
    xacts = await db.fetchval("SELECT xact_commit + xact_rollback FROM pg_stat_database "
                              "WHERE datname = current_database()")
    calls = await db.fetchval("SELECT coalesce(sum(calls), 0) FROM pg_stat_statements")
    return int(xacts), int(calls)


# --- load -----------------------------------------------------------------------------------

@dataclass
class Load:
    session: aiohttp.ClientSession
    url: str
    key: str
    profile: str
    customers: Customers | None = None
    accepted: list[str] = field(default_factory=list)
    failed: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    rng: Any = None

    async def one(self) -> None:
        if self.profile == "mixed":
            p = plan(self.rng)
            body = order_body(SHOP, p, self.rng)
        else:
            p, body = None, card_order()
        started = time.perf_counter()
        try:
            async with self.session.post(self.url, json=body, headers={
                    "Authorization": f"Bearer {self.key}",
                    "Idempotency-Key": uuid.uuid4().hex}) as response:
                answer = await response.json()
                status = response.status
        except (TimeoutError, aiohttp.ClientError) as exc:
            self.failed[type(exc).__name__] = self.failed.get(type(exc).__name__, 0) + 1
            return
        self.latencies.append(time.perf_counter() - started)
        if status != 202:
            self.failed[str(status)] = self.failed.get(str(status), 0) + 1
            return
        self.accepted.append(answer["order_id"])
        if self.customers is not None and p is not None:
            self.customers.add(answer["order_id"], SHOP, p, body)

    async def open_loop(self, rate: float, seconds: float) -> float:
        """Start an order every 1/rate s for `seconds` (however long the answers take); the
        rate of requests actually started."""
        tasks: set[asyncio.Task[None]] = set()
        started, n = time.perf_counter(), 0
        while (elapsed := time.perf_counter() - started) < seconds:
            while n < elapsed * rate:
                task = asyncio.create_task(self.one())
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                n += 1
            await asyncio.sleep(0.002)
        if tasks:
            await asyncio.gather(*tasks)
        return n / seconds

    async def closed_loop(self, clients: int, seconds: float) -> float:
        deadline = time.perf_counter() + seconds

        async def client() -> None:
            while time.perf_counter() < deadline:
                await self.one()

        started = time.perf_counter()
        before = len(self.accepted)
        await asyncio.gather(*(client() for _ in range(clients)))
        return (len(self.accepted) - before) / (time.perf_counter() - started)


BUYERS = itertools.count()


def card_order() -> dict[str, object]:
    """A flash sale's order: each one from a buyer the shop has not seen before (the most
    work identity does: a new customer and its links recorded with the order)."""
    sku, price = CATALOGUE[0]
    n = next(BUYERS)
    return {"channel": "online",
            "customer": {"customer_id": f"cus-bench-{n}", "email": f"buyer{n}@example.com",
                         "name": "Bench"},
            "lines": [{"sku": sku, "quantity": 1,
                       "unit_price": {"amount": price, "currency": CURRENCY}}],
            "payment": {"method": "card", "token": "tok_visa"},
            "delivery": {"method": "home_delivery", "address": {
                "line1": "Jl. Sudirman No. 1", "city": "Jakarta", "postal_code": "10110",
                "country": "ID"}}}


# --- one step of the ladder -----------------------------------------------------------------

def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan")}
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99)}


async def stage_times(db: asyncpg.Pool, ids: list[str]) -> list[dict[str, Any]]:
    rows = await db.fetch(
        "SELECT id,"
        " (SELECT recorded_at FROM orders.events WHERE stream_id = id AND type = 'OrderPlaced')"
        "   AS placed,"
        " (SELECT min(recorded_at) FROM inventory.events WHERE stream_id = id"
        "   AND type = 'StockReserved') AS reserved,"
        " (SELECT min(recorded_at) FROM payments.events WHERE stream_id = id"
        "   AND type = 'PaymentConfirmed' AND origin = 'own') AS paid,"
        " (SELECT min(recorded_at) FROM orders.events WHERE stream_id = id"
        "   AND type = 'OrderReadyToShip') AS released,"
        " (SELECT min(recorded_at) FROM shipping.events WHERE stream_id = id"
        "   AND type = 'ShipmentCreated' AND origin = 'own') AS shipment"
        " FROM unnest($1::text[]) AS id", ids)
    return [dict(r) for r in rows]


async def step(settings: Settings, db: asyncpg.Pool, load: Load, rate: float,
               seconds: float) -> dict[str, Any]:
    load.accepted, load.failed, load.latencies = [], {}, []
    cpu_before, (xacts_before, calls_before) = cpu_by_process(settings), await pg_counters(db)
    window_start = datetime.now(UTC)
    offered = await load.open_loop(rate, seconds)
    window_end = datetime.now(UTC)
    ids = list(load.accepted)
    drain_deadline = time.monotonic() + max(60.0, seconds)
    shipped = 0
    while time.monotonic() < drain_deadline:
        shipped = int(await db.fetchval(
            "SELECT count(DISTINCT stream_id) FROM shipping.events WHERE type = 'ShipmentCreated'"
            " AND origin = 'own' AND stream_id = ANY($1::text[])", ids))
        if shipped >= len(ids) * (1.0 if load.profile == "card" else 0.5):
            break
        await asyncio.sleep(1.0)
    drained = (datetime.now(UTC) - window_end).total_seconds()
    cpu_after, (xacts_after, calls_after) = cpu_by_process(settings), await pg_counters(db)
    in_window = int(await db.fetchval(
        "SELECT count(*) FROM shipping.events WHERE type = 'ShipmentCreated' AND origin = 'own'"
        " AND recorded_at BETWEEN $1 AND $2 AND stream_id = ANY($3::text[])",
        window_start, window_end, ids))
    times = await stage_times(db, ids)
    stages: dict[str, dict[str, float]] = {}
    previous = "placed"
    for stage in STAGES:
        stages[f"{previous}->{stage}"] = percentiles([
            (t[stage] - t[previous]).total_seconds() for t in times
            if t[stage] is not None and t[previous] is not None])
        previous = stage
    total = [(t["shipment"] - t["placed"]).total_seconds() for t in times
             if t["shipment"] is not None and t["placed"] is not None]
    orders = max(1, len(ids))
    cpu = {name: 1000 * (cpu_after[name] - cpu_before.get(name, 0.0)) / orders
           for name in cpu_after}
    return {
        "rate": rate, "offered": offered, "accepted_per_s": len(ids) / seconds,
        "refused": load.failed, "shipments_per_s_in_window": in_window / seconds,
        "shipped": shipped, "orders": len(ids), "drain_seconds": drained,
        "intake": percentiles(load.latencies), "stages": stages,
        "accepted_to_shipment": percentiles(total),
        "cpu_ms_per_order": cpu, "cpu_ms_per_order_total": sum(cpu.values()),
        "pg_transactions_per_order": (xacts_after - xacts_before) / orders,
        "pg_statements_per_order": (calls_after - calls_before) / orders,
    }


def sustained(result: dict[str, Any]) -> bool:
    return bool(result["shipments_per_s_in_window"] >= 0.9 * result["rate"]
                and result["accepted_to_shipment"]["p99"] <= 10.0
                and result["shipped"] >= result["orders"])


# --- intake against the bare baseline -------------------------------------------------------

async def intake(settings: Settings, key: str, seconds: float) -> dict[str, float]:
    """Closed-loop intake, 64 clients, Alur's orders service alone against the bare app."""
    stack.services_down(settings, tuple(s for s in SERVICES if s != "orders"))
    results: dict[str, float] = {}
    bare = Proc("bare-intake", settings.state_dir / "run", settings.log_dir)
    bare.start([sys.executable, str(ROOT / "bench" / "bare_intake.py"), str(BARE_PORT),
                settings.pg_dsn], cwd=ROOT)
    try:
        stack.wait_port(BARE_PORT, bare)
        for name, url, token in (("alur", f"{settings.api_url}/v1/orders", key),
                                 ("bare", f"http://127.0.0.1:{BARE_PORT}/orders", "")):
            connector = aiohttp.TCPConnector(limit=64)
            async with aiohttp.ClientSession(connector=connector) as session:
                load = Load(session, url, token, "card")
                await load.closed_loop(8, 2.0)  # warm up
                load.latencies = []
                results[f"{name}_per_s"] = await load.closed_loop(64, seconds)
                results[f"{name}_p99_s"] = percentiles(load.latencies)["p99"]
    finally:
        bare.stop()
    return results


# --- the run --------------------------------------------------------------------------------

async def ladder(settings: Settings, rates: list[float], seconds: float, profile: str,
                 intake_seconds: float) -> dict[str, Any]:
    skus = [s for s, _ in CATALOGUE]
    await set_stock(settings, [(loc, sku, 10_000_000) for loc in ("WH-1", "WH-2")
                               for sku in skus])
    key, _ = await onboard(settings, SHOP, CURRENCY, skus, rate_per_second=100_000,
                           burst=100_000)
    db = await asyncpg.create_pool(settings.pg_dsn, min_size=1, max_size=2)
    await db.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    steps = []
    try:
        idle = await idle_commits(db, IDLE_SECONDS)
        print(f"  the idle stack: {idle:.1f} transactions/s", flush=True)
        connector = aiohttp.TCPConnector(limit=512)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(
                total=30)) as session, \
                httpx.AsyncClient(base_url=settings.api_url, timeout=30) as api, \
                httpx.AsyncClient(base_url=settings.gateway_url, timeout=30) as gateway:
            load = Load(session, f"{settings.api_url}/v1/orders", key, profile,
                        rng=random.Random(2026))
            acting: asyncio.Task[None] | None = None
            if profile == "mixed":  # the customers act as in the demo: pay, cancel, return
                load.customers = Customers(api, gateway, {SHOP: key})
            await load.open_loop(5, 5)  # warm up: connections, JIT-free caches, partitions
            for rate in rates:
                print(f"  {rate:g} orders/s for {seconds:g} s ...", flush=True)
                if load.customers is not None:
                    acting = asyncio.create_task(_act(load.customers, db))
                result = await step(settings, db, load, rate, seconds)
                if acting is not None:
                    acting.cancel()
                steps.append(result)
                print(_line(result), flush=True)
                if not sustained(result):
                    break
    finally:
        await db.close()
    return {"steps": steps, "idle_transactions_per_s": idle,
            "intake": await intake(settings, key, intake_seconds)}


async def idle_commits(db: asyncpg.Pool, seconds: float) -> float:
    """Transactions per second of the whole stack with no order coming in (the bench's own
    two reads excepted)."""
    await asyncio.sleep(5.0)  # let the start-up work settle
    before, _ = await pg_counters(db)
    await asyncio.sleep(seconds)
    after, _ = await pg_counters(db)
    return (after - before - 1) / seconds


async def _act(customers: Customers, db: asyncpg.Pool) -> None:
    while True:
        await customers.act_until_done(db, 2.0, lambda _: None)
        await asyncio.sleep(0.5)


def _line(r: dict[str, Any]) -> str:
    a = r["accepted_to_shipment"]
    return (f"    accepted {r['accepted_per_s']:.0f}/s, shipments "
            f"{r['shipments_per_s_in_window']:.0f}/s in the window, accepted->shipment "
            f"p50 {a['p50']:.2f} s p99 {a['p99']:.2f} s, "
            f"CPU {r['cpu_ms_per_order_total']:.1f} ms/order, "
            f"{r['pg_statements_per_order']:.0f} statements and "
            f"{r['pg_transactions_per_order']:.1f} transactions/order")


def report(result: dict[str, Any]) -> None:
    print("\n  open loop (accepted -> ShipmentCreated; stages from commit times)")
    for r in result["steps"]:
        print(f"  {r['rate']:>5g}/s  " + _line(r).strip())
        print("         stages p99: " + ", ".join(
            f"{k} {v['p99']:.2f} s" for k, v in r["stages"].items()))
        print("         CPU ms/order: " + ", ".join(
            f"{k} {v:.1f}" for k, v in sorted(r["cpu_ms_per_order"].items(),
                                              key=lambda kv: -kv[1])))
    best = [r for r in result["steps"] if sustained(r)]
    print(f"\n  sustained: {best[-1]['rate']:g} orders/s" if best else
          "\n  sustained: none of the rates tried")
    i = result["intake"]
    print(f"  intake, 64 clients: Alur {i['alur_per_s']:.0f}/s (p99 {i['alur_p99_s']:.2f} s), "
          f"bare FastAPI + asyncpg {i['bare_per_s']:.0f}/s: "
          f"{i['alur_per_s'] / i['bare_per_s']:.2f}x")
    print(f"  the idle stack: {result['idle_transactions_per_s']:.1f} transactions/s")
    h = result["hop"]
    print(f"  inventory processor {h['inventory']:.0f} events/s, bare aiokafka hop "
          f"{h['bare']:.0f} events/s: {h['inventory'] / h['bare']:.2f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="25,50,100,200,300,400,600")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--profile", choices=["card", "mixed"], default="card")
    parser.add_argument("--intake-seconds", type=float, default=20.0)
    parser.add_argument("--hop-events", type=int, default=20000)
    parser.add_argument("--record", metavar="CHANGE",
                        help="add the run's row, labelled CHANGE, to bench/README.md")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    settings = e2e_settings()
    result: dict[str, Any] = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
                              "commit": _commit(), "profile": args.profile,
                              "seconds": args.seconds}
    # Two stacks, one after the other: the hop's events must not reach the ladder's services.
    with stack.fresh(settings, say=lambda line: print("  " + line)) as s:
        print(f"bare aiokafka hop and the inventory service on {args.hop_events} events ...")
        result["hop"] = {"bare": asyncio.run(bare_loop(s, args.hop_events)),
                         "inventory": asyncio.run(inventory_stage(s, args.hop_events))}
    with stack.fresh(settings, say=lambda line: print("  " + line)) as s:
        stack.services_up(s)
        print(f"open-loop ladder, profile {args.profile} ...")
        result |= asyncio.run(ladder(s, rates, args.seconds, args.profile,
                                     args.intake_seconds))
    report(result)
    out = ROOT / ".alur" / "bench-results"  # outside the state dir, which a run wipes
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"e2e-{result['date'].replace(':', '')}.json"
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"\n  figures written to {path}")
    row = markdown_row(result, args.record or "(not recorded)")
    print(f"  row for bench/README.md:\n{row}")
    if args.record:
        record(row)
        print("  recorded in bench/README.md")
    return 0


ROWS_END = "<!-- e2e rows end -->"


def markdown_row(result: dict[str, Any], change: str) -> str:
    """One line of bench/README.md's end-to-end table."""
    best = [r for r in result["steps"] if sustained(r)]
    top = best[-1] if best else (result["steps"][0] if result["steps"] else None)
    i, h = result["intake"], result["hop"]
    cells = [result["date"][:10], f"{change} ({result['commit']}, {result['profile']})"]
    if top is None:
        cells += ["none", "-", "-", "-", "-"]
    else:
        a = top["accepted_to_shipment"]
        cells += [f"{top['rate']:g}/s" if best else f"none (at {top['rate']:g}/s)",
                  f"{a['p50']:.2f} / {a['p99']:.2f} s",
                  f"{top['cpu_ms_per_order_total']:.1f} ms",
                  f"{top['pg_transactions_per_order']:.1f} / "
                  f"{top['pg_statements_per_order']:.0f}",
                  f"{result['idle_transactions_per_s']:.1f}/s"]
    cells += [f"{i['alur_per_s']:.0f} vs {i['bare_per_s']:.0f}/s "
              f"({i['alur_per_s'] / i['bare_per_s']:.2f}x)",
              f"{h['inventory']:.0f} vs {h['bare']:.0f} ev/s "
              f"({h['inventory'] / h['bare']:.2f}x)"]
    return "| " + " | ".join(cells) + " |"


def record(row: str) -> None:
    readme = ROOT / "bench" / "README.md"
    text = readme.read_text()
    if ROWS_END not in text:
        raise SystemExit(f"bench/README.md has no {ROWS_END!r} line to add the row before")
    readme.write_text(text.replace(ROWS_END, f"{row}\n{ROWS_END}", 1))


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, cwd=ROOT, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
