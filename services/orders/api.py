"""The shop-facing HTTP API of the orders service (FastAPI)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from alur.runtime import metrics
from alur.runtime.errors import InfrastructureError
from alur.runtime.ports import UnitOfWork
from schemas import Channel, Customer, Delivery, OrderLine, PaymentInstruction, first_event
from services.orders import domain

log = logging.getLogger("alur.orders.api")
PROBLEM = "application/problem+json"
PROBLEM_BASE = "https://alur.dev/problems/"


class PlaceOrder(BaseModel):
    """A shop's request to place an order."""

    shop_id: str = Field(min_length=1, max_length=64, description="The shop placing the order.")
    channel: Channel = Field("online", description="Sales channel.")
    customer: Customer
    lines: list[OrderLine] = Field(min_length=1, max_length=100)
    payment: PaymentInstruction
    delivery: Delivery


class Accepted(BaseModel):
    order_id: str = Field(description="Id of the new order.")
    status_url: str = Field(description="Where to follow the order.")


class TimelineEntry(BaseModel):
    version: int
    type: str
    source: str
    time: datetime
    event_id: uuid.UUID


class OrderView(BaseModel):
    order_id: str
    shop_id: str
    status: str = Field(description="placed, reserved, paid, shipped, delivered, cancelled...")
    total_amount: int
    currency: str
    timeline: list[TimelineEntry]


def problem(status: int, kind: str, title: str, detail: str, **extra: object) -> JSONResponse:
    body = {"type": PROBLEM_BASE + kind, "title": title, "status": status, "detail": detail}
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


def create_app(new_uow: Callable[[], UnitOfWork],
               load_order: Callable[[str], Awaitable[OrderView | None]]) -> FastAPI:
    app = FastAPI(title="Alur orders API", version="1.0.0")

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": ".".join(str(p) for p in e["loc"][1:]), "message": e["msg"]}
                  for e in exc.errors()]
        return problem(422, "validation-error", "The request body is invalid",
                       "See `errors` for each invalid field.", errors=errors)

    @app.exception_handler(InfrastructureError)
    async def unavailable(_: Request, exc: InfrastructureError) -> JSONResponse:
        log.error("orders API: dependency unavailable: %s", exc)
        response = problem(503, "unavailable", "Temporarily unavailable",
                           "The order was not recorded; retry later.")
        response.headers["Retry-After"] = "5"
        return response

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("orders API: unexpected error")
        return problem(500, "internal", "Internal error", "The request could not be handled.")

    @app.post("/v1/orders", status_code=202, response_model=Accepted,
              responses={422: {"description": "Invalid order (problem+json)."}})
    async def place(body: PlaceOrder, request: Request) -> Accepted | JSONResponse:
        """Accept an order: it is durably recorded before this answers 202."""
        order_id = f"ord_{uuid.uuid4().hex}"
        try:
            data = domain.place_order(order_id, body.customer, body.lines, body.payment,
                                      body.delivery)
        except domain.InvalidOrder as exc:
            return problem(422, "invalid-order", "The order cannot be placed", str(exc))
        event = first_event(data, source="alur/orders", subject=order_id,
                            shop_id=body.shop_id, channel=body.channel)
        async with new_uow() as uow:
            await uow.append(order_id, 0, [event], ["own"])
            uow.publish(event)
        metrics.ORDER_TRANSITIONS.labels(body.channel, "placed").inc()
        return Accepted(order_id=order_id, status_url=f"/v1/orders/{order_id}")

    @app.get("/v1/orders/{order_id}", response_model=OrderView,
             responses={404: {"description": "No such order (problem+json)."}})
    async def get_order(order_id: str) -> OrderView | JSONResponse:
        """The order's current status and its timeline as the orders service recorded it."""
        view = await load_order(order_id)
        if view is None:
            return problem(404, "not-found", "No such order", f"order {order_id} is unknown")
        return view

    return app
