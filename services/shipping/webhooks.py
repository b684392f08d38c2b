"""The carriers' webhook endpoint: `POST /v1/carriers/{carrier}/events`, one parcel step each.

Each carrier signs its reports with its own secret (HMAC-SHA256 over timestamp, method, path
and body; `Carrier-Timestamp` / `Carrier-Signature`, see alur.runtime.signing). A report's
id goes in the shipping inbox, so a report sent again changes nothing. Answers: 200 recorded
(or already), 401 bad signature (naming the signature scheme in `WWW-Authenticate`), 404
unknown carrier, order or parcel, 409 the step does not follow from the parcel's status, 422
not a report, 503 try again; each error as RFC 9457 problem details.

Reports are recorded with group commit (`ReportRecorder`): those that arrive while a
transaction is being written wait for it to end and then go into the next one together, so
under load a transaction records many reports (one inbox statement, one lock statement, one
read and one COPY each for events, audit and outbox), and alone a report is recorded at once.
Each report is answered with its own outcome.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, Field

from alur.runtime import metrics
from alur.runtime.aggregate import Decider, act
from alur.runtime.db import CONNECTION_ERRORS
from alur.runtime.errors import ConcurrencyConflict, InfrastructureError
from alur.runtime.group import GroupCommit
from alur.runtime.http import Refused, install_problems, problem, read_signed
from alur.runtime.ports import UnitOfWork
from alur.runtime.processing import ends_transaction
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
    [outcome] = await record_reports(uow, decider, [report], source=source)
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def _update(report: CarrierReport) -> Callable[[domain.ShipmentState], Sequence[object]]:
    return lambda state: domain.carrier_update(state, report.update())


def report_id(report: CarrierReport) -> uuid.UUID:
    return uuid.uuid5(REPORT_NAMESPACE, f"{report.carrier}:{report.id}")


async def record_reports(uow: UnitOfWork, decider: Decider[domain.ShipmentState],
                         reports: Sequence[CarrierReport], *,
                         source: str) -> list[bool | Exception]:
    """`record_report` for many reports in one unit of work: for each, True (recorded), False
    (recorded before) or the error that refused it (LookupError, UnknownParcel,
    UpdateRefused, StreamBusy); a refused report leaves nothing behind, the others are kept.
    Raises only what ends the transaction."""
    new = await uow.remember_all([report_id(r) for r in reports])
    await uow.preload([r.reference for r in reports if report_id(r) in new])
    outcomes: list[bool | Exception] = []
    for report in reports:
        rid = report_id(report)
        if rid not in new:
            outcomes.append(False)
            continue
        new.discard(rid)  # a second copy in the same group is a duplicate
        try:
            async with uow.savepoint():
                await act(uow, decider, report.reference, _update(report), source=source)
        except Exception as exc:
            if ends_transaction(exc):
                raise
            await uow.forget(rid)  # refused: a corrected report with this id may come
            outcomes.append(exc)
            continue
        outcomes.append(True)
    return outcomes


class ReportRecorder:
    """Group commit of carrier reports (see the module's docstring)."""

    def __init__(self, new_uow: Callable[[], UnitOfWork],
                 decider: Decider[domain.ShipmentState], *, source: str) -> None:
        self._new_uow, self._decider, self._source = new_uow, decider, source
        # A transaction that fails for another reason than an outage is tried report by
        # report, so that one the database refuses (or a conflict with another writer)
        # fails only itself.
        self._group = GroupCommit(self._commit, alone=lambda exc: not isinstance(
            exc, (InfrastructureError, *CONNECTION_ERRORS)))

    async def record(self, report: CarrierReport) -> bool:
        """True once recorded, False if recorded before; raises what refused it."""
        return await self._group.submit(report)

    async def _commit(self, reports: list[CarrierReport]) -> list[bool | Exception]:
        async with self._new_uow() as uow:
            return await record_reports(uow, self._decider, reports, source=self._source)


def create_app(new_uow: Callable[[], UnitOfWork], decider: Decider[domain.ShipmentState], *,
               source: str, secrets: Mapping[str, str], tolerance: float) -> FastAPI:
    app = FastAPI(title="Alur shipping: carrier webhooks")
    install_problems(app)
    recorder = ReportRecorder(new_uow, decider, source=source)

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
            recorded = await recorder.record(report)
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
