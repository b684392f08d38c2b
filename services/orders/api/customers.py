"""The customer routes: a customer's view by Alur's id, and finding one by an identifier.
Tenant isolation as for orders: another shop's customer does not exist."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from alur.runtime.postgres import PostgresUnitOfWork
from schemas.envelope import now
from schemas.orders import Customer
from services.orders import customers
from services.orders.api.models import CustomerMatches, CustomerView, Forgotten
from services.orders.api.orders import AUTH, POST, IdempotencyKey
from services.orders.api.problems import ApiError, responses
from services.orders.api.security import Caller
from services.orders.api.writes import Writes

SEARCH_FIELDS = {"reference": "customer_id", "loyalty_card": "loyalty_card", "email": "email",
                 "phone": "phone"}


def router(pool: asyncpg.Pool, writes: Writes, authenticate: Callable[..., Any],
           loyalty_expiry_days: float, pepper: str) -> APIRouter:
    api = APIRouter(prefix="/v1/customers", tags=["customers"])
    authenticated = Depends(authenticate)
    expiry = timedelta(days=loyalty_expiry_days)

    async def read(shop_id: str, customer_id: str) -> CustomerView | None:
        async with pool.acquire() as conn:
            found = await customers.view(conn, shop_id, customer_id, now(), expiry)
        return None if found is None else CustomerView.model_validate(found)

    @api.get("/{customer_id}", response_model=CustomerView,
             responses=responses(*AUTH, "not-found"))
    async def get_customer(customer_id: str, caller: Caller = authenticated) -> CustomerView:
        """The customer as the shop knows them: identifiers, orders across channels with
        their status, lifetime value, first and last order, preferred channel and payment
        method, and the loyalty balance with its ledger."""
        found = await read(caller.shop.shop_id, customer_id) \
            if customer_id.startswith("cus_") else None
        if found is None:
            raise ApiError("not-found", f"There is no customer {customer_id}.")
        return found

    @api.get("", response_model=CustomerMatches, responses=responses(*AUTH))
    async def find_customer(
        caller: Caller = authenticated,
        email: Annotated[str | None, Query(max_length=254)] = None,
        phone: Annotated[str | None, Query(max_length=32)] = None,
        reference: Annotated[str | None, Query(max_length=128, description=(
            "The shop's own customer reference (`customer.customer_id` on its orders)."))] = None,
        loyalty_card: Annotated[str | None, Query(max_length=40)] = None,
    ) -> CustomerMatches:
        """Find the customer one identifier names (normalised as on orders: e-mail in any
        case, a phone as 0812… or +62812…). Exactly one of the parameters."""
        given = {name: value for name, value in (
            ("email", email), ("phone", phone), ("reference", reference),
            ("loyalty_card", loyalty_card)) if value is not None}
        if len(given) != 1:
            raise ApiError("validation-error", "Search by exactly one identifier.", errors=[
                {"field": name, "message": "give exactly one of email, phone, reference, "
                 "loyalty_card"} for name in (given or SEARCH_FIELDS)])
        [(name, value)] = given.items()
        try:
            customer = Customer.model_validate({SEARCH_FIELDS[name]: value})
        except ValidationError as exc:
            raise ApiError("validation-error", "See `errors`.", errors=[
                {"field": name, "message": str(e["msg"])} for e in exc.errors()]) from None
        [(kind, normalised)] = customer.identifiers()
        async with pool.acquire() as conn:
            customer_id = await customers.find(conn, caller.shop.shop_id, kind, normalised,
                                               pepper)
        found = None if customer_id is None else await read(caller.shop.shop_id, customer_id)
        return CustomerMatches(items=[found] if found is not None else [])

    @api.post("/{customer_id}/forget", response_model=Forgotten,
              responses=responses(*POST, "not-found", "not-allowed-now"))
    async def forget_customer(customer_id: str, request: Request,
                              caller: Caller = authenticated,
                              idempotency_key: IdempotencyKey = None) -> JSONResponse:
        """Forget the customer (the right to be forgotten): their key is deleted, so their
        name, e-mail, phone, card and street can no longer be read anywhere Alur keeps them;
        their identifiers are no longer known (a later order makes a new customer). Orders,
        money, stock and points stay exact. Refused (409) while an order of theirs has not
        arrived yet: it needs the address and e-mail."""
        async def work(uow: PostgresUnitOfWork) -> tuple[int, Forgotten]:
            try:
                waiting = await customers.forget(await uow.connection(), caller.shop.shop_id,
                                                 customer_id) \
                    if customer_id.startswith("cus_") else None
            except LookupError:
                waiting = None
            if waiting is None:
                raise ApiError("not-found", f"There is no customer {customer_id}.")
            if waiting:
                raise ApiError("not-allowed-now", f"Orders of {customer_id} are on their way: "
                               f"{', '.join(waiting)}; forget the customer once they arrived "
                               "or were cancelled.")
            return 200, Forgotten(customer_id=customer_id)

        return await writes.run(caller, request, idempotency_key, work)

    return api
