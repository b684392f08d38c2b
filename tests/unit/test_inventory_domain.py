import pytest

from schemas import Delivery, ReturnLine, StockLine
from services.inventory import domain
from services.inventory.domain import ReservationState, Route, Site
from tests.unit.builders import event

MUG, PLATE = StockLine(sku="MUG", quantity=2), StockLine(sku="PLATE", quantity=1)


def test_only_a_location_that_has_every_line_is_chosen() -> None:
    levels = {"WH-2": {"MUG": 5, "PLATE": 5}, "WH-1": {"MUG": 5, "PLATE": 0}}
    assert domain.choose_location(levels, [MUG, PLATE]) == "WH-2"


SITES = {"WH-JKT": Site("warehouse", "1"), "WH-SBY": Site("warehouse", "6"),
         "ST-BDG": Site("store", "4", ships=True), "ST-JKT": Site("store", "1", ships=False)}


def test_home_delivery_comes_from_the_customer_s_region_then_the_most_stock() -> None:
    levels = {"WH-JKT": {"MUG": 3, "PLATE": 1}, "WH-SBY": {"MUG": 50, "PLATE": 50},
              "WH-ZZZ": {"MUG": 60, "PLATE": 60}, "ST-JKT": {"MUG": 99, "PLATE": 99}}
    jakarta, surabaya, lisbon = Route(region="1"), Route(region="6"), Route()
    assert domain.choose_location(levels, [MUG, PLATE], jakarta, SITES) == "WH-JKT"
    assert domain.choose_location(levels, [MUG, PLATE], surabaya, SITES) == "WH-SBY"
    # No region to prefer: the most units of what was ordered (a store that does not ship
    # online orders never counts, however full its shelf).
    assert domain.choose_location(levels, [MUG, PLATE], lisbon, SITES) == "WH-ZZZ"
    # Out of stock in the region: the most stock elsewhere; ties go by name.
    levels["WH-JKT"]["MUG"] = 1
    assert domain.choose_location(levels, [MUG, PLATE], jakarta, SITES) == "WH-ZZZ"
    even = {"WH-B": {"MUG": 5}, "WH-A": {"MUG": 5}}
    assert domain.choose_location(even, [MUG], jakarta, SITES) == "WH-A"


def test_a_location_record_keeps_the_locations_table_s_rules() -> None:
    with pytest.raises(ValueError, match="a warehouse ships to customers"):
        Site("warehouse", "1", ships=False)
    with pytest.raises(ValueError, match="one digit"):
        Site("store", "40", ships=False)
    with pytest.raises(ValueError, match="a warehouse or a store"):
        Site("depot")
    assert Site("store", "4", ships=False).kind == "store"


def test_a_store_ships_online_orders_only_where_configured() -> None:
    levels = {"ST-JKT": {"MUG": 9}, "ST-BDG": {"MUG": 9}}
    assert domain.where_to_reserve(levels, [MUG], Route(region="1"), SITES) == ("ST-BDG", [])
    only_the_till = {"ST-JKT": {"MUG": 9}}
    assert domain.where_to_reserve(only_the_till, [MUG], Route(region="1"), SITES) == (
        None, ["MUG"])


def test_click_and_collect_is_served_from_the_pickup_store_s_region() -> None:
    levels = {"WH-JKT": {"MUG": 5}, "WH-SBY": {"MUG": 50}}
    assert domain.choose_location(levels, [MUG], Route(store="ST-JKT"), SITES) == "WH-JKT"
    assert domain.choose_location(levels, [MUG], Route(store="ST-UNKNOWN"), SITES) == "WH-SBY"


def test_a_route_is_the_postal_region_of_an_indonesian_address_or_the_pickup_store() -> None:
    assert domain.postal_region("ID", "40115") == "4"
    assert domain.postal_region("ID", "4011") is None and domain.postal_region("PT", "10000") \
        is None
    home = event("OrderPlaced").data.delivery  # Lisbon
    assert domain.route_of(home) == Route()
    bandung = home.model_copy(update={"address": home.address.model_copy(  # type: ignore[union-attr]
        update={"country": "ID", "postal_code": "40115"})})
    assert domain.route_of(bandung) == Route(region="4")
    pickup = Delivery(method="click_and_collect", store_id="ST-JKT")
    assert domain.route_of(pickup) == Route(store="ST-JKT")


def test_no_location_means_no_reservation_and_the_short_skus_are_named() -> None:
    levels = {"WH-1": {"MUG": 1, "PLATE": 9}}
    assert domain.choose_location(levels, [MUG, PLATE]) is None
    assert domain.short_skus(levels, [MUG, PLATE]) == ["MUG"]


def test_split_stock_is_not_combined_across_locations() -> None:
    levels = {"WH-1": {"MUG": 2, "PLATE": 0}, "WH-2": {"MUG": 0, "PLATE": 1}}
    assert domain.choose_location(levels, [MUG, PLATE]) is None


def test_order_placed_asks_to_reserve_all_its_lines_once() -> None:
    placed = event("OrderPlaced", "o1")
    [command] = domain.decide(ReservationState(), placed)
    assert isinstance(command, domain.Reserve)
    assert command.lines == (StockLine(sku="SKU-RED-MUG", quantity=2),)
    reserved = domain.evolve(ReservationState(), event("StockReserved", "o1"))
    assert domain.decide(reserved, placed) == []


def test_shipping_commits_a_reservation_once() -> None:
    reserved = domain.evolve(ReservationState(), event("StockReserved", "o1"))
    [command] = domain.decide(reserved, event("Shipped", "o1"))
    assert isinstance(command, domain.Commit) and command.location == "WH-1"
    committed = domain.evolve(reserved, event("StockCommitted", "o1"))
    assert domain.decide(committed, event("Shipped", "o1")) == []


def test_a_cancelled_reserved_order_releases_its_units_once() -> None:
    reserved = domain.evolve(ReservationState(), event("StockReserved", "o1"))
    cancelled = event("OrderCancelled", "o1", reason="payment_failed")
    [command] = domain.decide(reserved, cancelled)
    assert command == domain.Release("o1", reserved.reservation_id, "payment_failed")
    released = domain.evolve(reserved, event("StockReleased", "o1"))
    assert domain.decide(released, cancelled) == []


def test_nothing_is_released_for_a_rejected_or_shipped_order() -> None:
    cancelled = event("OrderCancelled", "o1", reason="out_of_stock")
    rejected = domain.evolve(ReservationState(), event("StockRejected", "o1"))
    assert domain.decide(rejected, cancelled) == []
    committed = domain.evolve(domain.evolve(ReservationState(), event("StockReserved", "o1")),
                              event("StockCommitted", "o1"))
    assert domain.decide(committed, cancelled) == []
    assert domain.release_reason("customer_request") == "cancelled"


def test_a_recalled_parcel_back_at_the_warehouse_is_restocked_only_if_it_was_committed() -> None:
    reserved = domain.evolve(ReservationState(), event("StockReserved", "o1"))
    back = event("ReturnedToSender", "o1")
    # Shipped came before the cancel: the units had left the books, and come back on them.
    committed = domain.evolve(reserved, event("StockCommitted", "o1"))
    [restock] = domain.decide(committed, back)
    assert restock == domain.Restock(
        "o1", back.data.shipment_id, committed.location or "",
        tuple(ReturnLine(sku=x.sku, quantity=x.quantity) for x in reserved.lines))
    restocked = domain.evolve(committed, event("StockRestocked", "o1",
                                               return_id=back.data.shipment_id))
    assert domain.decide(restocked, back) == []
    # The cancel came first: released, the units never left the books.
    released = domain.evolve(reserved, event("StockReleased", "o1"))
    assert domain.decide(released, back) == []


def test_a_cash_on_delivery_reservation_waits_for_its_parcel_not_for_a_deadline() -> None:
    card = domain.evolve(ReservationState(), event("OrderPlaced", "o1"))
    assert domain.deadlines(domain.evolve(card, event("StockReserved", "o1"))) != {}
    placed = event("OrderPlaced", "o1")
    cod = placed.model_copy(update={"data": placed.data.model_copy(update={
        "payment": placed.data.payment.model_copy(update={"method": "cod", "token": None})})})
    reserved = domain.evolve(domain.evolve(ReservationState(), cod), event("StockReserved", "o1"))
    assert reserved.status == "reserved" and domain.deadlines(reserved) == {}
    assert domain.on_timer(reserved, "reservation_expiry") == []


def test_each_return_is_taken_back_once_its_damaged_lines_written_off() -> None:
    committed = domain.evolve(domain.evolve(ReservationState(), event("StockReserved", "o1")),
                              event("StockCommitted", "o1"))
    lines = [ReturnLine(sku="SKU-RED-MUG", quantity=1, restock="write_off")]
    first = event("ReturnReceived", "o1", return_id="ret_1", lines=lines)
    [restock] = domain.decide(committed, first)
    assert restock.lines == tuple(lines)  # type: ignore[union-attr]
    done = domain.evolve(committed, event("StockWrittenOff", "o1", return_id="ret_1"))
    assert domain.decide(done, first) == []  # the same return, redelivered
    second = event("ReturnReceived", "o1", return_id="ret_2")
    [again] = domain.decide(done, second)
    assert again.return_id == "ret_2"  # type: ignore[union-attr]


async def test_a_written_off_line_stays_off_the_shelf() -> None:
    from services.inventory.adapters import InMemoryStock
    from services.inventory.bootstrap import restock

    stock = InMemoryStock({})
    await stock.set_on_hand("WH-1", "SKU-A", 5)
    await stock.set_on_hand("WH-1", "SKU-B", 5)
    done = await restock(stock, domain.Restock("o1", "ret_1", "WH-1", (
        ReturnLine(sku="SKU-A", quantity=2), ReturnLine(sku="SKU-B", quantity=1,
                                                        restock="write_off"))))
    assert [(type(d).__name__, [(x.sku, x.quantity) for x in d.lines])  # type: ignore[attr-defined]
            for d in done] == [("StockRestockedData", [("SKU-A", 2)]),
                               ("StockWrittenOffData", [("SKU-B", 1)])]
    assert await stock.levels(["SKU-A", "SKU-B"]) == {"WH-1": {"SKU-A": 7, "SKU-B": 5}}


def fold(*events) -> ReservationState:  # noqa: ANN002
    state = ReservationState()
    for e in events:
        state = domain.evolve(state, e)
    return state


def test_click_and_collect_from_a_warehouse_travels_to_the_store_as_a_transfer() -> None:
    placed = event("OrderPlaced", "o1",
                   delivery=Delivery(method="click_and_collect", store_id="ST-JKT"))
    reserved = fold(placed, event("StockReserved", "o1", location="WH-1"))
    lines = reserved.lines
    assert domain.decide(reserved, event("Shipped", "o1")) == [
        domain.Commit("o1", "res_1", "WH-1"),
        domain.ShipTransfer("o1", "trf_o1", "WH-1", "ST-JKT", lines)]
    shipped = fold(placed, event("StockReserved", "o1", location="WH-1"),
                   event("StockCommitted", "o1", location="WH-1"),
                   event("StockTransferShipped", "o1"))
    assert shipped.transfer == "in_transit" and domain.decide(shipped, event("Shipped", "o1")) \
        == []
    ready = event("ReadyForPickup", "o1")
    assert domain.decide(shipped, ready) == [
        domain.ReceiveTransfer("o1", "trf_o1", "ST-JKT", lines)]
    at_store = domain.evolve(shipped, event("StockTransferReceived", "o1"))
    assert domain.decide(at_store, ready) == []
    picked = event("PickedUp", "o1")
    assert domain.decide(at_store, picked) == [domain.CollectTransfer("o1", "trf_o1", "ST-JKT")]
    collected = domain.evolve(at_store, event("StockCommitted", "o1", reservation_id="trf_o1",
                                              location="ST-JKT"))
    assert collected.transfer == "collected" and domain.decide(collected, picked) == []
    # A return goes back by parcel to the warehouse the units came from.
    [restock] = domain.decide(collected, event("ReturnReceived", "o1"))
    assert restock.location == "WH-1"


def test_click_and_collect_from_the_store_s_own_shelf_moves_nothing() -> None:
    placed = event("OrderPlaced", "o1",
                   delivery=Delivery(method="click_and_collect", store_id="ST-JKT"))
    on_shelf = fold(placed, event("StockReserved", "o1", location="ST-JKT"))
    assert domain.decide(on_shelf, event("ReadyForPickup", "o1")) == []
    assert domain.decide(on_shelf, event("PickedUp", "o1")) == [
        domain.Commit("o1", "res_1", "ST-JKT")]


def test_a_transfer_s_parcel_sent_back_ends_it_and_restocks_the_warehouse() -> None:
    placed = event("OrderPlaced", "o1",
                   delivery=Delivery(method="click_and_collect", store_id="ST-JKT"))
    shipped = fold(placed, event("StockReserved", "o1", location="WH-1"),
                   event("StockCommitted", "o1", location="WH-1"),
                   event("StockTransferShipped", "o1"))
    back = event("ReturnedToSender", "o1")
    [restock] = domain.decide(shipped, back)
    assert restock.location == "WH-1" and restock.ends_transfer == "trf_o1"
    ended = domain.evolve(shipped, event("StockRestocked", "o1",
                                         return_id=back.data.shipment_id))
    assert ended.transfer == "returned"
    assert domain.decide(ended, event("ReadyForPickup", "o1")) == []
