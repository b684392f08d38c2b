"""JSON over HTTP to a partner the operator configured (the payment gateway, a carrier).

One aiohttp session per partner, opened on first use inside the running loop, with pooled
keep-alive connections. aiohttp rather than httpx: in profiles of the payments and shipping
services under load, httpx and the anyio layer below it took a fifth of their CPU (a lock, an
event and a module lookup per request). Shop-chosen URLs (webhooks) are not partners: they go
through the egress policy (alur.runtime.egress).

Every failure to get an answer (refused, reset, timed out, the server hung up) is a
retriable InfrastructureError naming the partner: the caller's idempotency key makes the
retry safe whether or not the first request took effect. Statuses are the caller's to judge.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp

from alur.runtime.errors import InfrastructureError

# Requests in flight to one partner at most; more wait for a connection.
CONNECTIONS = 100


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")

    def json(self) -> Any:  # noqa: ANN401 - the partner's document, checked by the caller
        """The body as JSON; ValueError when it is not."""
        return json.loads(self.body)


class PartnerClient:
    def __init__(self, what: str, base_url: str, timeout: float = 5.0) -> None:
        self._what = what  # how errors name the partner: "gateway", "carrier kilat"
        self._base = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def post(self, path: str, body: object | None = None,
                   headers: dict[str, str] | None = None) -> Answer:
        return await self._request("POST", path, body=body, headers=headers)

    async def get(self, path: str, params: dict[str, str] | None = None) -> Answer:
        return await self._request("GET", path, params=params)

    async def _request(self, method: str, path: str, *, body: object | None = None,
                       params: dict[str, str] | None = None,
                       headers: dict[str, str] | None = None) -> Answer:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, connector=aiohttp.TCPConnector(limit=CONNECTIONS))
        data, sent = None, dict(headers or {})
        if body is not None:
            data = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        try:
            async with self._session.request(method, self._base + path, data=data,
                                             params=params, headers=sent,
                                             allow_redirects=False) as response:
                return Answer(response.status, await response.read())
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise InfrastructureError(f"{self._what} unreachable: {exc!r}") from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
