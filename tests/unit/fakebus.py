"""All five services wired to in-memory fakes, with an in-memory stand-in for Kafka topics."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from alur.runtime.aggregate import (
    Outside,
    act,
    act_or_claim,
    call_outside,
    keep_timers,
)
from alur.runtime.memory import InMemoryOutbox, InMemoryUnitOfWork, MemoryState
from alur.runtime.processing import BatchProcessor, Message
from alur.settings import CARRIERS, Settings
from schemas import Event, decode
from services.inventory import bootstrap as inventory
from services.inventory.adapters import InMemoryStock, memory_stock
from services.notifications import bootstrap as notifications
from services.notifications.mailer import InMemoryMailer
from services.notifications.sent_log import InMemorySentLog
from services.orders import bootstrap as orders
from services.orders.domain import OrderState
from services.payments import bootstrap as payments
from services.payments.domain import request_declined, transfer_received
from services.payments.gateway import InMemoryGateway
from services.shipping import bootstrap as shipping
from services.shipping.carrier import InMemoryCarrier
from services.shipping.webhooks import CarrierReport, record_report

SERVICES = {m.DEFINITION.name: m for m in (orders, inventory, payments, shipping, notifications)}
SUBSCRIPTIONS = {name: m.DEFINITION.subscriptions for name, m in SERVICES.items()}


RETRY_FAILED_TIMER = timedelta(minutes=5)


async def _no_sleep(_: float) -> None:
    return None


@dataclass
class FakePlatform:
    gateway: InMemoryGateway = field(default_factory=InMemoryGateway)
    mailer: InMemoryMailer = field(default_factory=InMemoryMailer)
    sent_log: InMemorySentLog = field(default_factory=InMemorySentLog)
    states: dict[str, MemoryState] = field(
        default_factory=lambda: {name: MemoryState() for name in SUBSCRIPTIONS})
    topics: dict[str, list[Message]] = field(default_factory=lambda: defaultdict(list))
    positions: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    clock: datetime = field(default_factory=lambda: datetime.now(UTC))
    paused: set[str] = field(default_factory=set)  # services that neither consume nor fire

    def __post_init__(self) -> None:
        settings = Settings()
        self.carriers = {name: InMemoryCarrier(name, settings.carrier_pickup_after,
                                               settings.carrier_step_after,
                                               clock=lambda: self.clock)
                         for name in CARRIERS}
        # Each service wired as it declares itself, over fakes (orders declares no adapters).
        self.wirings = wirings = {
            "orders": orders.wiring(),
            "inventory": inventory.wiring(settings.reservation_ttl, memory_stock),
            "payments": payments.wiring(self.gateway, settings.payments_url,
                                        settings.bank_transfer_ttl, settings.app_payment_ttl),
            "shipping": shipping.wiring(self.carriers),
            "notifications": notifications.wiring(self.mailer, self.sent_log),
        }
        self.processors = {
            name: BatchProcessor(name, wirings[name].handler(), self._uow_factory(name),
                                 sleep=_no_sleep,
                                 patience=0.0)  # no wall clock here: dead-letter at once
            for name in SUBSCRIPTIONS}
        self.timers = {name: fire for name in SUBSCRIPTIONS
                       if (fire := wirings[name].timers()) is not None}

    def _uow_factory(self, name: str):  # noqa: ANN202
        return lambda: InMemoryUnitOfWork(self.states[name])

    async def set_stock(self, location: str, sku: str, on_hand: int) -> None:
        await InMemoryStock(self.states["inventory"].extra).set_on_hand(location, sku, on_hand)

    async def place(self, placed: Event) -> None:
        """What the orders API does: append and publish in one unit of work."""
        async with InMemoryUnitOfWork(self.states["orders"]) as uow:
            await uow.append(placed.subject, 0, [placed], ["own"])
            uow.publish(placed)
            keep_timers(uow, placed.subject, {},
                        orders.DECIDER.due(orders.DECIDER.fold([placed])))

    def produce_raw(self, topic: str, key: bytes, value: bytes) -> None:
        self.topics[topic].append(Message(topic, 0, len(self.topics[topic]), key, value))

    async def relay(self) -> int:
        moved = 0
        for state in self.states.values():
            outbox = InMemoryOutbox(state)
            rows = await outbox.unpublished(1000)
            for row in rows:
                self.produce_raw(row.topic, row.key or b"", row.value)
            await outbox.mark_published([(r.id, 0, 0) for r in rows])
            moved += len(rows)
        return moved

    async def run(self, for_: timedelta = timedelta(minutes=10)) -> None:
        """Settle, then let time pass: the clock jumps to each next due timer or carrier step
        within `for_`, fires it, and the platform settles again."""
        horizon = self.clock + for_
        await self.settle()
        failed: frozenset[tuple[str, str, str, datetime]] = frozenset()
        while (due := self.next_due(failed)) is not None and due <= horizon:
            self.clock = max(self.clock, due)
            due_now = self.due_timers()
            for name, fire in self.timers.items():
                if name in self.paused:
                    continue
                async with InMemoryUnitOfWork(self.states[name]) as uow:
                    await fire(uow, self.clock)
                finish = getattr(fire, "finish", None)  # partner calls after the round
                if finish is not None:
                    await finish(self._uow_factory(name))
            failed = frozenset(due_now & self.due_timers())
            await self.carriers_report()
            await self.settle()
        self.clock = max(self.clock, horizon)

    async def carriers_report(self) -> None:
        """What the carrier webhook does with each report due by now (while shipping runs)."""
        if "shipping" in self.paused:
            return
        for carrier in self.carriers.values():
            for report in carrier.due(self.clock):
                async with InMemoryUnitOfWork(self.states["shipping"]) as uow:
                    await record_report(uow, shipping.DECIDER,
                                        CarrierReport.model_validate(report),
                                        source="alur/shipping")
                carrier.acknowledged(report)

    def due_timers(self) -> set[tuple[str, str, str, datetime]]:
        return {(name, stream, kind, due) for name, state in self.states.items()
                if name not in self.paused for (stream, kind), due in state.timers.items()
                if due <= self.clock}

    def next_due(self, failed: frozenset[tuple[str, str, str, datetime]] = frozenset()
                 ) -> datetime | None:
        # A timer whose round failed (a partner down) is tried again a while later.
        timers = [max(due, self.clock + RETRY_FAILED_TIMER)
                  if (name, stream, kind, due) in failed else due
                  for name, state in self.states.items() if name not in self.paused
                  for (stream, kind), due in state.timers.items()]
        if "shipping" not in self.paused:
            timers += [due for c in self.carriers.values() if (due := c.next_due()) is not None]
        return min(timers, default=None)

    async def customer(self, order_id: str,
                       choose: Callable[[OrderState], Sequence[object]]) -> None:
        """What the orders API does for a shop's request (cancel, receipt, return)."""
        async with InMemoryUnitOfWork(self.states["orders"]) as uow:
            await act(uow, orders.DECIDER, order_id, choose, source="alur/orders")

    async def transfer_arrives(self, order_id: str) -> None:
        """What the payments callback does when the gateway reports the bank transfer (or the
        QRIS or e-wallet payment)."""
        state = self.states["payments"]
        asked = next(s.event for s in state.streams[order_id]
                     if s.event.type in ("PaymentPending", "PaymentRequested"))
        pending = asked.data
        into = pending.virtual_account if asked.type == "PaymentPending" else pending.request_id
        async with InMemoryUnitOfWork(state) as uow:
            done = await act_or_claim(uow, payments.DECIDER, order_id, lambda s: transfer_received(
                s, order_id, pending.amount, into, f"tr_{order_id}"),
                source="alur/payments")
        if isinstance(done, Outside):  # a transfer sent back: called after the transaction
            await call_outside(self._uow_factory("payments"), payments.DECIDER, done,
                               source="alur/payments", perform=self.wirings["payments"].perform)


    async def push_declined(self, order_id: str) -> None:
        """The customer declines the order's e-wallet push in the app, and the gateway's
        callback (`payment.declined`) reaches payments."""
        state = self.states["payments"]
        asked = next(s.event for s in state.streams[order_id]
                     if s.event.type == "PaymentRequested").data
        self.gateway.decline(asked.request_id)
        async with InMemoryUnitOfWork(state) as uow:
            await act_or_claim(uow, payments.DECIDER, order_id, lambda s: request_declined(
                s, order_id, asked.request_id), source="alur/payments")

    async def settle(self, max_rounds: int = 50) -> None:
        """Relay and consume until nothing moves."""
        for _ in range(max_rounds):
            moved = await self.relay()
            for service, topics in SUBSCRIPTIONS.items():
                if service in self.paused:
                    continue
                for topic in topics:
                    start = self.positions[(service, topic)]
                    batch = self.topics[topic][start:]
                    if batch:
                        await self.processors[service].process(batch)
                        self.positions[(service, topic)] += len(batch)
                        moved += len(batch)
            if moved == 0:
                return
        raise AssertionError("the platform did not settle")

    def stream(self, service: str, order_id: str) -> list[str]:
        return [s.event.type for s in self.states[service].streams.get(order_id, [])]

    def dead_letters(self, topic: str) -> list[dict[str, object]]:
        return [json.loads(m.value) for m in self.topics[f"{topic}.dlq"]]

    def events(self, topic: str) -> list[Event]:
        return [decode(m.value) for m in self.topics[topic]]
