"""A slow partner delays its own order only, and nothing is locked while it answers.

The gateway here answers the charge of one order only when the test lets it: every check
below is made while that charge is provably unanswered, so none depends on timing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from alur.runtime.errors import StreamBusy
from alur.runtime.memory import InMemoryUnitOfWork, MemoryState
from alur.runtime.processing import BatchProcessor, Message, Result
from schemas import Money, encode
from services.payments.bootstrap import wiring
from services.payments.gateway import ChargeResult, InMemoryGateway
from tests.unit.builders import event

SLOW = "tok_slow"


class HeldGateway(InMemoryGateway):
    """Answers a charge with token `tok_slow` once `answer` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.answer = asyncio.Event()
        self.asked = asyncio.Event()
        self.calls: list[str] = []

    async def charge(self, idempotency_key: str, reference: str, amount: Money,
                     token: str | None) -> ChargeResult:
        self.calls.append(idempotency_key)
        if token == SLOW:
            self.asked.set()
            await self.answer.wait()
        return await super().charge(idempotency_key, reference, amount, token)


class Counted(InMemoryUnitOfWork):
    """The fake unit of work, counting those open (the fake's transactions)."""

    open = 0

    async def __aenter__(self) -> Counted:
        Counted.open += 1
        await super().__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> None:  # noqa: ANN401
        Counted.open -= 1
        await super().__aexit__(*exc)


def placed(order_id: str, token: str = "tok_visa") -> Any:  # noqa: ANN401
    ev = event("OrderPlaced", order_id)
    return ev.model_copy(update={"data": ev.data.model_copy(update={
        "payment": ev.data.payment.model_copy(update={"token": token})})})


def batch(events: list[Any], first: int) -> list[Message]:
    return [Message("orders", 0, first + i, e.subject.encode(), encode(e))
            for i, e in enumerate(events)]


def types(state: MemoryState, order_id: str) -> list[str]:
    return [s.event.type for s in state.streams.get(order_id, [])]


async def test_a_slow_charge_delays_its_own_order_only_and_holds_no_lock_meanwhile() -> None:
    state, gateway = MemoryState(), HeldGateway()
    handler = wiring(gateway, "http://payments.test", 3600.0).handler()
    bp = BatchProcessor("payments", handler, lambda: Counted(state),
                        sleep=lambda _: asyncio.sleep(0), straggler_after=0.05)
    orders = [f"o{i}" for i in range(5)]
    await bp.commit(batch([placed(o, SLOW if o == "o2" else "tok_visa") for o in orders], 0))

    until = datetime.now(UTC) + timedelta(hours=1)
    results = await bp.commit(batch([event("StockReserved", o, expires_at=until)
                                     for o in orders], 5))

    # The batch committed while o2's charge is still unanswered: the other four are paid.
    assert gateway.asked.is_set() and not gateway.answer.is_set()
    assert [r.outcome for r in results] == ["processed"] * 2 + ["deferred"] + ["processed"] * 2
    for order_id in ("o0", "o1", "o3", "o4"):
        assert types(state, order_id)[-1] == "PaymentConfirmed"
    assert types(state, "o2") == ["OrderPlaced"]
    # Nothing is open or locked while the gateway thinks; o2 is claimed, so another writer
    # (a timer, a callback) is told to come back instead of waiting on a lock.
    assert Counted.open == 0 and state.held_streams == set()
    async with Counted(state) as uow:
        assert types(state, "o1")[-1] == "PaymentConfirmed" and await uow.load("o1")
        try:
            await uow.load("o2")
            raise AssertionError("o2 is not claimed")
        except StreamBusy:
            pass

    # A later batch: o2's next event waits behind its charge, o4's goes through at once.
    more = await bp.commit(batch([event("OrderCancelled", "o2"),
                                  event("OrderCancelled", "o4")], 10))
    assert [r.outcome for r in more] == ["deferred", "processed"]
    assert types(state, "o4")[-1] == "RefundIssued"

    gateway.answer.set()
    straggler = results[2].later
    assert straggler is not None and more[0].later is not None
    [paid] = await straggler
    [cancelled] = await more[0].later
    assert isinstance(paid, Result) and paid.outcome == cancelled.outcome == "processed"
    assert types(state, "o2") == ["OrderPlaced", "StockReserved", "PaymentConfirmed",
                                  "OrderCancelled", "RefundIssued"]
    # Charged once: the answer that came late is the one recorded, not asked for again.
    assert gateway.calls.count("o2:capture") == 1 and state.claims == {}
    assert len(gateway.charges) == 5
