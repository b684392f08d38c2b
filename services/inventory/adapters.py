"""The stock port: PostgreSQL (guarded by the stock_never_oversold constraint) and a fake."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import asyncpg

from schemas import ReturnLine, StockLine
from services.inventory.domain import Levels, choose_location, short_skus


class Stock(Protocol):
    async def set_on_hand(self, location: str, sku: str, on_hand: int) -> None: ...

    async def levels(self, skus: Sequence[str]) -> dict[str, dict[str, int]]:
        """Available units (on hand minus reserved) per location for these SKUs."""

    async def reserve(self, order_id: str, reservation_id: str,
                      lines: Sequence[StockLine]) -> tuple[str | None, list[str]]:
        """Hold all lines at one location: (location, []) or (None, short SKUs)."""

    async def commit(self, order_id: str) -> None:
        """The reserved units left the shelf: reserved and on_hand both go down."""

    async def release(self, order_id: str) -> None:
        """The order will not ship: its reserved units are available again."""

    async def restock(self, location: str, lines: Sequence[ReturnLine]) -> None:
        """Returned units are on the shelf again: on_hand goes up."""


class PostgresStock:
    """Runs inside the unit of work's transaction (its connection)."""

    def __init__(self, connection: Callable[[], Awaitable[asyncpg.Connection]]) -> None:
        self._connection = connection

    @classmethod
    def on(cls, conn: asyncpg.Connection) -> PostgresStock:
        async def same() -> asyncpg.Connection:
            return conn

        return cls(same)

    async def set_on_hand(self, location: str, sku: str, on_hand: int) -> None:
        await (await self._connection()).execute(
            "INSERT INTO stock (location, sku, on_hand) VALUES ($1, $2, $3) "
            "ON CONFLICT (location, sku) DO UPDATE SET on_hand = $3, updated_at = now()",
            location, sku, on_hand)

    async def levels(self, skus: Sequence[str], lock: bool = False) -> dict[str, dict[str, int]]:
        # Rows are locked in one global order (location, sku) so reservations cannot deadlock.
        rows = await (await self._connection()).fetch(
            "SELECT location, sku, on_hand - reserved AS available FROM stock "
            "WHERE sku = ANY($1::text[]) ORDER BY location, sku"
            + (" FOR UPDATE" if lock else ""), list(skus))
        levels: dict[str, dict[str, int]] = {}
        for r in rows:
            levels.setdefault(r["location"], {})[r["sku"]] = r["available"]
        return levels

    async def reserve(self, order_id: str, reservation_id: str,
                      lines: Sequence[StockLine]) -> tuple[str | None, list[str]]:
        levels: Levels = await self.levels([line.sku for line in lines], lock=True)
        location = choose_location(levels, lines)
        if location is None:
            return None, short_skus(levels, lines)
        conn = await self._connection()
        await conn.executemany(
            "UPDATE stock SET reserved = reserved + $3, updated_at = now() "
            "WHERE location = $1 AND sku = $2",
            [(location, line.sku, line.quantity) for line in lines])
        await conn.executemany(
            "INSERT INTO reservation_lines (order_id, reservation_id, location, sku, quantity,"
            " status) VALUES ($1, $2, $3, $4, $5, 'reserved')",
            [(order_id, reservation_id, location, line.sku, line.quantity) for line in lines])
        return location, []

    async def commit(self, order_id: str) -> None:
        await self._settle(order_id, "committed", shipped=True)

    async def release(self, order_id: str) -> None:
        await self._settle(order_id, "released", shipped=False)

    async def restock(self, location: str, lines: Sequence[ReturnLine]) -> None:
        await (await self._connection()).executemany(
            "UPDATE stock SET on_hand = on_hand + $3, updated_at = now() "
            "WHERE location = $1 AND sku = $2",
            [(location, line.sku, line.quantity) for line in sorted(lines, key=lambda x: x.sku)])

    async def _settle(self, order_id: str, status: str, *, shipped: bool) -> None:
        """End the order's held lines: the units leave the shelf (shipped) or go back on sale."""
        conn = await self._connection()
        rows = await conn.fetch(
            "UPDATE reservation_lines SET status = $2 "
            "WHERE order_id = $1 AND status = 'reserved' RETURNING location, sku, quantity",
            order_id, status)
        await conn.executemany(
            "UPDATE stock SET reserved = reserved - $3, on_hand = on_hand - $3 * $4::int, "
            "updated_at = now() WHERE location = $1 AND sku = $2",
            [(r["location"], r["sku"], r["quantity"], int(shipped)) for r in rows])


class OversoldError(Exception):
    """The fake's stand-in for the database's stock_never_oversold check violation."""


class InMemoryStock:
    """Keeps its rows in a dict the in-memory unit of work snapshots with everything else."""

    def __init__(self, tables: dict[str, dict]) -> None:  # type: ignore[type-arg]
        self._stock: dict[tuple[str, str], dict[str, int]] = tables.setdefault("stock", {})
        self._lines: dict[tuple[str, str], dict[str, object]] = tables.setdefault(
            "reservation_lines", {})

    async def set_on_hand(self, location: str, sku: str, on_hand: int) -> None:
        row = self._stock.setdefault((location, sku), {"on_hand": 0, "reserved": 0})
        self._check(on_hand, row["reserved"])
        row["on_hand"] = on_hand

    async def levels(self, skus: Sequence[str]) -> dict[str, dict[str, int]]:
        levels: dict[str, dict[str, int]] = {}
        for (location, sku), row in sorted(self._stock.items()):
            if sku in skus:
                levels.setdefault(location, {})[sku] = row["on_hand"] - row["reserved"]
        return levels

    async def reserve(self, order_id: str, reservation_id: str,
                      lines: Sequence[StockLine]) -> tuple[str | None, list[str]]:
        levels = await self.levels([line.sku for line in lines])
        location = choose_location(levels, lines)
        if location is None:
            return None, short_skus(levels, lines)
        for line in lines:
            row = self._stock[(location, line.sku)]
            self._check(row["on_hand"], row["reserved"] + line.quantity)
            row["reserved"] += line.quantity
            self._lines[(order_id, line.sku)] = {
                "location": location, "quantity": line.quantity, "status": "reserved"}
        return location, []

    async def commit(self, order_id: str) -> None:
        self._settle(order_id, "committed", shipped=True)

    async def release(self, order_id: str) -> None:
        self._settle(order_id, "released", shipped=False)

    async def restock(self, location: str, lines: Sequence[ReturnLine]) -> None:
        for line in lines:
            self._stock[(location, line.sku)]["on_hand"] += line.quantity

    def _settle(self, order_id: str, status: str, *, shipped: bool) -> None:
        for (oid, sku), line in self._lines.items():
            if oid == order_id and line["status"] == "reserved":
                row = self._stock[(str(line["location"]), sku)]
                q = int(line["quantity"])  # type: ignore[call-overload]
                row["reserved"] -= q
                row["on_hand"] -= q if shipped else 0
                line["status"] = status

    @staticmethod
    def _check(on_hand: int, reserved: int) -> None:
        if not (0 <= reserved <= on_hand):
            raise OversoldError(f"reserved {reserved} would exceed on hand {on_hand}")
