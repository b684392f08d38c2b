"""The payment gateway port and its HTTP adapter (talks to the simulator like to a real one)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import httpx

from alur.runtime.errors import InfrastructureError
from schemas import Money


@dataclass(frozen=True)
class ChargeResult:
    succeeded: bool
    charge_id: str
    reason: str | None = None


class Gateway(Protocol):
    async def charge(self, idempotency_key: str, reference: str, amount: Money,
                     token: str | None) -> ChargeResult:
        """Capture `amount`; the same key returns the first answer and never charges twice."""


class HttpGateway:
    def __init__(self, base_url: str, timeout: float = 5.0) -> None:
        self._client = httpx.AsyncClient(base_url=base_url, timeout=timeout)

    async def charge(self, idempotency_key: str, reference: str, amount: Money,
                     token: str | None) -> ChargeResult:
        try:
            response = await self._client.post(
                "/v1/charges", headers={"Idempotency-Key": idempotency_key},
                json={"reference": reference, "amount": amount.amount,
                      "currency": amount.currency, "token": token})
        except httpx.HTTPError as exc:
            # A timeout may or may not have charged: retrying with the same key is safe.
            raise InfrastructureError(f"gateway unreachable: {exc!r}") from exc
        if response.status_code >= 500 or response.status_code == 409:
            raise InfrastructureError(f"gateway answered {response.status_code}")
        if response.status_code >= 400:
            raise InfrastructureError(
                f"gateway refused the request: {response.status_code} {response.text}",
                retriable=False)
        body = response.json()
        return ChargeResult(body["status"] == "succeeded", body["id"], body.get("failure_reason"))

    async def close(self) -> None:
        await self._client.aclose()


class InMemoryGateway:
    """The fake: same outcomes by token and same idempotency rule as the simulator."""

    DECLINES = {"tok_decline": "card_declined", "tok_insufficient_funds": "insufficient_funds"}

    def __init__(self) -> None:
        self.charges: dict[str, tuple[tuple[str, int, str, str | None], ChargeResult]] = {}

    async def charge(self, idempotency_key: str, reference: str, amount: Money,
                     token: str | None) -> ChargeResult:
        request = (reference, amount.amount, amount.currency, token)
        if idempotency_key in self.charges:
            first, result = self.charges[idempotency_key]
            if first != request:
                raise InfrastructureError("idempotency key reused with another request",
                                          retriable=False)
            return result
        reason = self.DECLINES.get(token or "")
        result = ChargeResult(reason is None, f"ch_fake_{len(self.charges) + 1}", reason)
        self.charges[idempotency_key] = (request, result)
        return result

    def charged(self, reference: str) -> int:
        return sum(1 for (ref, *_), r in self.charges.values() if ref == reference and r.succeeded)
