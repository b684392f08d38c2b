"""Upcasters: an event recorded in an older form, brought to the current one before it is
validated. Records are never rewritten, in the event store or on a topic; they are upcast
each time they are read, so a replay, `alur trace` and every consumer see current events.

Two kinds of change are upcast:

- the envelope's attribute names before they followed the CloudEvents naming rule
  (`shop_id` -> `shopid`, ...), for every type and version;
- a type's payload from version N to N+1, one registered step at a time.

A breaking change to a payload is a new version of its type: the model's `schema_version`
becomes the new number, a step from the old version is registered here, and the old
version's golden sample stays (tests decode every sample through these steps).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Step = Callable[[dict[str, Any]], dict[str, Any]]

# The envelope's old attribute names and the CloudEvents extension names that replaced them.
RENAMED = {"shop_id": "shopid", "correlation_id": "correlationid",
           "causation_id": "causationid", "schema_version": "schemaversion"}

# (type, version) -> the step that turns that version's `data` into the next version's.
STEPS: dict[tuple[str, int], Step] = {}


def step(type_name: str, version: int) -> Callable[[Step], Step]:
    """Register the upcaster from `version` of `type_name`'s payload to `version + 1`."""
    def register(fn: Step) -> Step:
        if (type_name, version) in STEPS:
            raise ValueError(f"two upcasters from {type_name} v{version}")
        STEPS[(type_name, version)] = fn
        return fn
    return register


def upcast(record: dict[str, Any]) -> dict[str, Any]:
    """`record` (a decoded JSON object) in the current form. Anything that is not a recorded
    event is returned as it came, for validation to refuse."""
    out = {RENAMED.get(k, k): v for k, v in record.items()}
    if "causationid" in out and out["causationid"] is None:
        del out["causationid"]  # the current form leaves out a first event's absent cause
    kind, version = out.get("type"), out.get("schemaversion", 1)
    if not isinstance(kind, str) or not isinstance(version, int):
        return out
    while (kind, version) in STEPS and isinstance(out.get("data"), dict):
        out["data"] = STEPS[(kind, version)](dict(out["data"]))
        version += 1
        out["schemaversion"] = version
    return out


def latest(type_name: str) -> int:
    """The version the steps lead `type_name` to (1 when it never changed)."""
    version = 1
    while (type_name, version) in STEPS:
        version += 1
    return version
