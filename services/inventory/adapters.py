"""The stock port: PostgreSQL (guarded by the stock_never_oversold constraint) and a fake."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol, cast

import asyncpg

from alur.runtime.memory import InMemoryUnitOfWork
from alur.runtime.ports import UnitOfWork
from alur.runtime.postgres import PostgresUnitOfWork
from schemas import ReturnLine, StockLine
from services.inventory.domain import ANYWHERE, Route, Site, where_to_reserve


class Stock(Protocol):
    async def preload(self, skus: Sequence[str]) -> None:
        """Make ready to act on these SKUs at once (a batch's), where that saves work."""

    async def set_on_hand(self, location: str, sku: str, on_hand: int) -> None: ...

    async def levels(self, skus: Sequence[str]) -> dict[str, dict[str, int]]:
        """Available units (on hand minus reserved) per location for these SKUs."""

    async def reserve(self, order_id: str, reservation_id: str, lines: Sequence[StockLine],
                      route: Route = ANYWHERE) -> tuple[str | None, list[str]]:
        """Hold all lines at one location, chosen for `route` (domain.choose_location):
        (location, []) or (None, short SKUs)."""

    async def set_location(self, location: str, site: Site) -> None:
        """Record what a location is: a warehouse or a store, its region, whether it ships."""

    async def sites(self) -> dict[str, Site]:
        """The recorded locations (a location without a record is a warehouse)."""

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

    async def ship_transfer(self, order_id: str, transfer_id: str, from_location: str,
                            to_location: str, lines: Sequence[StockLine]) -> None:
        """The order's units left `from_location` for the store `to_location`: counted in
        transit to it (the warehouse's reservation is committed on its own). Twice counts
        once."""

    async def receive_transfer(self, transfer_id: str, location: str) -> None:
        """The units in transit arrived at `location`: on its books (on_hand) and held there
        for the order (reserved). Twice receives once."""

    async def collect_transfer(self, transfer_id: str, location: str) -> None:
        """The customer took the units held at `location`: off its books. Twice collects
        once."""

    async def end_transfer(self, transfer_id: str) -> None:
        """The units in transit came back to where they left (restocked on their own):
        no longer in transit. Twice ends once."""

    async def in_transit(self, skus: Sequence[str]) -> dict[str, dict[str, int]]:
        """Units on their way to each location, for these SKUs."""

    async def set_threshold(self, sku: str, threshold: int) -> None: ...

    async def below_threshold(self, location: str,
                              lines: Sequence[StockLine]) -> list[tuple[str, int, int]]:
        """(sku, available, threshold) for each line whose units, just taken, brought the
        location's available units under the SKU's threshold."""


class PostgresStock:
    """The stock writes an operator makes, statement by statement on a connection: the admin
    API's and the seed's way in, and the stock book's for the same writes. What a unit of work
    does to stock goes through its StockBook."""

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

    async def set_threshold(self, sku: str, threshold: int) -> None:
        await (await self._connection()).execute(
            "INSERT INTO low_stock_thresholds (sku, threshold) VALUES ($1, $2) "
            "ON CONFLICT (sku) DO UPDATE SET threshold = $2, updated_at = now()", sku, threshold)

    async def set_location(self, location: str, site: Site) -> None:
        await (await self._connection()).execute(
            "INSERT INTO locations (location, kind, region, ships_to_customers)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (location) DO UPDATE SET kind = $2,"
            " region = $3, ships_to_customers = $4, updated_at = now()",
            location, site.kind, site.region, site.ships)

    async def sites(self) -> dict[str, Site]:
        rows = await (await self._connection()).fetch(
            "SELECT location, kind, region, ships_to_customers FROM locations")
        return {r["location"]: Site(r["kind"], r["region"], r["ships_to_customers"])
                for r in rows}

    async def in_transit(self, skus: Sequence[str]) -> dict[str, dict[str, int]]:
        rows = await (await self._connection()).fetch(
            "SELECT to_location, sku, sum(quantity)::int AS n FROM stock_transfers"
            " WHERE sku = ANY($1::text[]) AND status = 'in_transit' GROUP BY 1, 2"
            " ORDER BY 1, 2", list(skus))
        moving: dict[str, dict[str, int]] = {}
        for r in rows:
            moving.setdefault(r["to_location"], {})[r["sku"]] = r["n"]
        return moving

    async def move_transfer(self, transfer_id: str, status: str, then: str) -> dict[str, int]:
        """Moves the transfer's rows in `status` on to `then`: the units of each SKU moved
        (none when they had moved on already)."""
        rows = await (await self._connection()).fetch(
            "UPDATE stock_transfers SET status = $3, received_at = CASE WHEN $3 = 'at_store'"
            " THEN now() ELSE received_at END WHERE transfer_id = $1 AND status = $2"
            " RETURNING sku, quantity", transfer_id, status, then)
        return {r["sku"]: r["quantity"] for r in rows}


class StockBook:
    """The stock a unit of work acts on, read once and changed in memory; its changes are
    written with the unit of work's other rows, in its one flush statement at commit
    (alur.runtime.postgres.Attachment). A batch of reservations costs one statement that
    reads (and locks) the rows of its SKUs, not five round trips an order.

    - Rows are read FOR UPDATE, in the global (location, sku) order, with the SKU's low-stock
      threshold; the batch's SKUs at once (`preload`), any other when first needed. Until
      commit no other writer changes them, so what the book computes is what the table holds.
    - Reservations, till sales and restocks are decided on the rows in memory and kept as
      deltas; the flush adds them up per row in one UPDATE, where the stock_never_oversold
      constraint still has the last word.
    - Settling an order (shipped or released) needs no read: the flush sets its
      reservation lines' status where still `reserved` and takes their units off the rows in
      the same statement, so settling twice settles once. Units an order releases come back
      on sale for the next unit of work (a reservation later in the same batch does not
      count on them: it may be refused where it would just fit, never oversold).
    - A message's savepoint undoes what it changed (`mark`/`undo`); the rows read stay read.
    """

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self._rows: set[tuple[str, str]] = set()  # (location, sku) of the rows read
        self._thresholds: dict[str, int] = {}
        self.sites: dict[str, Site] | None = None  # the locations table, once read
        self._read: set[str] = set()  # SKUs whose rows (every location) are read
        self._changes: list[tuple[str, str, int, int]] = []  # location, sku, on hand, reserved
        self._available: dict[tuple[str, str], int] = {}  # with the changes
        # order, reservation, location, sku, quantity, status
        self._lines: list[tuple[str, str, str, str, int, str]] = []
        self._settles: list[tuple[str, str]] = []  # order, its lines' new status

    def mark(self) -> object:
        return len(self._changes), len(self._lines), len(self._settles)

    def undo(self, mark: object) -> None:
        changes, lines, settles = cast(tuple[int, int, int], mark)
        for location, sku, on_hand, reserved in self._changes[changes:]:
            self._available[(location, sku)] -= on_hand - reserved
        del self._changes[changes:], self._lines[lines:], self._settles[settles:]

    async def read(self, skus: Sequence[str]) -> None:
        wanted = sorted(set(skus) - self._read)
        if not wanted:
            return
        rows = await self._conn.fetch(
            "WITH held AS (SELECT location, sku, on_hand - reserved AS available FROM stock"
            " WHERE sku = ANY($1::text[]) ORDER BY location, sku FOR UPDATE)"
            " SELECT w.sku, h.location, h.available, t.threshold FROM unnest($1::text[]) AS w(sku)"
            " LEFT JOIN held h USING (sku) LEFT JOIN low_stock_thresholds t USING (sku)", wanted)
        self._take(rows)
        self._read.update(wanted)

    async def read_at(self, location: str, skus: Sequence[str]) -> None:
        """Read the rows of `skus` at `location`, counting from 0 those it never held."""
        await self.read(skus)
        missing = sorted(sku for sku in set(skus) if (location, sku) not in self._rows)
        if not missing:
            return
        rows = await self._conn.fetch(
            "WITH made AS (INSERT INTO stock (location, sku, on_hand)"
            " SELECT $1, unnest($2::text[]), 0 ON CONFLICT DO NOTHING)"
            " SELECT location, sku, on_hand - reserved AS available, NULL::int AS threshold"
            " FROM stock WHERE location = $1 AND sku = ANY($2::text[]) ORDER BY sku FOR UPDATE",
            location, missing)
        self._take(rows)
        for sku in missing:  # made by the statement above: not visible to it yet, empty
            if (location, sku) not in self._rows:
                self._take([{"location": location, "sku": sku, "available": 0,
                             "threshold": None}])

    def _take(self, rows: Sequence[Mapping[str, Any]]) -> None:
        for r in rows:
            key = (r["location"], r["sku"])
            if r["location"] is not None and key not in self._rows:
                self._rows.add(key)
                # A row changed before it was read (a restock) holds only its changes so far.
                self._available[key] = r["available"] + self._available.get(key, 0)
            if r["threshold"] is not None:
                self._thresholds[r["sku"]] = r["threshold"]

    def forget(self, sku: str) -> None:
        """The SKU's rows were written around the book (the admin's writes): read them again
        when next needed."""
        if any(change[1] == sku for change in self._changes):
            raise RuntimeError(f"{sku} has stock changes in this unit of work; the book would "
                               "lose them")
        self._read.discard(sku)
        self._thresholds.pop(sku, None)
        for key in [k for k in self._rows if k[1] == sku]:
            self._rows.discard(key)
            del self._available[key]

    def levels(self, skus: Sequence[str]) -> dict[str, dict[str, int]]:
        wanted = set(skus)
        levels: dict[str, dict[str, int]] = {}
        for (location, sku), available in sorted(self._available.items()):
            if sku in wanted:
                levels.setdefault(location, {})[sku] = available
        return levels

    def change(self, location: str, sku: str, on_hand: int, reserved: int) -> None:
        self._changes.append((location, sku, on_hand, reserved))
        key = (location, sku)
        self._available[key] = self._available.get(key, 0) + on_hand - reserved

    def add_lines(self, order_id: str, reservation_id: str, location: str,
                  lines: Sequence[StockLine], status: str) -> None:
        self._lines.extend((order_id, reservation_id, location, x.sku, x.quantity, status)
                           for x in lines)

    def settle(self, order_id: str, status: str, *, shipped: bool) -> None:
        if any(order == order_id for order, _ in self._settles):
            return  # settled once already
        self._settles.append((order_id, status))
        for order, _, location, sku, quantity, line_status in self._lines:
            if order == order_id and line_status == "reserved":  # held in this unit of work
                self.change(location, sku, -quantity * shipped, -quantity)

    def threshold(self, sku: str) -> int | None:
        return self._thresholds.get(sku)

    def available(self, location: str, sku: str) -> int | None:
        return self._available.get((location, sku))

    def flush(self, array: Callable[[Sequence[object], str], str]) -> list[tuple[str, str]]:
        parts: list[tuple[str, str]] = []
        settled = dict(self._settles)
        lines = [(*line[:5], settled.get(line[0], line[5]) if line[5] == "reserved" else line[5])
                 for line in self._lines]
        held_here = {line[0] for line in self._lines}
        for held, conflict in ((True, ""), (False, " ON CONFLICT DO NOTHING")):
            # Lines held now are new; a till sale's may be there from a sale before a crash.
            rows = [line for line, new in zip(lines, self._lines, strict=True)
                    if (new[5] == "reserved") == held]
            if rows:
                columns = zip(*rows, strict=True)
                arrays = ", ".join(array(list(c), t) for c, t in zip(
                    columns, ("text", "text", "text", "text", "int", "text"), strict=True))
                parts.append((f"stock_lines_{int(held)}",
                              "INSERT INTO reservation_lines (order_id, reservation_id,"
                              " location, sku, quantity, status)"
                              f" SELECT * FROM unnest({arrays}){conflict}"))
        elsewhere = [(o, s) for o, s in settled.items() if o not in held_here]
        deltas = "SELECT * FROM unnest({}, {}, {}, {}) AS m(location, sku, on_hand, reserved)"
        if self._changes:
            location, sku, on_hand, reserved = zip(*self._changes, strict=True)
            deltas = deltas.format(array(location, "text"), array(sku, "text"),
                                   array(on_hand, "int"), array(reserved, "int"))
        else:
            deltas = ""
        if elsewhere:
            orders, statuses = zip(*elsewhere, strict=True)
            parts.append(("stock_settled",
                          "UPDATE reservation_lines r SET status = c.status"
                          f" FROM unnest({array(orders, 'text')}, {array(statuses, 'text')})"
                          " AS c(order_id, status)"
                          " WHERE r.order_id = c.order_id AND r.status = 'reserved'"
                          " RETURNING r.location, r.sku, r.quantity, c.status"))
            settled_deltas = ("SELECT location, sku, -quantity * (status = 'committed')::int"
                              " AS on_hand, -quantity AS reserved FROM stock_settled")
            deltas = f"{deltas} UNION ALL {settled_deltas}" if deltas else settled_deltas
        if deltas:
            parts.append(("stock_changed",
                          "UPDATE stock s SET on_hand = s.on_hand + d.on_hand,"
                          " reserved = s.reserved + d.reserved, updated_at = now()"
                          " FROM (SELECT location, sku, sum(on_hand) AS on_hand,"
                          f" sum(reserved) AS reserved FROM ({deltas}) AS a"
                          " GROUP BY location, sku) AS d"
                          " WHERE s.location = d.location AND s.sku = d.sku"))
        return parts


class BookedStock:
    """The Stock port on a unit of work's StockBook."""

    def __init__(self, book: StockBook,
                 connection: Callable[[], Awaitable[asyncpg.Connection]]) -> None:
        self._book = book
        self._connection = connection  # for the admin's writes, inside the savepoint

    async def preload(self, skus: Sequence[str]) -> None:
        await self._book.read(skus)

    async def set_on_hand(self, location: str, sku: str, on_hand: int) -> None:
        await PostgresStock(self._connection).set_on_hand(location, sku, on_hand)
        self._book.forget(sku)

    async def set_threshold(self, sku: str, threshold: int) -> None:
        await PostgresStock(self._connection).set_threshold(sku, threshold)
        self._book.forget(sku)

    async def levels(self, skus: Sequence[str]) -> dict[str, dict[str, int]]:
        await self._book.read(skus)
        return self._book.levels(skus)

    async def set_location(self, location: str, site: Site) -> None:
        await PostgresStock(self._connection).set_location(location, site)
        self._book.sites = None

    async def sites(self) -> dict[str, Site]:
        if self._book.sites is None:  # read once per unit of work
            self._book.sites = await PostgresStock(self._connection).sites()
        return self._book.sites

    async def reserve(self, order_id: str, reservation_id: str, lines: Sequence[StockLine],
                      route: Route = ANYWHERE) -> tuple[str | None, list[str]]:
        location, short = where_to_reserve(await self.levels([x.sku for x in lines]), lines,
                                           route, await self.sites())
        if location is None:
            return None, short
        for line in lines:
            self._book.change(location, line.sku, 0, line.quantity)
        self._book.add_lines(order_id, reservation_id, location, lines, "reserved")
        return location, []

    async def commit(self, order_id: str) -> None:
        self._book.settle(order_id, "committed", shipped=True)

    async def release(self, order_id: str) -> None:
        self._book.settle(order_id, "released", shipped=False)

    async def restock(self, location: str, lines: Sequence[ReturnLine]) -> None:
        for line in lines:
            self._book.change(location, line.sku, line.quantity, 0)

    async def ship_transfer(self, order_id: str, transfer_id: str, from_location: str,
                            to_location: str, lines: Sequence[StockLine]) -> None:
        await (await self._connection()).execute(
            "INSERT INTO stock_transfers (transfer_id, sku, order_id, from_location,"
            " to_location, quantity, status) SELECT $1, l.sku, $2, $3, $4, l.quantity,"
            " 'in_transit' FROM unnest($5::text[], $6::int[]) AS l(sku, quantity)"
            " ON CONFLICT DO NOTHING", transfer_id, order_id, from_location, to_location,
            [x.sku for x in lines], [x.quantity for x in lines])

    async def receive_transfer(self, transfer_id: str, location: str) -> None:
        moved = await PostgresStock(self._connection).move_transfer(
            transfer_id, "in_transit", "at_store")
        await self._book.read_at(location, sorted(moved))
        for sku, quantity in sorted(moved.items()):
            self._book.change(location, sku, quantity, quantity)

    async def collect_transfer(self, transfer_id: str, location: str) -> None:
        moved = await PostgresStock(self._connection).move_transfer(
            transfer_id, "at_store", "collected")
        for sku, quantity in sorted(moved.items()):
            self._book.change(location, sku, -quantity, -quantity)

    async def end_transfer(self, transfer_id: str) -> None:
        await PostgresStock(self._connection).move_transfer(transfer_id, "in_transit",
                                                            "returned")

    async def in_transit(self, skus: Sequence[str]) -> dict[str, dict[str, int]]:
        return await PostgresStock(self._connection).in_transit(skus)

    async def sell(self, order_id: str, reservation_id: str, location: str,
                   lines: Sequence[StockLine]) -> list[StockLine]:
        ordered = sorted(lines, key=lambda x: x.sku)
        await self._book.read_at(location, [x.sku for x in ordered])
        recounted = []
        for line in ordered:
            short = max(0, line.quantity - (self._book.available(location, line.sku) or 0))
            if short:
                recounted.append(StockLine(sku=line.sku, quantity=short))
            self._book.change(location, line.sku, short - line.quantity, 0)
        self._book.add_lines(order_id, reservation_id, location, ordered, "committed")
        return recounted

    async def below_threshold(self, location: str,
                              lines: Sequence[StockLine]) -> list[tuple[str, int, int]]:
        await self._book.read([x.sku for x in lines])
        rows = [{"sku": x.sku, "available": available, "threshold": threshold}
                for x in sorted(lines, key=lambda x: x.sku)
                if (threshold := self._book.threshold(x.sku)) is not None
                and (available := self._book.available(location, x.sku)) is not None]
        return crossed(rows, lines)


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
        self._sites: dict[str, Site] = tables.setdefault("locations", {})
        # (transfer_id, sku) -> to_location, quantity, status
        self._transfers: dict[tuple[str, str], dict[str, Any]] = tables.setdefault(
            "stock_transfers", {})

    async def set_location(self, location: str, site: Site) -> None:
        self._sites[location] = site

    async def sites(self) -> dict[str, Site]:
        return dict(self._sites)

    async def preload(self, skus: Sequence[str]) -> None:
        return None

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

    async def reserve(self, order_id: str, reservation_id: str, lines: Sequence[StockLine],
                      route: Route = ANYWHERE) -> tuple[str | None, list[str]]:
        location, short = where_to_reserve(await self.levels([x.sku for x in lines]), lines,
                                           route, self._sites)
        if location is None:
            return None, short
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

    async def ship_transfer(self, order_id: str, transfer_id: str, from_location: str,
                            to_location: str, lines: Sequence[StockLine]) -> None:
        for line in lines:
            self._transfers.setdefault((transfer_id, line.sku), {
                "to": to_location, "quantity": line.quantity, "status": "in_transit"})

    async def receive_transfer(self, transfer_id: str, location: str) -> None:
        for sku, quantity in self._move(transfer_id, "in_transit", "at_store"):
            row = self._stock.setdefault((location, sku), {"on_hand": 0, "reserved": 0})
            row["on_hand"] += quantity
            row["reserved"] += quantity

    async def collect_transfer(self, transfer_id: str, location: str) -> None:
        for sku, quantity in self._move(transfer_id, "at_store", "collected"):
            row = self._stock[(location, sku)]
            row["on_hand"] -= quantity
            row["reserved"] -= quantity

    async def end_transfer(self, transfer_id: str) -> None:
        self._move(transfer_id, "in_transit", "returned")

    def _move(self, transfer_id: str, status: str, then: str) -> list[tuple[str, int]]:
        moved = []
        for (tid, sku), transfer in sorted(self._transfers.items()):
            if tid == transfer_id and transfer["status"] == status:
                transfer["status"] = then
                moved.append((sku, int(transfer["quantity"])))
        return moved

    async def in_transit(self, skus: Sequence[str]) -> dict[str, dict[str, int]]:
        moving: dict[str, dict[str, int]] = {}
        for (_, sku), transfer in sorted(self._transfers.items()):
            if sku in skus and transfer["status"] == "in_transit":
                at = moving.setdefault(transfer["to"], {})
                at[sku] = at.get(sku, 0) + int(transfer["quantity"])
        return dict(sorted(moving.items()))

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


def postgres_stock(uow: UnitOfWork) -> Stock:
    """The stock of a PostgreSQL unit of work (the service's), written in its transaction."""
    pg = cast(PostgresUnitOfWork, uow)
    return BookedStock(pg.attached("stock", StockBook), pg.connection)


def memory_stock(uow: UnitOfWork) -> Stock:
    """The stock of an in-memory unit of work (tests'), kept in its state."""
    return InMemoryStock(cast(InMemoryUnitOfWork, uow).state.extra)
