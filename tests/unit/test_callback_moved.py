"""A gateway callback whose order moved on while its transfer was being sent back is not
remembered: its retry is decided afresh and records the money sent back (invariant 7)."""

from __future__ import annotations

import uuid

import pytest

from alur.runtime.aggregate import Outside, act_or_claim, call_outside
from alur.runtime.errors import ConcurrencyConflict
from alur.runtime.memory import InMemoryUnitOfWork, MemoryState
from services.payments.bootstrap import DECIDER, SOURCE, wiring
from services.payments.domain import transfer_received
from services.payments.gateway import InMemoryGateway
from tests.unit.builders import event

ORDER = "ord_moved"


async def test_a_callback_that_found_its_order_moved_is_tried_afresh() -> None:
    state = MemoryState()
    gateway = InMemoryGateway()
    perform = wiring(gateway, "http://payments.test", 3600.0).perform
    placed = event("OrderPlaced", ORDER)
    placed = placed.model_copy(update={"data": placed.data.model_copy(update={
        "payment": placed.data.payment.model_copy(update={"method": "bank_transfer",
                                                          "token": None})})})
    pending = event("PaymentPending", ORDER)
    pending = pending.model_copy(update={"data": pending.data.model_copy(update={
        "amount": placed.data.total})})
    async with InMemoryUnitOfWork(state) as uow:
        await uow.append(ORDER, 0, [placed, pending, event("PaymentExpired", ORDER)],
                         ["observed", "own", "own"])
    callback = uuid.uuid4()

    def received(s: object) -> list[object]:
        return list(transfer_received(s, ORDER, pending.data.amount,  # type: ignore[arg-type]
                                      pending.data.virtual_account, "tr_late"))

    async def callback_once() -> object:
        async with InMemoryUnitOfWork(state) as uow:
            assert await uow.unseen([callback]), "taken for recorded"
            done = await act_or_claim(uow, DECIDER, ORDER, received, source=SOURCE,
                                      remember=callback)
        assert isinstance(done, Outside)  # the late transfer is sent back: a partner call
        return done

    job = await callback_once()
    async with InMemoryUnitOfWork(state) as uow:  # the cancellation lands meanwhile
        uow.claimant = True
        await uow.append(ORDER, 3, [event("OrderCancelled", ORDER)], ["observed"])
    with pytest.raises(ConcurrencyConflict):
        await call_outside(lambda: InMemoryUnitOfWork(state), DECIDER, job,  # type: ignore[arg-type]
                           source=SOURCE, perform=perform)
    # The gateway retries the callback: decided again, on the order as it is now.
    job = await callback_once()
    await call_outside(lambda: InMemoryUnitOfWork(state), DECIDER, job,  # type: ignore[arg-type]
                       source=SOURCE, perform=perform)
    async with InMemoryUnitOfWork(state) as uow:
        types = [s.event.type for s in await uow.load(ORDER)]
        assert not await uow.unseen([callback])
    assert types[-2:] == ["PaymentConfirmed", "RefundIssued"], types
    assert gateway.refunded(ORDER) == 1
