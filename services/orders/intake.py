"""Placing an order, whichever way it came: `POST /v1/orders` or the shop's Kafka intake topic
(services/orders/kafka_intake.py). Both run this one path: the shop's rules (currency, the
catalogue, payment and delivery), its reference, the same unit of work, the same metrics.

A reference (the shop's own order id) names the order for good: the order's id is derived from
(shop, reference), so the event store itself refuses a second order for it. Sent again with
the same order, the answer names the first one (`duplicate`); with another order under the
same reference, it is refused (409 reference-reused).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Literal

import asyncpg

from alur.runtime import keyring
from alur.runtime.aggregate import Decider
from alur.runtime.postgres import PostgresUnitOfWork
from schemas import Event, first_event
from schemas.envelope import now, random_uuid
from services.orders import customers, domain
from services.orders.api.models import Accepted, PlaceOrder
from services.orders.api.orders import SOURCE, Observe, identified, open_stream
from services.orders.api.problems import ApiError
from services.orders.api.security import Caller
from services.orders.api.writes import Answer, Writes
from services.orders.shops import ShopRegistry

REFERENCES = uuid.UUID("9a4f3c2e-5d1b-4e7a-8c6f-2b0d9e1a7c35")
Via = Literal["http", "kafka"]
# Runs in the order's transaction after it is recorded (the Kafka intake records its outcome
# and its place in the topic there).
Within = Callable[[PostgresUnitOfWork, Accepted], Awaitable[None]]


def reference_order_id(shop_id: str, reference: str) -> str:
    return "ord_" + uuid.uuid5(REFERENCES, f"{shop_id}\n{reference}").hex


async def same_order(conn: asyncpg.Connection, placed: Event, event: Event) -> bool:
    """Whether `event` places the order `placed` placed (whichever path each came by). The
    recorded order's personal data is compared once opened; if its customer was forgotten,
    the rest of the order decides."""
    recorded = placed.data
    if recorded.personal is not None:
        try:
            recorded = customers.opened(recorded, await keyring.open_sealed(
                conn, recorded.personal))
        except keyring.Erased:
            recorded = recorded.model_copy(update={"customer": event.data.customer,
                                                   "delivery": event.data.delivery})
    # What Alur adds by the shop's terms of the day (tax, total, estimate) is not the order's.
    ignored = {"intake", "alur_customer_id", "personal", "taxes", "total", "locale",
               "estimated_delivery"}
    return placed.channel == event.channel and \
        recorded.model_dump(exclude=ignored) == event.data.model_dump(exclude=ignored)


class Intake:
    def __init__(self, registry: ShopRegistry, writes: Writes, observe: Observe,
                 decider: Decider[domain.OrderState],
                 loyalty_expiry: timedelta = timedelta(days=365),
                 pepper: str = "alur-local-identity-pepper") -> None:
        self.registry, self._writes = registry, writes
        self._observe, self._decider = observe, decider
        self._expiry, self._pepper = loyalty_expiry, pepper

    async def place(self, caller: Caller, body: PlaceOrder, *, fingerprint: bytes,
                    idempotency_key: str | None, via: Via,
                    within: Within | None = None) -> Answer:
        """Validate and record the order (durably, before this returns), or raise ApiError."""
        shop = caller.shop
        if body.shop_id is not None and body.shop_id != shop.shop_id:
            raise ApiError("validation-error", "See `errors`.", errors=[
                {"field": "shop_id", "message": f"must be the shop of the {_credential(via)}"}])
        if body.channel == "pos":
            raise ApiError("invalid-order", "A till's sales are uploaded to POST /v1/pos/sales.")
        unknown = set(await self.registry.unknown_skus([line.sku for line in body.lines]))
        if unknown:
            raise ApiError("unknown-sku", f"Not in the catalogue: {', '.join(sorted(unknown))}.",
                           errors=[{"field": f"lines.{i}.sku", "message": "unknown SKU"}
                                   for i, line in enumerate(body.lines) if line.sku in unknown])
        # A new stream: no service can have appended to it, so `work` runs once and the id
        # and the validated order can be made before the transaction.
        order_id = reference_order_id(shop.shop_id, body.reference) \
            if body.reference is not None else f"ord_{random_uuid().hex}"
        try:
            data = domain.place_order(order_id, body.customer, body.lines, body.payment,
                                      body.delivery, currency=shop.currency,
                                      reference=body.reference, intake=via,
                                      loyalty_points=body.loyalty_points, terms=shop.terms,
                                      placed=now())
        except domain.CurrencyMismatch as exc:
            raise ApiError("currency-mismatch", str(exc)) from None
        except domain.InvalidOrder as exc:
            raise ApiError("invalid-order", str(exc)) from None
        event = first_event(data, source=SOURCE, subject=order_id, shop_id=shop.shop_id,
                            channel=body.channel)
        placed: list[Event] = []

        async def work(uow: PostgresUnitOfWork) -> tuple[int, Accepted]:
            accepted = Accepted(order_id=order_id, status_url=f"/v1/orders/{order_id}")
            placed.clear()
            stream = await uow.load(order_id) if body.reference is not None else []
            if stream:
                if not await same_order(await uow.connection(), stream[0].event, event):
                    raise ApiError("reference-reused", f"Reference {body.reference} names "
                                   f"order {order_id}, placed before with other contents; "
                                   "a new order needs a new reference.")
                accepted = accepted.model_copy(update={"duplicate": True})
            else:
                conn = await uow.connection()
                [who] = await customers.resolve(conn, shop.shop_id, [body.customer],
                                                self._pepper)
                if body.loyalty_points:
                    held = 0 if who.new or who.customer_id is None else \
                        await customers.available_points(conn, who.customer_id, now(),
                                                         self._expiry)
                    if held < body.loyalty_points:
                        raise ApiError("insufficient-points", f"The customer holds {held} "
                                       f"loyalty points; the order spends "
                                       f"{body.loyalty_points}.")
                events = identified(event, who)
                await open_stream(uow, events, self._decider)
                placed[:] = events[:1]
            if within is not None:
                await within(uow, accepted)
            return 202, accepted

        answer = await self._writes.answer(caller, fingerprint, idempotency_key, work)
        for new in placed if not answer.replayed else ():
            self._observe(self._decider.initial, self._decider.fold([new]), new)
        return answer


def _credential(via: Via) -> str:
    return "API key" if via == "http" else "intake topic"
