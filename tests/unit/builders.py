"""Test events built from the golden examples, with fresh ids."""

from __future__ import annotations

import uuid

from schemas import Event, Model
from schemas.examples import example_event


def event(type_name: str, order_id: str = "ord_0001", data: Model | None = None,
          **data_changes: object) -> Event:
    """An event of `type_name` for `order_id`, its example payload changed as given."""
    base = example_event(type_name)
    payload = data or base.data
    if "order_id" in type(payload).model_fields:
        data_changes.setdefault("order_id", order_id)
    payload = payload.model_copy(update=data_changes)
    return base.model_copy(update={"id": uuid.uuid4(), "subject": order_id, "data": payload})
