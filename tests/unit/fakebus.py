"""All five services wired to in-memory fakes, with an in-memory stand-in for Kafka topics."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field

from alur.runtime.memory import InMemoryOutbox, InMemoryUnitOfWork, MemoryState
from alur.runtime.processing import BatchProcessor, Message
from schemas import Event, decode
from services.inventory.adapters import InMemoryStock
from services.inventory.bootstrap import make_handler as inventory_handler
from services.notifications.bootstrap import make_handler as notifications_handler
from services.notifications.mailer import InMemoryMailer
from services.orders.bootstrap import handle as orders_handler
from services.payments.bootstrap import make_handler as payments_handler
from services.payments.gateway import InMemoryGateway
from services.shipping.bootstrap import make_handler as shipping_handler
from services.shipping.carrier import SimulatedCourier

SUBSCRIPTIONS = {
    "orders": ("inventory", "payments", "shipping"),
    "inventory": ("orders", "shipping"),
    "payments": ("orders", "inventory"),
    "shipping": ("orders", "payments", "shipping"),
    "notifications": ("orders", "payments", "shipping"),
}


async def _no_sleep(_: float) -> None:
    return None


@dataclass
class FakePlatform:
    gateway: InMemoryGateway = field(default_factory=InMemoryGateway)
    mailer: InMemoryMailer = field(default_factory=InMemoryMailer)
    states: dict[str, MemoryState] = field(
        default_factory=lambda: {name: MemoryState() for name in SUBSCRIPTIONS})
    topics: dict[str, list[Message]] = field(default_factory=lambda: defaultdict(list))
    positions: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))

    def __post_init__(self) -> None:
        handlers = {
            "orders": orders_handler, "inventory": inventory_handler(),
            "payments": payments_handler(self.gateway),
            "shipping": shipping_handler(SimulatedCourier()),
            "notifications": notifications_handler(self.mailer),
        }
        self.processors = {
            name: BatchProcessor(name, handlers[name], self._uow_factory(name), sleep=_no_sleep)
            for name in SUBSCRIPTIONS}

    def _uow_factory(self, name: str):  # noqa: ANN202
        return lambda: InMemoryUnitOfWork(self.states[name])

    async def set_stock(self, location: str, sku: str, on_hand: int) -> None:
        await InMemoryStock(self.states["inventory"].extra).set_on_hand(location, sku, on_hand)

    async def place(self, placed: Event) -> None:
        """What the orders API does: append and publish in one unit of work."""
        async with InMemoryUnitOfWork(self.states["orders"]) as uow:
            await uow.append(placed.subject, 0, [placed], ["own"])
            uow.publish(placed)

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

    async def run(self, max_rounds: int = 50) -> None:
        """Relay and consume until nothing moves."""
        for _ in range(max_rounds):
            moved = await self.relay()
            for service, topics in SUBSCRIPTIONS.items():
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
