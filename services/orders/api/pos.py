"""Point-of-sale uploads: a till sends the sales it already made, paid and handed over.

A till may be offline for hours, so its sales arrive late and in batches. Each sale becomes an
order on channel `pos` whose id follows from the shop, the store and the till's receipt number:
uploading a batch again (after a lost answer, say) records nothing twice. A batch is one
transaction: if any sale is invalid the answer names each one and nothing is recorded.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from alur.runtime.aggregate import Decider
from alur.runtime.postgres import PostgresUnitOfWork
from alur.runtime.strict_json import StrictJSONRoute
from schemas import Event, first_event
from schemas.envelope import now
from services.orders import customers, domain
from services.orders.api.models import RecordedSale, SalesBatch, SalesRecorded
from services.orders.api.orders import (
    POST,
    SOURCE,
    IdempotencyKey,
    Observe,
    identified,
    open_stream,
)
from services.orders.api.problems import ApiError, responses
from services.orders.api.security import Caller
from services.orders.api.writes import Writes
from services.orders.shops import ShopRegistry

SALES = uuid.UUID("5b0d6c1e-8f0a-4a4e-9d55-0a1c2b3d4e5f")  # namespace of till sale order ids


def sale_order_id(shop_id: str, store_id: str, sale_id: str) -> str:
    return "ord_" + uuid.uuid5(SALES, "\n".join((shop_id, store_id, sale_id))).hex


def router(registry: ShopRegistry, writes: Writes, authenticate: Callable[..., Any],
           observe: Observe,
           decider: Decider[domain.OrderState],
           pepper: str) -> APIRouter:
    api = APIRouter(prefix="/v1/pos", tags=["point of sale"], route_class=StrictJSONRoute)
    authenticated = Depends(authenticate)

    @api.post("/sales", status_code=202, response_model=SalesRecorded, responses=responses(
        *POST, "invalid-order", "unknown-sku", "currency-mismatch"))
    async def record_sales(body: SalesBatch, request: Request,
                           caller: Caller = authenticated,
                           idempotency_key: IdempotencyKey = None) -> JSONResponse:
        """Record a till's sales (paid, handed over): all of them, or none if one is invalid.
        Each completes once payments has recorded its payment; inventory takes the units off
        the store's shelf."""
        shop = caller.shop
        errors: list[dict[str, str]] = []
        seen: set[str] = set()
        for i, sale in enumerate(body.sales):
            if sale.sale_id in seen:
                errors.append({"field": f"sales.{i}.sale_id", "message": "repeated in the batch"})
            seen.add(sale.sale_id)
        unknown = set(await registry.unknown_skus(
            [line.sku for sale in body.sales for line in sale.lines]))
        errors += [{"field": f"sales.{i}.lines.{j}.sku", "message": "unknown SKU"}
                   for i, sale in enumerate(body.sales)
                   for j, line in enumerate(sale.lines) if line.sku in unknown]
        events: list[Event] = []
        at = now()
        for i, sale in enumerate(body.sales):
            order_id = sale_order_id(shop.shop_id, body.store_id, sale.sale_id)
            try:
                data = domain.record_sale(order_id, sale.customer, sale.lines,
                                          sale.payment.method, body.store_id, sale.sale_id,
                                          sale.sold_at, at, currency=shop.currency,
                                          terms=shop.terms)
            except domain.InvalidOrder as exc:
                errors.append({"field": f"sales.{i}", "message": str(exc)})
                continue
            events.append(first_event(data, source=SOURCE, subject=order_id,
                                      shop_id=shop.shop_id, channel="pos"))
        if errors:
            raise ApiError("invalid-order", f"{len(errors)} problem(s) in the batch; nothing "
                           "was recorded. See `errors`.", errors=errors)
        recorded: list[Event] = []

        async def work(uow: PostgresUnitOfWork) -> tuple[int, SalesRecorded]:
            await uow.preload([e.subject for e in events])
            answer, recorded[:] = [], []
            new = [e for e in events if not await uow.load(e.subject)]
            conn = await uow.connection()
            resolved = dict(zip([e.subject for e in new], await customers.resolve(
                conn, shop.shop_id, [e.data.customer for e in new], pepper), strict=True))
            for event in events:
                known = event.subject not in resolved
                if not known:
                    opened = identified(event, resolved[event.subject])
                    await open_stream(uow, opened, decider)
                    recorded.append(opened[0])
                answer.append(RecordedSale(sale_id=str(event.data.sale_id),
                                           order_id=event.subject, already_recorded=known))
            return 202, SalesRecorded(sales=answer)

        response = await writes.run(caller, request, idempotency_key, work)
        for event in recorded:
            observe(decider.initial, decider.fold([event]), event)
        return response

    return api
