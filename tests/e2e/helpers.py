"""Placing orders over HTTP and waiting for outcomes by bounded polling."""

from __future__ import annotations

import asyncio
import email
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from email.message import Message
from pathlib import Path

import asyncpg
import httpx

from alur.infra import stack
from alur.settings import SERVICES, Settings
from alur.simulators.smtp import read_messages
from services.inventory import seed
from services.orders.admin import onboard, registry
from tests.conftest import test_settings

DEFAULT_SHOP = "shop-e2e"
_keys: dict[str, str] = {}


async def key_for(shop: str, currency: str = "EUR") -> str:
    """An API key for the shop, registering it in the test stack on first use (selling in
    `currency`, with the default terms: PPN 11% in the prices, amounts in id_ID)."""
    if shop not in _keys:
        # Tests place orders as fast as they can: far above the default rate limit.
        _keys[shop], _ = await onboard(test_settings(), shop, currency, [],
                                       rate_per_second=10_000, burst=10_000)
    return _keys[shop]


async def auth(shop: str = DEFAULT_SHOP, currency: str = "EUR") -> dict[str, str]:
    return {"Authorization": f"Bearer {await key_for(shop, currency)}"}


async def set_stock(settings: Settings, rows: list[tuple[str, str, int]]) -> None:
    """Stock the SKUs in inventory and list them in the orders catalogue."""
    await seed.set_stock(settings, rows)
    await onboard_skus(settings, [sku for _, sku, _ in rows])


async def onboard_skus(settings: Settings, skus: list[str]) -> None:
    async with registry(settings) as shops:
        await shops.add_skus(skus)


def new_sku() -> str:
    return f"SKU-{uuid.uuid4().hex[:10].upper()}"


def order_body(sku: str, quantity: int = 1, token: str = "tok_visa",
               shop: str = DEFAULT_SHOP, method: str = "card", store_id: str | None = None,
               postal_code: str = "1000-001") -> dict[str, object]:
    """An online order; `method` picks the payment, `store_id` makes it click-and-collect."""
    delivery: dict[str, object] = (
        {"method": "click_and_collect", "store_id": store_id} if store_id else
        {"method": "home_delivery", "address": {
            "line1": "1 Main St", "city": "Lisbon", "postal_code": postal_code,
            "country": "PT"}})
    return {
        "shop_id": shop, "channel": "online",
        "customer": {"customer_id": f"cus-{uuid.uuid4().hex[:8]}",
                     "email": "ada@example.com", "name": "Ada Lovelace"},
        "lines": [{"sku": sku, "quantity": quantity,
                   "unit_price": {"amount": 1250, "currency": "EUR"}}],
        "payment": {"method": method,
                    "token": token if method in ("card", "ewallet") else None},
        "delivery": delivery,
    }


async def place(api: httpx.AsyncClient, body: dict[str, object]) -> str:
    currency = body["lines"][0]["unit_price"]["currency"]  # type: ignore[index]
    response = await api.post("/v1/orders", json=body,
                              headers=await auth(str(body["shop_id"]), currency))
    assert response.status_code == 202, response.text
    return str(response.json()["order_id"])


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


async def statuses(db: asyncpg.Pool, order_ids: list[str]) -> dict[str, list[str]]:
    """Each order's event types in the orders service's event store, in version order: its
    steps through the sales flow (who its customer is, CustomerIdentified, is not a step)."""
    rows = await db.fetch(
        "SELECT stream_id, type FROM orders.events WHERE stream_id = ANY($1::text[]) "
        "AND type <> 'CustomerIdentified' ORDER BY stream_id, version", order_ids)
    out: dict[str, list[str]] = {o: [] for o in order_ids}
    for r in rows:
        out[r["stream_id"]].append(r["type"])
    return out


async def all_delivered(db: asyncpg.Pool, order_ids: list[str]) -> bool:
    return all("Delivered" in types for types in (await statuses(db, order_ids)).values())


async def all_settled(db: asyncpg.Pool, order_ids: list[str]) -> bool:
    """Every order delivered or cancelled."""
    return all({"Delivered", "OrderCancelled"} & set(types)
               for types in (await statuses(db, order_ids)).values())


def mails_about(mail_dir: Path, order_ids: set[str]) -> list[Message]:
    messages = [email.message_from_bytes(raw) for raw in read_messages(mail_dir)]
    return [m for m in messages if any(o in str(m["Subject"]) for o in order_ids)]


def text_of(message: Message) -> str:
    """The body as the customer reads it (transfer encoding undone, SMTP line ends too)."""
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode(message.get_content_charset() or "ascii").replace("\r\n", "\n")


async def table_counts(db: asyncpg.Pool, schema: str) -> dict[str, int]:
    """Rows in every table of the schema."""
    tables = [r["tablename"] for r in await db.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = $1", schema)]
    return {t: await db.fetchval(f'SELECT count(*) FROM "{schema}"."{t}"') for t in sorted(tables)}


async def versions_are_contiguous(db: asyncpg.Pool, order_id: str) -> dict[str, list[int]]:
    found = {}
    for service in SERVICES:
        versions = [r["version"] for r in await db.fetch(
            f"SELECT version FROM {service}.events WHERE stream_id = $1 ORDER BY version",
            order_id)]
        assert versions == list(range(1, len(versions) + 1)), (service, versions)
        found[service] = versions
    return found


__all__ = ["set_stock", "auth", "key_for", "new_sku", "order_body", "place", "wait_until",
           "statuses",
           "all_delivered", "all_settled", "table_counts", "mails_about",
           "versions_are_contiguous"]


def alur(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI as an engineer runs it, against the test stack's settings."""
    return subprocess.run([sys.executable, "-m", "alur.cli", *args], capture_output=True,
                          text=True, timeout=120, cwd=stack.ROOT,
                          env={**os.environ, **stack.settings_env(settings)})
