"""An HTTP app served inside a service's faust worker (the orders API, payment callbacks,
carrier webhooks), and how such an app reads a signed request from a partner."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable, Iterator, Mapping
from http import HTTPStatus
from typing import Any, TypeVar

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp

from alur.runtime import strict_json
from alur.runtime.signing import BadSignature, verify

M = TypeVar("M", bound=BaseModel)


PROBLEM = "application/problem+json"


def problem(status: int, detail: str, *,
            headers: Mapping[str, str] | None = None) -> JSONResponse:
    """An error of a partner-facing endpoint (gateway callbacks, carrier webhooks, the
    inventory admin API) as RFC 9457 problem details. Its `type` is `about:blank`: the status
    code says it all, and `title` is the status's phrase."""
    body = {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status,
            "detail": detail}
    return JSONResponse(body, status_code=status, media_type=PROBLEM,
                        headers=dict(headers) if headers else None)


def signature_challenge(prefix: str) -> str:
    """The WWW-Authenticate challenge of a request refused for its signature: the scheme the
    partner signs with and the headers it goes in (RFC 9110 asks a 401 to name one)."""
    return (f'{prefix}-Signature realm="alur", '
            f'headers="{prefix}-Timestamp {prefix}-Signature"')


class Refused(Exception):
    """A partner's request that is answered with `status` before it is looked at; a 401 names
    its `challenge`."""

    def __init__(self, status: int, detail: str, challenge: str | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.challenge = status, detail, challenge

    def response(self) -> JSONResponse:
        return problem(self.status, self.detail, headers={"WWW-Authenticate": self.challenge}
                       if self.challenge else None)


def install_problems(app: FastAPI) -> None:
    """Every error of a partner-facing app as problem details: its own, a route or method that
    does not exist, and a request FastAPI refused before the route ran."""

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        where = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                          for e in exc.errors()[:5])
        return problem(422, where)


async def read_signed(request: Request, model: type[M], *, secret: str, prefix: str,
                      tolerance: float, what: str) -> M:
    """The body as `model`, once `<prefix>-Timestamp` / `<prefix>-Signature` prove it was
    signed with `secret`; Refused 401 (not signed so) or 422 (not `what`)."""
    raw = await request.body()
    try:
        verify(secret, request.headers.get(f"{prefix}-Timestamp"),
               request.headers.get(f"{prefix}-Signature"), "POST", request.url.path, raw,
               tolerance)
    except BadSignature as exc:
        raise Refused(401, str(exc), signature_challenge(prefix)) from exc
    try:
        strict_json.loads(raw)  # duplicate keys, depth, number range
        return model.model_validate_json(raw, strict=True)
    except json.JSONDecodeError as exc:
        raise Refused(422, f"not {what}: {exc.msg}") from exc
    except ValidationError as exc:
        raise Refused(422, f"not {what}: {exc.error_count()} invalid field(s)") from exc


# How long a server keeps an idle keep-alive connection open. It must outlast the idle expiry
# of every client that reuses connections (httpx: 5 s; a load balancer in front: commonly 60 s).
# uvicorn's own default is 5 s, the same as httpx's: a client that picks a connection just as
# the server drops it sends its request into a closing socket and gets a ReadError, not an
# answer. Whoever lets go of an idle connection first must be the client.
KEEP_ALIVE_SECONDS = 65


def server_config(app: ASGIApp, host: str, port: int, log_level: str,
                  **options: Any) -> uvicorn.Config:
    """How every Alur HTTP server is run: no access log (metrics count requests) and idle
    connections kept for longer than any client keeps them."""
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                          timeout_keep_alive=KEEP_ALIVE_SECONDS, **options)


class EmbeddedServer(uvicorn.Server):
    """uvicorn inside the faust worker: the worker owns the signals, not uvicorn."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def embedded_server(app: ASGIApp, host: str, port: int,
                    log_level: str) -> Callable[[], Awaitable[None]]:
    """A background job for ServiceParts that serves `app` until the worker stops."""
    server = EmbeddedServer(server_config(app, host, port, log_level, lifespan="off"))

    async def serve() -> None:
        try:
            await server.serve()
        finally:
            server.should_exit = True

    return serve
