"""RFC 9457 problem details: one stable `type` URI per kind of error, field-level details, and
never a stack trace or SQL text."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from alur.runtime.db import CONNECTION_ERRORS
from alur.runtime.errors import ConcurrencyConflict, InfrastructureError
from alur.runtime.http import PROBLEM, signature_challenge

log = logging.getLogger("alur.orders.api")
PROBLEM_BASE = "https://alur.dev/problems/"

# kind -> (status, title). The URI `PROBLEM_BASE + kind` is a stable contract with shops.
KINDS: dict[str, tuple[int, str]] = {
    "bad-request": (400, "The request is malformed"),
    "unauthenticated": (401, "Missing or invalid API key"),
    "invalid-signature": (401, "Missing or invalid request signature"),
    "signature-expired": (401, "The request signature is too old or from the future"),
    "signature-replayed": (401, "This signature was used already"),
    "not-found": (404, "No such resource"),
    "method-not-allowed": (405, "Method not allowed"),
    "idempotency-key-in-use": (409, "A request with this Idempotency-Key is in progress"),
    "reference-reused": (409, "The shop's reference names another order"),
    "not-allowed-now": (409, "The order's state does not allow this"),
    "insufficient-points": (409, "The customer does not hold these loyalty points"),
    "body-too-large": (413, "The request body is too large"),
    "validation-error": (422, "The request is invalid"),
    "invalid-order": (422, "The order cannot be placed"),
    "unknown-sku": (422, "Unknown SKU"),
    "currency-mismatch": (422, "Currency mismatch"),
    "idempotency-key-reused": (422, "This Idempotency-Key was used with a different request"),
    "rate-limited": (429, "Too many requests"),
    "internal": (500, "Internal error"),
    "unavailable": (503, "Temporarily unavailable"),
}


class FieldError(BaseModel):
    field: str = Field(description="Dotted path of the field, e.g. lines.0.quantity.")
    message: str


class Problem(BaseModel):
    """An error, as RFC 9457 problem details."""

    type: str = Field(description="Stable URI naming the kind of error.",
                      examples=[PROBLEM_BASE + "validation-error"])
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = Field(None, description="Each invalid field, if any.")


class ApiError(Exception):
    """Answer the request with a problem of `kind` (a key of KINDS)."""

    def __init__(self, kind: str, detail: str, *, errors: list[dict[str, str]] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.kind, self.detail, self.errors, self.headers = kind, detail, errors, headers


def problem_body(kind: str, detail: str,
                 errors: list[dict[str, str]] | None = None) -> dict[str, object]:
    """The problem's JSON: over HTTP its response body, on Kafka an OrderRejected's `problem`."""
    status, title = KINDS[kind]
    body: dict[str, object] = {"type": PROBLEM_BASE + kind, "title": title, "status": status,
                               "detail": detail}
    if errors is not None:
        body["errors"] = errors
    return body


# What a 401 of each kind asks for (RFC 9110: a 401 names a challenge): an API key, or for a
# shop that signs its requests, the signature headers (services/orders/API.md).
CHALLENGES = {"unauthenticated": 'Bearer realm="alur"',
              "invalid-signature": signature_challenge("Alur"),
              "signature-expired": signature_challenge("Alur"),
              "signature-replayed": signature_challenge("Alur")}


def problem(kind: str, detail: str, *, errors: list[dict[str, str]] | None = None,
            headers: dict[str, str] | None = None) -> JSONResponse:
    if kind in CHALLENGES:
        headers = {"WWW-Authenticate": CHALLENGES[kind], **(headers or {})}
    return JSONResponse(problem_body(kind, detail, errors), status_code=KINDS[kind][0],
                        media_type=PROBLEM, headers=headers)


def responses(*kinds: str) -> dict[int | str, dict[str, object]]:
    """OpenAPI `responses` entries for the problems a route can answer."""
    out: dict[int | str, dict[str, object]] = {}
    for kind in kinds:
        status = KINDS[kind][0]
        entry = out.setdefault(status, {"model": Problem, "description": "",
                                        "content": {PROBLEM: {}}})
        entry["description"] = " / ".join(filter(None, [str(entry["description"]), kind]))
    return out


def publish(app: FastAPI) -> None:
    """The app's OpenAPI document with each problem response under `application/problem+json`,
    the media type it is sent as, with the Problem schema (FastAPI puts a response model under
    `application/json`), so that a client, and schemathesis, can check an error's body."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        doc = build()
        for operations in doc.get("paths", {}).values():
            for operation in operations.values():
                for response in operation.get("responses", {}).values():
                    content = response.get("content", {})
                    if PROBLEM in content:
                        content.pop("application/json", None)
                        content[PROBLEM] = {"schema": {"$ref": "#/components/schemas/Problem"}}
        return doc

    app.openapi = openapi  # type: ignore[method-assign]


def field_error(error: Any, skip: int = 1) -> dict[str, str]:
    """A pydantic error as a problem's field error; `skip` leading parts of its location
    (FastAPI's `body`) are left out of the dotted field."""
    field = ".".join(str(p) for p in error["loc"][skip:])
    message = str(error["msg"])
    if not field and ": " in message:  # a whole-body check that names the field it refused
        field, _, message = message.removeprefix("Value error, ").partition(": ")
    return {"field": field or ".".join(str(p) for p in error["loc"][:1]) or "body",
            "message": message}


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return problem(exc.kind, exc.detail, errors=exc.errors, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        unparsable = [e for e in exc.errors() if e["type"] == "json_invalid"]
        if unparsable:
            why = str((unparsable[0].get("ctx") or {}).get("error", "")) or "not valid JSON"
            return problem("validation-error", f"The body is not valid JSON: {why}.",
                           errors=[{"field": "body", "message": why}])
        errors = [field_error(e) for e in exc.errors()]
        return problem("validation-error", "See `errors` for each invalid field.", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {400: "bad-request", 404: "not-found", 405: "method-not-allowed",
                413: "body-too-large"}.get(exc.status_code, "internal")
        return problem(kind, str(exc.detail))

    async def unavailable(_: Request, exc: Exception) -> JSONResponse:
        log.error("orders API: dependency unavailable: %s", exc)
        return problem("unavailable", "Nothing was recorded; retry later.",
                       headers={"Retry-After": "5"})

    # The database gone (or a write raced by a service more often than we retry): the
    # request had no effect and may be sent again.
    for unreachable in (InfrastructureError, ConcurrencyConflict, *CONNECTION_ERRORS):
        app.add_exception_handler(unreachable, unavailable)

    async def unstorable(_: Request, exc: Exception) -> JSONResponse:
        log.warning("orders API: a value the database refuses: %s", type(exc).__name__)
        return problem("validation-error", "A value is out of range or holds characters that "
                       "cannot be stored.")

    # Anything the validation above let through but PostgreSQL refuses (a NUL in a path
    # parameter, a number past bigint): the transaction rolled back, so nothing was written.
    for refused in (asyncpg.DataError, UnicodeError):
        app.add_exception_handler(refused, unstorable)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("orders API: unexpected error")
        return problem("internal", "The request could not be handled.")
