"""Webhook subscriptions: where a shop wants its order events POSTed, and the secret that
signs them. The secret is shown once, at creation and at each rotation."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import asyncpg
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from alur.runtime.egress import EgressPolicy, EgressRefused
from alur.runtime.postgres import PostgresUnitOfWork
from alur.runtime.strict_json import StrictJSONRoute
from services.orders.api.models import WEBHOOK_EVENTS, Webhook, WebhookRequest, WebhookSecret
from services.orders.api.orders import AUTH, POST, IdempotencyKey
from services.orders.api.problems import ApiError, responses
from services.orders.api.security import Caller
from services.orders.api.writes import Writes

COLUMNS = "webhook_id, url, events, created_at, previous_until AS previous_secret_valid_until"


def _secret() -> str:
    return f"whsec_{secrets.token_urlsafe(32)}"


def router(pool: asyncpg.Pool, writes: Writes, authenticate: Callable[..., Any],
           rotation_overlap: float, egress: EgressPolicy) -> APIRouter:
    api = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], route_class=StrictJSONRoute)
    authenticated = Depends(authenticate)

    async def check(body: WebhookRequest) -> None:
        unknown = sorted(set(body.events) - set(WEBHOOK_EVENTS))
        if unknown:
            raise ApiError("validation-error", "See `errors`.", errors=[
                {"field": f"events.{body.events.index(e)}", "message": f"no event type {e}"}
                for e in unknown])
        try:
            await egress.registrable(str(body.url))
        except EgressRefused as exc:
            raise ApiError("validation-error", "See `errors`.", errors=[
                {"field": "url", "message": f"refused by the egress policy: {exc}"}]) from None

    @api.post("", status_code=201, response_model=WebhookSecret,
              responses=responses(*POST))
    async def create_webhook(body: WebhookRequest, request: Request, caller: Caller = authenticated,
                             idempotency_key: IdempotencyKey = None) -> JSONResponse:
        """Subscribe a URL to event types. The answer holds the signing secret, once. URLs
        that reach loopback, private, link-local, multicast or reserved addresses are
        refused, here and again at every delivery."""
        await check(body)

        async def work(uow: PostgresUnitOfWork) -> tuple[int, Any]:
            conn = await uow.connection()
            row = await conn.fetchrow(
                "INSERT INTO webhooks (webhook_id, shop_id, url, events, secret)"
                f" VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}, secret",
                f"wh_{secrets.token_hex(8)}", caller.shop.shop_id, str(body.url),
                sorted(set(body.events)), _secret())
            return 201, WebhookSecret(**dict(row))

        return await writes.run(caller, request, idempotency_key, work)

    @api.get("", response_model=list[Webhook], responses=responses(*AUTH))
    async def list_webhooks(caller: Caller = authenticated) -> list[Webhook]:
        """The shop's webhook subscriptions."""
        rows = await pool.fetch(f"SELECT {COLUMNS} FROM webhooks WHERE shop_id = $1"
                                " AND deleted_at IS NULL ORDER BY created_at",
                                caller.shop.shop_id)
        return [Webhook(**dict(r)) for r in rows]

    @api.get("/{webhook_id}", response_model=Webhook,
             responses=responses(*AUTH, "not-found"))
    async def get_webhook(webhook_id: str, caller: Caller = authenticated) -> Webhook:
        """One webhook subscription."""
        row = await pool.fetchrow(f"SELECT {COLUMNS} FROM webhooks WHERE webhook_id = $1"
                                  " AND shop_id = $2 AND deleted_at IS NULL",
                                  webhook_id, caller.shop.shop_id)
        if row is None:
            raise ApiError("not-found", f"There is no webhook {webhook_id}.")
        return Webhook(**dict(row))

    @api.post("/{webhook_id}/rotate-secret", response_model=WebhookSecret,
              responses=responses(*POST, "not-found"))
    async def rotate_secret(webhook_id: str, request: Request, caller: Caller = authenticated,
                            idempotency_key: IdempotencyKey = None) -> JSONResponse:
        """A new signing secret. The old one keeps signing too until
        `previous_secret_valid_until`, so receivers can switch without losing deliveries."""

        async def work(uow: PostgresUnitOfWork) -> tuple[int, Any]:
            conn = await uow.connection()
            row = await conn.fetchrow(
                "UPDATE webhooks SET previous_secret = secret, secret = $3,"
                " previous_until = now() + make_interval(secs => $4)"
                " WHERE webhook_id = $1 AND shop_id = $2 AND deleted_at IS NULL"
                f" RETURNING {COLUMNS}, secret",
                webhook_id, caller.shop.shop_id, _secret(), rotation_overlap)
            if row is None:
                raise ApiError("not-found", f"There is no webhook {webhook_id}.")
            return 200, WebhookSecret(**dict(row))

        return await writes.run(caller, request, idempotency_key, work)

    @api.delete("/{webhook_id}", status_code=204, response_class=Response,
                responses=responses(*AUTH, "not-found"))
    async def delete_webhook(webhook_id: str, caller: Caller = authenticated) -> Response:
        """Stop deliveries to this subscription."""
        done = await pool.fetchval(
            "UPDATE webhooks SET deleted_at = now() WHERE webhook_id = $1 AND shop_id = $2"
            " AND deleted_at IS NULL RETURNING true", webhook_id, caller.shop.shop_id)
        if not done:
            raise ApiError("not-found", f"There is no webhook {webhook_id}.")
        return Response(status_code=204)

    return api
