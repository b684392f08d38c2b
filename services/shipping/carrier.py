"""The carrier port and a simulated courier.

The simulated courier is deterministic: the same idempotency key always gives the same
shipment id and tracking number, and a parcel moves created -> shipped -> delivered, one step
each time it is asked. Real couriers (HTTP, webhooks) plug in behind the same port.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol

from schemas import Address


@dataclass(frozen=True)
class Booking:
    carrier: str
    shipment_id: str
    tracking_number: str


class Carrier(Protocol):
    name: str

    async def book(self, idempotency_key: str, address: Address) -> Booking: ...

    async def next_status(self, tracking_number: str, status: str) -> str:
        """The parcel's status after `status`: 'shipped' or 'delivered'."""


class SimulatedCourier:
    name = "simcourier"

    async def book(self, idempotency_key: str, address: Address) -> Booking:
        digest = hashlib.sha256(idempotency_key.encode()).hexdigest()
        return Booking(self.name, f"shp_{digest[:16]}", f"SIM{int(digest[:12], 16):015d}")

    async def next_status(self, tracking_number: str, status: str) -> str:
        return {"created": "shipped", "shipped": "delivered"}[status]
