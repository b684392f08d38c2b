"""The committed AsyncAPI 3 document of the shops' Kafka interface (services/orders/
asyncapi.json): the intake and outcome channels, their records and their security scheme.
`alur schemas export` rewrites it; a test fails when it and the code differ."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from schemas.envelope import EVENT_TYPES
from services.orders.kafka_intake import (
    STATUS_EVENTS,
    OrderAcceptedData,
    OrderRejectedData,
    OrderSubmitted,
)
from services.orders.shop_topics import INTAKE_PREFIX, OUTCOMES_PREFIX, TOPIC_MAX_RECORD_BYTES

COMMITTED = Path(__file__).resolve().parent / "asyncapi.json"
REF = "#/components/schemas/{model}"


def _outcome(kind: str, data: type[BaseModel], description: str) -> dict[str, Any]:
    return {"type": "object", "description": description,
            "required": ["specversion", "id", "source", "type", "time", "data"],
            "properties": {
                "specversion": {"const": "1.0"},
                "id": {"type": "string", "format": "uuid", "description": (
                    "Derived from the intake record's topic, partition and offset.")},
                "source": {"const": "alur/orders"}, "type": {"const": kind},
                "time": {"type": "string", "format": "date-time"},
                "subject": {"type": ["string", "null"]},
                "datacontenttype": {"const": "application/json"},
                "data": {"$ref": REF.format(model=data.__name__)}}}


def document() -> dict[str, Any]:
    schemas: dict[str, Any] = {}

    def add(model: type[BaseModel]) -> None:
        schema = model.model_json_schema(ref_template=REF)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema

    models: list[type[BaseModel]] = [OrderSubmitted, OrderAcceptedData, OrderRejectedData]
    for model in [*models, *(EVENT_TYPES[name] for name in STATUS_EVENTS)]:
        add(model)
    schemas["OrderAccepted"] = _outcome("OrderAccepted", OrderAcceptedData,
                                        "The record's order is placed (or was, if duplicate).")
    schemas["OrderRejected"] = _outcome("OrderRejected", OrderRejectedData,
                                        "The record placed no order; `problem` says why.")
    messages: dict[str, Any] = {
        name: {"name": name, "contentType": "application/cloudevents+json",
               "payload": {"$ref": REF.format(model=name)}}
        for name in ("OrderSubmitted", "OrderAccepted", "OrderRejected", *STATUS_EVENTS)}
    messages["OrderSubmitted"]["bindings"] = {"kafka": {"key": {
        "type": "string", "description": "The shop's order reference (data.reference)."}}}
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "Alur shop intake on Kafka", "version": "1.0.0", "description": (
            "Shops publish orders to their intake topic and read each record's outcome, then "
            "their orders' status events, from their outcome topic. See "
            "services/orders/KAFKA.md.")},
        "servers": {"shops": {
            "host": "127.0.0.1:19094", "protocol": "kafka", "description": (
                "The brokers' SASL listener (`alur shops add --kafka` prints the address)."),
            "security": [{"$ref": "#/components/securitySchemes/scram"}]}},
        "channels": {
            "intake": {
                "address": INTAKE_PREFIX + "{shopId}",
                "parameters": {"shopId": {"description": "The shop's id."}},
                "description": "The shop's orders, one OrderSubmitted CloudEvent per record, "
                               f"keyed by its reference; up to {TOPIC_MAX_RECORD_BYTES} bytes "
                               "(the orders service rejects bodies over its own limit).",
                "messages": {"OrderSubmitted": {"$ref": "#/components/messages/OrderSubmitted"}}},
            "outcomes": {
                "address": OUTCOMES_PREFIX + "{shopId}",
                "parameters": {"shopId": {"description": "The shop's id."}},
                "description": "One OrderAccepted or OrderRejected per intake record, then the "
                               "status events of the orders accepted; keyed by reference.",
                "messages": {name: {"$ref": f"#/components/messages/{name}"}
                             for name in ("OrderAccepted", "OrderRejected", *STATUS_EVENTS)}}},
        "operations": {
            "submitOrder": {"action": "send", "channel": {"$ref": "#/channels/intake"}},
            "readOutcomes": {"action": "receive", "channel": {"$ref": "#/channels/outcomes"}}},
        "components": {
            "schemas": dict(sorted(schemas.items())), "messages": messages,
            "securitySchemes": {"scram": {
                "type": "scramSha512", "description": (
                    "SCRAM-SHA-512 credentials from `alur shops add --kafka`. The shop may "
                    "write its intake topic, read its outcome topic and use consumer groups "
                    "named `<shopId>.*`; nothing else.")}}},
    }


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def write(path: Path = COMMITTED) -> Path:
    path.write_text(render(document()))
    return path
