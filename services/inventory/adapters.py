"""The stock port: PostgreSQL (guarded by the stock_never_oversold constraint) and a fake."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

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

    async def sell(self, order_id: str, reservation_id: str, location: str,
                   lines: Sequence[StockLine]) -> list[StockLine]:
        """A till sold these units at `location`: they left the shelf (on_hand goes down).
        Where the books held fewer than were sold, on_hand is first counted up to cover the
        sale; the units counted up are returned. Nothing reserved is touched."""

    async def set_threshold(self, sku: str, threshold: int) -> None: ...

    async def below_threshold(self, location: str,
                              lines: Sequence[StockLine]) -> list[tuple[str, int, int]]:
        """(sku, available, threshold) for each line whose units, just taken, brought the
        location's available units under the SKU's threshold."""


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

    async def sell(self, order_id: str, reservation_id: str, location: str,
                   lines: Sequence[StockLine]) -> list[StockLine]:
        conn = await self._connection()
        ordered = sorted(lines, key=lambda x: x.sku)
        # Lock (or create) the rows in the global (location, sku) order, then look.
        await conn.executemany(
            "INSERT INTO stock (location, sku, on_hand) VALUES ($1, $2, 0) "
            "ON CONFLICT (location, sku) DO NOTHING", [(location, x.sku) for x in ordered])
        rows = await conn.fetch(
            "SELECT sku, on_hand - reserved AS available FROM stock "
            "WHERE location = $1 AND sku = ANY($2::text[]) ORDER BY sku FOR UPDATE",
            location, [x.sku for x in ordered])
        short = {r["sku"]: max(0, x.quantity - r["available"])
                 for r, x in zip(rows, ordered, strict=True)}
        await conn.executemany(  # counted up by what the books lacked, then sold
            "UPDATE stock SET on_hand = on_hand + $3 - $4, updated_at = now() "
            "WHERE location = $1 AND sku = $2",
            [(location, x.sku, short[x.sku], x.quantity) for x in ordered])
        await conn.executemany(
            "INSERT INTO reservation_lines (order_id, reservation_id, location, sku, quantity,"
            " status) VALUES ($1, $2, $3, $4, $5, 'committed') ON CONFLICT DO NOTHING",
            [(order_id, reservation_id, location, x.sku, x.quantity) for x in ordered])
        return [StockLine(sku=sku, quantity=n) for sku, n in short.items() if n > 0]

    async def set_threshold(self, sku: str, threshold: int) -> None:
        await (await self._connection()).execute(
            "INSERT INTO low_stock_thresholds (sku, threshold) VALUES ($1, $2) "
            "ON CONFLICT (sku) DO UPDATE SET threshold = $2, updated_at = now()", sku, threshold)

    async def below_threshold(self, location: str,
                              lines: Sequence[StockLine]) -> list[tuple[str, int, int]]:
        rows = await (await self._connection()).fetch(
            "SELECT s.sku, s.on_hand - s.reserved AS available, t.threshold FROM stock s"
            " JOIN low_stock_thresholds t USING (sku) WHERE s.location = $1"
            " AND s.sku = ANY($2::text[]) ORDER BY s.sku", location, [x.sku for x in lines])
        return crossed(rows, lines)

    async def _settle(self, order_id: str, status: str, *, shipped: bool) -> None:
        """End the order's held lines: the units leave the shelf (shipped) or go back on sale."""
        conn = await self._connection()
        rows = await conn.fetch(
            "UPDATE reservation_lines SET status = $2 "
            "WHERE order_id = $1 AND status = 'reserved' RETURNING location, sku, quantity",
            order_id, status)
        await conn.executemany(  # in the global (location, sku) order, like every writer
            "UPDATE stock SET reserved = reserved - $3, on_hand = on_hand - $3 * $4::int, "
            "updated_at = now() WHERE location = $1 AND sku = $2",
            [(r["location"], r["sku"], r["quantity"], int(shipped))
             for r in sorted(rows, key=lambda r: (r["location"], r["sku"]))])


def crossed(rows: Sequence[Mapping[str, Any]],
            lines: Sequence[StockLine]) -> list[tuple[str, int, int]]:
    """The rows (sku, available, threshold) that the lines' units just took under their
    threshold: under it now, at or over it before."""
    taken = {x.sku: x.quantity for x in lines}
    return [(r["sku"], r["available"], r["threshold"]) for r in rows
            if r["available"] < r["threshold"] <= r["available"] + taken[r["sku"]]]


class OversoldError(Exception):
    """The fake's stand-in for the database's stock_never_oversold check violation."""


class InMemoryStock:
    """Keeps its rows in a dict the in-memory unit of work snapshots with everything else."""

    def __init__(self, tables: dict[str, dict]) -> None:  # type: ignore[type-arg]
        self._stock: dict[tuple[str, str], dict[str, int]] = tables.setdefault("stock", {})
        self._lines: dict[tuple[str, str], dict[str, object]] = tables.setdefault(
            "reservation_lines", {})
        self._thresholds: dict[str, int] = tables.setdefault("low_stock_thresholds", {})

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

    async def sell(self, order_id: str, reservation_id: str, location: str,
                   lines: Sequence[StockLine]) -> list[StockLine]:
        recounted = []
        for line in sorted(lines, key=lambda x: x.sku):
            row = self._stock.setdefault((location, line.sku), {"on_hand": 0, "reserved": 0})
            short = line.quantity - (row["on_hand"] - row["reserved"])
            if short > 0:
                recounted.append(StockLine(sku=line.sku, quantity=short))
                row["on_hand"] += short
            row["on_hand"] -= line.quantity
            self._lines.setdefault((order_id, line.sku), {
                "location": location, "quantity": line.quantity, "status": "committed"})
        return recounted

    async def set_threshold(self, sku: str, threshold: int) -> None:
        if threshold < 0:
            raise ValueError("a threshold is never negative")
        self._thresholds[sku] = threshold

    async def below_threshold(self, location: str,
                              lines: Sequence[StockLine]) -> list[tuple[str, int, int]]:
        rows = [{"sku": sku, "threshold": self._thresholds[sku],
                 "available": row["on_hand"] - row["reserved"]}
                for sku in sorted(x.sku for x in lines)
                if sku in self._thresholds and (row := self._stock.get((location, sku)))]
        return crossed(rows, lines)

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
