"""The stock contract: all-or-nothing reservations and commits; never more held than on hand."""

import asyncio

import asyncpg
import httpx
import pytest

from alur.runtime.memory import InMemoryUnitOfWork
from alur.runtime.ports import UnitOfWork
from schemas import ReturnLine, StockLine
from services.inventory import admin_api
from services.inventory.adapters import OversoldError, Stock, memory_stock, postgres_stock
from services.inventory.domain import Route, Site


def stock_of(uow: UnitOfWork) -> Stock:
    """The adapter of the store under test (each store's unit of work has its own)."""
    return memory_stock(uow) if isinstance(uow, InMemoryUnitOfWork) else postgres_stock(uow)


MUG, PLATE = StockLine(sku="MUG", quantity=2), StockLine(sku="PLATE", quantity=1)


async def seed(store, rows) -> None:  # noqa: ANN001
    async with store.new_uow() as uow:
        for location, sku, on_hand in rows:
            await stock_of(uow).set_on_hand(location, sku, on_hand)


async def levels(store, *skus: str) -> dict:  # noqa: ANN001
    async with store.new_uow() as uow:
        return await stock_of(uow).levels(list(skus))


async def test_a_reservation_holds_every_line_at_one_location(store) -> None:
    await seed(store, [("WH-1", "MUG", 1), ("WH-2", "MUG", 5), ("WH-2", "PLATE", 3)])
    async with store.new_uow() as uow:
        assert await stock_of(uow).reserve("o1", "r1", [MUG, PLATE]) == ("WH-2", [])
    assert await levels(store, "MUG", "PLATE") == {"WH-1": {"MUG": 1},
                                                   "WH-2": {"MUG": 3, "PLATE": 2}}


async def test_a_short_order_holds_nothing_and_names_the_short_skus(store) -> None:
    await seed(store, [("WH-1", "MUG", 5), ("WH-1", "PLATE", 0)])
    async with store.new_uow() as uow:
        assert await stock_of(uow).reserve("o1", "r1", [MUG, PLATE]) == (None, ["PLATE"])
    assert await levels(store, "MUG", "PLATE") == {"WH-1": {"MUG": 5, "PLATE": 0}}


async def test_commit_takes_the_reserved_units_off_the_shelf_once(store) -> None:
    await seed(store, [("WH-1", "MUG", 5)])
    async with store.new_uow() as uow:
        await stock_of(uow).reserve("o1", "r1", [MUG])
    for _ in range(2):
        async with store.new_uow() as uow:
            await stock_of(uow).commit("o1")
    assert await levels(store, "MUG") == {"WH-1": {"MUG": 3}}


async def test_release_puts_the_reserved_units_back_on_sale_once(store) -> None:
    await seed(store, [("WH-1", "MUG", 5)])
    async with store.new_uow() as uow:
        await stock_of(uow).reserve("o1", "r1", [MUG])
    assert await levels(store, "MUG") == {"WH-1": {"MUG": 3}}
    for _ in range(2):
        async with store.new_uow() as uow:
            await stock_of(uow).release("o1")
    assert await levels(store, "MUG") == {"WH-1": {"MUG": 5}}
    async with store.new_uow() as uow:
        await stock_of(uow).commit("o1")  # nothing reserved is left to commit
    assert await levels(store, "MUG") == {"WH-1": {"MUG": 5}}


async def test_on_hand_cannot_be_set_below_what_is_reserved(store) -> None:
    await seed(store, [("WH-1", "MUG", 5)])
    async with store.new_uow() as uow:
        await stock_of(uow).reserve("o1", "r1", [MUG])
    with pytest.raises((OversoldError, asyncpg.CheckViolationError)):
        await seed(store, [("WH-1", "MUG", 1)])


async def test_the_database_itself_refuses_an_oversell(postgres_store) -> None:
    await seed(postgres_store, [("WH-1", "MUG", 2)])
    with pytest.raises(asyncpg.CheckViolationError, match="stock_never_oversold"):
        async with postgres_store.new_uow() as uow:
            conn = await uow.connection()
            await conn.execute("UPDATE stock SET reserved = 3 WHERE sku = 'MUG'")


async def test_concurrent_reservations_never_hold_more_than_on_hand(postgres_store) -> None:
    await seed(postgres_store, [("WH-1", "MUG", 9)])

    async def reserve(i: int) -> str | None:
        async with postgres_store.new_uow() as uow:
            location, _ = await stock_of(uow).reserve(f"o{i}", f"r{i}", [MUG])
            return location

    results = await asyncio.gather(*(reserve(i) for i in range(12)))
    assert sum(r is not None for r in results) == 4
    assert await levels(postgres_store, "MUG") == {"WH-1": {"MUG": 1}}


async def test_a_till_sale_leaves_the_shelf_and_counts_up_what_the_books_lacked(store) -> None:
    await seed(store, [("ST-1", "MUG", 3)])
    async with store.new_uow() as uow:
        await stock_of(uow).reserve("o1", "r1", [StockLine(sku="MUG", quantity=2)])
    async with store.new_uow() as uow:  # 1 available, 2 sold: the count was 1 short
        assert await stock_of(uow).sell("o2", "r2", "ST-1", [MUG]) == [
            StockLine(sku="MUG", quantity=1)]
    async with store.new_uow() as uow:  # never seen at this store: counted up from 0
        assert await stock_of(uow).sell("o3", "r3", "ST-1", [PLATE]) == [PLATE]
    assert await levels(store, "MUG", "PLATE") == {"ST-1": {"MUG": 0, "PLATE": 0}}
    async with store.new_uow() as uow:  # the online reservation still ships
        await stock_of(uow).commit("o1")
    assert await levels(store, "MUG") == {"ST-1": {"MUG": 0}}


async def test_low_stock_names_the_skus_just_taken_under_their_threshold(store) -> None:
    await seed(store, [("WH-1", "MUG", 5), ("WH-1", "PLATE", 5)])
    async with store.new_uow() as uow:
        await stock_of(uow).set_threshold("MUG", 3)
    for order, expected in (("o1", []), ("o2", [("MUG", 1, 3)]), ("o3", [])):
        async with store.new_uow() as uow:
            location, _ = await stock_of(uow).reserve(order, order, [MUG, PLATE])
            assert location == ("WH-1" if order != "o3" else None)
            if location is not None:
                assert await stock_of(uow).below_threshold(location, [MUG, PLATE]) == expected


async def reservation_lines(store, order_id: str) -> list[tuple[str, str, int, str]]:  # noqa: ANN001
    """(location, sku, quantity, status) of an order's lines, however the store keeps them."""
    if store.kind == "memory":
        async with store.new_uow() as uow:
            lines = uow.state.extra.get("reservation_lines", {})
        return sorted((str(v["location"]), sku, int(v["quantity"]), str(v["status"]))
                      for (order, sku), v in lines.items() if order == order_id)
    async with store.new_uow() as uow:
        conn = await uow.connection()
        rows = await conn.fetch("SELECT location, sku, quantity, status FROM reservation_lines "
                                "WHERE order_id = $1 ORDER BY sku", order_id)
    return [tuple(r) for r in rows]


async def test_one_unit_of_work_reserves_ships_and_releases_many_orders(store) -> None:
    """A batch: what an order settles in the same unit of work it reserved in counts."""
    await seed(store, [("WH-1", "MUG", 10), ("WH-1", "PLATE", 2)])
    async with store.new_uow() as uow:
        stock = stock_of(uow)
        await stock.preload(["MUG", "PLATE"])
        assert await stock.reserve("o1", "r1", [MUG, PLATE]) == ("WH-1", [])
        assert await stock.reserve("o2", "r2", [MUG]) == ("WH-1", [])
        assert await stock.reserve("o3", "r3", [StockLine(sku="PLATE", quantity=2)]) == (
            None, ["PLATE"])
        await stock.commit("o1")
        await stock.release("o2")
        await stock.release("o2")  # once
        assert await stock.levels(["MUG", "PLATE"]) == {"WH-1": {"MUG": 8, "PLATE": 1}}
    assert await levels(store, "MUG", "PLATE") == {"WH-1": {"MUG": 8, "PLATE": 1}}
    assert await reservation_lines(store, "o1") == [("WH-1", "MUG", 2, "committed"),
                                                    ("WH-1", "PLATE", 1, "committed")]
    assert await reservation_lines(store, "o2") == [("WH-1", "MUG", 2, "released")]
    assert await reservation_lines(store, "o3") == []
    async with store.new_uow() as uow:  # the shipped units left the shelf for good
        await stock_of(uow).release("o1")
    assert await levels(store, "MUG", "PLATE") == {"WH-1": {"MUG": 8, "PLATE": 1}}


async def test_a_failed_message_takes_its_stock_changes_with_it(store) -> None:
    await seed(store, [("WH-1", "MUG", 5)])
    async with store.new_uow() as uow:
        await stock_of(uow).reserve("o1", "r1", [MUG])
        with pytest.raises(RuntimeError):
            async with uow.savepoint():
                await stock_of(uow).reserve("o2", "r2", [MUG])
                await stock_of(uow).commit("o1")
                raise RuntimeError("the handler failed")
        assert await stock_of(uow).levels(["MUG"]) == {"WH-1": {"MUG": 3}}
        assert await stock_of(uow).reserve("o3", "r3", [MUG]) == ("WH-1", [])
    assert await levels(store, "MUG") == {"WH-1": {"MUG": 1}}
    assert await reservation_lines(store, "o1") == [("WH-1", "MUG", 2, "reserved")]
    assert await reservation_lines(store, "o2") == []


async def test_units_restocked_earlier_in_the_unit_of_work_can_be_reserved(store) -> None:
    await seed(store, [("WH-1", "MUG", 0)])
    async with store.new_uow() as uow:
        await stock_of(uow).restock("WH-1", [ReturnLine(sku="MUG", quantity=2)])
        assert await stock_of(uow).reserve("o1", "r1", [MUG]) == ("WH-1", [])
    assert await levels(store, "MUG") == {"WH-1": {"MUG": 0}}


async def test_online_orders_are_routed_by_the_recorded_locations(store) -> None:
    await seed(store, [("WH-JKT", "MUG", 4), ("WH-SBY", "MUG", 40), ("ST-JKT", "MUG", 90)])
    async with store.new_uow() as uow:
        stock = stock_of(uow)
        await stock.set_location("WH-JKT", Site("warehouse", "1"))
        await stock.set_location("ST-JKT", Site("store", "1", ships=False))
        assert (await stock.sites())["ST-JKT"] == Site("store", "1", ships=False)
    async with store.new_uow() as uow:
        stock = stock_of(uow)
        assert await stock.reserve("o1", "r1", [MUG], Route(region="1")) == ("WH-JKT", [])
        assert await stock.reserve("o2", "r2", [MUG], Route(region="6")) == ("WH-SBY", [])
        assert await stock.reserve("o3", "r3", [StockLine(sku="MUG", quantity=50)],
                                   Route(region="1")) == (None, ["MUG"])
    async with store.new_uow() as uow:  # the store may ship now
        await stock_of(uow).set_location("ST-JKT", Site("store", "1", ships=True))
    async with store.new_uow() as uow:
        assert await stock_of(uow).reserve("o4", "r4", [StockLine(sku="MUG", quantity=50)],
                                           Route(region="1")) == ("ST-JKT", [])


async def on_books(store, location: str, sku: str) -> tuple[int, int] | None:  # noqa: ANN001
    """(on_hand, reserved) of one row, however the store keeps it; None without a row."""
    if store.kind == "memory":
        async with store.new_uow() as uow:
            row = uow.state.extra.get("stock", {}).get((location, sku))
        return None if row is None else (row["on_hand"], row["reserved"])
    async with store.new_uow() as uow:
        row = await (await uow.connection()).fetchrow(
            "SELECT on_hand, reserved FROM stock WHERE location = $1 AND sku = $2",
            location, sku)
    return None if row is None else (row["on_hand"], row["reserved"])


async def test_a_transfer_carries_an_order_s_units_to_its_store_on_sale_nowhere(store) -> None:
    """Shipped from the warehouse, the units are in transit to the store (on no shelf); at
    the store, on its books and held for the order; collected, off them. Each step taken
    twice counts once, and a store that never held the SKU gets its row."""
    await seed(store, [("WH-1", "MUG", 5), ("WH-1", "PLATE", 1)])
    async with store.new_uow() as uow:
        stock = stock_of(uow)
        assert await stock.reserve("o1", "r1", [MUG, PLATE]) == ("WH-1", [])
    for _ in range(2):
        async with store.new_uow() as uow:
            stock = stock_of(uow)
            await stock.commit("o1")
            await stock.ship_transfer("o1", "trf_o1", "WH-1", "ST-1", [MUG, PLATE])
    assert await levels(store, "MUG", "PLATE") == {"WH-1": {"MUG": 3, "PLATE": 0}}
    async with store.new_uow() as uow:
        assert await stock_of(uow).in_transit(["MUG", "PLATE", "CUP"]) == {
            "ST-1": {"MUG": 2, "PLATE": 1}}
        assert await stock_of(uow).in_transit(["CUP"]) == {}
    assert await on_books(store, "ST-1", "MUG") is None

    for _ in range(2):
        async with store.new_uow() as uow:
            await stock_of(uow).receive_transfer("trf_o1", "ST-1")
    assert (await on_books(store, "ST-1", "MUG"), await on_books(store, "ST-1", "PLATE")) == (
        (2, 2), (1, 1))
    async with store.new_uow() as uow:
        stock = stock_of(uow)
        assert await stock.in_transit(["MUG"]) == {}
        assert await stock.reserve("o2", "r2", [StockLine(sku="MUG", quantity=4)],
                                   Route(store="ST-1")) == (None, ["MUG"])  # held for o1

    for _ in range(2):
        async with store.new_uow() as uow:
            await stock_of(uow).collect_transfer("trf_o1", "ST-1")
    assert await on_books(store, "ST-1", "MUG") == (0, 0)
    assert await on_books(store, "WH-1", "MUG") == (3, 0)


async def mug_on_its_way(store) -> None:  # noqa: ANN001
    """Two mugs of o1 shipped from WH-1 (5 on hand) for the store ST-1."""
    await seed(store, [("WH-1", "MUG", 5)])
    async with store.new_uow() as uow:
        await stock_of(uow).reserve("o1", "r1", [MUG])
    async with store.new_uow() as uow:
        await stock_of(uow).commit("o1")
        await stock_of(uow).ship_transfer("o1", "trf_o1", "WH-1", "ST-1", [MUG])


async def test_a_transfer_whose_parcel_came_back_is_no_longer_in_transit(store) -> None:
    await mug_on_its_way(store)
    async with store.new_uow() as uow:
        await stock_of(uow).restock("WH-1", [ReturnLine(sku="MUG", quantity=2)])
        await stock_of(uow).end_transfer("trf_o1")
        await stock_of(uow).receive_transfer("trf_o1", "ST-1")  # too late: nothing arrives
    async with store.new_uow() as uow:
        assert await stock_of(uow).in_transit(["MUG"]) == {}
    assert await on_books(store, "WH-1", "MUG") == (5, 0)
    assert await on_books(store, "ST-1", "MUG") is None


async def test_the_admin_view_counts_units_in_transit_at_the_store_they_go_to(
        postgres_store, fresh_schema) -> None:  # noqa: ANN001
    """GET /v1/stock/{sku} on PostgreSQL: units on their way show at the store they travel
    to (which may hold no row of its own yet), neither on hand nor on sale there."""
    pool, store = fresh_schema[0], postgres_store
    await mug_on_its_way(store)
    app = admin_api.create_app(pool, "token")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://a",
                                 headers={"Authorization": "Bearer token"}) as admin:
        view = await admin.get("/v1/stock/MUG")
        refused = await admin.get("/v1/stock/MUG", headers={"Authorization": "Bearer guess"})
        unknown = await admin.get("/v1/nowhere")
    assert refused.status_code == 401 and unknown.status_code == 404
    assert refused.headers["content-type"] == unknown.headers["content-type"] \
        == "application/problem+json"
    assert refused.headers["WWW-Authenticate"].startswith("Bearer realm=")
    assert refused.json()["title"] == "Unauthorized" and refused.json()["status"] == 401
    assert view.status_code == 200, view.text
    assert view.json()["locations"] == [
        {"location": "ST-1", "on_hand": 0, "reserved": 0, "available": 0, "in_transit": 2},
        {"location": "WH-1", "on_hand": 3, "reserved": 0, "available": 3, "in_transit": 0}]
