"""How a carrier moves a parcel, step by step: the model the shipping service's carrier port
is written against. The in-memory carrier (services/shipping/carrier.py) follows it, and so
does the carrier simulator (alur/simulators/carrier.py), so that the fake and the simulated
partner agree on every step, on what a cancel does and on the webhook body.

- home delivery: shipped -> in_transit -> out_for_delivery -> delivered. The first attempt at
  an address whose postal code starts with `FAILS_FIRST_ATTEMPT` fails (delivery_failed, with
  the next attempt's time), and the parcel goes out for delivery again.
- to a store (click-and-collect): shipped -> ready_for_pickup -> picked_up.
- a return, collected from the customer (or the store) back to the warehouse:
  shipped -> in_transit -> delivered.
- a cancel stops a parcel not collected yet (`cancelled`), turns one on its way back
  (`recalled`, then `returned_to_sender`), and cannot stop one that arrived (`arrived`).
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Literal

FAILS_FIRST_ATTEMPT = "0000"
Service = Literal["home", "store", "return"]
ROUTES: dict[str, dict[str, str]] = {
    "home": {"created": "shipped", "shipped": "in_transit", "in_transit": "out_for_delivery",
             "delivery_failed": "out_for_delivery"},
    "store": {"created": "shipped", "shipped": "ready_for_pickup",
              "ready_for_pickup": "picked_up"},
    "return": {"created": "shipped", "shipped": "in_transit", "in_transit": "delivered"},
}
RECALLED = "recalled"  # turned back on its way; the next report is returned_to_sender
Stopped = Literal["cancelled", "recalled", "arrived"]  # what a cancel did
# The parcel arrived: a cancel cannot stop it any more.
ARRIVED = frozenset({"delivered", "picked_up"})

def next_status(service: str, status: str, failed_attempts: int, postal_code: str | None
                ) -> str | None:
    """Where the parcel goes after `status`; None when it has arrived or was cancelled."""
    if status == RECALLED:
        return "returned_to_sender"
    if service == "home" and status == "out_for_delivery":
        misses = (postal_code or "").startswith(FAILS_FIRST_ATTEMPT) and failed_attempts == 0
        return "delivery_failed" if misses else "delivered"
    return ROUTES[service].get(status)


def stop(service: str, status: str) -> tuple[Stopped, str | None]:
    """What a cancel does to a parcel at `status`: (`cancelled` | `recalled` | `arrived`, the
    status it moves to, or None when it stays). Asking again answers the same."""
    if status in ("cancelled", RECALLED, "returned_to_sender"):
        return ("cancelled" if status == "cancelled" else "recalled"), None
    if status in ARRIVED or (status != "created" and service == "return"):
        return "arrived", None
    return ("cancelled", "cancelled") if status == "created" else ("recalled", RECALLED)


def next_step_in(service: str, status: str, failed_attempts: int, postal_code: str | None,
                 pickup_after: float, step_after: float) -> float | None:
    """Seconds from reaching `status` to the parcel's next step; None when none follows."""
    if next_status(service, status, failed_attempts, postal_code) is None:
        return None
    return pickup_after if status == "created" else step_after


def tracking_for(carrier: str, idempotency_key: str) -> tuple[str, str]:
    """(shipment id, tracking number): the same for the same carrier and key."""
    digest = hashlib.sha256(f"{carrier}:{idempotency_key}".encode()).hexdigest()
    return f"shp_{digest[:16]}", f"{carrier[:3].upper()}{int(digest[:12], 16):015d}"


def report(carrier: str, parcel: dict[str, object], status: str, occurred_at: datetime,
           step_after: float) -> dict[str, object]:
    """The webhook body for a parcel's next step. Its id is the same on every retry."""
    body: dict[str, object] = {
        "id": f"{parcel['tracking_number']}.{int(str(parcel['seq'])) + 1}", "carrier": carrier,
        "tracking_number": parcel["tracking_number"], "reference": parcel["reference"],
        "status": status, "occurred_at": occurred_at.isoformat()}
    if status == "delivery_failed":
        body["reason"] = "nobody home"
        body["next_attempt_at"] = (occurred_at + timedelta(seconds=step_after)).isoformat()
    if parcel.get("store_id") and status in ("ready_for_pickup", "picked_up"):
        body["store_id"] = parcel["store_id"]
    return body
