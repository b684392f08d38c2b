"""Every branch of the sales flow over in-memory fakes, with a clock that jumps to each timer."""

from datetime import timedelta

import pytest

from alur.runtime.errors import InfrastructureError
from schemas import (
    Address,
    Delivery,
    OrderCancelledData,
    PaymentInstruction,
    ReturnLine,
    first_event,
)
from services.inventory.adapters import InMemoryStock
from services.orders import domain as orders
from tests.unit.fakebus import FakePlatform
from tests.unit.test_flow_with_fakes import placed

FLOW = ["OrderPlaced", "StockReserved", "PaymentConfirmed", "OrderReadyToShip",
        "ShipmentCreated", "Shipped", "InTransit", "OutForDelivery", "Delivered"]


def paying(order_id: str, method: str, **changes: object):  # noqa: ANN201
    order = placed(order_id)
    token = "tok_visa" if method in ("card", "ewallet") else None
    data = order.data.model_copy(update={
        "payment": PaymentInstruction(method=method, token=token), **changes})  # type: ignore[arg-type]
    return order.model_copy(update={"data": data})


async def stocked(on_hand: int = 10) -> FakePlatform:
    platform = FakePlatform()
    await platform.set_stock("WH-1", "MUG", on_hand)
    return platform


def stock(platform: FakePlatform) -> dict[str, int]:
    return platform.states["inventory"].extra["stock"][("WH-1", "MUG")]


def reasons(platform: FakePlatform, topic: str, type_: str) -> list[str]:
    return [e.data.reason for e in platform.events(topic) if e.type == type_]


async def test_a_bank_transfer_paid_in_time_is_shipped() -> None:
    platform = await stocked()
    await platform.place(paying("o1", "bank_transfer"))
    await platform.run()
    assert platform.stream("orders", "o1")[-1] == "PaymentPending"
    await platform.transfer_arrives("o1")
    await platform.transfer_arrives("o1")  # reported twice: recorded once
    await platform.run()
    assert platform.stream("orders", "o1") == [*FLOW[:2], "PaymentPending", *FLOW[2:]]
    assert platform.gateway.charged("o1") == 0 and len(platform.gateway.accounts) == 1
    assert stock(platform) == {"on_hand": 8, "reserved": 0}


async def test_an_unpaid_bank_transfer_expires_and_the_stock_goes_back() -> None:
    platform = await stocked()
    await platform.place(paying("o1", "bank_transfer"))
    await platform.run(timedelta(hours=25))
    assert platform.stream("payments", "o1")[-2:] == ["PaymentExpired", "OrderCancelled"]
    assert reasons(platform, "orders", "OrderCancelled") == ["payment_expired"]
    assert reasons(platform, "inventory", "StockReleased") == ["payment_expired"]
    assert stock(platform) == {"on_hand": 10, "reserved": 0}
    await platform.transfer_arrives("o1")  # the customer paid too late: the money goes back
    await platform.run()
    assert reasons(platform, "payments", "RefundIssued") == ["late_transfer"]


async def test_cash_on_delivery_is_confirmed_when_delivered() -> None:
    platform = await stocked()
    await platform.place(paying("o1", "cod"))
    await platform.run()
    assert platform.stream("payments", "o1")[-2:] == ["Delivered", "PaymentConfirmed"]
    assert platform.stream("orders", "o1") == [*FLOW[:2], *FLOW[3:], "PaymentConfirmed"]
    assert [e.data.method for e in platform.events("payments")] == ["cod"]
    assert platform.gateway.charged("o1") == 0


async def test_cancelling_a_paid_order_before_its_release_refunds_and_releases() -> None:
    platform = await stocked()
    await platform.place(placed("o1"))
    await platform.settle()  # paid; released to shipping only after the cancel window
    assert platform.stream("orders", "o1")[-1] == "PaymentConfirmed"
    await platform.customer("o1", lambda s: orders.cancel(s, "o1"))
    await platform.run()
    assert reasons(platform, "payments", "RefundIssued") == ["cancelled"]
    assert platform.gateway.refunded("o1") == 1
    assert stock(platform) == {"on_hand": 10, "reserved": 0}
    assert "OrderReadyToShip" not in platform.stream("orders", "o1")
    assert platform.stream("shipping", "o1") == ["OrderPlaced", "OrderCancelled"]


async def test_once_released_the_customer_cannot_cancel_but_a_late_no_recalls_the_parcel() -> None:
    platform = await stocked()
    await platform.place(placed("o1"))
    for _ in range(600):  # second by second, past the cancel window, until the courier has it
        await platform.run(timedelta(seconds=1))
        if "Shipped" in platform.stream("shipping", "o1"):
            break
    assert platform.stream("shipping", "o1")[-1] in ("Shipped", "InTransit")
    with pytest.raises(orders.NotAllowedNow, match="can no longer be cancelled"):
        await platform.customer("o1", lambda s: orders.cancel(s, "o1"))
    # A business "no" decided after the release (a reservation expiry that raced the payment)
    await platform.customer("o1", lambda s: [
        OrderCancelledData(order_id="o1", reason="reservation_expired")])
    await platform.run()
    parcel = platform.stream("shipping", "o1")
    assert parcel[-3:] == ["OrderCancelled", "ShipmentRecalled", "ReturnedToSender"], parcel
    assert "Delivered" not in parcel
    assert stock(platform) == {"on_hand": 10, "reserved": 0}  # committed, then back on the shelf
    assert platform.gateway.refunded("o1") == 1


async def test_a_return_refunds_restocks_and_reverses_the_loyalty_points() -> None:
    platform = await stocked()
    await platform.place(placed("o1"))
    await platform.run()
    await platform.customer("o1", lambda s: orders.confirm_receipt(s, "o1"))
    await platform.run()
    accrued = [e for e in platform.events("orders") if e.type == "LoyaltyPointsAccrued"]
    assert [e.data.points for e in accrued] == [49]  # 2 x 24.99 EUR
    lines = [ReturnLine(sku="MUG", quantity=2)]
    await platform.customer("o1", lambda s: [orders.request_return(
        s, "o1", "ret_1", lines, "too small", platform.clock, 30)])
    await platform.run()
    assert platform.stream("orders", "o1")[-2:] == ["OrderReturned", "LoyaltyPointsReversed"]
    assert reasons(platform, "payments", "RefundIssued") == ["returned"]
    assert stock(platform) == {"on_hand": 10, "reserved": 0}


async def test_a_failed_delivery_is_tried_again() -> None:
    platform = await stocked()
    address = Address(line1="1 Rua", city="Porto", postal_code="0000-001", country="PT")
    await platform.place(paying("o1", "card", delivery=Delivery(method="home_delivery",
                                                                 address=address)))
    await platform.run()
    assert platform.stream("shipping", "o1")[-4:] == [
        "OutForDelivery", "DeliveryFailed", "OutForDelivery", "Delivered"]


async def test_an_unpaid_reservation_expires() -> None:
    platform = await stocked()
    platform.paused.add("payments")  # the payment never starts
    await platform.place(placed("o1"))
    await platform.run(timedelta(minutes=16))
    assert platform.stream("inventory", "o1")[2:4] == ["ReservationExpired", "StockReleased"]
    assert reasons(platform, "orders", "OrderCancelled") == ["reservation_expired"]
    platform.paused.clear()
    await platform.run()
    assert platform.gateway.charged("o1") == 0 and stock(platform)["reserved"] == 0


async def test_a_delivered_order_completes_by_itself_and_earns_points() -> None:
    platform = await stocked()
    await platform.place(placed("o1"))
    await platform.run(timedelta(days=15))
    assert platform.stream("orders", "o1")[-2:] == ["OrderCompleted", "LoyaltyPointsAccrued"]


async def test_a_stuck_order_is_reported_once() -> None:
    platform = await stocked()
    platform.paused.add("inventory")
    await platform.place(placed("o1"))
    await platform.run(timedelta(hours=3))
    stuck = [e for e in platform.events("orders") if e.type == "OrderStuck"]
    assert [e.data.status for e in stuck] == ["placed"]


async def test_click_and_collect_completes_when_picked_up() -> None:
    platform = await stocked()
    await platform.place(paying("o1", "card", delivery=Delivery(method="click_and_collect",
                                                                 store_id="ST-1")))
    await platform.run()
    assert platform.stream("orders", "o1")[-4:] == [
        "ReadyForPickup", "PickedUp", "OrderCompleted", "LoyaltyPointsAccrued"]
    assert stock(platform) == {"on_hand": 8, "reserved": 0}


def till_sale(order_id: str, qty: int, method: str = "cash", store: str = "ST-1"):  # noqa: ANN201
    base = placed(order_id, qty=qty)
    at = base.time - timedelta(hours=5)  # the till was offline all morning
    data = orders.record_sale(order_id, base.data.customer, base.data.lines, method, store,
                              f"R-{order_id}", at, base.time)
    return first_event(data, source="alur/orders", subject=order_id, shop_id=base.shop_id,
                       channel="pos")


async def test_a_till_sale_completes_without_shipping_or_gateway() -> None:
    platform = await stocked()
    await platform.set_stock("ST-1", "MUG", 3)
    await platform.place(till_sale("o1", 2))
    await platform.place(till_sale("o2", 2, method="card"))  # more than the books hold
    await platform.run()
    for order in ("o1", "o2"):
        assert set(platform.stream("orders", order)[-2:]) <= {
            "OrderCompleted", "LoyaltyPointsAccrued"}
        assert "ShipmentCreated" not in platform.stream("shipping", order)
    assert platform.gateway.charged("o1") == platform.gateway.charged("o2") == 0
    committed = [e.data for e in platform.events("inventory") if e.type == "StockCommitted"]
    assert [(c.location, [(x.sku, x.quantity) for x in c.recounted]) for c in committed] == [
        ("ST-1", []), ("ST-1", [("MUG", 1)])]
    assert platform.states["inventory"].extra["stock"][("ST-1", "MUG")] == {
        "on_hand": 0, "reserved": 0}
    assert stock(platform) == {"on_hand": 10, "reserved": 0}  # the warehouse is untouched
    assert [m["subject"] for m in platform.mailer.sent] == [
        "Your receipt for order o1", "Your receipt for order o2"]
    with pytest.raises(orders.NotAllowedNow):
        await platform.customer("o1", lambda s: orders.cancel(s, "o1"))


async def test_low_stock_is_reported_when_a_sku_falls_under_its_threshold_once() -> None:
    platform = await stocked(on_hand=6)
    await InMemoryStock(platform.states["inventory"].extra).set_threshold("MUG", 3)
    for order in ("o1", "o2", "o3"):
        await platform.place(placed(order, qty=2))
        await platform.run()
    low = [e.data for e in platform.events("inventory") if e.type == "LowStock"]
    assert [(x.sku, x.location, x.available, x.threshold, e) for x, e in zip(
        low, [e.subject for e in platform.events("inventory") if e.type == "LowStock"],
        strict=True)] == [("MUG", "WH-1", 2, 3, "o2")]


def pay_without_callback(platform: FakePlatform, order_id: str) -> None:
    """The customer pays in time, but the gateway's callback never reaches payments."""
    pending = next(e.data for e in platform.events("payments")
                   if e.type == "PaymentPending" and e.subject == order_id)
    platform.gateway.pay_into(pending.virtual_account, pending.amount)


async def test_a_transfer_whose_callback_was_lost_is_found_at_its_deadline_and_ships() -> None:
    platform = await stocked()
    await platform.place(paying("o1", "bank_transfer"))
    await platform.run()
    pay_without_callback(platform, "o1")
    await platform.run(timedelta(hours=25))
    assert "PaymentExpired" not in platform.stream("payments", "o1")
    # (The fake clock ran a day ahead of the events' own times, so OrderStuck may show.)
    orders_stream = platform.stream("orders", "o1")
    assert "OrderCancelled" not in orders_stream and orders_stream[-1] == "Delivered"
    [confirmed] = [e for e in platform.events("payments") if e.type == "PaymentConfirmed"]
    assert confirmed.data.gateway_reference.startswith("tr_fake_")
    await platform.transfer_arrives("o1")  # the callback comes through at last: nothing new
    await platform.run()
    assert platform.stream("payments", "o1").count("PaymentConfirmed") == 1
    assert "RefundIssued" not in platform.stream("payments", "o1")


async def test_a_deadline_the_gateway_cannot_answer_waits_and_other_timers_still_fire(
        monkeypatch: pytest.MonkeyPatch) -> None:
    platform = await stocked()
    await platform.place(paying("o1", "bank_transfer"))
    await platform.place(paying("o2", "card"))
    await platform.run()

    async def down(account: str) -> list[object]:
        raise InfrastructureError("gateway unreachable")

    with monkeypatch.context() as patch:
        patch.setattr(platform.gateway, "transfers", down)
        await platform.run(timedelta(hours=25))
        assert platform.stream("payments", "o1")[-1] == "PaymentPending"  # still waiting
        assert platform.stream("orders", "o2")[-1] == "Delivered"  # its timers fired
        assert ("o1", "payment_expiry") in platform.states["payments"].timers
    pay_without_callback(platform, "o1")
    await platform.run(timedelta(minutes=1))
    assert platform.stream("orders", "o1")[-1] == "Delivered"


async def test_a_capture_whose_answer_never_came_is_paid_back_when_the_order_is_cancelled(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The gateway captures, but its answer is lost every time: the charge is dead-lettered,
    the reservation lapses and the order is cancelled. Payments then asks the gateway, finds
    the capture, records it and pays it back: no money kept without an order."""
    platform = await stocked()
    real_charge = platform.gateway.charge

    async def answer_lost(*args: object) -> object:
        await real_charge(*args)  # type: ignore[arg-type]
        raise InfrastructureError("gateway unreachable: ReadTimeout('')")

    monkeypatch.setattr(platform.gateway, "charge", answer_lost)
    await platform.place(paying("o1", "card"))
    await platform.run(timedelta(hours=1))
    assert platform.gateway.charged("o1") == 1
    assert reasons(platform, "orders", "OrderCancelled") == ["reservation_expired"]
    assert platform.stream("payments", "o1")[-3:] == [
        "OrderCancelled", "PaymentConfirmed", "RefundIssued"]
    assert platform.gateway.refunded("o1") == 1
    assert reasons(platform, "payments", "RefundIssued") == ["cancelled"]
