"""Carrier reports recorded together (group commit): each report gets its own outcome, and
one that is refused leaves nothing behind while the others of its group are kept."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from alur.runtime.memory import InMemoryUnitOfWork, MemoryState
from services.shipping import domain
from services.shipping.bootstrap import DECIDER, SOURCE
from services.shipping.webhooks import CarrierReport, ReportRecorder, report_id
from tests.unit.builders import event


def shipped(order_id: str, report: str = "r1", status: str = "shipped") -> CarrierReport:
    return CarrierReport(id=f"{order_id}-{report}", carrier="simcourier",
                         tracking_number="SIM1234567890", reference=order_id, status=status,
                         occurred_at=datetime.now(UTC))


async def test_reports_that_arrive_together_are_recorded_in_one_transaction() -> None:
    state, opened = MemoryState(), []

    class Counted(InMemoryUnitOfWork):
        async def __aenter__(self) -> Counted:
            opened.append(1)
            await super().__aenter__()
            return self

    for order_id in ("o1", "o2", "o3"):
        async with InMemoryUnitOfWork(state) as uow:
            await uow.append(order_id, 0, [event("OrderPlaced", order_id),
                                           event("OrderReadyToShip", order_id),
                                           event("ShipmentCreated", order_id)],
                             ["observed", "observed", "own"])
    recorder = ReportRecorder(lambda: Counted(state), DECIDER, source=SOURCE)
    delivered_first = shipped("o3", "r9", status="picked_up")  # not a step from "created"
    outcomes = await asyncio.gather(
        recorder.record(shipped("o1")), recorder.record(shipped("o2")),
        recorder.record(shipped("o1")), recorder.record(delivered_first),
        recorder.record(shipped("nobody")), return_exceptions=True)

    assert outcomes[:3] == [True, True, False]  # the second o1 report is a duplicate
    assert isinstance(outcomes[3], domain.UpdateRefused)
    assert isinstance(outcomes[4], LookupError)
    assert len(opened) == 1  # one transaction for the five
    assert [s.event.type for s in state.streams["o1"]][-1] == "Shipped"
    assert [s.event.type for s in state.streams["o3"]][-1] == "ShipmentCreated"
    assert report_id(shipped("o1")) in state.inbox
    assert report_id(delivered_first) not in state.inbox  # a corrected report may come
