"""Crypto-shredding: personal data in events is sealed with a key of its customer's own, kept
here and nowhere else; forgetting the customer deletes the key.

The keys live in PostgreSQL schema `keyring` (created by the orders service's migrations,
services/orders/migrations/106_customers.sql), the one store every service that needs personal
data reads: orders (webhooks, the customer view), notifications (the recipient of an e-mail)
and shipping (the street of a parcel). It stands in for a KMS; each read is one round trip and
nothing is cached, so a key deleted is gone for every reader at once.

A sealed value is AES-256-GCM over the JSON of the personal fields, with a random 96-bit
nonce and the customer's id as associated data (a sealed value moved to another customer does
not open). What the events keep in clear beside it is pseudonymous: the customer's id, and
which fields are sealed (so a reader knows there is an e-mail address without reading it).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from schemas.orders import Sealed


class Erased(LookupError):
    """The customer was forgotten: their personal data cannot be read any more."""


def seal(key: bytes, customer_id: str, content: dict[str, Any], fields: Sequence[str]) -> Sealed:
    """`content` sealed; `fields` names what it holds (in clear, without the values)."""
    nonce = os.urandom(12)
    plain = json.dumps(content, separators=(",", ":"), sort_keys=True).encode()
    box = AESGCM(key).encrypt(nonce, plain, customer_id.encode())
    return Sealed(key_id=customer_id, fields=sorted(fields),
                  nonce=base64.b64encode(nonce).decode(),
                  ciphertext=base64.b64encode(box).decode())


OpenSealed = Callable[[Sealed], Awaitable[dict[str, Any]]]


async def no_keyring(sealed: Sealed) -> dict[str, Any]:
    """For a service built without a key store (unit tests with plain events)."""
    raise Erased(f"no key store to open the personal data of {sealed.key_id}")


def unseal(key: bytes, sealed: Sealed) -> dict[str, Any]:
    try:
        plain = AESGCM(key).decrypt(base64.b64decode(sealed.nonce),
                                    base64.b64decode(sealed.ciphertext), sealed.key_id.encode())
    except (InvalidTag, ValueError) as exc:
        raise Erased(f"the personal data of {sealed.key_id} does not open: {exc}") from None
    opened: dict[str, Any] = json.loads(plain)
    return opened


async def keys_of(conn: asyncpg.Connection | asyncpg.Pool,
                  customer_ids: Sequence[str]) -> dict[str, bytes]:
    """The keys of these customers that still exist (a forgotten one is missing)."""
    if not customer_ids:
        return {}
    rows = await conn.fetch("SELECT customer_id, key FROM keyring.customer_keys"
                            " WHERE customer_id = ANY($1::text[])", list(set(customer_ids)))
    return {r["customer_id"]: bytes(r["key"]) for r in rows}


async def open_sealed(conn: asyncpg.Connection | asyncpg.Pool,
                      sealed: Sealed) -> dict[str, Any]:
    """The personal fields of one sealed value, or Erased."""
    key = (await keys_of(conn, [sealed.key_id])).get(sealed.key_id)
    if key is None:
        raise Erased(f"customer {sealed.key_id} was forgotten")
    return unseal(key, sealed)


async def forget(conn: asyncpg.Connection, customer_id: str) -> bool:
    """Delete the customer's key for good (in the caller's transaction); whether there was
    one. A tombstone (no personal data) remembers that the id was forgotten."""
    deleted = await conn.fetchval(
        "WITH gone AS (DELETE FROM keyring.customer_keys WHERE customer_id = $1"
        "   RETURNING shop_id)"
        " INSERT INTO keyring.forgotten (customer_id, shop_id)"
        " SELECT $1, shop_id FROM gone ON CONFLICT DO NOTHING RETURNING customer_id",
        customer_id)
    return deleted is not None


class KeyLoader:
    """Opens sealed values for a service, fetching the keys of everything asked for in the
    same turn of the event loop with one `fetch` (a batch's e-mails or bookings are performed
    concurrently): a round trip per batch, not per message. Nothing is kept after the
    answer, so a key deleted is missing from the next turn on."""

    def __init__(self, fetch: Callable[[list[str]], Awaitable[dict[str, bytes]]]) -> None:
        self._fetch = fetch
        self._waiting: dict[str, list[asyncio.Future[bytes | None]]] = {}

    async def open(self, sealed: Sealed) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bytes | None] = loop.create_future()
        if not self._waiting:
            loop.call_soon(self._send)
        self._waiting.setdefault(sealed.key_id, []).append(future)
        key = await future
        if key is None:
            raise Erased(f"customer {sealed.key_id} was forgotten")
        return unseal(key, sealed)

    def _send(self) -> None:
        waiting, self._waiting = self._waiting, {}
        task = asyncio.ensure_future(self._fetch(list(waiting)))

        def answer(done: asyncio.Future[dict[str, bytes]]) -> None:
            failed: BaseException | None = (
                asyncio.CancelledError() if done.cancelled() else done.exception())
            for customer_id, futures in waiting.items():
                for future in futures:
                    if future.done():
                        continue
                    if failed is not None:
                        future.set_exception(failed)
                    else:
                        future.set_result(done.result().get(customer_id))

        task.add_done_callback(answer)


def key_loader(pool: asyncpg.Pool) -> KeyLoader:
    async def fetch(customer_ids: list[str]) -> dict[str, bytes]:
        return await keys_of(pool, customer_ids)

    return KeyLoader(fetch)
