"""`alur schemas ...`: write golden samples, JSON Schema files and the AsyncAPI 3 document."""

from __future__ import annotations

import json
from pathlib import Path

from schemas.catalogue import TOPICS, dlq_topic
from schemas.codec import json_schema
from schemas.envelope import EVENT_TYPES
from schemas.examples import example_event

HERE = Path(__file__).parent
SAMPLES = HERE / "samples"
GENERATED = HERE / "generated"


def sample_path(type_name: str, version: int = 1) -> Path:
    return SAMPLES / f"{type_name}.v{version}.json"


def write_samples(directory: Path = SAMPLES) -> list[Path]:
    """Write a sample for every type that has none yet; committed samples are never rewritten."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name in sorted(EVENT_TYPES):
        path = directory / sample_path(name).name
        if not path.exists():
            event = example_event(name)
            path.write_text(json.dumps(event.model_dump(mode="json"), indent=2) + "\n")
            written.append(path)
    return written


def asyncapi_document() -> dict[str, object]:
    by_topic: dict[str, list[str]] = {t: [] for t in TOPICS}
    for name, cls in sorted(EVENT_TYPES.items()):
        by_topic[cls.topic].append(name)
    schemas = {name: cls.model_json_schema(ref_template="#/components/schemas/{model}")
               for name, cls in sorted(EVENT_TYPES.items())}
    components: dict[str, object] = {"schemas": {}, "messages": {}}
    for name, schema in schemas.items():
        for def_name, definition in schema.pop("$defs", {}).items():
            components["schemas"][def_name] = definition  # type: ignore[index]
        components["schemas"][name] = schema  # type: ignore[index]
        components["messages"][name] = {  # type: ignore[index]
            "name": name, "contentType": "application/json",
            "payload": {"$ref": f"#/components/schemas/{name}"},
        }
    channels: dict[str, object] = {}
    operations: dict[str, object] = {}
    for topic, names in by_topic.items():
        channels[topic] = {
            "address": topic,
            "description": f"Events produced by the {topic} service, keyed by order id.",
            "messages": {n: {"$ref": f"#/components/messages/{n}"} for n in names},
        }
        channels[dlq_topic(topic)] = {
            "address": dlq_topic(topic),
            "description": f"Dead letters of consumers of `{topic}`: error, origin, raw value.",
        }
        operations[f"publish{topic.title()}"] = {
            "action": "send", "channel": {"$ref": f"#/channels/{topic}"},
        }
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "Alur events", "version": "1.0.0",
                 "description": "Every event of the Alur order flow (CloudEvents envelope)."},
        "defaultContentType": "application/json",
        "channels": channels, "operations": operations, "components": components,
    }


def export(directory: Path = GENERATED) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    union = directory / "events.schema.json"
    union.write_text(json.dumps(json_schema(), indent=2, sort_keys=True) + "\n")
    out.append(union)
    api = directory / "asyncapi.json"
    api.write_text(json.dumps(asyncapi_document(), indent=2, sort_keys=True) + "\n")
    out.append(api)
    return out
