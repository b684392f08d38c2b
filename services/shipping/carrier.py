"""The carrier port, its HTTP adapter, and the in-memory fake.

A carrier books a parcel (home delivery, to a store, or a return) and returns a shipment id
and a tracking number; the same idempotency key always returns the same booking. The carrier
moves the parcel itself and tells the shipping service about each step on its signed webhook
(services/shipping/webhooks.py). A parcel can be stopped until it arrives: cancelled while
not yet collected, recalled (turned back to the warehouse) once on its way.

Which carrier takes which parcel is `carrier_for`: click-and-collect goes to `nusapost` (whose
counters are in the stores), home deliveries by postal region, and a return goes back with the
carrier that delivered the order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from alur.runtime.errors import InfrastructureError
from alur.runtime.partner import Answer, PartnerClient
from schemas import Address
from services.shipping.parcels import (
    RECALLED,
    Stopped,
    next_status,
    next_step_in,
    report,
    stop,
    tracking_for,
)


def carrier_for(address: Address | None, store_id: str | None) -> str:
    """`nusapost` for click-and-collect and postal codes starting 5-9; `kilat` otherwise."""
    if store_id is not None or address is None:
        return "nusapost"
    return "nusapost" if address.postal_code[:1] in "56789" else "kilat"


@dataclass(frozen=True)
class Booking:
    carrier: str
    shipment_id: str
    tracking_number: str


class Carrier(Protocol):
    name: str

    async def book(self, idempotency_key: str, reference: str, service: str,
                   address: Address | None, store_id: str | None) -> Booking:
        """Book a parcel: `service` is home, store or return. Same key, same booking."""

    async def cancel(self, tracking_number: str) -> Stopped:
        """Stop a parcel: `cancelled` when the courier had not collected it, `recalled` when
        it was on its way and now comes back (`returned_to_sender` is reported once it is),
        `arrived` when it is too late. Asking again answers the same."""


def _request(reference: str, service: str, address: Address | None,
             store_id: str | None) -> dict[str, Any]:
    return {"reference": reference, "service": service, "store_id": store_id,
            "address": None if address is None else {
                "line1": address.line1, "city": address.city,
                "postal_code": address.postal_code, "country": address.country}}


class HttpCarrier:
    def __init__(self, name: str, base_url: str, callback_url: str,
                 timeout: float = 5.0) -> None:
        self.name = name
        self.callback_url = callback_url
        self._client = PartnerClient(f"carrier {name}", base_url, timeout)

    async def book(self, idempotency_key: str, reference: str, service: str,
                   address: Address | None, store_id: str | None) -> Booking:
        body = _request(reference, service, address, store_id)
        answer = await self._call("/v1/shipments", {**body, "callback_url": self.callback_url},
                                  {"Idempotency-Key": idempotency_key})
        payload = answer.json()
        return Booking(self.name, payload["shipment_id"], payload["tracking_number"])

    async def cancel(self, tracking_number: str) -> Stopped:
        answer = await self._call(f"/v1/shipments/{tracking_number}/cancel", None, {},
                                  allow=(409,))
        if answer.status == 409:
            return "arrived"
        return "cancelled" if answer.json()["status"] == "cancelled" else "recalled"

    async def _call(self, path: str, json: dict[str, Any] | None, headers: dict[str, str],
                    allow: tuple[int, ...] = ()) -> Answer:
        # A timeout may or may not have taken effect: the same key books the same parcel.
        response = await self._client.post(path, json, headers)
        if response.status in allow:
            return response
        if response.status >= 500:
            raise InfrastructureError(f"carrier {self.name} answered {response.status}")
        if response.status >= 400:
            raise InfrastructureError(
                f"carrier {self.name} refused the request: {response.status} "
                f"{response.text}", retriable=False)
        return response

    async def close(self) -> None:
        await self._client.close()


@dataclass
class FakeParcel:
    request: dict[str, Any]
    booking: Booking
    status: str = "created"
    failed_attempts: int = 0
    updates: int = 0
    next_step_at: datetime | None = None

    @property
    def postal_code(self) -> str | None:
        address = self.request["address"]
        return address["postal_code"] if address else None


@dataclass
class InMemoryCarrier:
    """The fake: same bookings, idempotency rule, cancel rule and parcel steps as the
    simulator (alur.simulators.carrier). `due(now)` gives the reports the simulator would send
    by then; `acknowledged(update)` moves the parcel on, as a 2xx answer does."""

    name: str
    pickup_after: float = 2.0
    step_after: float = 0.5
    parcels: dict[str, FakeParcel] = field(default_factory=dict)  # by idempotency key
    clock: Callable[[], datetime] | None = None  # the booking time of a parcel

    async def book(self, idempotency_key: str, reference: str, service: str,
                   address: Address | None, store_id: str | None) -> Booking:
        request = _request(reference, service, address, store_id)
        if (known := self.parcels.get(idempotency_key)) is not None:
            if known.request != request:
                raise InfrastructureError(
                    f"carrier {self.name} refused the request: 422 idempotency key reused "
                    "with another request", retriable=False)
            return known.booking
        shipment_id, tracking = tracking_for(self.name, idempotency_key)
        booking = Booking(self.name, shipment_id, tracking)
        booked_at = self.clock() if self.clock else datetime.now().astimezone()
        self.parcels[idempotency_key] = FakeParcel(
            request, booking, next_step_at=booked_at + timedelta(seconds=self.pickup_after))
        return booking

    async def cancel(self, tracking_number: str) -> Stopped:
        parcel = self._by_tracking(tracking_number)
        stopped, moved_to = stop(parcel.request["service"], parcel.status)
        if moved_to == "cancelled":
            parcel.status, parcel.next_step_at = moved_to, None
        elif moved_to == RECALLED:
            now = self.clock() if self.clock else datetime.now().astimezone()
            parcel.status, parcel.next_step_at = moved_to, now + timedelta(
                seconds=self.step_after)
        return stopped

    def _by_tracking(self, tracking_number: str) -> FakeParcel:
        for parcel in self.parcels.values():
            if parcel.booking.tracking_number == tracking_number:
                return parcel
        raise InfrastructureError(f"carrier {self.name} refused the request: 404 no such "
                                  "parcel", retriable=False)

    def next_due(self) -> datetime | None:
        return min((p.next_step_at for p in self.parcels.values() if p.next_step_at),
                   default=None)

    def due(self, now: datetime) -> list[dict[str, Any]]:
        """The reports of every parcel whose next step is due by `now`."""
        reports = []
        for parcel in self.parcels.values():
            if parcel.next_step_at is None or parcel.next_step_at > now:
                continue
            status = self._next(parcel)
            if status is not None:
                reports.append(report(self.name, self._row(parcel), status,
                                      parcel.next_step_at, self.step_after))
        return reports

    def acknowledged(self, update: dict[str, Any]) -> None:
        parcel = self._by_tracking(update["tracking_number"])
        if parcel.status in ("cancelled", RECALLED) and update["status"] != "returned_to_sender":
            return  # stopped while this report was on its way: the stop stands
        parcel.status = update["status"]
        parcel.updates += 1
        parcel.failed_attempts += update["status"] == "delivery_failed"
        wait = next_step_in(parcel.request["service"], parcel.status, parcel.failed_attempts,
                            parcel.postal_code, self.pickup_after, self.step_after)
        at = datetime.fromisoformat(update["occurred_at"])
        parcel.next_step_at = None if wait is None else at + timedelta(seconds=wait)

    def _next(self, parcel: FakeParcel) -> str | None:
        if parcel.status == "cancelled":
            return None
        return next_status(parcel.request["service"], parcel.status, parcel.failed_attempts,
                           parcel.postal_code)

    @staticmethod
    def _row(parcel: FakeParcel) -> dict[str, object]:
        return {"tracking_number": parcel.booking.tracking_number, "seq": parcel.updates,
                "reference": parcel.request["reference"],
                "store_id": parcel.request["store_id"]}
