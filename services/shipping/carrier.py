"""The carrier port and a simulated courier.

The simulated courier is deterministic: the same idempotency key always gives the same
shipment id and tracking number, and each time it is asked a parcel moves one step:
home delivery created -> shipped -> in_transit -> out_for_delivery -> delivered; a delivery
address whose postal code starts with `FAILS_FIRST_ATTEMPT` fails its first attempt
(delivery_failed, then out for delivery again); click-and-collect created -> shipped ->
ready_for_pickup -> picked_up (the simulated customer comes by). Real couriers (HTTP,
webhooks) plug in behind the same port.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol

from schemas import Address

FAILS_FIRST_ATTEMPT = "0000"
HOME = {"created": "shipped", "shipped": "in_transit", "in_transit": "out_for_delivery",
        "delivery_failed": "out_for_delivery"}
PICKUP = {"created": "shipped", "shipped": "ready_for_pickup", "ready_for_pickup": "picked_up"}


@dataclass(frozen=True)
class Booking:
    carrier: str
    shipment_id: str
    tracking_number: str


class Carrier(Protocol):
    name: str

    async def book(self, idempotency_key: str, address: Address | None,
                   store_id: str | None) -> Booking:
        """Book a parcel to an address, or to a store for click-and-collect."""

    async def next_status(self, tracking_number: str, status: str, failed_attempts: int,
                          address: Address | None) -> str:
        """The parcel's status after `status`."""


class SimulatedCourier:
    name = "simcourier"

    async def book(self, idempotency_key: str, address: Address | None,
                   store_id: str | None) -> Booking:
        digest = hashlib.sha256(idempotency_key.encode()).hexdigest()
        return Booking(self.name, f"shp_{digest[:16]}", f"SIM{int(digest[:12], 16):015d}")

    async def next_status(self, tracking_number: str, status: str, failed_attempts: int,
                          address: Address | None) -> str:
        if address is None:
            return PICKUP[status]
        if status == "out_for_delivery":
            fails = address.postal_code.startswith(FAILS_FIRST_ATTEMPT) and failed_attempts == 0
            return "delivery_failed" if fails else "delivered"
        return HOME[status]
