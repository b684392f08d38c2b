"""The whole choreography over in-memory fakes: every service's handler, no servers."""

from schemas import OrderLine
from tests.unit.builders import event
from tests.unit.fakebus import FakePlatform


def placed(order_id: str, sku: str = "MUG", qty: int = 2, token: str = "tok_visa"):  # noqa: ANN201
    base = event("OrderPlaced", order_id)
    line = OrderLine(sku=sku, quantity=qty, unit_price=base.data.lines[0].unit_price)
    payment = base.data.payment.model_copy(update={"token": token})
    return event("OrderPlaced", order_id, lines=[line], payment=payment)


async def test_an_order_is_delivered_and_every_step_happens_once() -> None:
    platform = FakePlatform()
    await platform.set_stock("WH-1", "MUG", 10)
    await platform.place(placed("o1"))
    await platform.run()
    assert platform.stream("orders", "o1") == [
        "OrderPlaced", "StockReserved", "PaymentConfirmed", "OrderReadyToShip",
        "ShipmentCreated", "Shipped", "InTransit", "OutForDelivery", "Delivered"]
    assert platform.gateway.charged("o1") == 1
    assert [m["subject"] for m in platform.mailer.sent] == [
        "We received your order o1", "Payment received for order o1",
        "Your order o1 is being prepared for shipping", "Your order o1 is on its way",
        "Your order o1 was delivered"]
    stock = platform.states["inventory"].extra["stock"][("WH-1", "MUG")]
    assert stock == {"on_hand": 8, "reserved": 0}


async def test_out_of_stock_cancels_and_nothing_is_charged_or_shipped() -> None:
    platform = FakePlatform()
    await platform.set_stock("WH-1", "MUG", 1)
    await platform.place(placed("o1", qty=2))
    await platform.run()
    assert platform.stream("orders", "o1") == ["OrderPlaced", "StockRejected", "OrderCancelled"]
    assert platform.gateway.charged("o1") == 0
    assert platform.stream("shipping", "o1") == ["OrderPlaced", "OrderCancelled"]
    assert platform.mailer.sent[-1]["subject"] == "Your order o1 was cancelled"


async def test_a_declined_card_cancels_the_order() -> None:
    platform = FakePlatform()
    await platform.set_stock("WH-1", "MUG", 5)
    await platform.place(placed("o1", token="tok_decline"))
    await platform.run()
    assert platform.stream("orders", "o1")[-2:] == ["PaymentFailed", "OrderCancelled"]
    assert platform.gateway.charged("o1") == 0


async def test_redelivering_every_message_changes_nothing() -> None:
    platform = FakePlatform()
    await platform.set_stock("WH-1", "MUG", 10)
    await platform.place(placed("o1"))
    await platform.run()
    before = {name: (len(s.outbox), dict(s.streams)) for name, s in platform.states.items()}
    platform.positions.clear()  # every consumer starts again from offset 0
    await platform.run()
    after = {name: (len(s.outbox), dict(s.streams)) for name, s in platform.states.items()}
    assert after == before
    assert platform.gateway.charged("o1") == 1 and len(platform.mailer.sent) == 5
    duplicates = [a for a in platform.states["payments"].audit if a.outcome == "duplicate"]
    assert duplicates, "the second pass must have been seen as duplicates"


async def test_no_oversell_when_orders_compete_for_the_last_units() -> None:
    platform = FakePlatform()
    await platform.set_stock("WH-1", "MUG", 5)
    for i in range(4):
        await platform.place(placed(f"o{i}", qty=2))
    await platform.run()
    reserved = [e for e in platform.events("inventory") if e.type == "StockReserved"]
    rejected = [e for e in platform.events("inventory") if e.type == "StockRejected"]
    assert (len(reserved), len(rejected)) == (2, 2)
    assert platform.states["inventory"].extra["stock"][("WH-1", "MUG")]["on_hand"] == 1
