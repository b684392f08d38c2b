"""The carriers' webhook endpoint: `POST /v1/carriers/{carrier}/events`, one parcel step each.

Each carrier signs its reports with its own secret (HMAC-SHA256 over timestamp, method, path
and body; `Carrier-Timestamp` / `Carrier-Signature`, see alur.runtime.signing). A report's id
goes in the shipping inbox, so a report sent again changes nothing. Answers: 200 recorded (or
already), 401 bad signature, 404 unknown carrier, order or parcel, 409 the step does not follow
from the parcel's status, 422 not a report, 503 try again.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, Field

from alur.runtime import metrics
from alur.runtime.aggregate import Decider, act
from alur.runtime.db import CONNECTION_ERRORS
from alur.runtime.errors import ConcurrencyConflict, InfrastructureError
from alur.runtime.http import Refused, problem, read_signed
from alur.runtime.ports import UnitOfWork
from services.shipping import domain

EVENTS_PATH = "/v1/carriers/{carrier}/events"
# Report ids live in the inbox next to Kafka event ids; a namespace keeps them apart.
REPORT_NAMESPACE = uuid.UUID("0d4f3b8e-5c1a-4f0e-9a57-2f6b1c9e8d21")
_reports = metrics.Children(metrics.CARRIER_REPORTS)


class CarrierReport(BaseModel):
    id: str = Field(min_length=1, description="The carrier's id for this report.")
    carrier: str
    tracking_number: str = Field(min_length=1)
    reference: str = Field(min_length=1, description="The order id.")
    status: Literal["shipped", "in_transit", "out_for_delivery", "delivery_failed",
                    "delivered", "ready_for_pickup", "picked_up", "returned_to_sender"]
    occurred_at: AwareDatetime
    reason: str | None = None
    next_attempt_at: AwareDatetime | None = None
    store_id: str | None = None

    def update(self) -> domain.ParcelUpdate:
        return domain.ParcelUpdate(self.carrier, self.tracking_number, self.status,
                                   self.occurred_at, self.reason, self.next_attempt_at)


async def record_report(uow: UnitOfWork, decider: Decider[domain.ShipmentState],
                        report: CarrierReport, *, source: str) -> bool:
    """Record what a report means for its order; False if this report was recorded before.
    Raises LookupError (no such order), UnknownParcel or UpdateRefused."""
    if not await uow.remember(uuid.uuid5(REPORT_NAMESPACE, f"{report.carrier}:{report.id}")):
        return False
    await act(uow, decider, report.reference,
              lambda state: domain.carrier_update(state, report.update()), source=source)
    return True


def create_app(new_uow: Callable[[], UnitOfWork], decider: Decider[domain.ShipmentState], *,
               source: str, secrets: Mapping[str, str], tolerance: float) -> FastAPI:
    app = FastAPI(title="Alur shipping: carrier webhooks")

    @app.post(EVENTS_PATH)
    async def carrier_event(carrier: str, request: Request) -> JSONResponse:
        """A parcel's step, reported by its carrier."""
        secret = secrets.get(carrier)
        if secret is None:
            return problem(404, f"no carrier {carrier}")
        outcome, answer = await _answer(carrier, secret, request)
        _reports(carrier, outcome).inc()
        return answer

    async def _answer(carrier: str, secret: str, request: Request
                      ) -> tuple[str, JSONResponse]:
        try:
            report = await read_signed(request, CarrierReport, secret=secret, prefix="Carrier",
                                       tolerance=tolerance, what="a carrier report")
        except Refused as exc:
            return ("bad_signature" if exc.status == 401 else "invalid"), exc.response()
        if report.carrier != carrier:
            return "invalid", problem(422, f"a report from {report.carrier} sent to {carrier}'s "
                                           "endpoint")
        try:
            async with new_uow() as uow:
                recorded = await record_report(uow, decider, report, source=source)
        except domain.UpdateRefused as exc:
            return "out_of_sequence", problem(409, str(exc))
        except LookupError as exc:  # no such order, or no such parcel on it
            return "unknown", problem(404, str(exc) or f"no order {report.reference}")
        except (ConcurrencyConflict, InfrastructureError, *CONNECTION_ERRORS) as exc:
            return "retry", problem(503, f"try again: {exc}")
        if recorded:
            return "recorded", JSONResponse({"status": "recorded"})
        return "duplicate", JSONResponse({"status": "already recorded"})

    return app
