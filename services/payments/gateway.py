"""The payment gateway port and its HTTP adapter (talks to the simulator like to a real one)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from alur.runtime.errors import InfrastructureError
from alur.runtime.partner import PartnerClient
from schemas import Money
from services.payments import qris

# What a virtual account number starts with, per bank: the simulator's made-up company
# codes (real ones are assigned by each bank to each merchant).
VA_PREFIXES = {"bca": "39001", "mandiri": "89002", "bni": "98803", "bri": "26204"}


@dataclass(frozen=True)
class ChargeResult:
    succeeded: bool
    charge_id: str
    reason: str | None = None


@dataclass(frozen=True)
class PaymentRequest:
    """A request the customer pays in an app: a dynamic QRIS code, or an e-wallet push."""

    request_id: str
    qr_string: str | None = None  # qris
    wallet: str | None = None  # ewallet: the app it was pushed to


@dataclass(frozen=True)
class Transfer:
    """Money paid into a virtual account."""

    transfer_id: str
    amount: Money


class Gateway(Protocol):
    async def charge(self, idempotency_key: str, reference: str, amount: Money,
                     token: str | None) -> ChargeResult:
        """Capture `amount`; the same key returns the first answer and never charges twice."""

    async def open_transfer(self, idempotency_key: str, reference: str, amount: Money,
                            expires_at: datetime, callback_url: str, bank: str = "bca") -> str:
        """Open a virtual account at `bank` for a bank transfer of `amount`; returns its
        number. The gateway reports the transfer to `callback_url`, signed. Same key, same
        account."""

    async def request_payment(self, idempotency_key: str, reference: str, amount: Money,
                              method: str, expires_at: datetime, callback_url: str,
                              token: str | None = None,
                              wallet: str | None = None) -> PaymentRequest:
        """Ask for a payment the customer makes in an app (`qris`: a dynamic QR code for
        `amount`; `ewallet`: a push to the wallet linked to `token`). The gateway reports the
        payment to `callback_url`, signed. Same key, same request."""

    async def paid(self, request_id: str) -> list[Transfer]:
        """What was paid on the request so far (at most one payment, for a dynamic QR)."""

    async def withdraw(self, request_id: str) -> bool:
        """Withdraw a payment request nobody has paid: the customer can no longer pay it
        (its QRIS code is refused, its push is gone from the app). True once withdrawn, again
        True when asked again; False when it was paid already (that payment is reported as
        any other)."""

    async def refund(self, idempotency_key: str, reference: str, amount: Money,
                     payment_reference: str) -> str:
        """Pay `amount` of a capture back; returns the refund's id. Same key, one refund."""

    async def transfers(self, account_number: str) -> list[Transfer]:
        """What was paid into the virtual account so far, oldest first."""

    async def captures(self, reference: str) -> list[Transfer]:
        """The succeeded charges of an order (charge id and amount)."""


class HttpGateway:
    def __init__(self, base_url: str, timeout: float = 5.0) -> None:
        self._client = PartnerClient("gateway", base_url, timeout)

    async def charge(self, idempotency_key: str, reference: str, amount: Money,
                     token: str | None) -> ChargeResult:
        body = await self._post("/v1/charges", idempotency_key, {
            "reference": reference, "amount": amount.amount, "currency": amount.currency,
            "token": token})
        return ChargeResult(body["status"] == "succeeded", body["id"], body.get("failure_reason"))

    async def open_transfer(self, idempotency_key: str, reference: str, amount: Money,
                            expires_at: datetime, callback_url: str, bank: str = "bca") -> str:
        body = await self._post("/v1/virtual-accounts", idempotency_key, {
            "reference": reference, "amount": amount.amount, "currency": amount.currency,
            "expires_at": expires_at.isoformat(), "callback_url": callback_url, "bank": bank})
        return str(body["account_number"])

    async def request_payment(self, idempotency_key: str, reference: str, amount: Money,
                              method: str, expires_at: datetime, callback_url: str,
                              token: str | None = None,
                              wallet: str | None = None) -> PaymentRequest:
        body = await self._post("/v1/payment-requests", idempotency_key, {
            "reference": reference, "amount": amount.amount, "currency": amount.currency,
            "method": method, "expires_at": expires_at.isoformat(),
            "callback_url": callback_url, "token": token, "wallet": wallet})
        try:
            return PaymentRequest(str(body["id"]), body.get("qr_string"), body.get("wallet"))
        except (KeyError, TypeError) as exc:
            raise InfrastructureError(f"gateway sent an unreadable payment request: {exc}",
                                      retriable=False) from exc

    async def paid(self, request_id: str) -> list[Transfer]:
        return await self._money_in(f"/v1/payment-requests/{request_id}/payments", {})

    async def withdraw(self, request_id: str) -> bool:
        response = await self._client.post(f"/v1/payment-requests/{request_id}/withdraw", {},
                                           {})
        if response.status == 409:
            return False  # paid already
        if response.status == 404:
            raise InfrastructureError(f"gateway knows no payment request {request_id}",
                                      retriable=False)
        if response.status != 200:
            raise InfrastructureError(f"gateway answered {response.status}")
        return True

    async def refund(self, idempotency_key: str, reference: str, amount: Money,
                     payment_reference: str) -> str:
        body = await self._post("/v1/refunds", idempotency_key, {
            "reference": reference, "amount": amount.amount, "currency": amount.currency,
            "payment_reference": payment_reference})
        return str(body["id"])

    async def transfers(self, account_number: str) -> list[Transfer]:
        return await self._money_in(f"/v1/virtual-accounts/{account_number}/transfers", {})

    async def captures(self, reference: str) -> list[Transfer]:
        return await self._money_in("/v1/charges", {"reference": reference},
                                    lambda item: item.get("status") == "succeeded")

    async def _money_in(self, path: str, params: dict[str, str],
                        keep: Any = lambda _: True) -> list[Transfer]:  # noqa: ANN401
        """A listing of money the gateway took in (id, amount, currency); [] for an unknown
        account."""
        response = await self._client.get(path, params=params)
        if response.status == 404:
            return []  # no such account: nothing can have been paid into it
        if response.status != 200:
            raise InfrastructureError(f"gateway answered {response.status}")
        try:
            return [Transfer(str(t["id"]), Money(amount=t["amount"], currency=t["currency"]))
                    for t in response.json() if keep(t)]
        except (ValueError, KeyError, TypeError) as exc:
            raise InfrastructureError(f"gateway sent an unreadable listing: {exc}",
                                      retriable=False) from exc

    async def _post(self, path: str, idempotency_key: str, json: dict[str, Any]) -> Any:
        # A timeout may or may not have taken effect: retrying with the same key is safe.
        response = await self._client.post(path, json, {"Idempotency-Key": idempotency_key})
        if response.status >= 500 or response.status == 409:
            raise InfrastructureError(f"gateway answered {response.status}")
        if response.status >= 400:
            raise InfrastructureError(
                f"gateway refused the request: {response.status} {response.text}",
                retriable=False)
        return response.json()

    async def close(self) -> None:
        await self._client.close()


class InMemoryGateway:
    """The fake: same outcomes by token and same idempotency rule as the simulator."""

    DECLINES = {"tok_decline": "card_declined", "tok_insufficient_funds": "insufficient_funds"}

    def __init__(self) -> None:
        self.charges: dict[str, tuple[tuple[str, int, str, str | None], ChargeResult]] = {}
        self.accounts: dict[str, tuple[tuple[str, int, str, datetime, str], str]] = {}
        self.refunds: dict[str, tuple[tuple[str, int, str, str], str]] = {}
        self.requests: dict[str, tuple[tuple[Any, ...], PaymentRequest]] = {}
        self.withdrawn: set[str] = set()
        self.declined: set[str] = set()
        self.paid_in: dict[str, list[Transfer]] = {}  # account or request -> money into it

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

    async def open_transfer(self, idempotency_key: str, reference: str, amount: Money,
                            expires_at: datetime, callback_url: str, bank: str = "bca") -> str:
        return str(self._once(self.accounts, idempotency_key,
                          (reference, amount.amount, amount.currency, expires_at, callback_url,
                           bank), f"{VA_PREFIXES[bank]}{len(self.accounts) + 1:011d}"))

    async def request_payment(self, idempotency_key: str, reference: str, amount: Money,
                              method: str, expires_at: datetime, callback_url: str,
                              token: str | None = None,
                              wallet: str | None = None) -> PaymentRequest:
        if method == "qris" and amount.currency != "IDR":
            raise InfrastructureError("QRIS pays rupiah only", retriable=False)
        if method == "ewallet" and not token:
            raise InfrastructureError("an e-wallet push needs a linked account", retriable=False)
        request_id = f"pr_fake_{len(self.requests) + 1}"
        made = PaymentRequest(request_id, qris.payload(
            merchant_id="ID1020000000001", merchant_name="ALUR", city="JAKARTA",
            postal_code="10110", amount=amount.amount, bill_number=request_id)
            if method == "qris" else None, (wallet or "gopay") if method == "ewallet" else None)
        first: PaymentRequest = self._once(
            self.requests, idempotency_key, (reference, amount.amount, amount.currency, method,
                                             expires_at, callback_url, token, wallet), made)
        return first

    async def paid(self, request_id: str) -> list[Transfer]:
        return await self.transfers(request_id)  # one ledger of money in, as the simulator's

    async def withdraw(self, request_id: str) -> bool:
        if not any(made.request_id == request_id for _, made in self.requests.values()):
            raise InfrastructureError(f"no payment request {request_id}", retriable=False)
        if self.paid_in.get(request_id):
            return False
        self.withdrawn.add(request_id)
        return True

    async def refund(self, idempotency_key: str, reference: str, amount: Money,
                     payment_reference: str) -> str:
        return str(self._once(self.refunds, idempotency_key,
                              (reference, amount.amount, amount.currency, payment_reference),
                              f"re_fake_{len(self.refunds) + 1}"))

    async def transfers(self, account_number: str) -> list[Transfer]:
        return list(self.paid_in.get(account_number, []))

    async def captures(self, reference: str) -> list[Transfer]:
        return [Transfer(result.charge_id, Money(amount=amount, currency=currency))
                for (ref, amount, currency, _), result in self.charges.values()
                if ref == reference and result.succeeded]

    def decline(self, request_id: str) -> None:
        """Simulation: the customer declines the e-wallet push (no callback is made)."""
        if self.paid_in.get(request_id) or request_id in self.withdrawn:
            raise LookupError(f"payment request {request_id} can no longer be declined")
        self.declined.add(request_id)

    def pay_into(self, account_number: str, amount: Money) -> str:
        """Simulation: the customer's bank pays into the account (no callback is made)."""
        if account_number in self.withdrawn | self.declined:
            raise LookupError(f"payment request {account_number} was withdrawn or declined")
        transfer = Transfer(f"tr_fake_{sum(map(len, self.paid_in.values())) + 1}", amount)
        self.paid_in.setdefault(account_number, []).append(transfer)
        return transfer.transfer_id

    @staticmethod
    def _once(done: dict[str, Any], key: str, request: tuple[Any, ...], new: Any) -> Any:  # noqa: ANN401
        if key in done:
            first, made = done[key]
            if first != request:
                raise InfrastructureError("idempotency key reused with another request",
                                          retriable=False)
            return made
        done[key] = (request, new)
        return new

    def refunded(self, reference: str) -> int:
        return sum(1 for (ref, *_), _id in self.refunds.values() if ref == reference)

    def charged(self, reference: str) -> int:
        return sum(1 for (ref, *_), r in self.charges.values() if ref == reference and r.succeeded)
