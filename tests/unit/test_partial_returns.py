"""Partial returns: a return names lines and quantities, each restocked or written off; several
may follow one order, one at a time. Each pays back its lines' share of what was paid, the last
one all that is left; points earned on the money given back are reversed. Over in-memory fakes
of all five services, with a clock that jumps to each timer."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import reduce

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import Event, Money, OrderLine, ReturnLine
from services.orders import domain as orders
from tests.unit.builders import event
from tests.unit.fakebus import FakePlatform

# 3 mugs at 10.00 and 2 cups at 15.00 EUR: 60.00, paid by card.
PRICES = {"MUG": 1000, "CUP": 1500}
ORDERED = {"MUG": 3, "CUP": 2}
TOTAL = 6000


def two_skus(order_id: str) -> Event:
    lines = [OrderLine(sku=sku, quantity=n, unit_price=Money(amount=PRICES[sku], currency="EUR"))
             for sku, n in ORDERED.items()]
    return event("OrderPlaced", order_id, lines=lines, total=Money(amount=TOTAL, currency="EUR"))


async def delivered(completed: bool = False) -> FakePlatform:
    platform = FakePlatform()
    for sku in ORDERED:
        await platform.set_stock("WH-1", sku, 10)
    await platform.place(two_skus("o1"))
    await platform.run()
    if completed:
        await platform.customer("o1", lambda s: orders.confirm_receipt(s, "o1"))
        await platform.run()
    return platform


async def give_back(platform: FakePlatform, return_id: str, *lines: ReturnLine) -> None:
    def now(s: orders.OrderState) -> datetime:  # a till sale was handed over when it was sold
        return s.sold_at + timedelta(days=1) if s.sold_at else platform.clock

    await platform.customer("o1", lambda s: [orders.request_return(
        s, "o1", return_id, lines, "changed my mind", now(s), 30)])
    await platform.run()


def refunds(platform: FakePlatform) -> list[tuple[str, int, str | None]]:
    return [(e.data.reason, e.data.amount.amount, e.data.return_id)
            for e in platform.events("payments") if e.type == "RefundIssued"]


def on_hand(platform: FakePlatform, sku: str) -> int:
    return int(platform.states["inventory"].extra["stock"][("WH-1", sku)]["on_hand"])


def fold(platform: FakePlatform) -> orders.OrderState:
    return reduce(orders.evolve, [s.event for s in platform.states["orders"].streams["o1"]],
                  orders.OrderState())


def points(platform: FakePlatform) -> int:
    signs = {"LoyaltyPointsAccrued": 1, "LoyaltyPointsReversed": -1}
    return sum(signs[e.type] * e.data.points for e in platform.events("orders")
               if e.type in signs)


async def test_a_partial_return_pays_back_its_share_restocks_and_the_order_goes_on() -> None:
    platform = await delivered()
    await give_back(platform, "ret_1", ReturnLine(sku="MUG", quantity=1),
                    ReturnLine(sku="CUP", quantity=1, restock="write_off"))
    assert platform.stream("orders", "o1")[-1] == "ReturnClosed"
    assert refunds(platform) == [("returned", 2500, "ret_1")]
    assert on_hand(platform, "MUG") == 8 and on_hand(platform, "CUP") == 8  # the cup is broken
    assert "StockWrittenOff" in platform.stream("inventory", "o1")
    state = fold(platform)
    assert state.status == "delivered" and state.kept() == {"MUG": 2, "CUP": 1}
    # It completes on its own later, earning points on the money kept only.
    await platform.run(timedelta(days=15))
    assert points(platform) == (TOTAL - 2500) // 100
    subjects = [m["subject"] for m in platform.mailer.sent]
    assert "The return of part of order o1 is complete" in subjects


async def test_two_returns_of_one_order_add_up_to_what_was_paid_and_end_it() -> None:
    platform = await delivered(completed=True)
    assert points(platform) == TOTAL // 100
    await give_back(platform, "ret_1", ReturnLine(sku="MUG", quantity=2))
    assert points(platform) == (TOTAL - 2000) // 100  # reversed in proportion
    with pytest.raises(orders.InvalidOrder, match="has 1 of the 3 ordered"):
        await platform.customer("o1", lambda s: [orders.request_return(
            s, "o1", "ret_x", [ReturnLine(sku="MUG", quantity=2)], "again", platform.clock, 30)])
    await give_back(platform, "ret_2", ReturnLine(sku="MUG", quantity=1),
                    ReturnLine(sku="CUP", quantity=2))
    assert platform.stream("orders", "o1")[-2:] == ["OrderReturned", "LoyaltyPointsReversed"]
    assert refunds(platform) == [("returned", 2000, "ret_1"), ("returned", 4000, "ret_2")]
    assert points(platform) == 0
    assert on_hand(platform, "MUG") == 10 and on_hand(platform, "CUP") == 10
    assert platform.gateway.refunded("o1") == 2


async def test_one_return_at_a_time() -> None:
    platform = await delivered()
    platform.paused.add("shipping")  # the first return's parcel is not collected yet
    await give_back(platform, "ret_1", ReturnLine(sku="MUG", quantity=1))
    with pytest.raises(orders.NotAllowedNow, match="ret_1 of this order is under way"):
        await platform.customer("o1", lambda s: [orders.request_return(
            s, "o1", "ret_2", [ReturnLine(sku="CUP", quantity=1)], "x", platform.clock, 30)])


def test_a_share_is_the_lines_part_of_what_was_paid_and_the_last_return_takes_the_rest() -> None:
    state = orders.OrderState()
    for e in (two_skus("o1"), event("PaymentConfirmed", "o1"), event("Delivered", "o1")):
        state = orders.evolve(state, e)
    # 1 of 3 mugs: 10.00 of 60.00; tax is inside the total, so inside the share.
    first = orders.request_return(state, "o1", "r1", [ReturnLine(sku="MUG", quantity=1)], "x",
                                  state.delivered_at, 30)  # type: ignore[arg-type]
    assert (first.refund, first.last) == (Money(amount=1000, currency="EUR"), False)
    whole = orders.request_return(state, "o1", "r1", [ReturnLine(sku="MUG", quantity=3),
                                                      ReturnLine(sku="CUP", quantity=2)],
                                  "x", state.delivered_at, 30)  # type: ignore[arg-type]
    assert (whole.refund, whole.last) == (Money(amount=TOTAL, currency="EUR"), True)


Step = st.one_of(
    st.tuples(st.just("goodwill"), st.integers(1, TOTAL)),
    st.tuples(st.just("return"), st.fixed_dictionaries(
        {sku: st.integers(0, n) for sku, n in ORDERED.items()}), st.booleans()),
    st.tuples(st.just("complete")),
)


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(Step, max_size=4))
async def test_any_sequence_of_partial_returns_and_goodwill_keeps_the_money_and_points_whole(
        steps: list[tuple[object, ...]]) -> None:
    platform = await delivered()
    for n, step in enumerate(steps):
        try:
            if step[0] == "goodwill":
                amount = Money(amount=int(step[1]), currency="EUR")  # type: ignore[call-overload]
                await platform.customer("o1", lambda s, k=n, a=amount: orders.goodwill_refund(
                    s, "o1", f"gw{k}", a, "late"))
            elif step[0] == "return":
                wanted: dict[str, int] = step[1]  # type: ignore[assignment]
                lines = [ReturnLine(sku=sku, quantity=q,
                                    restock="write_off" if step[2] else "stock")
                         for sku, q in wanted.items() if q]
                if not lines:
                    continue
                await platform.customer("o1", lambda s, k=n, ls=lines: [orders.request_return(
                    s, "o1", f"ret{k}", ls, "x", platform.clock, 30)])
            else:
                await platform.customer("o1", lambda s: orders.confirm_receipt(s, "o1"))
        except (orders.InvalidOrder, orders.NotAllowedNow):
            continue
        await platform.run()
        paid_back = sum(amount for _, amount, _ in refunds(platform))
        assert paid_back <= TOTAL
        assert points(platform) >= 0
    state = fold(platform)
    paid_back = sum(amount for _, amount, _ in refunds(platform))
    assert state.status not in orders.RETURNING  # every return was closed
    if state.status == "returned":
        assert paid_back == TOTAL and points(platform) == 0
    else:
        # A return after goodwill may find less left than its share: it gets what is left.
        assert paid_back == state.goodwill + state.returned_money <= TOTAL
        if state.status == "completed":
            assert points(platform) == (TOTAL - paid_back) // 100


async def test_a_till_sale_is_returned_over_the_counter_restocked_there_and_paid_back_at_the_till(
        ) -> None:
    from tests.unit.test_branches_with_fakes import till_sale

    platform = FakePlatform()
    await platform.set_stock("ST-1", "MUG", 5)
    await platform.place(till_sale("o1", 2, method="card"))
    await platform.run()
    assert platform.stream("orders", "o1")[-2:] == ["OrderCompleted", "LoyaltyPointsAccrued"]
    await give_back(platform, "ret_1", ReturnLine(sku="MUG", quantity=1))
    assert platform.stream("orders", "o1")[-2:] == ["ReturnClosed", "LoyaltyPointsReversed"]
    await give_back(platform, "ret_2", ReturnLine(sku="MUG", quantity=1, restock="write_off"))
    assert platform.stream("orders", "o1")[-2:] == ["OrderReturned", "LoyaltyPointsReversed"]
    issued = [e.data for e in platform.events("payments") if e.type == "RefundIssued"]
    assert [(r.refund_id, r.amount.amount) for r in issued] == [
        ("till:ret_1", 2499), ("till:ret_2", 2499)]
    assert platform.gateway.charged("o1") == platform.gateway.refunded("o1") == 0
    assert platform.states["inventory"].extra["stock"][("ST-1", "MUG")]["on_hand"] == 4
    assert "ReturnShipmentCreated" not in platform.stream("shipping", "o1")
    assert points(platform) == 0
    assert [m["subject"] for m in platform.mailer.sent][-2:] == [
        "The return of part of order o1 is complete", "The return of order o1 is complete"]
