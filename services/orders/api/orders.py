"""The order routes: place, read, list, cancel, confirm receipt, hand over a pickup, review,
request a return."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse

from alur.runtime.aggregate import Decider, keep_timers
from alur.runtime.ports import StoredEvent
from alur.runtime.postgres import PostgresUnitOfWork
from alur.runtime.strict_json import StrictJSONRoute
from schemas import Channel, Event, Model, caused_by
from schemas.envelope import now
from schemas.orders import CustomerIdentifiedData
from services.orders import domain
from services.orders.api.models import (
    Accepted,
    AppPayment,
    BankTransfer,
    GoodwillAccepted,
    GoodwillRequest,
    OrderPage,
    OrderSummary,
    OrderView,
    PlaceOrder,
    ReturnAccepted,
    ReturnRequest,
    ReturnView,
    ReviewRequest,
    TimelineEntry,
    Tracking,
)
from services.orders.api.problems import ApiError, responses
from services.orders.api.security import Caller
from services.orders.api.writes import Writes, request_hash
from services.orders.customers import Resolved, seal_order

if TYPE_CHECKING:
    from services.orders.intake import Intake

SOURCE = "alur/orders"
Observe = Callable[[domain.OrderState, domain.OrderState, Event], None]
IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key", min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$",
    description="Makes the POST safe to retry: the same key and body answer the first response "
                "again for 24 h.")]
AUTH = ("unauthenticated", "invalid-signature", "signature-expired", "signature-replayed",
        "rate-limited", "body-too-large", "validation-error")
POST = (*AUTH, "idempotency-key-in-use", "idempotency-key-reused")


async def open_stream(uow: PostgresUnitOfWork, events: Sequence[Event],
                      decider: Decider[domain.OrderState]) -> None:
    """Record a new order's first events (OrderPlaced, and CustomerIdentified when it links
    its customer): append, publish, and schedule its deadlines."""
    subject = events[0].subject
    await uow.append(subject, 0, list(events), ["own"] * len(events))
    for event in events:
        uow.publish(event)
    keep_timers(uow, subject, {}, decider.due(decider.fold(events)))


def identified(placed: Event, resolved: Resolved) -> list[Event]:
    """The order's first events once its customer is resolved: OrderPlaced naming the
    customer, its personal data sealed with the customer's key, then the links it brings
    (if any)."""
    placed = placed.model_copy(update={"data": seal_order(placed.data, resolved)})
    if not resolved.linked or resolved.customer_id is None:
        return [placed]
    return [placed, caused_by(placed, CustomerIdentifiedData(
        order_id=placed.subject, customer_id=resolved.customer_id,
        identifiers=list(resolved.linked), new=resolved.new), source=SOURCE)]


def order_view(stream: Sequence[StoredEvent], state: domain.OrderState) -> OrderView:
    """The order as the API shows it: its stream, and the state it folds to."""
    placed = stream[0].event
    shipment = next((s.event.data for s in reversed(stream)
                     if s.event.type == "ShipmentCreated"), None)
    back = next((s.event.data for s in reversed(stream)
                 if s.event.type == "ReturnShipmentCreated"), None)
    pending = next((s.event.data for s in stream if s.event.type == "PaymentPending"), None)
    asked = next((s.event.data for s in stream if s.event.type == "PaymentRequested"), None)
    return OrderView(
        order_id=placed.subject, shop_id=placed.shop_id, channel=placed.channel,
        status=state.status or "unknown", total_amount=placed.data.total.amount,
        currency=placed.data.total.currency, placed_at=placed.time,
        tracking=None if shipment is None else Tracking(
            carrier=shipment.carrier, tracking_number=shipment.tracking_number,
            shipment_id=shipment.shipment_id),
        return_tracking=None if back is None else Tracking(
            carrier=back.carrier, tracking_number=back.tracking_number,
            shipment_id=back.shipment_id),
        bank_transfer=None if pending is None else BankTransfer(
            virtual_account=pending.virtual_account, amount=pending.amount.amount,
            currency=pending.amount.currency, pay_before=pending.expires_at,
            bank=pending.bank),
        app_payment=None if asked is None else AppPayment(
            method=asked.method, request_id=asked.request_id, amount=asked.amount.amount,
            currency=asked.amount.currency, pay_before=asked.expires_at,
            qr_string=asked.qr_string, wallet=asked.wallet),
        returns=returns_of(stream),
        timeline=[TimelineEntry(version=s.version, type=s.event.type, source=s.event.source,
                                time=s.event.time, event_id=str(s.event.id)) for s in stream],
    )


def returns_of(stream: Sequence[StoredEvent]) -> list[ReturnView]:
    """The order's returns as its events tell them, oldest first."""
    returns: dict[str, ReturnView] = {}
    for e in (s.event for s in stream):
        data = e.data
        if e.type == "ReturnRequested":
            returns[data.return_id] = ReturnView(
                return_id=data.return_id, status="requested", lines=data.lines,
                refund=data.refund, last=data.last)
        elif (known := returns.get(getattr(data, "return_id", ""))) is None:
            continue
        elif e.type == "ReturnShipmentCreated":
            known.tracking = Tracking(carrier=data.carrier, tracking_number=data.tracking_number,
                                      shipment_id=data.shipment_id)
        elif e.type == "ReturnReceived":
            known.status = "received"
        elif e.type in ("ReturnClosed", "OrderReturned"):
            known.status = "closed"
            known.refund = data.refunded
    return list(returns.values())


def _cursor(placed_at: datetime, order_id: str) -> str:
    raw = json.dumps([placed_at.isoformat(), order_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _uncursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        placed_at, order_id = json.loads(raw)
        return datetime.fromisoformat(placed_at), str(order_id)
    except (ValueError, TypeError, binascii.Error):
        raise ApiError("validation-error", "The cursor is not one this API gave out.",
                       errors=[{"field": "cursor", "message": "invalid cursor"}]) from None


def router(new_uow: Callable[[], PostgresUnitOfWork], intake: Intake, writes: Writes,
           authenticate: Callable[..., Any], observe: Observe, return_window_days: float,
           decider: Decider[domain.OrderState]) -> APIRouter:
    api = APIRouter(prefix="/v1/orders", tags=["orders"], route_class=StrictJSONRoute)
    authenticated = Depends(authenticate)

    def reader() -> PostgresUnitOfWork:
        """A unit of work for a GET: it reads, so it takes no stream lock."""
        uow = new_uow()
        uow.lock_streams = False
        return uow

    async def owned_stream(uow: PostgresUnitOfWork, caller: Caller,
                           order_id: str) -> list[StoredEvent]:
        """The order's stream, if it is the caller's: another shop's order does not exist."""
        stream = await uow.load(order_id) if order_id.startswith("ord_") else []
        if not stream or stream[0].event.shop_id != caller.shop.shop_id:
            raise ApiError("not-found", f"There is no order {order_id}.")
        return stream

    @api.post("", status_code=202, response_model=Accepted, responses=responses(
        *POST, "invalid-order", "unknown-sku", "currency-mismatch", "reference-reused",
        "insufficient-points"))
    async def place_order(body: PlaceOrder, request: Request, caller: Caller = authenticated,
                          idempotency_key: IdempotencyKey = None) -> JSONResponse:
        """Accept an order: it is durably recorded before this answers 202."""
        answer = await intake.place(caller, body, fingerprint=await request_hash(request),
                                    idempotency_key=idempotency_key, via="http")
        return answer.response()

    @api.get("/{order_id}", response_model=OrderView,
             responses=responses(*AUTH, "not-found"))
    async def get_order(order_id: str, caller: Caller = authenticated) -> OrderView:
        """The order's status, tracking and its timeline as the orders service recorded it."""
        async with reader() as uow:
            stream = await owned_stream(uow, caller, order_id)
        return order_view(stream, decider.fold_stored(stream))

    @api.get("", response_model=OrderPage, responses=responses(*AUTH))
    async def list_orders(
        caller: Caller = authenticated,
        status: Annotated[str | None, Query(max_length=32, description="Only this status.")] = None,
        channel: Annotated[Channel | None, Query(description="Only this channel.")] = None,
        placed_from: Annotated[datetime | None, Query(description="Placed at or after.")] = None,
        placed_before: Annotated[datetime | None, Query(description="Placed before.")] = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        cursor: Annotated[str | None, Query(max_length=512)] = None,
    ) -> OrderPage:
        """The shop's orders, newest first, a page at a time."""
        after = _uncursor(cursor) if cursor else None
        items: list[OrderSummary] = []
        exhausted = False
        async with reader() as uow:
            conn = await uow.connection()
            # A status filter applies to the folded orders, so a page may take several reads;
            # the scan stops after 20 reads and hands back a cursor to go on from.
            for _ in range(20):
                rows = await conn.fetch(
                    "SELECT order_id, placed_at FROM sales_orders WHERE shop_id = $1"
                    " AND placed_at IS NOT NULL AND ($2::text IS NULL OR channel = $2)"
                    " AND ($3::timestamptz IS NULL OR placed_at >= $3)"
                    " AND ($4::timestamptz IS NULL OR placed_at < $4)"
                    " AND ($5::timestamptz IS NULL OR (placed_at, order_id) < ($5, $6))"
                    " ORDER BY placed_at DESC, order_id DESC LIMIT $7",
                    caller.shop.shop_id, channel, placed_from, placed_before,
                    after[0] if after else None, after[1] if after else None, limit)
                exhausted = len(rows) < limit
                await uow.preload([r["order_id"] for r in rows])
                for row in rows:
                    after = (row["placed_at"], row["order_id"])
                    stream = await uow.load(row["order_id"])
                    view = order_view(stream, decider.fold_stored(stream))
                    if status is None or view.status == status:
                        items.append(OrderSummary.model_validate(view.model_dump()))
                        if len(items) == limit:
                            break
                if len(items) == limit or exhausted:
                    break
        last = exhausted and (len(items) < limit or after == (rows[-1]["placed_at"],
                                                              rows[-1]["order_id"]))
        next_cursor = None if last or after is None else _cursor(*after)
        return OrderPage(items=items, next_cursor=next_cursor)

    async def change(order_id: str, caller: Caller, request: Request, key: str | None,
                     decide: Callable[[domain.OrderState], Sequence[Model]],
                     answer: Callable[[OrderView], Any], status: int = 200) -> JSONResponse:
        """Decide on the order's current state, append what follows, answer `answer(view)`."""
        observed: list[tuple[domain.OrderState, domain.OrderState, Event]] = []

        async def work(uow: PostgresUnitOfWork) -> tuple[int, Any]:
            stream = await owned_stream(uow, caller, order_id)
            before = decider.fold_stored(stream)
            try:
                payloads = decide(before)
            except domain.NotAllowedNow as exc:
                raise ApiError("not-allowed-now", str(exc)) from None
            except domain.InvalidOrder as exc:
                raise ApiError("validation-error", str(exc)) from None
            events = [caused_by(stream[-1].event, p, source=SOURCE) for p in payloads]
            await uow.append(order_id, len(stream), events, ["own"] * len(events))
            for e in events:
                uow.publish(e)
            stored = [*stream, *(StoredEvent(len(stream) + i + 1, "own", e)
                                 for i, e in enumerate(events))]
            after = decider.fold_stored(stored)
            keep_timers(uow, order_id, decider.due(before), decider.due(after))
            observed[:] = [(before, after, e) for e in events[-1:]]
            return status, answer(order_view(stored, after))

        response = await writes.run(caller, request, key, work)
        for before, after, event in observed:
            observe(before, after, event)
        return response

    @api.post("/{order_id}/cancel", response_model=OrderView,
              responses=responses(*POST, "not-found", "not-allowed-now"))
    async def cancel_order(order_id: str, request: Request, caller: Caller = authenticated,
                           idempotency_key: IdempotencyKey = None) -> JSONResponse:
        """Cancel the order: allowed until it is paid. Reserved stock is released."""
        return await change(order_id, caller, request, idempotency_key,
                            lambda s: domain.cancel(s, order_id), lambda view: view)

    @api.post("/{order_id}/receipt", response_model=OrderView,
              responses=responses(*POST, "not-found", "not-allowed-now"))
    async def confirm_receipt(order_id: str, request: Request, caller: Caller = authenticated,
                              idempotency_key: IdempotencyKey = None) -> JSONResponse:
        """The customer confirms they received the parcel: the order completes."""
        return await change(order_id, caller, request, idempotency_key,
                            lambda s: domain.confirm_receipt(s, order_id), lambda view: view)

    @api.post("/{order_id}/pickup", response_model=OrderView,
              responses=responses(*POST, "not-found", "not-allowed-now"))
    async def confirm_pickup(order_id: str, request: Request, caller: Caller = authenticated,
                             idempotency_key: IdempotencyKey = None) -> JSONResponse:
        """The store hands a click-and-collect order set aside on its own shelf to the
        customer: it is picked up, and completes. (A parcel sent to the store is handed over
        at the carrier's counter, which reports it.)"""
        return await change(order_id, caller, request, idempotency_key,
                            lambda s: [domain.confirm_pickup(s, order_id)], lambda view: view)

    @api.post("/{order_id}/reviews", status_code=201, response_model=OrderView,
              responses=responses(*POST, "not-found", "not-allowed-now"))
    async def submit_review(order_id: str, body: ReviewRequest, request: Request,
                            caller: Caller = authenticated,
                            idempotency_key: IdempotencyKey = None) -> JSONResponse:
        """The customer's review (1-5 stars and text), once per order, after delivery."""
        return await change(order_id, caller, request, idempotency_key,
                            lambda s: [domain.review(s, order_id, body.rating, body.text)],
                            lambda view: view, status=201)

    @api.post("/{order_id}/returns", status_code=202, response_model=ReturnAccepted,
              responses=responses(*POST, "not-found", "not-allowed-now"))
    async def request_return(order_id: str, body: ReturnRequest, request: Request,
                             caller: Caller = authenticated,
                             idempotency_key: IdempotencyKey = None) -> JSONResponse:
        """Ask to return delivered units, within the return window after delivery: any of
        the units the customer still has, each line restocked or written off, one return at a
        time. The answer says what it will pay back."""
        return_id = f"ret_{uuid.uuid4().hex[:16]}"
        return await change(
            order_id, caller, request, idempotency_key,
            lambda s: [domain.request_return(s, order_id, return_id, body.lines, body.reason,
                                             now(), return_window_days)],
            lambda view: _accepted(view, return_id), status=202)

    @api.post("/{order_id}/refunds", status_code=202, response_model=GoodwillAccepted,
              responses=responses(*POST, "not-found", "not-allowed-now"))
    async def goodwill_refund(order_id: str, body: GoodwillRequest, request: Request,
                              caller: Caller = authenticated,
                              idempotency_key: IdempotencyKey = None) -> JSONResponse:
        """A goodwill refund for a complaint, without a return: part of what was paid goes
        back through the payment method (RefundIssued, reason `goodwill`), once it is paid and
        while it is neither cancelled nor being returned."""
        goodwill_id = f"gw_{uuid.uuid4().hex[:16]}"
        return await change(
            order_id, caller, request, idempotency_key,
            lambda s: domain.goodwill_refund(s, order_id, goodwill_id, body.amount, body.reason),
            lambda view: GoodwillAccepted(order_id=order_id, goodwill_id=goodwill_id),
            status=202)

    return api


def _accepted(view: OrderView, return_id: str) -> ReturnAccepted:
    asked = next(r for r in view.returns if r.return_id == return_id)
    return ReturnAccepted(order_id=view.order_id, return_id=return_id, refund=asked.refund,
                          last=asked.last)
