"""The committed OpenAPI document (services/orders/openapi.json): what shops code against.
`alur schemas export` rewrites it; a test fails when it and the live API differ."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import asyncpg

from alur.runtime.postgres import PostgresUnitOfWork
from services.orders.api import ApiConfig, create_app

COMMITTED = Path(__file__).resolve().parents[1] / "openapi.json"


def document() -> dict[str, Any]:
    """The API's OpenAPI document, built without any connection (routes only)."""

    def no_uow() -> PostgresUnitOfWork:
        raise RuntimeError("documentation only")

    return create_app(cast(asyncpg.Pool, None), no_uow, ApiConfig()).openapi()


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def write(path: Path = COMMITTED) -> Path:
    path.write_text(render(document()))
    return path
