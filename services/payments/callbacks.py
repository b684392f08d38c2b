"""The gateway's callback endpoint: a bank transfer arrived in an order's virtual account
(`transfer.received`), the customer paid an order's QRIS code or approved its e-wallet push
(`payment.completed`), or declined the push in the app (`payment.declined`).

The gateway signs each callback (HMAC-SHA256 over timestamp, method, path and body with the
shared secret); a callback's id goes in the payments inbox, so a repeated report changes
nothing. Answers: 200 recorded (or already), 401 bad signature (naming the signature scheme
in `WWW-Authenticate`), 404 unknown order, 422 the transfer does not fit the order, 503 try
again; each error as RFC 9457 problem details.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, model_validator

from alur.runtime.aggregate import Outside, Wiring, act_or_claim, call_outside
from alur.runtime.db import CONNECTION_ERRORS
from alur.runtime.errors import ConcurrencyConflict, InfrastructureError
from alur.runtime.http import Refused, install_problems, problem, read_signed
from alur.runtime.ports import UnitOfWork
from schemas import Money
from services.payments import domain

CALLBACK_PATH = "/v1/gateway/callbacks"
# Callback ids live in the inbox next to Kafka event ids; a namespace keeps them apart.
CALLBACK_NAMESPACE = uuid.UUID("5b0f7c5e-8a8c-4a43-9d0e-6f3f3b2b7a11")


class TransferReport(BaseModel):
    type: Literal["transfer.received", "payment.completed", "payment.declined"]
    id: str = Field(min_length=1, description="The gateway's id for the payment.")
    reference: str = Field(min_length=1, description="The order id.")
    account_number: str | None = Field(None, min_length=1,
                                       description="transfer.received: the virtual account.")
    request_id: str | None = Field(None, min_length=1, description="payment.completed, "
                                   "payment.declined: the payment request.")
    amount: int = Field(gt=0, strict=True)
    currency: str = Field(pattern=r"^[A-Z]{3}$")

    @model_validator(mode="after")
    def _names_where(self) -> TransferReport:
        wanted = "account_number" if self.type == "transfer.received" else "request_id"
        if getattr(self, wanted) is None:
            raise ValueError(f"a {self.type} report names its {wanted}")
        return self

    @property
    def paid_into(self) -> str:
        return self.account_number if self.type == "transfer.received" \
            else self.request_id  # type: ignore[return-value]


def create_app(new_uow: Callable[[], UnitOfWork], wiring: Wiring[domain.PaymentState], *,
               secret: str, tolerance: float) -> FastAPI:
    decider, perform, source = wiring.decider, wiring.perform, wiring.source
    app = FastAPI(title="Alur payments: gateway callbacks")
    install_problems(app)

    @app.post(CALLBACK_PATH)
    async def gateway_callback(request: Request) -> JSONResponse:
        """A payment into an order's virtual account or on its payment request, reported by
        the gateway."""
        try:
            report = await read_signed(request, TransferReport, secret=secret, prefix="Gateway",
                                       tolerance=tolerance, what="a transfer report")
        except Refused as exc:
            return exc.response()
        amount = Money(amount=report.amount, currency=report.currency)
        callback_id = uuid.uuid5(CALLBACK_NAMESPACE, report.id)
        try:
            async with new_uow() as uow:
                if not await uow.unseen([callback_id]):
                    return JSONResponse({"status": "already recorded"})
                done = await act_or_claim(
                    uow, decider, report.reference, lambda state: domain.request_declined(
                        state, report.reference, report.paid_into)
                    if report.type == "payment.declined" else domain.transfer_received(
                        state, report.reference, amount, report.paid_into, report.id),
                    source=source, remember=callback_id)
            # A transfer to send back is sent with no transaction open, then recorded.
            if isinstance(done, Outside) and await call_outside(
                    new_uow, decider, done, source=source, perform=perform) is None:
                return JSONResponse({"status": "already recorded"})
        except LookupError:
            return problem(404, f"no order {report.reference}")
        except domain.TransferMismatch as exc:
            return problem(422, str(exc))
        except (ConcurrencyConflict, InfrastructureError, *CONNECTION_ERRORS) as exc:
            return problem(503, f"try again: {exc}")
        return JSONResponse({"status": "recorded"})

    return app
