"""Goodwill refunds: part of what was paid goes back for a complaint, without a return. The
orders service decides whether one may be asked for; payments pays it and, on a cancel or a
return, pays back only what is left."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import Money
from schemas.orders import GoodwillRefundRequestedData, LoyaltyPointsReversedData
from schemas.payments import RefundIssuedData
from services.orders import domain as orders
from services.payments import domain as payments
from tests.unit.builders import event
from tests.unit.test_orders_domain import fold_all

TOTAL = 4998  # the example order: 2 x 24.99 EUR, paid by card


def eur(amount: int) -> Money:
    return Money(amount=amount, currency="EUR")


def test_a_goodwill_refund_needs_a_paid_online_order_not_cancelled_or_returning() -> None:
    with pytest.raises(orders.NotAllowedNow, match="paid order"):
        orders.goodwill_refund(fold_all("OrderPlaced", "StockReserved"), "o1", "gw", eur(100),
                               "late")
    with pytest.raises(orders.NotAllowedNow, match="cancelled"):
        orders.goodwill_refund(fold_all("OrderPlaced", "StockReserved", "PaymentConfirmed",
                                        "OrderCancelled"), "o1", "gw", eur(100), "late")
    returning = fold_all("OrderPlaced", "StockReserved", "PaymentConfirmed", "OrderReadyToShip",
                         "ShipmentCreated", "Delivered", "ReturnRequested")
    with pytest.raises(orders.NotAllowedNow, match="return_requested"):
        orders.goodwill_refund(returning, "o1", "gw", eur(100), "late")


def test_goodwill_stays_below_what_was_paid_and_in_the_orders_currency() -> None:
    paid = fold_all("OrderPlaced", "StockReserved", "PaymentConfirmed")
    with pytest.raises(orders.InvalidOrder, match="not IDR"):
        orders.goodwill_refund(paid, "o1", "gw", Money(amount=100, currency="IDR"), "late")
    with pytest.raises(orders.InvalidOrder, match=f"at most {TOTAL - 1} minor units"):
        orders.goodwill_refund(paid, "o1", "gw", eur(TOTAL), "late")
    [first] = orders.goodwill_refund(paid, "o1", "gw1", eur(1000), "late")
    after = orders.evolve(paid, event("GoodwillRefundRequested", "o1", first))
    with pytest.raises(orders.InvalidOrder, match=f"at most {TOTAL - 1001} minor units"):
        orders.goodwill_refund(after, "o1", "gw2", eur(TOTAL - 1000), "late")
    assert after.goodwill == 1000


def test_a_completed_order_gives_back_the_points_earned_on_the_goodwill() -> None:
    done = fold_all("OrderPlaced", "StockReserved", "PaymentConfirmed", "OrderReadyToShip",
                    "ShipmentCreated", "Delivered", "OrderCompleted")
    done = orders.evolve(done, event("LoyaltyPointsAccrued", "o1", points=49))
    decided = orders.goodwill_refund(done, "o1", "gw", eur(1550), "chipped")
    assert [type(d) for d in decided] == [GoodwillRefundRequestedData, LoyaltyPointsReversedData]
    assert decided[1].points == 49 - (TOTAL - 1550) // 100  # type: ignore[attr-defined]


def test_an_order_completed_after_a_goodwill_refund_earns_on_what_was_kept() -> None:
    delivered = fold_all("OrderPlaced", "StockReserved", "PaymentConfirmed", "OrderReadyToShip",
                         "ShipmentCreated", "Delivered")
    delivered = orders.evolve(delivered, event("GoodwillRefundRequested", "o1", amount=eur(999),
                                               goodwill_id="gw"))
    accrued = [d for d in orders.complete(delivered, "o1")
               if d.__class__.__name__ == "LoyaltyPointsAccruedData"]
    assert [a.points for a in accrued] == [(TOTAL - 999) // 100]  # type: ignore[attr-defined]


def _paid() -> payments.PaymentState:
    state = payments.PaymentState()
    for name in ("OrderPlaced", "StockReserved", "PaymentConfirmed"):
        state = payments.evolve(state, event(name, "o1"))
    return state


Step = st.one_of(st.tuples(st.just("GoodwillRefundRequested"), st.integers(-10, TOTAL + 10)),
                 st.tuples(st.sampled_from(["OrderCancelled", "ReturnReceived", "Delivered"]),
                           st.just(0)))


@given(st.lists(Step, max_size=12))
def test_whatever_the_order_of_goodwill_cancels_and_returns_refunds_never_exceed_the_capture(
        steps: list[tuple[str, int]]) -> None:
    state, refunded, keys = _paid(), 0, set()
    for n, (kind, amount) in enumerate(steps):
        e = event(kind, "o1") if kind != "GoodwillRefundRequested" else event(
            kind, "o1", GoodwillRefundRequestedData(order_id="o1", goodwill_id=f"gw{n}",
                                                    amount=eur(max(amount, 1)), reason="x"))
        decided = payments.decide(state, e)
        state = payments.evolve(state, e)
        for refund in decided:
            assert isinstance(refund, payments.Refund)
            assert refund.idempotency_key not in keys and refund.amount.amount > 0
            keys.add(refund.idempotency_key)
            refunded += refund.amount.amount
            issued = RefundIssuedData(order_id="o1", refund_id=refund.idempotency_key,
                                      amount=refund.amount, reason=refund.reason)
            state = payments.evolve(state, event("RefundIssued", "o1", issued))
        assert refunded <= TOTAL
        assert refunded == (TOTAL if state.refunded else state.goodwill)
    assert state.goodwill < TOTAL
