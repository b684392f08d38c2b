"""`alur schemas ...`: write golden samples, JSON Schema files and the AsyncAPI 3 document."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from schemas.catalogue import TOPICS, dlq_topic
from schemas.codec import CONTENT_TYPE, json_schema
from schemas.deadletter import DeadLetterRecord
from schemas.envelope import EVENT_TYPES
from schemas.examples import example_event
from schemas.upcast import latest

HERE = Path(__file__).parent
SAMPLES = HERE / "samples"
GENERATED = HERE / "generated"
DEAD_LETTER = "DeadLetter"


def sample_path(type_name: str, version: int = 1) -> Path:
    return SAMPLES / f"{type_name}.v{version}.json"


def write_samples(directory: Path = SAMPLES) -> list[Path]:
    """Write a sample of the current version of every type that has none yet; committed
    samples are never rewritten."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name in sorted(EVENT_TYPES):
        path = directory / sample_path(name, latest(name)).name
        if not path.exists():
            event = example_event(name)
            path.write_text(json.dumps(event.model_dump(mode="json"), indent=2) + "\n")
            written.append(path)
    return written


def asyncapi_document(consumers: Mapping[str, Sequence[str]]) -> dict[str, object]:
    """The AsyncAPI 3 document of the event topics. `consumers`: topic -> the services that
    consume it (the services' definitions say: alur.tools.trace.subscribers)."""
    by_topic: dict[str, list[str]] = {t: [] for t in TOPICS}
    for name, cls in sorted(EVENT_TYPES.items()):
        by_topic[cls.topic].append(name)
    schemas = {name: cls.model_json_schema(ref_template="#/components/schemas/{model}")
               for name, cls in sorted(EVENT_TYPES.items())}
    schemas[DEAD_LETTER] = DeadLetterRecord.model_json_schema(
        ref_template="#/components/schemas/{model}")
    components: dict[str, Any] = {"schemas": {}, "messages": {}}
    key = {"kafka": {"key": {"type": "string", "description": (
        "The order id (the event's `subject`): an order's events share a partition and keep "
        "their order."),
    }, "bindingVersion": "0.5.0"}}
    for name, schema in schemas.items():
        for def_name, definition in schema.pop("$defs", {}).items():
            components["schemas"][def_name] = definition
        components["schemas"][name] = schema
        components["messages"][name] = {
            "name": name, "contentType": CONTENT_TYPE, "bindings": key,
            "payload": {"$ref": f"#/components/schemas/{name}"},
        }
    components["messages"][DEAD_LETTER] |= {
        "contentType": "application/json", "bindings": {"kafka": {
            "key": {"type": "string", "description": "The dead record's own key."},
            "bindingVersion": "0.5.0"}},
        "description": "Why a consumer gave up on a record, where it lay, and its bytes."}
    channels: dict[str, object] = {}
    operations: dict[str, object] = {}
    for topic, names in by_topic.items():
        channels[topic] = {
            "address": topic,
            "description": f"Events produced by the {topic} service, keyed by order id: "
                           "CloudEvents in the structured content mode of the Kafka binding.",
            "messages": {n: {"$ref": f"#/components/messages/{n}"} for n in names},
        }
        channels[dlq_topic(topic)] = {
            "address": dlq_topic(topic),
            "description": f"Dead letters of consumers of `{topic}`: error, origin, raw value.",
            "messages": {DEAD_LETTER: {"$ref": f"#/components/messages/{DEAD_LETTER}"}},
        }
        operations[f"{topic}Sends"] = {
            "action": "send", "channel": {"$ref": f"#/channels/{topic}"},
            "summary": f"The {topic} service publishes its events (through its outbox).",
        }
    for topic, services in sorted(consumers.items()):
        for service in services:
            operations[f"{service}Receives{topic.title()}"] = {
                "action": "receive", "channel": {"$ref": f"#/channels/{topic}"},
                "summary": f"The {service} service consumes `{topic}`.",
            }
            operations[f"{service}DeadLetters{topic.title()}"] = {
                "action": "send", "channel": {"$ref": f"#/channels/{dlq_topic(topic)}"},
                "summary": f"The {service} service dead-letters a `{topic}` record it gave "
                           "up on.",
            }
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "Alur events", "version": "1.0.0",
                 "description": "Every event of the Alur order flow: CloudEvents 1.0 in the "
                                "structured content mode of the Kafka protocol binding."},
        "defaultContentType": CONTENT_TYPE,
        "channels": channels, "operations": operations, "components": components,
    }


def export(consumers: Mapping[str, Sequence[str]], directory: Path = GENERATED) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    union = directory / "events.schema.json"
    union.write_text(json.dumps(json_schema(), indent=2, sort_keys=True) + "\n")
    out.append(union)
    api = directory / "asyncapi.json"
    api.write_text(json.dumps(asyncapi_document(consumers), indent=2, sort_keys=True) + "\n")
    out.append(api)
    return out
