import asyncio
from datetime import timedelta
from typing import Any

import pytest

from alur.runtime.errors import InfrastructureError
from schemas import Money
from services.payments import domain
from services.payments.bootstrap import wiring
from services.payments.domain import PaymentState
from services.payments.gateway import InMemoryGateway
from tests.unit.builders import event


def test_nothing_is_charged_before_stock_is_reserved() -> None:
    assert domain.decide(PaymentState(), event("OrderPlaced")) == []


def test_charge_when_stock_reserved_after_the_order_is_known() -> None:
    placed = domain.evolve(PaymentState(), event("OrderPlaced", "o1"))
    [charge] = domain.decide(placed, event("StockReserved", "o1"))
    assert charge.amount.amount == 4998 and charge.idempotency_key == "o1:capture"


def test_charge_when_the_order_arrives_after_its_reservation() -> None:
    reserved = domain.evolve(PaymentState(), event("StockReserved", "o1"))
    [charge] = domain.decide(reserved, event("OrderPlaced", "o1"))
    assert charge.instruction.token == "tok_visa"


def test_never_charge_twice() -> None:
    state = PaymentState()
    for name in ("OrderPlaced", "StockReserved", "PaymentConfirmed"):
        state = domain.evolve(state, event(name, "o1"))
    assert domain.decide(state, event("StockReserved", "o1")) == []
    assert domain.decide(state, event("OrderPlaced", "o1")) == []


def test_an_order_cancelled_before_its_stock_was_reserved_is_never_charged() -> None:
    state = PaymentState()
    for name in ("OrderPlaced", "OrderCancelled"):
        state = domain.evolve(state, event(name, "o1"))
    assert domain.decide(state, event("StockReserved", "o1")) == []


class AnswerLostOnce(InMemoryGateway):
    """Opens the account, but the first answer never reaches the service (a read timeout)."""

    lost = False

    async def open_transfer(self, *args: Any) -> str:  # noqa: ANN401
        account = await super().open_transfer(*args)
        if not self.lost:
            self.lost = True
            raise InfrastructureError("gateway unreachable: ReadTimeout('')")
        return account


async def test_a_transfer_opened_again_after_a_lost_answer_is_the_same_request() -> None:
    gateway = AnswerLostOnce()
    perform = wiring(gateway, "http://127.0.0.1:8092", transfer_ttl=20.0).perform
    assert perform is not None
    reserved = event("StockReserved", "o1")
    command = domain.OpenTransfer("o1", "pay_o1", Money(amount=4998, currency="EUR"),
                                  idempotency_key="o1:transfer")
    with pytest.raises(InfrastructureError):
        await perform(None, command, reserved)  # type: ignore[arg-type]  # unused by transfers
    await asyncio.sleep(0.01)  # the retry comes later; the request must not change with it
    [pending] = await perform(None, command, reserved)  # type: ignore[arg-type]
    [(_, account)] = gateway.accounts.values()
    assert pending.virtual_account == account
    assert pending.expires_at == reserved.time + timedelta(seconds=20)


def awaiting_transfer() -> PaymentState:
    state = PaymentState()
    for e in (event("OrderPlaced", "o1", payment=event("OrderPlaced").data.payment.model_copy(
            update={"method": "bank_transfer", "token": None})),
              event("StockReserved", "o1"), event("PaymentPending", "o1")):
        state = domain.evolve(state, e)
    return state


def test_every_transfer_is_taken_by_the_order_or_sent_back() -> None:
    state = awaiting_transfer()
    due, account = state.amount, state.pay_into
    assert due is not None and account is not None
    [confirmed] = domain.transfer_received(state, "o1", due, account, "tr_1")
    assert confirmed.gateway_reference == "tr_1"
    paid = domain.evolve(state, event("PaymentConfirmed", "o1", data=confirmed))
    assert domain.transfer_received(paid, "o1", due, account, "tr_1") == []  # reported again
    [twice] = domain.transfer_received(paid, "o1", due, account, "tr_2")
    assert (twice.transfer_id, twice.reason, twice.amount) == ("tr_2", "duplicate", due)
    assert twice.idempotency_key == "o1:return:tr_2"
    short = Money(amount=due.amount - 1, currency=due.currency)
    [wrong] = domain.transfer_received(state, "o1", short, account, "tr_3")
    assert (wrong.reason, wrong.amount) == ("wrong_amount", short)
    with pytest.raises(domain.TransferMismatch):
        domain.transfer_received(state, "o1", due, "VA-someone-else", "tr_4")


def test_a_transfer_found_at_the_deadline_confirms_and_none_expires() -> None:
    state = awaiting_transfer()
    [settle] = domain.on_timer(state, "payment_expiry")
    assert isinstance(settle, domain.SettleTransfer) and settle.amount == state.amount
    assert state.amount is not None
    short = Money(amount=1, currency=state.amount.currency)
    [confirmed] = domain.settle_transfer(settle, [("tr_1", short), ("tr_2", state.amount)])
    assert confirmed.gateway_reference == "tr_2"
    [expired] = domain.settle_transfer(settle, [("tr_1", short)])
    assert type(expired).__name__ == "PaymentExpiredData"
