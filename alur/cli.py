"""The `alur` command: run a service, manage local infrastructure, seed stock, run the demo."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from alur.infra.procs import StartError
from alur.settings import CARRIERS, SERVICES, Settings

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from services.orders.domain import ShopTerms
    from services.orders.shops import Shop


def _serve_http(name: str, app: ASGIApp, port: int, settings: Settings) -> None:
    """Run a simulator's HTTP app in the foreground until it is signalled to stop."""
    import uvicorn

    from alur.runtime.http import server_config
    from alur.runtime.logs import logging_config

    uvicorn.Server(server_config(app, settings.listen_host, port, settings.log_level,
                                 log_config=logging_config(name, settings.log_level))).run()


def _run(args: argparse.Namespace, settings: Settings) -> None:
    name = args.name
    if name in SERVICES:
        from alur.runtime.worker import run_service

        definition = importlib.import_module(f"services.{name}.bootstrap").DEFINITION
        run_service(definition, settings)
    elif name == "gateway-sim":
        from alur.simulators.gateway import create_app

        secret = settings.gateway_callback_secret.get_secret_value()
        _serve_http(name, create_app(settings.pg_dsn, secret), settings.gateway_port, settings)
    elif name.startswith("carrier-"):
        from alur.simulators import carrier

        which = name.removeprefix("carrier-")
        app = carrier.create_app(which, settings.pg_dsn, settings.carrier_secret(which),
                                 settings.carrier_pickup_after, settings.carrier_step_after)
        _serve_http(name, app, settings.carrier_port(which), settings)
    elif name == "smtp-sink":
        from alur.runtime.logs import configure
        from alur.simulators.smtp import start_sink

        configure(name, settings.log_level)
        controller = start_sink(settings.mail_dir, settings.listen_host, settings.smtp_port)
        print(f"SMTP sink on {settings.listen_host}:{settings.smtp_port}, "
              f"mail in {settings.mail_dir}", flush=True)
        signal.sigwait({signal.SIGTERM, signal.SIGINT})
        controller.stop()


def _infra(args: argparse.Namespace, settings: Settings) -> None:
    from alur.infra import stack

    if args.action == "up":
        stack.infra_up(settings)
    elif args.action == "down":
        stack.infra_down(settings)
    elif args.json:
        print(json.dumps([{"component": name, "state": state, "address": address, "log": log}
                          for name, state, address, log in stack.status(settings)], indent=2))
    else:
        for row in stack.status(settings):
            print("{:<14} {:<22} {:<18} {}".format(*row))


def _stack(args: argparse.Namespace, settings: Settings) -> None:
    from alur.infra import stack

    if args.action == "up":
        for name, pid in stack.services_up(settings).items():
            print(f"{name:<14} pid {pid}")
    else:
        stack.services_down(settings)


def _supervise(args: argparse.Namespace, settings: Settings) -> None:
    from alur.infra.supervisor import supervise
    from alur.runtime.logs import configure

    configure("supervisor", "info")  # starts and exits are few and worth seeing
    supervise(settings)


def _stock(args: argparse.Namespace, settings: Settings) -> None:
    from services.inventory.seed import set_stock

    asyncio.run(set_stock(settings, [(args.location, args.sku, args.on_hand)]))
    print(f"{args.sku} at {args.location}: {args.on_hand} on hand")


def _location(args: argparse.Namespace, settings: Settings) -> int:
    from services.inventory.domain import Site
    from services.inventory.seed import set_locations

    ships = args.kind == "warehouse" if args.ships is None else args.ships
    try:
        site = Site(args.kind, args.region, ships)
    except ValueError as exc:
        print(f"alur location: {exc}", file=sys.stderr)
        return 2
    asyncio.run(set_locations(settings, {args.location: site}))
    print(f"{args.location}: {args.kind}, region {args.region or 'none'}, "
          f"{'ships' if ships else 'does not ship'} to customers")
    return 0


async def _kafka_access(settings: Settings, shop_id: str, revoke: bool = False) -> None:
    """Give the shop its Kafka topics, SCRAM credentials and ACLs, and print how to connect;
    or, with `revoke`, take its credentials away."""
    from aiokafka.errors import KafkaError

    from alur.infra import kafka_access
    from services.orders.shops import RegistryError

    try:
        if revoke:
            await kafka_access.revoke(settings.kafka_bootstrap, shop_id)
            print(f"Kafka credentials of {shop_id} deleted: no new connection gets in "
                  f"(`alur shops kafka {shop_id}` gives it new ones)")
            return
        access = await kafka_access.grant(
            settings.kafka_bootstrap, settings.kafka_shop_bootstrap, shop_id,
            partitions=settings.partitions, replication=settings.replication_factor)
    except (kafka_access.AccessError, KafkaError) as exc:
        raise RegistryError(f"Kafka access for {shop_id}: {exc}") from None
    print(f"Kafka access for {shop_id} (see services/orders/KAFKA.md):")
    print(f"  bootstrap servers  {access.bootstrap}")
    print("  security protocol  SASL_PLAINTEXT (SASL_SSL behind TLS), mechanism SCRAM-SHA-512")
    print(f"  username           {access.username}")
    print(f"  password           {access.password}   (shown once; run `alur shops kafka "
          f"{shop_id}` for a new one)")
    print(f"  publish orders to  {access.intake_topic}  (key: your order reference)")
    print(f"  read outcomes from {access.outcomes_topic}")
    print(f"  consumer groups    {access.group_prefix}*")


def _terms(args: argparse.Namespace, base: ShopTerms) -> ShopTerms:
    """The shop's terms: `base` with what the command line sets."""
    from dataclasses import replace

    changes: dict[str, Any] = {}
    if args.tax_name is not None:
        changes["tax_name"] = args.tax_name
    if args.tax_rate is not None:
        changes["tax_rate_bp"] = round(args.tax_rate * 100)
    if args.prices is not None:
        changes["prices_include_tax"] = args.prices == "include-tax"
    if args.locale is not None:
        changes["locale"] = args.locale
    if args.delivery_days is not None:
        changes["delivery_days"] = args.delivery_days
    if args.cod_fee is not None:
        changes["cod_fee"] = args.cod_fee
    return replace(base, **changes)


def _terms_text(shop: Shop) -> str:
    t = shop.terms
    tax = "no tax" if not t.tax_rate_bp else (
        f"{t.tax_name} {t.tax_rate_bp / 100:g}% "
        f"{'included in' if t.prices_include_tax else 'added to'} prices")
    from schemas.money import format_money

    fee = f", COD fee {format_money(t.cod_fee, shop.currency, t.locale)}" if t.cod_fee else ""
    return f"{tax}, locale {t.locale}, delivery {t.delivery_days} d{fee}"


def _registry(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "shops" and args.action != "list" and not args.shop_id:
        print(f"alur shops {args.action}: name the shop id", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "keys" and args.action != "list" and not args.target:
        print(f"alur keys {args.action}: name the "
              f"{'shop' if args.action == 'create' else 'key id'}", file=sys.stderr)
        return EXIT_USAGE
    from services.orders.admin import registry
    from services.orders.domain import INDONESIA
    from services.orders.shops import RegistryError

    async def go() -> None:
        async with registry(settings) as shops:
            if args.command == "catalogue":
                await shops.add_skus(args.skus)
                print(f"{len(args.skus)} SKU(s) in the catalogue")
            elif args.command == "shops" and args.action == "add":
                shop = await shops.add_shop(args.shop_id, args.name or args.shop_id,
                                            args.currency, signing=args.signing,
                                            rate_per_second=args.rate, burst=args.burst,
                                            terms=_terms(args, INDONESIA))
                print(f"shop {shop.shop_id} added ({shop.currency}; {_terms_text(shop)})")
                if shop.signing_secret:
                    print(f"signing secret (shown once): {shop.signing_secret}")
                if args.kafka:
                    await _kafka_access(settings, shop.shop_id)
            elif args.command == "shops" and args.action == "terms":
                current = await shops.shop(args.shop_id)
                if current is None:
                    raise RegistryError(f"no shop {args.shop_id}; add it with `alur shops add`")
                shop = await shops.set_terms(args.shop_id, _terms(args, current.terms))
                print(f"shop {shop.shop_id}: {_terms_text(shop)}")
            elif args.command == "shops" and args.action == "kafka":
                if await shops.shop(args.shop_id) is None:
                    raise RegistryError(f"no shop {args.shop_id}; add it with `alur shops add`")
                await _kafka_access(settings, args.shop_id, revoke=args.revoke)
            elif args.command == "shops" and args.json:
                print(json.dumps([{
                    "shop_id": shop.shop_id, "name": shop.name, "currency": shop.currency,
                    "signs_requests": shop.signing_secret is not None,
                    "rate_per_second": shop.rate_per_second or settings.api_rate_per_second,
                    "burst": shop.burst or settings.api_burst,
                    "terms": dataclasses.asdict(shop.terms)}  # never the signing secret
                    for shop in await shops.shops()], indent=2))
            elif args.command == "shops":
                for shop in await shops.shops():
                    print(f"{shop.shop_id:<24} {shop.currency}  "
                          f"{'signs requests' if shop.signing_secret else 'no signing'}  "
                          f"rate {shop.rate_per_second or settings.api_rate_per_second:g}/s "
                          f"burst {shop.burst or settings.api_burst}  {_terms_text(shop)}  "
                          f"{shop.name}")
            elif args.action == "create":
                key_id, key = await shops.create_key(args.target)
                print(f"key {key_id} for {args.target}; the key (shown once, keep it secret):")
                print(key)
            elif args.action == "revoke":
                revoked = await shops.revoke_key(args.target)
                print(f"key {revoked.key_id} of {revoked.shop_id} revoked")
            elif args.json:
                print(json.dumps([{  # the key itself was shown once, and is kept as a hash
                    "key_id": k.key_id, "shop_id": k.shop_id,
                    "created_at": k.created_at.isoformat(),
                    "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None}
                    for k in await shops.keys(args.target)], indent=2))
            else:
                for k in await shops.keys(args.target):
                    state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "live"
                    print(f"{k.key_id}  {k.shop_id:<24} created {k.created_at:%Y-%m-%d %H:%M}"
                          f"  {state}")

    try:
        asyncio.run(go())
    except RegistryError as exc:
        print(f"alur {args.command}: {exc}", file=sys.stderr)
        return 2
    return 0


def _schemas(args: argparse.Namespace, settings: Settings) -> None:
    from alur.tools.trace import subscribers
    from schemas import tools
    from services.orders import asyncapi
    from services.orders.api import openapi

    paths = tools.write_samples() if args.action == "samples" else [
        *tools.export(subscribers()), openapi.write(), asyncapi.write()]
    for path in paths:
        print(path)


def _deploy(args: argparse.Namespace, settings: Settings) -> None:
    from alur.infra import grafana, k8s, prometheus

    defaults = Settings.model_construct()  # the documented defaults, not this shell's ALUR_*
    for path in [*prometheus.write_configs(defaults), *grafana.write_dashboards(),
                 *k8s.write_manifests(defaults)]:
        print(path)


def _trace(args: argparse.Namespace, settings: Settings) -> int:
    order_id, as_json = args.order_id, args.json
    import asyncpg

    from alur.tools.trace import UnknownOrder, render, trace

    async def go() -> int:
        pool = await asyncpg.create_pool(settings.pg_dsn, min_size=1, max_size=2)
        try:
            found = await trace(pool, order_id)
        except UnknownOrder as exc:
            print(f"alur trace: {exc}", file=sys.stderr)
            return 1
        finally:
            await pool.close()
        print(json.dumps(found.as_json(), indent=2) if as_json else render(found))
        return 0

    return asyncio.run(go())


def _dlq(args: argparse.Namespace, settings: Settings) -> int:
    from alur.tools import dlq

    async def go() -> int:
        letters = await dlq.read_dead_letters(settings.kafka_bootstrap, progress=True)
        if args.service:
            letters = [d for d in letters if d.service == args.service]
        if args.action == "list":
            done = await dlq.redriven(settings.pg_dsn)
            rows = [{**d.summary(), "redriven_at": done[d.id].isoformat() if d.id in done
                     else None} for d in letters]
            if args.json:
                print(json.dumps(rows, indent=2))
            for r in [] if args.json else rows:
                state = f"redriven {r['redriven_at'][:19]}" if r["redriven_at"] else "waiting"
                print(f"{r['id']:<24} {r['service']:<13} {r['event_type'] or '?':<16} "
                      f"{r['order_id'] or '?':<36} {state:<28} {r['error'][:80]}")
            if not args.json:
                print(f"{len(rows)} dead letter(s)", file=sys.stderr)
            return 0
        by_id = {d.id: d for d in letters}
        unknown = [i for i in args.ids if i not in by_id]
        if unknown:
            print(f"alur dlq: no dead letter {', '.join(unknown)} (ids look like "
                  "orders.dlq:0:12; see `alur dlq list`)", file=sys.stderr)
            return 1
        if args.action == "show":
            shown = [by_id[i].detail() for i in args.ids]
            print(json.dumps(shown if len(shown) > 1 else shown[0], indent=2))
            return 0
        chosen = letters if args.all else [by_id[i] for i in args.ids]
        if not chosen:
            print("alur dlq: name dead letters to redrive, or --all", file=sys.stderr)
            return 1
        results = await dlq.redrive(settings.pg_dsn, settings.kafka_bootstrap, chosen,
                                    force=args.force)
        for done_ in results:
            print(json.dumps(done_.__dict__) if args.json else f"{done_.id:<24} {done_.outcome}"
                  + (f" -> {done_.published}" if done_.published else ""))
        return 0

    return asyncio.run(go())


def _events(args: argparse.Namespace, settings: Settings) -> int:
    from alur.runtime.topics import parse_ranges
    from alur.tools import events
    from schemas.catalogue import TOPICS

    try:
        where = events.Filter(
            types=frozenset(args.type or ()), shop=args.shop, order=args.order,
            since=events.parse_time(args.since) if args.since else None,
            until=events.parse_time(args.until) if args.until else None)
        ranges = parse_ranges(args.offsets) if args.offsets else None
        if ranges and args.follow:
            raise ValueError("--offsets reads a closed range; it does not go with --follow")
    except ValueError as exc:
        print(f"alur events: {exc}", file=sys.stderr)
        return 2

    async def go() -> int:
        shown = 0
        topics = args.topic or ([t for t in TOPICS if any(k[0] == t for k in ranges)]
                                if ranges else TOPICS)
        async for seen in events.read(settings.kafka_bootstrap, topics, where,
                                      follow=args.follow, progress=not args.json,
                                      ranges=ranges):
            print(seen.as_json() if args.json else seen.line(), flush=args.follow)
            shown += 1
            if args.limit and shown >= args.limit:
                break
        if not args.json:
            print(f"{shown} event(s)", file=sys.stderr)
        return 0

    try:
        return asyncio.run(go())
    except ValueError as exc:
        print(f"alur events: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _slice(args: argparse.Namespace) -> Any:
    """The orders the --shop, --order, --since and --until options choose."""
    from alur.runtime.slice import Slice
    from alur.tools.events import parse_time

    return Slice(shop=args.shop, orders=tuple(args.order or ()),
                 since=parse_time(args.since) if args.since else None,
                 until=parse_time(args.until) if args.until else None)


def _redecide(args: argparse.Namespace, settings: Settings) -> int:
    from alur.tools.redecide import redecide

    if not args.service:
        print("alur replay handlers: name the service (--service inventory, ...)",
              file=sys.stderr)
        return 2
    decider = None
    if args.service == "orders":  # its decisions depend on the deadlines it runs with
        from services.orders.bootstrap import policy_of
        from services.orders.decider import decider as orders_decider

        decider = orders_decider(policy_of(settings))
    try:
        report = asyncio.run(redecide(settings.pg_dsn, args.service, _slice(args),
                                      bootstrap_servers=settings.kafka_bootstrap,
                                      decider=decider))
    except ValueError as exc:
        print(f"alur replay: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"service": report.service, "orders": report.orders,
                          "events_redecided": report.events_redecided,
                          "differences": [d.__dict__ for d in report.differences]}, indent=2))
        return 0
    print(f"{report.service}: re-decided {report.events_redecided} events of {report.orders} "
          f"orders in a dry run (nothing written): {len(report.differences)} differ")
    for d in report.differences[:50]:
        where = f"after v{d.version} (ignored then)" if d.ignored_then else f"v{d.version}"
        print(f"  {d.order_id} {where} {d.event_type}: recorded "
              f"{d.recorded or 'nothing'}, now decides {d.would_decide or 'nothing'}")
    if len(report.differences) > 50:
        print(f"  ... and {len(report.differences) - 50} more (--json lists all)")
    return 0


def _replay_customers(args: argparse.Namespace, settings: Settings) -> int:
    from services.orders import customer_replay

    if args.order or args.since or args.until or args.offsets or args.resume or args.max_batches:
        print("alur replay customers: a replay is by shop (--shop) or whole; --order, --since, "
              "--until, --offsets, --resume and --max-batches are for sales", file=sys.stderr)
        return 2
    try:
        result = asyncio.run(customer_replay.replay(
            settings.pg_dsn, args.shop, source=args.source, bootstrap=settings.kafka_bootstrap,
            swap=args.swap, progress=not args.json))
    except ValueError as exc:
        print(f"alur replay: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"events_read": result.events_read, "equal": result.equal,
                          "swapped": result.swapped,
                          "tables": {t: d.__dict__ for t, d in result.tables.items()}},
                         indent=2))
        return 0
    print(f"replayed {result.events_read} events from "
          f"{'Kafka' if args.source == 'kafka' else 'the event store'}:")
    for table, d in result.tables.items():
        print(f"  {table:<22} {d.same} rows equal to live, {d.only_live} only live, "
              f"{d.only_rebuilt} only rebuilt")
    print("swapped into the live tables" if result.swapped else
          "live tables untouched (the rebuild is kept in schema customers_rebuild; --swap "
          "replaces them)")
    return 0


def _replay(args: argparse.Namespace, settings: Settings) -> int:
    if args.projection == "handlers":
        return _redecide(args, settings)
    if args.projection == "customers":
        return _replay_customers(args, settings)
    from alur.runtime.topics import parse_ranges
    from services.orders import sales

    try:
        part = _slice(args)
        result = asyncio.run(sales.replay(
            settings.pg_dsn, part, source=args.source, bootstrap=settings.kafka_bootstrap,
            swap=args.swap, progress=not args.json, resume=args.resume, budget=args.max_batches,
            ranges=parse_ranges(args.offsets) if args.offsets else None))
    except ValueError as exc:
        print(f"alur replay: {exc}", file=sys.stderr)
        return 2
    except (sales.ReplayInterrupted, KeyboardInterrupt) as exc:
        print(f"alur replay: interrupted ({exc or 'Ctrl-C'}); what was folded is kept: "
              "run again with --resume to go on", file=sys.stderr)
        return EXIT_STOPPED
    if args.json:
        print(json.dumps({**result.__dict__, "equal": result.equal}, indent=2))
    else:
        print(f"replayed {result.events_read} events of {result.orders_in_slice} orders "
              f"from {'Kafka' if args.source == 'kafka' else 'the event store'}: "
              f"{result.same} rows equal to live, "
              f"{len(result.differ)} differ, {len(result.only_live)} only live, "
              f"{len(result.only_rebuilt)} only rebuilt")
        for label, ids in (("differ", result.differ), ("only live", result.only_live),
                           ("only rebuilt", result.only_rebuilt)):
            for order_id in ids[:20]:
                print(f"  {label:<12} {order_id}")
        print("swapped into the live tables" if result.swapped else
              "live tables untouched (the rebuild is kept in schema orders_rebuild; --swap "
              "replaces the slice)")
    return 0


def _report(args: argparse.Namespace, settings: Settings) -> int:
    from schemas.money import valid_locale
    from services.orders import reports

    if args.which == "customers":
        return _report_customers(args, settings)
    try:
        valid_locale(args.locale)
        data = asyncio.run(reports.report(settings.pg_dsn, _slice(args)))
    except ValueError as exc:
        print(f"alur report: {exc}", file=sys.stderr)
        return 2
    reports.render_report(data, args.format, locale=args.locale)
    return 0


def _report_customers(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import UTC, datetime, timedelta

    import asyncpg

    from services.orders import retention
    from services.orders.sales import SCHEMA

    async def go() -> dict[str, list[dict[str, Any]]]:
        conn = await asyncpg.connect(settings.pg_dsn, server_settings={"search_path": SCHEMA})
        try:
            return await retention.customer_report(
                conn, _slice(args), period=args.period, now=datetime.now(UTC),
                expiry=timedelta(days=settings.loyalty_expiry_days))
        finally:
            await conn.close()

    try:
        data = asyncio.run(go())
    except ValueError as exc:
        print(f"alur report: {exc}", file=sys.stderr)
        return 2
    retention.render(data, args.format)
    return 0


def _forget(args: argparse.Namespace, settings: Settings) -> int:
    customer_id = args.customer_id
    import asyncpg

    from services.orders import customers
    from services.orders.sales import SCHEMA

    async def go() -> tuple[str, list[str]]:
        conn = await asyncpg.connect(settings.pg_dsn, server_settings={"search_path": SCHEMA})
        try:
            shop = await conn.fetchval(
                "SELECT shop_id FROM customer_orders WHERE customer_id = $1 UNION"
                " SELECT shop_id FROM customer_identifiers WHERE customer_id = $1 LIMIT 1",
                customer_id)
            if shop is None:
                raise LookupError(customer_id)
            async with conn.transaction():
                return shop, await customers.forget(conn, shop, customer_id)
        finally:
            await conn.close()

    try:
        shop, waiting = asyncio.run(go())
    except LookupError:
        print(f"alur customers: there is no customer {customer_id}", file=sys.stderr)
        return 2
    if waiting:
        print(f"alur customers: orders of {customer_id} are on their way ({', '.join(waiting)});"
              " forget the customer once they arrived or were cancelled", file=sys.stderr)
        return 1
    print(f"customer {customer_id} of {shop} forgotten: their key is deleted, so their personal "
          "data in every event store and topic is ciphertext nobody can open; orders, money, "
          "stock and points stay")
    return 0


def _check(args: argparse.Namespace, settings: Settings) -> int:
    order_ids, as_json = args.order_id, args.json
    import asyncpg

    from alur.tools.invariants import check

    async def go() -> int:
        conn = await asyncpg.connect(settings.pg_dsn)
        try:
            report = await check(conn, order_ids or None)
        finally:
            await conn.close()
        if as_json:
            print(json.dumps({
                "orders": report.orders,
                "violations": [{"invariant": v.invariant, "order_id": v.order_id,
                                "detail": v.detail} for v in report.violations],
                "unsettled": [{"order_id": order_id, "last": last}
                              for order_id, last in report.unsettled]}, indent=2))
            return EXIT_PROBLEMS if report.violations else 0
        print(f"{report.orders} orders checked, {len(report.violations)} violation(s), "
              f"{len(report.unsettled)} not settled yet")
        for v in report.violations:
            print(f"  {v.invariant:<24} {v.order_id or '-':<38} {v.detail}")
        for order_id, last in report.unsettled[:20]:
            print(f"  {'unsettled':<24} {order_id:<38} last: {last}")
        return EXIT_PROBLEMS if report.violations else 0

    return asyncio.run(go())


# Exit statuses of the tools: 0 done, 1 a check found problems (or the order asked about has
# no record), 2 a usage error, 3 the infrastructure (PostgreSQL, Kafka) cannot be reached,
# 4 a replay stopped before its end (run it again with --resume).
EXIT_PROBLEMS, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_STOPPED = 1, 2, 3, 4
# The commands that talk to PostgreSQL or Kafka as clients and give up when they cannot (the
# services and the supervisor wait for them instead).
CLIENT_COMMANDS = frozenset({"stock", "location", "shops", "keys", "catalogue", "trace",
                             "events", "check", "customers", "replay", "report", "dlq"})


def _unreachable(exc: BaseException, settings: Settings) -> str:
    """One line on what could not be reached, and where it was looked for."""
    return (f"cannot reach the infrastructure ({type(exc).__name__}: {exc or 'no answer'}); "
            f"PostgreSQL is looked for at {settings.pg_host}:{settings.pg_port} and Kafka at "
            f"{settings.kafka_bootstrap} (`alur infra up` starts them locally)")


def _unreachable_errors() -> tuple[type[BaseException], ...]:
    import socket

    import asyncpg
    from aiokafka.errors import KafkaConnectionError

    return (ConnectionError, socket.gaierror, TimeoutError, asyncpg.PostgresConnectionError,
            asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError,
            KafkaConnectionError)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("alur")
    except PackageNotFoundError:  # run from a checkout that was not installed
        return "unknown"


# A subcommand's handler: given the parsed arguments and the settings, its exit status (None
# for 0).
Handler = Callable[[argparse.Namespace, Settings], "int | None"]
# How each subcommand is run, shown by its --help.
EXAMPLES: dict[str, tuple[str, ...]] = {
    "run": ("alur run orders", "alur run gateway-sim"),
    "infra": ("alur infra up", "alur infra up --brokers 3", "alur infra status --json",
              "alur infra down"),
    "supervise": ("alur supervise",),
    "stack": ("alur stack up", "alur stack down"),
    "stock": ("alur stock WH-1 SKU-RED-MUG 50",),
    "location": ("alur location ST-JAKARTA --kind store --region 1 --no-ships",
                 "alur location WH-2 --region 6"),
    "shops": ("alur shops add toko-budi --signing", "alur shops list --json",
              "alur shops terms toko-budi --tax-rate 11 --cod-fee 5000",
              "alur shops kafka toko-budi --revoke"),
    "customers": ("alur customers forget cus_0123456789abcdef",),
    "keys": ("alur keys create toko-budi", "alur keys list toko-budi --json",
             "alur keys revoke KEY_ID"),
    "catalogue": ("alur catalogue add SKU-RED-MUG SKU-BLUE-PLATE",),
    "schemas": ("alur schemas samples", "alur schemas export"),
    "trace": ("alur trace ORDER_ID", "alur trace ORDER_ID --json | jq '.events[0]'"),
    "check": ("alur check", "alur check ORDER_ID ORDER_ID --json"),
    "events": ("alur events --type OrderCancelled --since 1h",
               "alur events --order ORDER_ID --follow",
               "alur events --offsets orders:2:100-200 --json"),
    "replay": ("alur replay sales --since 1d", "alur replay sales --from kafka --resume",
               "alur replay handlers --service payments --since 2h"),
    "report": ("alur report sales --since 7d", "alur report sales --format html > sales.html",
               "alur report customers --period week --format json"),
    "dlq": ("alur dlq list --service payments", "alur dlq show payments.dlq:0:12",
            "alur dlq redrive --all"),
    "deploy": ("alur deploy render",),
    "demo": ("alur demo", "alur demo --orders 60 --keep-running"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alur", description=__doc__, epilog="Exit status: 0 done, 1 a check found "
        "problems, 2 a usage error, 3 PostgreSQL or Kafka cannot be reached, 4 a replay "
        "stopped before its end.")
    parser.add_argument("--version", action="version", version=f"alur {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    # argparse stays: one parser per subcommand, each naming its handler (set_defaults), is
    # all the CLI needs, and click or typer would be one more dependency to lock and learn.
    handlers: dict[str, Handler] = {
        "run": _run, "infra": _infra, "supervise": _supervise, "stack": _stack,
        "stock": _stock, "location": _location, "shops": _registry, "customers": _forget,
        "keys": _registry, "catalogue": _registry, "schemas": _schemas, "trace": _trace,
        "check": _check, "events": _events, "replay": _replay, "report": _report,
        "dlq": _dlq, "deploy": _deploy, "demo": _demo}

    def add(name: str, help: str) -> argparse.ArgumentParser:
        """A subcommand whose --help repeats its summary and shows how it is run, and whose
        handler main() calls."""
        examples = "\n".join(f"  {line}" for line in EXAMPLES[name])
        command = sub.add_parser(name, help=help, description=help,
                                 epilog=f"examples:\n{examples}",
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
        command.set_defaults(func=handlers[name])
        return command

    run = add("run", help="run one component in the foreground")
    run.add_argument("name", choices=[*SERVICES, "gateway-sim", "smtp-sink",
                                      *(f"carrier-{c}" for c in CARRIERS)])
    infra = add("infra", help="local Kafka, PostgreSQL, SMTP sink, gateway simulator")
    infra.add_argument("action", choices=["up", "down", "status"])
    infra.add_argument("--json", action="store_true", help="status: machine-readable output")
    infra.add_argument("--brokers", type=int, choices=[1, 3], help="Kafka nodes (up, on a new "
                       "state dir): 3 is a KRaft cluster with replication factor 3, "
                       "min.insync.replicas=2 and unclean leader election off. Later `alur` "
                       "commands find the count in the state dir.")
    add("supervise", help="keep the wanted services running (what `alur stack up` "
                   "starts; see alur/infra/supervisor.py)")
    stack = add("stack", help="the five services as background processes, under a "
                           "supervisor that restarts them")
    stack.add_argument("action", choices=["up", "down"])
    stock = add("stock", help="set the units on hand of a SKU at a location")
    stock.add_argument("location")
    stock.add_argument("sku")
    stock.add_argument("on_hand", type=int)
    location = add("location", help="record what a stock location is: a warehouse "
                              "or a store, its postal region, whether a store ships online "
                              "orders (ship-from-store); online orders are routed by it")
    location.add_argument("location")
    location.add_argument("--kind", choices=["warehouse", "store"], default="warehouse")
    location.add_argument("--region", help="the first digit of the location's postal code, "
                          "e.g. 1 for Jakarta, 4 for Bandung")
    location.add_argument("--ships", action=argparse.BooleanOptionalAction, default=None,
                          help="a store ships online orders from its shelf (default: no)")
    shops = add("shops", help="the shop registry: add a shop, list shops, set a "
                           "shop's terms (tax, locale, delivery days)")
    shops.add_argument("action", choices=["add", "list", "kafka", "terms"],
                       help="kafka: new Kafka credentials for an existing shop (its topics and "
                       "ACLs are made if missing); terms: change the shop's tax, locale or "
                       "delivery days (orders placed before keep theirs)")
    shops.add_argument("shop_id", nargs="?", help="lower-case letters, digits, dashes (add)")
    shops.add_argument("--name", help="display name (add; default: the id)")
    shops.add_argument("--currency", default="IDR", help="ISO-4217 code orders are in (add; "
                       "IDR is counted in whole rupiah)")
    shops.add_argument("--tax-name", help="the tax's name on orders (add, terms; default PPN)")
    shops.add_argument("--tax-rate", type=float, help="the tax rate in percent, 0 for none "
                       "(add, terms; default 11)")
    shops.add_argument("--prices", choices=["include-tax", "exclude-tax"],
                       help="whether prices include the tax (add, terms; default include-tax)")
    shops.add_argument("--locale", help="how customers read amounts and dates, e.g. id_ID, "
                       "en, ja_JP (add, terms; default id_ID)")
    shops.add_argument("--delivery-days", type=int, help="days home delivery takes, for the "
                       "estimate in the confirmation e-mail (add, terms; default 3)")
    shops.add_argument("--cod-fee", type=int, help="the collection fee cash on delivery adds "
                       "to an order, in minor units of the shop's currency (whole rupiah for "
                       "IDR): 5000 is Rp5.000 (add, terms; default 0)")
    shops.add_argument("--signing", action="store_true",
                       help="require HMAC-signed requests; prints the secret once (add)")
    shops.add_argument("--rate", type=float, help="requests/s (add; default: the settings')")
    shops.add_argument("--burst", type=int, help="requests at once above the rate (add)")
    shops.add_argument("--kafka", action="store_true", help="also let the shop publish orders "
                       "on Kafka: its topics, SCRAM credentials (shown once) and ACLs (add)")
    shops.add_argument("--revoke", action="store_true", help="delete the shop's Kafka "
                       "credentials (kafka)")
    shops.add_argument("--json", action="store_true", help="list: machine-readable output "
                       "(never the signing secret)")
    customers = add("customers", help="forget a customer (the right to be "
                               "forgotten): their key is deleted, their personal data "
                               "unreadable everywhere")
    customers.add_argument("action", choices=["forget"])
    customers.add_argument("customer_id", help="Alur's id of the customer, cus_…")
    keys = add("keys", help="API keys: create (shown once), revoke, list")
    keys.add_argument("action", choices=["create", "revoke", "list"])
    keys.add_argument("target", nargs="?", help="shop id (create, list) or key id (revoke)")
    keys.add_argument("--json", action="store_true", help="list: machine-readable output")
    catalogue = add("catalogue", help="add SKUs orders may name")
    catalogue.add_argument("action", choices=["add"])
    catalogue.add_argument("skus", nargs="+")
    schemas = add("schemas", help="write golden samples, or JSON Schema + AsyncAPI "
                             "+ the orders API's OpenAPI")
    schemas.add_argument("action", choices=["samples", "export"])
    trace = add("trace", help="an order's cross-service timeline, with every hop")
    trace.add_argument("order_id")
    trace.add_argument("--json", action="store_true", help="machine-readable output")
    chk = add("check", help="verify DESIGN.md's invariants across all services' "
                         "tables; exit 1 naming each violating order")
    chk.add_argument("order_id", nargs="*", help="only these orders (default: all)")
    chk.add_argument("--json", action="store_true", help="machine-readable output: orders "
                     "checked, each violation and each order not settled yet")
    ev = add("events", help="read or tail the event topics, filtered")
    ev.add_argument("--topic", action="append", help="a topic (repeatable; default: all)")
    ev.add_argument("--type", action="append", help="an event type (repeatable)")
    ev.add_argument("--shop", help="only this shop's events")
    ev.add_argument("--order", help="only this order's events")
    ev.add_argument("--since", help="from this time: 10m, 2h, 1d ago or ISO 8601")
    ev.add_argument("--until", help="before this time (same forms)")
    ev.add_argument("--offsets", action="append",
                    help="only TOPIC:PARTITION:FROM-TO, e.g. orders:2:100-200 (repeatable)")
    ev.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    ev.add_argument("--limit", type=int, help="stop after this many events")
    ev.add_argument("--json", action="store_true", help="JSON lines with the whole envelope")
    replay = add("replay", help="rebuild a projection by replay, compare, swap; or "
                            "dry-run a service's decisions over what it handled")
    replay.add_argument("projection", choices=["sales", "customers", "handlers"])
    replay.add_argument("--service", choices=SERVICES, help="whose handlers (replay handlers)")
    replay.add_argument("--from", dest="source", choices=["store", "kafka"], default="store",
                        help="the orders event store (default) or the Kafka topics")
    replay.add_argument("--swap", action="store_true",
                        help="replace the slice in the live tables (from the store only)")
    replay.add_argument("--offsets", action="append",
                        help="read only TOPIC:PARTITION:FROM-TO (repeatable; --from kafka)")
    replay.add_argument("--resume", action="store_true",
                        help="go on with an interrupted Kafka replay")
    replay.add_argument("--max-batches", type=int,
                        help="stop after this many batches (a Kafka replay in steps)")
    replay.add_argument("--json", action="store_true", help="machine-readable output")
    report = add("report", help="sales analytics (GMV, products, funnel) or "
                            "customer retention (new vs returning, cohorts, channel mix)")
    report.add_argument("which", choices=["sales", "customers"])
    report.add_argument("--period", choices=["day", "week", "month"], default="month",
                        help="customers: the period new and returning are counted by")
    report.add_argument("--format", choices=["table", "csv", "json", "html"], default="table",
                        help="html: a page with bar charts (redirect it to a file)")
    report.add_argument("--locale", default="id_ID", help="how the table and the page write "
                        "amounts, e.g. id_ID (Rp150.000), en, ja_JP (csv and json give minor "
                        "units)")
    for p in (replay, report):
        p.add_argument("--shop", help="only this shop's orders")
        p.add_argument("--order", action="append", help="only this order (repeatable)")
        p.add_argument("--since", help="orders placed from this time: 10m, 2h, 1d or ISO 8601")
        p.add_argument("--until", help="orders placed before this time")
    dlq = add("dlq", help="list, show and redrive dead letters")
    dlq.add_argument("action", choices=["list", "show", "redrive"])
    dlq.add_argument("ids", nargs="*", help="dead-letter ids, e.g. orders.dlq:0:12")
    dlq.add_argument("--service", choices=SERVICES, help="only those this service gave up on")
    dlq.add_argument("--all", action="store_true", help="redrive every listed dead letter")
    dlq.add_argument("--force", action="store_true", help="redrive again what was redriven")
    dlq.add_argument("--json", action="store_true", help="machine-readable output")
    deploy = add("deploy", help="regenerate deploy/ files derived from the settings")
    deploy.add_argument("action", choices=["render"])
    demo = add("demo", help="everything up, simulated shops, a summary, all down")
    demo.add_argument("--orders", type=int, default=300)
    demo.add_argument("--shops", type=int, default=5)
    demo.add_argument("--keep-running", action="store_true",
                      help="leave what the demo started running")
    return parser


def with_recorded_brokers(settings: Settings) -> Settings:
    """The broker count `alur infra up --brokers N` recorded in the state dir, unless
    ALUR_BROKERS says otherwise."""
    recorded = settings.state_dir / "kafka" / "brokers"
    if "ALUR_BROKERS" in os.environ or not recorded.exists():
        return settings
    try:
        return settings.model_copy(update={"brokers": int(recorded.read_text())})
    except ValueError:
        return settings


def main(argv: list[str] | None = None) -> int:
    from pydantic import ValidationError

    args = build_parser().parse_args(argv)
    try:
        settings = with_recorded_brokers(Settings())
    except ValidationError as exc:  # an ALUR_* variable out of range, or a default secret
        why = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        print(f"alur: the settings are refused: {why}", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "infra" and args.brokers is not None:
        settings = settings.model_copy(update={"brokers": args.brokers})
    if args.command not in CLIENT_COMMANDS:
        return _dispatch(args, settings)
    # The Kafka client reports each refused connection itself; the tool says it once, below.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        return _dispatch(args, settings)
    except _unreachable_errors() as exc:
        print(f"alur {args.command}: {_unreachable(exc, settings)}", file=sys.stderr)
        return EXIT_UNREACHABLE


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from alur.demo import run_demo

    return run_demo(settings, orders=args.orders, shops=args.shops,
                    keep_running=args.keep_running)


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    """Runs the subcommand's handler (set by build_parser): its exit status, 0 if it has
    none to give."""
    try:
        return args.func(args, settings) or 0
    except StartError as exc:
        print(f"alur: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader went away (`| head`): not an error
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
