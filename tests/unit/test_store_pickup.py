"""Click-and-collect from the pickup store's own shelf, on the in-memory platform: reserved at
the store, set aside there without a parcel, handed over by the store, returned over its
counter and paid back the way it was paid online."""

from schemas import Delivery, ReturnLine
from services.inventory.domain import Site
from services.orders import domain as orders
from tests.unit.fakebus import FakePlatform
from tests.unit.test_branches_with_fakes import paying

PICKUP = Delivery(method="click_and_collect", store_id="ST-1")


async def platform_with(store_units: int, warehouse_units: int = 10) -> FakePlatform:
    platform = FakePlatform()
    await platform.set_stock("WH-1", "MUG", warehouse_units)
    await platform.set_stock("ST-1", "MUG", store_units)
    platform.states["inventory"].extra.setdefault("locations", {})["ST-1"] = Site(
        "store", "1", ships=False)
    return platform


def units(platform: FakePlatform, location: str) -> dict[str, int]:
    return platform.states["inventory"].extra["stock"][(location, "MUG")]


async def test_an_order_on_the_store_s_shelf_is_set_aside_there_and_handed_over() -> None:
    platform = await platform_with(store_units=5)
    await platform.place(paying("o1", "card", delivery=PICKUP))
    await platform.run()
    assert platform.stream("orders", "o1")[-2:] == ["OrderReadyToShip", "ReadyForPickup"]
    assert "ShipmentCreated" not in platform.stream("shipping", "o1")  # nothing travels
    assert units(platform, "ST-1") == {"on_hand": 5, "reserved": 2}
    assert units(platform, "WH-1") == {"on_hand": 10, "reserved": 0}
    assert any("ready for pickup" in m["subject"] for m in platform.mailer.sent)
    await platform.customer("o1", lambda s: [orders.confirm_pickup(s, "o1")])
    await platform.run()
    assert platform.stream("orders", "o1")[-5:] == [
        "ReadyForPickup", "PickupConfirmed", "PickedUp", "OrderCompleted",
        "LoyaltyPointsAccrued"]
    assert units(platform, "ST-1") == {"on_hand": 3, "reserved": 0}


async def test_a_store_without_the_goods_gets_them_from_a_warehouse_by_parcel() -> None:
    platform = await platform_with(store_units=1)
    await platform.place(paying("o1", "card", delivery=PICKUP))
    await platform.run()
    assert "ShipmentCreated" in platform.stream("shipping", "o1")
    assert platform.stream("orders", "o1")[-2:] == ["OrderCompleted", "LoyaltyPointsAccrued"]
    assert units(platform, "WH-1") == {"on_hand": 8, "reserved": 0}
    assert units(platform, "ST-1") == {"on_hand": 1, "reserved": 0}


async def test_only_a_shelf_order_ready_for_pickup_is_handed_over_by_the_store() -> None:
    platform = await platform_with(store_units=5)
    await platform.place(paying("o1", "card", delivery=PICKUP))
    await platform.place(paying("o2", "card"))  # home delivery
    await platform.settle()  # reserved and paid, not yet released
    for order in ("o1", "o2"):
        refused = None
        try:
            await platform.customer(order, lambda s, o=order: [orders.confirm_pickup(s, o)])
        except orders.NotAllowedNow as exc:
            refused = str(exc)
        assert refused is not None
    await platform.run()
    await platform.customer("o1", lambda s: [orders.confirm_pickup(s, "o1")])
    await platform.run()
    assert platform.stream("orders", "o1").count("PickedUp") == 1


async def test_a_shelf_order_returned_at_its_store_is_restocked_there_and_paid_back_online(
        ) -> None:
    platform = await platform_with(store_units=5)
    await platform.place(paying("o1", "card", delivery=PICKUP))
    await platform.run()
    await platform.customer("o1", lambda s: [orders.confirm_pickup(s, "o1")])
    await platform.run()
    await platform.customer("o1", lambda s: [orders.request_return(
        s, "o1", "ret_1", [ReturnLine(sku="MUG", quantity=1)], "too small", platform.clock,
        30)])
    await platform.run()
    [asked] = [e.data for e in platform.events("orders") if e.type == "ReturnRequested"]
    assert asked.at_store == "ST-1" and not asked.last
    assert "ReturnShipmentCreated" not in platform.stream("shipping", "o1")
    [refund] = [e.data for e in platform.events("payments") if e.type == "RefundIssued"]
    assert refund.refund_id.startswith("re_fake_") and refund.amount == asked.refund
    assert platform.gateway.refunded("o1") == 1
    assert units(platform, "ST-1") == {"on_hand": 4, "reserved": 0}
    assert "ReturnClosed" in platform.stream("orders", "o1")
