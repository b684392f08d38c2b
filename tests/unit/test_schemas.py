"""The event contract: committed golden samples must keep decoding to the same content."""

import importlib
import json
import os
import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import EmailStr, TypeAdapter, ValidationError

from alur.settings import SERVICES
from alur.tools.trace import subscribers
from schemas import EVENT_TYPES, TOPICS, DecodeError, decode, encode, tools, upcast
from schemas.envelope import random_uuid
from schemas.orders import Email

SAMPLES = sorted(tools.SAMPLES.glob("*.json"))


def contains(whole: object, part: object) -> bool:
    """`whole` holds everything `part` has (new optional fields may be added in a version)."""
    if isinstance(part, dict):
        return isinstance(whole, dict) and all(
            k in whole and contains(whole[k], v) for k, v in part.items())
    if isinstance(part, list):
        return isinstance(whole, list) and len(whole) == len(part) and all(
            contains(w, p) for w, p in zip(whole, part, strict=True))
    return whole == part


def test_every_event_type_has_a_sample_and_every_sample_a_type() -> None:
    names = {p.name.split(".")[0] for p in SAMPLES}
    assert names == set(EVENT_TYPES)


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_a_committed_sample_still_decodes_to_the_same_content(path: Path) -> None:
    raw = path.read_text()
    recorded = json.loads(raw)
    event = decode(raw)
    assert event.type == path.name.split(".")[0]
    assert f".v{recorded.get('schemaversion', recorded.get('schema_version'))}." in path.name
    assert event.schema_version == upcast.latest(event.type)
    assert contains(json.loads(encode(event)), upcast.upcast(recorded))


def test_every_type_has_a_sample_of_its_current_version() -> None:
    for name, cls in EVENT_TYPES.items():
        current = cls.model_fields["schema_version"].default
        assert current == upcast.latest(name), f"{name}: v{current} without an upcaster to it"
        assert tools.sample_path(name, current).exists(), \
            f"run `alur schemas samples` to add {name} v{current}'s sample"


def test_the_gate_fails_a_new_version_old_records_could_not_be_read_as() -> None:
    """Take the OrderPlaced upcaster away (as a change that made version 2 without one
    would): its version 1 sample no longer decodes, so the sample test above fails."""
    v1 = (tools.SAMPLES / "OrderPlaced.v1.json").read_text()
    assert decode(v1).schema_version == 2
    step = upcast.STEPS.pop(("OrderPlaced", 1))
    try:
        with pytest.raises(DecodeError, match="schemaversion"):
            decode(v1)
    finally:
        upcast.STEPS[("OrderPlaced", 1)] = step


def test_an_old_record_upcasts_to_the_current_form_however_it_names_its_attributes() -> None:
    v1 = json.loads((tools.SAMPLES / "OrderPlaced.v1.json").read_text())
    v1["data"]["tax"] = {"name": "PPN", "rate_bp": 1100, "included": True,
                         "amount": {"amount": 495, "currency": "EUR"}}
    placed = decode(json.dumps(v1))
    assert [t.amount.amount for t in placed.data.taxes] == [495]  # type: ignore[attr-defined]
    assert placed.shop_id == v1["shop_id"] and placed.causation_id is None
    written = json.loads(encode(placed))
    assert {"shopid", "correlationid", "schemaversion"} <= set(written)
    assert not {"shop_id", "correlation_id", "causation_id", "schema_version"} & set(written)
    assert "causationid" not in written and written["schemaversion"] == 2
    assert decode(encode(placed)) == placed


@pytest.mark.parametrize("service", SERVICES)
def test_every_consumer_folds_every_sample_it_subscribes_to(service: str) -> None:
    bootstrap = importlib.import_module(f"services.{service}.bootstrap")
    decider = bootstrap.DECIDER
    subscribed = set(bootstrap.DEFINITION.subscriptions)
    assert subscribed <= set(TOPICS)
    for path in SAMPLES:
        event = decode(path.read_text())
        if event.topic in subscribed and event.type in decider.relevant:
            decider.evolve(decider.initial, event)
            decider.decide(decider.initial, event)


def test_every_relevant_type_arrives_on_a_subscribed_topic() -> None:
    for service in SERVICES:
        bootstrap = importlib.import_module(f"services.{service}.bootstrap")
        topics = {EVENT_TYPES[t].topic for t in bootstrap.DECIDER.relevant}
        assert topics <= set(bootstrap.DEFINITION.subscriptions), service


def test_money_is_never_a_float() -> None:
    sample = json.loads((tools.SAMPLES / "OrderPlaced.v1.json").read_text())
    sample["data"]["total"]["amount"] = 49.98
    with pytest.raises(DecodeError, match="total.amount"):
        decode(json.dumps(sample))


def test_unknown_types_are_refused() -> None:
    sample = json.loads((tools.SAMPLES / "Delivered.v1.json").read_text())
    sample["type"] = "Teleported"
    with pytest.raises(DecodeError):
        decode(json.dumps(sample))


def test_generated_json_schema_and_asyncapi_are_up_to_date(tmp_path: Path) -> None:
    for fresh in tools.export(subscribers(), tmp_path):
        committed = tools.GENERATED / fresh.name
        assert committed.exists(), f"run `alur schemas export` to add {committed}"
        assert committed.read_text() == fresh.read_text(), "run `alur schemas export`"
    doc = json.loads((tools.GENERATED / "asyncapi.json").read_text())
    assert doc["asyncapi"].startswith("3.") and set(TOPICS) <= set(doc["channels"])


# Addresses built from the characters where the fast path and email_validator could part ways.
_LOCAL = st.text(alphabet="aZ09.+-_'!~#", min_size=1, max_size=70)
_LABEL = st.text(alphabet="aZ09-", min_size=1, max_size=66)
_TLD = st.sampled_from(["com", "ID", "co", "x", "c0m", "test", "local", "arpa", "onion", "io"])
_ADDRESS = st.builds(lambda local, labels, tld: f"{local}@{'.'.join([*labels, tld])}",
                     _LOCAL, st.lists(_LABEL, min_size=0, max_size=3), _TLD)


@settings(max_examples=3000, deadline=None)
@given(_ADDRESS)
def test_the_fast_email_check_agrees_with_pydantics_email_str(address: str) -> None:
    """schemas.orders.Email takes a shortcut for plain addresses; EmailStr is the judge."""
    try:
        expected: str | None = TypeAdapter(EmailStr).validate_python(address)
    except ValidationError:
        expected = None
    try:
        got: str | None = TypeAdapter(Email).validate_python(address)
    except ValidationError:
        got = None
    assert got == expected


def test_the_email_field_keeps_email_strs_json_schema() -> None:
    assert TypeAdapter(Email).json_schema() == TypeAdapter(EmailStr).json_schema()


def test_random_uuids_are_version_4_unique_and_not_repeated_by_a_forked_child() -> None:
    ids = [random_uuid() for _ in range(3 * 256)]  # across refills of the buffer
    assert len(set(ids)) == len(ids)
    assert all(i.version == 4 and i.variant == uuid.RFC_4122 for i in ids)
    random_uuid()  # the buffer holds ids now, which a child must not hand out again
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id, then out without running anything else
        os.write(write, random_uuid().bytes)
        os._exit(0)
    os.close(write)
    child = uuid.UUID(bytes=os.read(read, 16))
    os.close(read)
    os.waitpid(pid, 0)
    assert child != random_uuid()
