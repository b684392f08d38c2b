"""The inventory admin API: stock counts and low-stock thresholds, for the people who run the
warehouses and stores.

Every route needs `Authorization: Bearer <ALUR_INVENTORY_ADMIN_TOKEN>`. A change runs in one
transaction that locks the stock row, applies the change and logs it in `stock_adjustments`
(who, why, before and after). The database refuses a count below what open reservations hold;
the answer is then 409 and nothing changes. Errors are RFC 9457 problem details
(`application/problem+json`: `type`, `title`, `status`, `detail`); a 401 names the Bearer
challenge in `WWW-Authenticate`.

- `GET  /v1/stock/{sku}`: per location on hand, reserved, available, and in transit there
  from a warehouse; the SKU's threshold.
- `PUT  /v1/stock/{location}/{sku}`: `{"on_hand": n, "reason": "..."}`, a count.
- `POST /v1/stock/{location}/{sku}/adjustments`: `{"delta": n, "reason": "..."}`, a delivery
  in (positive) or breakage out (negative).
- `PUT  /v1/thresholds/{sku}`: `{"threshold": n}`; LowStock is emitted when a reservation or a
  till sale takes a location's available units under it.
- `PUT  /v1/locations/{location}`: `{"kind": "warehouse"|"store", "region": "1",
  "ships_to_customers": bool}`, what a location is, by which online orders are routed
  (services/inventory/domain.py); a store ships to customers only where this says so.
- `GET  /v1/locations`: every recorded location.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Annotated, Literal

import asyncpg
from fastapi import Depends, FastAPI, Header, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from alur.runtime.http import install_problems, problem
from alur.runtime.strict_json import StrictJSONRoute
from services.inventory.adapters import PostgresStock
from services.inventory.domain import Site

Name = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[\x21-\x7e]+$")]


class AdminError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


class Count(BaseModel):
    model_config = ConfigDict(extra="forbid")
    on_hand: int = Field(ge=0, le=10**9, strict=True, description="Units on the shelf, counted.")
    reason: str = Field(min_length=1, max_length=500)


class Adjustment(BaseModel):
    model_config = ConfigDict(extra="forbid")
    delta: int = Field(ge=-10**9, le=10**9, strict=True,
                       description="Units in (+) or out (-); not 0.")
    reason: str = Field(min_length=1, max_length=500)


class Threshold(BaseModel):
    model_config = ConfigDict(extra="forbid")
    threshold: int = Field(ge=0, le=10**9, strict=True)


class LocationRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["warehouse", "store"]
    region: str | None = Field(None, pattern=r"^[0-9]$", description="The postal region it "
                               "is in: the first digit of an Indonesian postal code.")
    ships_to_customers: bool = Field(description="Online orders may be served from it (a "
                                     "warehouse; a store with ship-from-store).")


class LocationView(LocationRecord):
    location: str


class Level(BaseModel):
    location: str
    on_hand: int
    reserved: int
    available: int
    in_transit: int = Field(description="Units on their way here from a warehouse, for "
                            "click-and-collect orders: held for those orders, not on hand.")


class StockView(BaseModel):
    sku: str
    threshold: int | None
    locations: list[Level]


def create_app(pool: asyncpg.Pool, token: str) -> FastAPI:
    app = FastAPI(title="Alur inventory admin", description=__doc__)
    app.router.route_class = StrictJSONRoute  # no parse error becomes a 500

    install_problems(app)

    @app.exception_handler(AdminError)
    async def _admin_error(_: Request, exc: AdminError) -> JSONResponse:
        return problem(exc.status, exc.detail, headers={
            "WWW-Authenticate": 'Bearer realm="alur-inventory"'} if exc.status == 401 else None)

    def admin(authorization: Annotated[str | None, Header()] = None,
              actor: Annotated[str | None, Header(alias="Alur-Actor", max_length=100)] = None,
              ) -> str:
        """The caller's name for the adjustment log, once the token checks out."""
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token.encode()):
            raise AdminError(401, "send Authorization: Bearer <the inventory admin token>")
        return actor or "admin"

    caller = Depends(admin)

    async def view(conn: asyncpg.Connection, sku: str) -> StockView:
        rows = {r["location"]: r for r in await conn.fetch(
            "SELECT location, on_hand, reserved FROM stock WHERE sku = $1", sku)}
        # Units on their way to a store may be its first of the SKU: it has no row yet.
        moving = {location: units[sku] for location, units in
                  (await PostgresStock.on(conn).in_transit([sku])).items()}
        threshold = await conn.fetchval(
            "SELECT threshold FROM low_stock_thresholds WHERE sku = $1", sku)
        levels = []
        for location in sorted(rows.keys() | moving.keys()):
            on_hand, reserved = (rows[location]["on_hand"], rows[location]["reserved"]) \
                if location in rows else (0, 0)
            levels.append(Level(location=location, on_hand=on_hand, reserved=reserved,
                                available=on_hand - reserved,
                                in_transit=moving.get(location, 0)))
        return StockView(sku=sku, threshold=threshold, locations=levels)

    async def change(location: str, sku: str, actor: str, reason: str,
                     to: Callable[[int], int]) -> StockView:
        """Lock the row, set on hand to `to(current)`, log it; 409 if reservations hold more."""
        async with pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow("SELECT on_hand, reserved FROM stock WHERE location = $1"
                                      " AND sku = $2 FOR UPDATE", location, sku)
            was = None if row is None else int(row["on_hand"])
            on_hand = to(was or 0)
            reserved = 0 if row is None else int(row["reserved"])
            if on_hand < 0:
                raise AdminError(409, f"{location}/{sku}: on hand cannot go to {on_hand}")
            if on_hand < reserved:
                raise AdminError(409, f"{location}/{sku}: {reserved} units are reserved for "
                                      f"open orders; on hand cannot go to {on_hand}")
            await PostgresStock.on(conn).set_on_hand(location, sku, on_hand)
            await conn.execute(
                "INSERT INTO stock_adjustments (location, sku, on_hand_was, on_hand, reason,"
                " actor) VALUES ($1, $2, $3, $4, $5, $6)",
                location, sku, was, on_hand, reason, actor)
            return await view(conn, sku)

    @app.get("/v1/stock/{sku}", response_model=StockView)
    async def get_stock(sku: Name, _: str = caller) -> StockView:
        async with pool.acquire() as conn:
            found = await view(conn, sku)
        if not found.locations and found.threshold is None:
            raise AdminError(404, f"no stock of {sku} anywhere")
        return found

    @app.put("/v1/stock/{location}/{sku}", response_model=StockView)
    async def count(location: Name, sku: Name, body: Count, actor: str = caller) -> StockView:
        return await change(location, sku, actor, body.reason, lambda _: body.on_hand)

    @app.post("/v1/stock/{location}/{sku}/adjustments", response_model=StockView)
    async def adjust(location: Name, sku: Name, body: Adjustment,
                     actor: str = caller) -> StockView:
        if body.delta == 0:
            raise AdminError(422, "delta: an adjustment moves at least one unit")
        return await change(location, sku, actor, body.reason,
                            lambda current: current + body.delta)

    @app.put("/v1/locations/{location}", response_model=LocationView)
    async def set_location(location: Name, body: LocationRecord,
                           _: str = caller) -> LocationView:
        try:
            site = Site(body.kind, body.region, body.ships_to_customers)
        except ValueError as exc:  # the model checked kind and region: only this is left
            raise AdminError(422, f"ships_to_customers: {exc}") from None
        async with pool.acquire() as conn:
            await PostgresStock.on(conn).set_location(location, site)
        return LocationView(location=location, **body.model_dump())

    @app.get("/v1/locations", response_model=list[LocationView])
    async def list_locations(_: str = caller) -> list[LocationView]:
        async with pool.acquire() as conn:
            sites = await PostgresStock.on(conn).sites()
        return [LocationView(location=name, kind=s.kind, region=s.region,
                             ships_to_customers=s.ships) for name, s in sorted(sites.items())]

    @app.put("/v1/thresholds/{sku}", response_model=StockView)
    async def set_threshold(sku: Name, body: Threshold, _: str = caller) -> StockView:
        async with pool.acquire() as conn, conn.transaction():
            await PostgresStock.on(conn).set_threshold(sku, body.threshold)
            return await view(conn, sku)

    return app
