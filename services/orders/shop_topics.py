"""The Kafka topics of a shop that publishes its orders on Kafka: it writes its orders to its
intake topic and reads what became of them from its outcome topic (services/orders/KAFKA.md).
The orders service reads and writes them; `alur shops add --kafka` (alur.infra.kafka_access)
creates them with the shop's credentials and ACLs."""

from __future__ import annotations

INTAKE_PREFIX = "order-intake."
OUTCOMES_PREFIX = "order-outcomes."
# The largest record the shops' topics take. The orders service refuses bodies over its own
# limit (api_body_limit) with a readable rejection; records up to this size reach it for that.
TOPIC_MAX_RECORD_BYTES = 4 * 1024 * 1024


def intake_topic(shop_id: str) -> str:
    return INTAKE_PREFIX + shop_id


def outcomes_topic(shop_id: str) -> str:
    return OUTCOMES_PREFIX + shop_id
