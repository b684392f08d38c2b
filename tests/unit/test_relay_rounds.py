"""The relay's bookkeeping when a round's sends partly fail (alur.runtime.relay).

The producer here is a stand-in that answers each send with a preset outcome: what is under
test is which outbox rows the relay marks published. The real producer's failures are met by
the e2e and fault suites (broker restarts, topics created while the relay runs)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka.errors import KafkaError, NotLeaderForPartitionError

from alur.runtime.memory import InMemoryOutbox, InMemoryUnitOfWork, MemoryState
from alur.runtime.ports import DEAD_LETTER_TYPE
from alur.runtime.relay import OutboxRelay


@dataclass
class Sent:
    partition: int
    offset: int


@dataclass
class Answering:
    """Fails the sends of the values in `failing`, accepts the others."""

    failing: set[bytes]
    sent: list[bytes] = field(default_factory=list)
    content_types: list[bytes] = field(default_factory=list)

    async def send(self, topic: str, value: bytes, key: bytes | None = None,  # noqa: ANN401
                   headers: list[tuple[str, bytes]] | None = None) -> Any:
        answer: asyncio.Future[Sent] = asyncio.get_running_loop().create_future()
        if value in self.failing:
            answer.set_exception(NotLeaderForPartitionError())
        else:
            self.sent.append(value)
            self.content_types += [v for k, v in headers or [] if k == "content-type"]
            answer.set_result(Sent(0, len(self.sent)))
        return answer


async def relay_over(rows: list[tuple[bytes, bytes]], producer: Answering,
                     row_type: str = "OrderPlaced") -> tuple[OutboxRelay, InMemoryOutbox]:
    state = MemoryState()
    async with InMemoryUnitOfWork(state) as uow:
        for key, value in rows:
            uow.send("orders", key, value, row_type)
    outbox = InMemoryOutbox(state)
    relay = OutboxRelay("orders", "orders", "", outbox, producer,
                        batch=100, interval=1.0, retention=60.0)
    return relay, outbox


async def test_what_was_sent_is_marked_and_a_key_behind_a_failed_row_waits() -> None:
    rows = [(b"o1", b"o1-placed"), (b"o2", b"o2-placed"), (b"o1", b"o1-paid"),
            (b"o3", b"o3-placed")]
    producer = Answering({b"o1-placed"})
    relay, outbox = await relay_over(rows, producer)
    with pytest.raises(KafkaError):
        await relay.publish_once()
    # o1-paid went out, but after a failed o1-placed: both are sent again, in order.
    assert [r.value for r in await outbox.unpublished(10)] == [b"o1-placed", b"o1-paid"]
    producer.failing.clear()
    assert await relay.publish_once() == 2
    assert await outbox.unpublished(10) == []
    assert producer.sent == [b"o2-placed", b"o1-paid", b"o3-placed", b"o1-placed", b"o1-paid"]


async def test_a_round_without_failures_marks_everything() -> None:
    relay, outbox = await relay_over([(b"o1", b"a"), (b"o2", b"b")], Answering(set()))
    assert await relay.publish_once() == 2
    assert await outbox.unpublished(10) == []


@pytest.mark.parametrize(("row_type", "content_type"), [
    ("OrderPlaced", b"application/cloudevents+json; charset=utf-8"),
    ("OrderRejected", b"application/cloudevents+json; charset=utf-8"),
    (DEAD_LETTER_TYPE, b"application/json")])
async def test_every_record_says_what_its_value_is(row_type: str, content_type: bytes) -> None:
    producer = Answering(set())
    relay, _ = await relay_over([(b"o1", b"a"), (b"o2", b"b")], producer, row_type)
    assert await relay.publish_once() == 2
    assert producer.content_types == [content_type, content_type]
