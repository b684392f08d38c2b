"""Which orders a replay or a dry run covers: a shop, some orders, orders placed in a time
window, or all of them; and how to find them in a service's event store."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg


@dataclass(frozen=True)
class Slice:
    """Which orders a replay covers: all by default."""

    shop: str | None = None
    orders: tuple[str, ...] = ()
    since: datetime | None = None  # placed at or after
    until: datetime | None = None  # placed before

    def as_json(self) -> dict[str, Any]:
        return {"shop": self.shop, "orders": list(self.orders),
                "since": self.since.isoformat() if self.since else None,
                "until": self.until.isoformat() if self.until else None}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Slice:
        def when(text: str | None) -> datetime | None:
            return datetime.fromisoformat(text) if text else None

        return cls(shop=data["shop"], orders=tuple(data["orders"]), since=when(data["since"]),
                   until=when(data["until"]))

    @property
    def everything(self) -> bool:
        return not (self.shop or self.orders or self.since or self.until)

    def sql(self, placed: str = "placed_at", shop: str = "shop_id",
            order: str = "order_id") -> tuple[str, list[Any]]:
        """A WHERE clause selecting the slice, numbered from $1."""
        terms, args = ["TRUE"], []
        for value, term in ((self.shop, f"{shop} = $%d"),
                            (list(self.orders) or None, f"{order} = ANY($%d::text[])"),
                            (self.since, f"{placed} >= $%d"), (self.until, f"{placed} < $%d")):
            if value is not None:
                args.append(value)
                terms.append(term % len(args))
        return " AND ".join(terms), args


# A stored event's shop: bodies recorded before the CloudEvents names call it `shop_id`.
STORED_SHOP = "coalesce(body->>'shopid', body->>'shop_id')"


async def orders_in(conn: asyncpg.Connection, part: Slice, *, dated_by: str) -> list[str]:
    """The slice's order ids in the event store on the connection's search_path. Each order is
    dated, and found by shop, by the one event of its stream that `dated_by` selects."""
    where, args = part.sql(placed="(body->>'time')::timestamptz", shop=STORED_SHOP,
                           order="stream_id")
    rows = await conn.fetch(f"SELECT stream_id FROM events WHERE {dated_by} AND {where}", *args)
    return [r["stream_id"] for r in rows]
