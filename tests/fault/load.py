"""Sustained load for the fault suite: shops placing orders at a steady rate over HTTP, the
way a shop integrates (each order with its own Idempotency-Key; a request that got no answer,
a 5xx or a 429 is sent again with the same key after a pause), and their customers acting on
the orders as they move (alur.simulators.customers: paying transfers, cancelling, returning)."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass, field

import asyncpg
import httpx

from alur.runtime.db import DATABASE_ERRORS
from alur.simulators.customers import Customers, Plan, order_body, plan

PATIENCE = 180.0  # seconds a shop keeps sending an order that got no 202


@dataclass
class Placed:
    order_id: str
    at: float  # time.monotonic() of the 202


@dataclass
class Load:
    api: httpx.AsyncClient
    customers: Customers
    shops: tuple[str, ...]
    rate: float
    rng: random.Random = field(default_factory=lambda: random.Random(14))
    placed: list[Placed] = field(default_factory=list)
    given_up: int = 0
    retried: dict[str, int] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def run(self, stop: asyncio.Event) -> None:
        """Place an order every 1/rate seconds until `stop`, then wait for those in flight."""
        n = 0
        started = time.monotonic()
        while not stop.is_set():
            task = asyncio.create_task(self.place(self.shops[n % len(self.shops)]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            n += 1
            await asyncio.sleep(max(0.0, started + n / self.rate - time.monotonic()))
        if self._tasks:
            await asyncio.gather(*self._tasks)

    async def place(self, shop: str, body: dict[str, object] | None = None,
                    p: Plan | None = None) -> str | None:
        """One order (a planned one of the mix unless `body` and `p` are given); its id once
        accepted, None if the shop gave up."""
        if p is None:
            p = plan(self.rng)
            p.reviews = p.returns = False  # keep the customers quick: pay, cancel, confirm
        body = body or order_body(shop, p, self.rng)
        headers = {"Authorization": f"Bearer {self.customers.keys[shop]}",
                   "Idempotency-Key": f"fault-{uuid.uuid4().hex}"}
        deadline = time.monotonic() + PATIENCE
        while time.monotonic() < deadline:
            try:
                response = await self.api.post("/v1/orders", json=body, headers=headers)
            except httpx.TransportError as exc:
                self._count(type(exc).__name__)
            else:
                if response.status_code == 202:
                    order_id = str(response.json()["order_id"])
                    self.customers.add(order_id, shop, p, body)
                    self.placed.append(Placed(order_id, time.monotonic()))
                    return order_id
                if response.status_code < 500 and response.status_code not in (409, 429):
                    raise AssertionError(f"order refused: {response.status_code} "
                                         f"{response.text}")
                self._count(str(response.status_code))
            await asyncio.sleep(1.0)
        self.given_up += 1
        return None

    def _count(self, what: str) -> None:
        self.retried[what] = self.retried.get(what, 0) + 1


async def act_while(customers: Customers, db: asyncpg.Pool, stop: asyncio.Event) -> None:
    """The customers act on whatever orders exist, round after round, until `stop`."""
    while not stop.is_set():
        try:
            await customers.act_until_done(db, 2.0, lambda _: None)
        except DATABASE_ERRORS:
            pass  # the database is down for a fault: next round
        await asyncio.sleep(0.5)  # with no order open, the call above returns at once
