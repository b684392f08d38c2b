"""The shop registry (PostgreSQL): shops, their API keys, signing secrets and the catalogue.

API keys are random 256-bit secrets shown once at creation and stored as SHA-256 hashes: a
leaked table gives nobody a key. A plain hash suffices because the keys are not guessable.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from schemas.money import UnknownCurrency, minor_units, valid_locale
from services.orders.domain import INDONESIA, ShopTerms

SHOP_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
KEY_PREFIX = "alur_sk_"


class RegistryError(ValueError):
    """An operator's request on the registry cannot be carried out; the message says why."""


@dataclass(frozen=True)
class Shop:
    shop_id: str
    name: str
    currency: str
    signing_secret: str | None
    rate_per_second: float | None
    burst: int | None
    terms: ShopTerms = INDONESIA


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    shop_id: str
    created_at: datetime
    revoked_at: datetime | None


KNOWN_SKUS_KEPT = 100_000
MAX_COD_FEE = 10**9  # minor units: far above any fee, far below an order's limit


def key_hash(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _shop(row: asyncpg.Record) -> Shop:
    return Shop(row["shop_id"], row["name"], row["currency"], row["signing_secret"],
                row["rate_per_second"], row["burst"],
                ShopTerms(row["tax_name"], row["tax_rate_bp"], row["prices_include_tax"],
                          row["locale"], row["delivery_days"], row["cod_fee"]))


def _checked(terms: ShopTerms) -> ShopTerms:
    """The terms with the locale in babel's spelling, or RegistryError saying what is wrong."""
    if not 1 <= len(terms.tax_name) <= 32:
        raise RegistryError("the tax name is 1 to 32 characters (e.g. PPN)")
    if not 0 <= terms.tax_rate_bp <= 10_000:
        raise RegistryError("the tax rate is 0 to 10000 basis points (1100 = 11%)")
    if not 0 <= terms.delivery_days <= 90:
        raise RegistryError("home delivery takes 0 to 90 days")
    if not 0 <= terms.cod_fee <= MAX_COD_FEE:
        raise RegistryError(f"the cash-on-delivery fee is 0 to {MAX_COD_FEE} minor units")
    try:
        locale = valid_locale(terms.locale or "id_ID")
    except ValueError as exc:
        raise RegistryError(str(exc)) from None
    return ShopTerms(terms.tax_name, terms.tax_rate_bp, terms.prices_include_tax, locale,
                     terms.delivery_days, terms.cod_fee)


class ShopRegistry:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._known: set[str] = set()

    async def add_shop(self, shop_id: str, name: str, currency: str, *, signing: bool = False,
                       rate_per_second: float | None = None, burst: int | None = None,
                       terms: ShopTerms = INDONESIA) -> Shop:
        """Register a shop; with `signing`, a signing secret is made (shown once, by the CLI)."""
        if not SHOP_ID.match(shop_id):
            raise RegistryError("a shop id is 1-63 lower-case letters, digits and dashes")
        try:
            minor_units(currency)
        except UnknownCurrency as exc:
            raise RegistryError(f"the currency: {exc} (e.g. IDR, EUR)") from None
        terms = _checked(terms)
        secret = f"alur_ss_{secrets.token_urlsafe(32)}" if signing else None
        row = await self._pool.fetchrow(
            "INSERT INTO shops (shop_id, name, currency, signing_secret, rate_per_second, burst,"
            " tax_name, tax_rate_bp, prices_include_tax, locale, delivery_days, cod_fee)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
            " ON CONFLICT (shop_id) DO NOTHING RETURNING *",
            shop_id, name, currency, secret, rate_per_second, burst, terms.tax_name,
            terms.tax_rate_bp, terms.prices_include_tax, terms.locale, terms.delivery_days,
            terms.cod_fee)
        if row is None:
            raise RegistryError(f"shop {shop_id} exists already")
        return _shop(row)

    async def set_terms(self, shop_id: str, terms: ShopTerms) -> Shop:
        """Change the shop's terms. Orders placed before keep the tax and locale they were
        placed with (their events hold them)."""
        terms = _checked(terms)
        row = await self._pool.fetchrow(
            "UPDATE shops SET tax_name = $2, tax_rate_bp = $3, prices_include_tax = $4,"
            " locale = $5, delivery_days = $6, cod_fee = $7 WHERE shop_id = $1 RETURNING *",
            shop_id, terms.tax_name, terms.tax_rate_bp, terms.prices_include_tax, terms.locale,
            terms.delivery_days, terms.cod_fee)
        if row is None:
            raise RegistryError(f"no shop {shop_id}; add it with `alur shops add`")
        return _shop(row)

    async def shops(self) -> list[Shop]:
        return [_shop(r) for r in await self._pool.fetch("SELECT * FROM shops ORDER BY shop_id")]

    async def create_key(self, shop_id: str) -> tuple[str, str]:
        """A new API key for the shop: (key id, the key). Only its hash is kept."""
        key_id = f"key_{secrets.token_hex(6)}"
        key = f"{KEY_PREFIX}{secrets.token_urlsafe(32)}"
        try:
            await self._pool.execute(
                "INSERT INTO api_keys (key_id, shop_id, key_hash) VALUES ($1, $2, $3)",
                key_id, shop_id, key_hash(key))
        except asyncpg.ForeignKeyViolationError:
            raise RegistryError(f"no shop {shop_id}; add it with `alur shops add`") from None
        return key_id, key

    async def revoke_key(self, key_id: str) -> ApiKey:
        row = await self._pool.fetchrow(
            "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE key_id = $1"
            " RETURNING key_id, shop_id, created_at, revoked_at", key_id)
        if row is None:
            raise RegistryError(f"no API key {key_id}")
        return ApiKey(**dict(row))

    async def keys(self, shop_id: str | None = None) -> list[ApiKey]:
        rows = await self._pool.fetch(
            "SELECT key_id, shop_id, created_at, revoked_at FROM api_keys"
            " WHERE $1::text IS NULL OR shop_id = $1 ORDER BY shop_id, created_at", shop_id)
        return [ApiKey(**dict(r)) for r in rows]

    async def shop(self, shop_id: str) -> Shop | None:
        row = await self._pool.fetchrow("SELECT * FROM shops WHERE shop_id = $1", shop_id)
        return None if row is None else _shop(row)

    async def authenticate(self, key: str) -> Shop | None:
        """The shop whose live key this is, or None. The lookup is by hash (an index probe),
        so no secret is ever compared byte by byte."""
        if not key.startswith(KEY_PREFIX):
            return None
        row = await self._pool.fetchrow(
            "SELECT s.* FROM api_keys k JOIN shops s USING (shop_id)"
            " WHERE k.key_hash = $1 AND k.revoked_at IS NULL", key_hash(key))
        return None if row is None else _shop(row)

    async def add_skus(self, skus: Sequence[str]) -> None:
        await self._pool.execute(
            "INSERT INTO catalogue (sku) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING",
            list(skus))

    async def unknown_skus(self, skus: Sequence[str]) -> list[str]:
        """The SKUs not in the catalogue. SKUs are only ever added to it, so the ones found
        once are kept in the process (up to KNOWN_SKUS_KEPT) and not asked for again."""
        asked = set(skus) - self._known
        if not asked:
            return []
        found = {r["sku"] for r in await self._pool.fetch(
            "SELECT sku FROM catalogue WHERE sku = ANY($1::text[])", list(asked))}
        if len(self._known) + len(found) <= KNOWN_SKUS_KEPT:
            self._known |= found
        return sorted(asked - found)
