"""Events nobody should believe: about an order a service never saw, or impossible in the
order's state. Each is refused (dead-lettered with the reason, audited as refused), takes no
effect and schedules no timer; events that merely overtook their order's OrderPlaced on
another topic are held and acted on once it arrives."""

from __future__ import annotations

from datetime import timedelta

import pytest

from schemas import encode
from services.orders import domain as orders_domain
from tests.unit.builders import event
from tests.unit.fakebus import FakePlatform
from tests.unit.test_flow_with_fakes import placed


def inject(platform: FakePlatform, topic: str, type_name: str, order_id: str,
           **changes: object) -> None:
    platform.produce_raw(topic, order_id.encode(), encode(event(type_name, order_id, **changes)))


def refusals(platform: FakePlatform, service: str) -> list[str]:
    return [a.error or "" for a in platform.states[service].audit if a.outcome == "refused"]


@pytest.mark.parametrize("topic, type_name", [
    ("inventory", "StockReserved"), ("payments", "PaymentConfirmed"), ("shipping", "Delivered"),
    ("shipping", "ReturnReceived"), ("payments", "RefundIssued")])
async def test_an_event_about_an_order_never_placed_is_refused_and_schedules_nothing(
        topic: str, type_name: str) -> None:
    platform = FakePlatform()
    inject(platform, topic, type_name, "ord_ghost")
    await platform.run(timedelta(days=30))  # any timer it set would fire in this month
    assert platform.stream("orders", "ord_ghost") == []
    assert platform.states["orders"].timers == {}
    assert any("unknown order ord_ghost" in e for e in refusals(platform, "orders"))
    [letter] = [d for d in platform.dead_letters(topic) if d["service"] == "orders"]
    assert letter["error"].startswith("refused: unknown order")
    assert platform.gateway.charged("ord_ghost") == 0 and platform.mailer.sent == []


def test_a_timer_of_a_stream_without_an_order_decides_nothing() -> None:
    assert orders_domain.on_timer(orders_domain.OrderState(), "stuck") == []


async def test_a_delivery_of_an_order_cancelled_before_its_release_is_refused() -> None:
    platform = FakePlatform()
    await platform.set_stock("WH-1", "MUG", 5)
    await platform.place(placed("o1", qty=9))  # out of stock: cancelled, never released
    await platform.run()
    assert platform.stream("orders", "o1")[-1] == "OrderCancelled"
    sent = len(platform.mailer.sent)
    inject(platform, "shipping", "Delivered", "o1")
    await platform.run(timedelta(days=30))
    assert "Delivered" not in platform.stream("orders", "o1")
    assert any("never released to shipping" in e for e in refusals(platform, "orders"))
    assert any("cancelled before it was released" in e
               for e in refusals(platform, "notifications"))
    assert len(platform.mailer.sent) == sent  # nobody was told of a delivery


async def test_a_return_received_for_an_order_never_delivered_refunds_nothing() -> None:
    platform = FakePlatform()
    await platform.set_stock("WH-1", "MUG", 5)
    await platform.place(placed("o1"))
    await platform.settle()  # paid, not yet released or shipped
    assert platform.gateway.charged("o1") == 1
    inject(platform, "shipping", "ReturnReceived", "o1")
    await platform.settle()
    assert "RefundIssued" not in platform.stream("payments", "o1")
    assert any("never delivered" in e for e in refusals(platform, "payments"))
    assert any("no return was requested" in e for e in refusals(platform, "orders"))
    assert any("never left the shelf" in e for e in refusals(platform, "inventory"))


async def test_a_second_order_placed_and_a_second_payment_are_refused() -> None:
    platform = FakePlatform()
    await platform.set_stock("WH-1", "MUG", 5)
    await platform.place(placed("o1"))
    await platform.settle()
    inject(platform, "orders", "OrderPlaced", "o1")
    inject(platform, "payments", "PaymentConfirmed", "o1")
    await platform.settle()
    assert platform.stream("inventory", "o1").count("StockReserved") == 1
    assert any("has begun already" in e for e in refusals(platform, "inventory"))
    assert any("paid already" in e for e in refusals(platform, "orders"))


async def test_events_that_overtake_their_order_placed_are_held_and_then_acted_on() -> None:
    """Payments reads the inventory and shipping topics ahead of the orders topic: the
    reservation, and a cash-on-delivery parcel's delivery, arrive before OrderPlaced."""
    platform = FakePlatform()
    card = placed("o1")
    cod = placed("o2").model_copy(update={"data": placed("o2").data.model_copy(update={
        "payment": card.data.payment.model_copy(update={"method": "cod", "token": None})})})
    expires = platform.clock + timedelta(minutes=15)
    for e in (event("StockReserved", "o1", expires_at=expires),
              event("StockReserved", "o2", expires_at=expires), event("Delivered", "o2")):
        platform.produce_raw(e.topic, e.subject.encode(), encode(e))
    platform.paused = {"orders", "inventory", "shipping", "notifications"}
    await platform.settle()
    assert platform.stream("payments", "o1") == ["StockReserved"]
    assert platform.gateway.charged("o1") == 0 and platform.states["payments"].timers == {}
    assert [a.outcome for a in platform.states["payments"].audit] == ["held"] * 3
    for e in (card, cod):
        platform.produce_raw("orders", e.subject.encode(), encode(e))
    await platform.settle()
    assert platform.gateway.charged("o1") == 1
    assert platform.stream("payments", "o2")[-1] == "PaymentConfirmed"
