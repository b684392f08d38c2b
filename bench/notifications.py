"""E-mails per second through the notifications service's perform, on a real PostgreSQL and
the SMTP sink: the sent-log check, the SMTP send and the record of each e-mail, with 64 of a
batch's e-mails planned side by side as the runtime does (PLAN_CONCURRENCY).

Two arrangements, alternated in one run:
- `turn per session`: the check, the send and the record are one turn on an SMTP session
  (what services/notifications/bootstrap.py does since e853f31);
- `check, then queue`: each e-mail is checked as soon as it is planned and then queues for the
  session (before e853f31; a database restart then let every queued e-mail go out
  unrecorded).

Usage: python bench/notifications.py [--emails N] [--rounds R]. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from alur.infra import stack  # noqa: E402
from alur.runtime.aggregate import PLAN_CONCURRENCY  # noqa: E402
from alur.runtime.db import connect_pool, migrate  # noqa: E402
from alur.settings import Settings  # noqa: E402
from schemas import first_event  # noqa: E402
from schemas.examples import PAYLOADS  # noqa: E402
from services.notifications import domain  # noqa: E402
from services.notifications.bootstrap import make_perform  # noqa: E402
from services.notifications.mailer import SmtpMailer  # noqa: E402
from services.notifications.sent_log import PostgresSentLog  # noqa: E402

ARRANGEMENTS = {"turn per session": 1, "check, then queue": PLAN_CONCURRENCY}


def bench_settings() -> Settings:
    return Settings(state_dir=ROOT / ".alur" / "bench-mail", jar_dir=ROOT / ".alur" / "jars",
                    kafka_port=28192, kafka_controller_port=28193, pg_port=26532,
                    smtp_port=2537, gateway_port=8192, metrics_port_base=9700,
                    prometheus_port=9790, payments_port=8186, kilat_port=8221,
                    nusapost_port=8222, partitions=1, log_level="warning")


def commands(n: int) -> list[domain.SendEmail]:
    placed = PAYLOADS["OrderPlaced"]
    out = []
    for _ in range(n):
        order_id = f"ord_{uuid.uuid4().hex}"
        event = first_event(placed.model_copy(update={"order_id": order_id}),
                            source="alur/bench", subject=order_id, shop_id="bench",
                            channel="online")
        out.append(domain.SendEmail(domain.Recipient("budi@example.co.id", "Budi"), event,
                                    f"ntf_{event.id.hex}", event.data))
    return out


async def rate(settings: Settings, pool: object, turns: int, n: int) -> float:
    """E-mails per second for n e-mails, PLAN_CONCURRENCY planned at once."""
    mailer = SmtpMailer(settings.smtp_host, settings.smtp_port, sessions=1)
    perform = make_perform(mailer, PostgresSentLog(pool), sessions=turns)
    slots = asyncio.Semaphore(PLAN_CONCURRENCY)
    todo = commands(n)

    async def one(command: domain.SendEmail) -> None:
        async with slots:
            await perform(None, command, command.about)  # type: ignore[arg-type]

    started = time.perf_counter()
    await asyncio.gather(*(one(c) for c in todo))
    elapsed = time.perf_counter() - started
    await mailer.close()
    return n / elapsed


async def measure(settings: Settings, n: int, rounds: int) -> dict[str, list[float]]:
    await migrate(settings.pg_dsn, "notifications",
                  ROOT / "services" / "notifications" / "migrations")
    pool = await connect_pool(settings.pg_dsn, "notifications", 8)
    results: dict[str, list[float]] = {name: [] for name in ARRANGEMENTS}
    try:
        await rate(settings, pool, 1, min(n, 200))  # warm up: connections, templates
        for round_ in range(rounds):
            for name, turns in ARRANGEMENTS.items():
                results[name].append(await rate(settings, pool, turns, n))
                print(f"  round {round_ + 1}: {name:<18} {results[name][-1]:8,.0f} e-mails/s",
                      flush=True)
    finally:
        await pool.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emails", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with stack.fresh(bench_settings(), say=lambda line: print("  " + line)) as settings:
        results = asyncio.run(measure(settings, args.emails, args.rounds))
    print(f"\n{args.emails} e-mails per round, {PLAN_CONCURRENCY} planned at once, "
          "one SMTP session:")
    base = max(results["check, then queue"])
    for name, rates in results.items():
        print(f"  {name:<18} best {max(rates):8,.0f} e-mails/s  "
              f"({' / '.join(f'{r:,.0f}' for r in rates)}); {max(rates) / base:.2f}x")


if __name__ == "__main__":
    main()
