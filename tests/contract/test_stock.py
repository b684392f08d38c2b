"""The stock contract: all-or-nothing reservations and commits; never more held than on hand."""

import asyncio

import asyncpg
import pytest

from schemas import ReturnLine, StockLine
from services.inventory.adapters import OversoldError
from services.inventory.bootstrap import stock_of
from services.inventory.domain import Route, Site

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
