"""What the relay puts on the topics is CloudEvents to anyone: the CloudEvents Python SDK
reads every record of an order, straight from the topics, with every attribute."""

from datetime import UTC, datetime, timedelta
from typing import Any

from cloudevents.core.bindings.kafka import KafkaMessage, from_kafka, from_structured
from cloudevents.core.formats.json import JSONFormat

from alur.runtime.topics import records
from alur.settings import Settings
from schemas import decode
from schemas.codec import CONTENT_TYPE
from tests.e2e.helpers import (
    DEFAULT_SHOP,
    all_delivered,
    new_sku,
    order_body,
    place,
    set_stock,
    wait_until,
)


async def records_of(settings: Settings, order_id: str, since: datetime) -> list[Any]:
    """Every record keyed by `order_id` on the event topics, from `since` on."""
    key = order_id.encode()
    return [r async for batch in records(settings.kafka_bootstrap, since=since)
            for r in batch if r.key == key]


async def test_the_sdk_reads_every_record_of_an_order_with_every_attribute(
        services, api, db) -> None:
    sku = new_sku()
    await set_stock(services, [("WH-1", sku, 5)])
    since = datetime.now(UTC) - timedelta(seconds=1)
    order_id = await place(api, order_body(sku))
    await wait_until(lambda: all_delivered(db, [order_id]), 60, "the order to be delivered")

    records = await records_of(services, order_id, since)
    types = set()
    correlations = set()
    for r in records:
        headers = dict(r.headers)
        assert headers["content-type"] == CONTENT_TYPE.encode(), (r.topic, headers)
        message = KafkaMessage(headers=headers, key=r.key, value=r.value)
        read = from_structured(message, JSONFormat())
        assert from_kafka(message, JSONFormat()).get_attributes() == read.get_attributes()
        ours = decode(r.value)
        assert read.get_specversion() == "1.0"
        assert (read.get_id(), read.get_source(), read.get_type(), read.get_time()) == (
            str(ours.id), ours.source, ours.type, ours.time)
        assert read.get_subject() == order_id
        assert read.get_extension("partitionkey") == order_id  # the Kafka key
        assert read.get_extension("shopid") == DEFAULT_SHOP
        assert read.get_extension("channel") == "online"
        assert read.get_extension("schemaversion") == ours.schema_version
        cause = read.get_extension("causationid")
        assert cause == (None if ours.causation_id is None else str(ours.causation_id))
        assert read.get_data() == ours.model_dump(mode="json")["data"]
        correlations.add(read.get_extension("correlationid"))
        types.add(read.get_type())
    # The whole flow is there, from every producing service, and it is one flow.
    assert {"OrderPlaced", "StockReserved", "PaymentConfirmed", "ShipmentCreated",
            "Delivered", "NotificationSent"} <= types, types
    assert len(correlations) == 1
