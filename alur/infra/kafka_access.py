"""A shop's access to the brokers: its SCRAM-SHA-512 credentials, its two topics and its ACLs.

Each shop gets a topic of its own to publish on and one to read from:

- `order-intake.<shop id>`: the shop may WRITE (and DESCRIBE) it, nobody else may. The orders
  service reads it as the shop's records, so a shop cannot publish as another: the topic is
  its identity, and only its principal can write there.
- `order-outcomes.<shop id>`: the shop may READ (and DESCRIBE) it; the orders service writes
  its acceptances, rejections and later status events there.
- consumer groups whose id starts with `<shop id>.` (a prefixed ACL): the shop's own groups.

The principal is `User:<shop id>`. Nothing else is granted: internal topics, other shops'
topics, other groups and the cluster are refused with an authorization error.

aiokafka's admin client has no call for SCRAM credentials and speaks the old ACL versions
Kafka 4 dropped, so the two requests are written out here from the protocol's message specs
(AlterUserScramCredentials v0 and CreateAcls v3, both "flexible" versions).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import secrets
import time
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    CompactArray,
    CompactString,
    Int8,
    Int16,
    Int32,
    Schema,
    TaggedFields,
    UnsignedVarInt32,
)

from services.orders.shop_topics import TOPIC_MAX_RECORD_BYTES, intake_topic, outcomes_topic

SCRAM_SHA_512 = 2  # the protocol's mechanism code
SCRAM_ITERATIONS = 8192

# ACL codes (org.apache.kafka.common.acl / resource)
TOPIC, GROUP = 2, 3
LITERAL, PREFIXED = 3, 4
READ, WRITE, DESCRIBE = 3, 4, 8
ALLOW = 3


def principal(shop_id: str) -> str:
    return f"User:{shop_id}"


def group_prefix(shop_id: str) -> str:
    return f"{shop_id}."


class CompactBytes:
    """The protocol's COMPACT_BYTES: unsigned varint length + 1, then the bytes."""

    @classmethod
    def encode(cls, value: bytes) -> bytes:
        return bytes(UnsignedVarInt32.encode(len(value) + 1)) + value

    @classmethod
    def decode(cls, data: io.BytesIO) -> bytes:
        return bytes(data.read(UnsignedVarInt32.decode(data) - 1))


class AlterUserScramCredentialsResponse_v0(Response):  # type: ignore[misc]  # aiokafka is untyped
    API_KEY = 51
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("results", CompactArray(("user", CompactString("utf-8")), ("error_code", Int16),
                                 ("error_message", CompactString("utf-8")),
                                 ("tags", TaggedFields))),
        ("tags", TaggedFields),
    )


class AlterUserScramCredentialsRequest_v0(RequestStruct):  # type: ignore[misc]  # aiokafka is untyped
    FLEXIBLE_VERSION = True
    API_KEY = 51
    API_VERSION = 0
    RESPONSE_TYPE = AlterUserScramCredentialsResponse_v0
    SCHEMA = Schema(
        ("deletions", CompactArray(("name", CompactString("utf-8")), ("mechanism", Int8),
                                   ("tags", TaggedFields))),
        ("upsertions", CompactArray(("name", CompactString("utf-8")), ("mechanism", Int8),
                                    ("iterations", Int32), ("salt", CompactBytes),
                                    ("salted_password", CompactBytes), ("tags", TaggedFields))),
        ("tags", TaggedFields),
    )


class AlterUserScramCredentials(Request[AlterUserScramCredentialsRequest_v0]):  # type: ignore[misc]  # aiokafka is untyped
    API_KEY = 51

    def __init__(self, user: str, password: str | None) -> None:
        """Set the user's SCRAM-SHA-512 password, or delete the credential (None)."""
        self._user, self._password = user, password

    def build(self, request_struct_class: type[AlterUserScramCredentialsRequest_v0]
              ) -> AlterUserScramCredentialsRequest_v0:
        if self._password is None:
            return request_struct_class([(self._user, SCRAM_SHA_512, {})], [], {})
        salt = secrets.token_bytes(32)
        # SCRAM's Hi() is PBKDF2 with the mechanism's HMAC and its digest length.
        salted = hashlib.pbkdf2_hmac("sha512", self._password.encode(), salt, SCRAM_ITERATIONS)
        return request_struct_class(
            [], [(self._user, SCRAM_SHA_512, SCRAM_ITERATIONS, salt, salted, {})], {})


class CreateAclsResponse_v3(Response):  # type: ignore[misc]  # aiokafka is untyped
    API_KEY = 30
    API_VERSION = 3
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("results", CompactArray(("error_code", Int16),
                                 ("error_message", CompactString("utf-8")),
                                 ("tags", TaggedFields))),
        ("tags", TaggedFields),
    )


class CreateAclsRequest_v3(RequestStruct):  # type: ignore[misc]  # aiokafka is untyped
    FLEXIBLE_VERSION = True
    API_KEY = 30
    API_VERSION = 3
    RESPONSE_TYPE = CreateAclsResponse_v3
    SCHEMA = Schema(
        ("creations", CompactArray(
            ("resource_type", Int8), ("resource_name", CompactString("utf-8")),
            ("resource_pattern_type", Int8), ("principal", CompactString("utf-8")),
            ("host", CompactString("utf-8")), ("operation", Int8), ("permission_type", Int8),
            ("tags", TaggedFields))),
        ("tags", TaggedFields),
    )


@dataclass(frozen=True)
class Acl:
    resource_type: int
    resource_name: str
    pattern_type: int
    operation: int


class CreateAcls(Request[CreateAclsRequest_v3]):  # type: ignore[misc]  # aiokafka is untyped
    API_KEY = 30

    def __init__(self, who: str, acls: list[Acl]) -> None:
        self._who, self._acls = who, acls

    def build(self, request_struct_class: type[CreateAclsRequest_v3]) -> CreateAclsRequest_v3:
        return request_struct_class([
            (a.resource_type, a.resource_name, a.pattern_type, self._who, "*", a.operation,
             ALLOW, {}) for a in self._acls], {})


def shop_acls(shop_id: str) -> list[Acl]:
    """Everything a shop may do on the brokers."""
    return [Acl(TOPIC, intake_topic(shop_id), LITERAL, WRITE),
            Acl(TOPIC, intake_topic(shop_id), LITERAL, DESCRIBE),
            Acl(TOPIC, outcomes_topic(shop_id), LITERAL, READ),
            Acl(TOPIC, outcomes_topic(shop_id), LITERAL, DESCRIBE),
            Acl(GROUP, group_prefix(shop_id), PREFIXED, READ)]


class AccessError(RuntimeError):
    """The brokers refused to set up a shop's access; the message says why."""


def _raise_errors(what: str, results: list[tuple[object, ...]], code_at: int) -> None:
    for result in results:
        code, message = int(result[code_at]), result[code_at + 1]  # type: ignore[call-overload]
        if code:
            raise AccessError(f"{what}: {for_code(code).__name__}: {message or ''}".rstrip(": "))


async def revoke(bootstrap: str, shop_id: str) -> None:
    """Delete the shop's SCRAM credential: no new connection of the shop gets in (one open
    already lives until it closes). Its topics and ACLs stay; `grant` gives it access again."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        response = await admin._send_to_controller(AlterUserScramCredentials(shop_id, None))
        _raise_errors(f"SCRAM credentials of {shop_id}", response.results, 1)
    finally:
        await admin.close()


@dataclass(frozen=True)
class KafkaAccess:
    """What `alur shops add --kafka` hands the shop (the password is shown once)."""

    shop_id: str
    username: str
    password: str
    bootstrap: str
    intake_topic: str
    outcomes_topic: str
    group_prefix: str


async def grant(bootstrap: str, shop_bootstrap: str, shop_id: str, *, partitions: int,
                replication: int) -> KafkaAccess:
    """Create (or keep) the shop's two topics, set a new SCRAM password, add its ACLs. Run
    again, it rotates the password and leaves the rest as it was."""
    password = secrets.token_urlsafe(32)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        config = {"max.message.bytes": str(TOPIC_MAX_RECORD_BYTES)}
        for topic in (intake_topic(shop_id), outcomes_topic(shop_id)):
            response = await admin.create_topics(
                [NewTopic(topic, partitions, replication, topic_configs=config)])
            for name, code, *rest in response.topic_errors:
                if code and for_code(code) is not TopicAlreadyExistsError:
                    raise AccessError(f"topic {name}: {for_code(code).__name__}: "
                                      f"{rest[0] if rest else ''}")
        scram = await admin._send_to_controller(AlterUserScramCredentials(shop_id, password))
        _raise_errors(f"SCRAM credentials of {shop_id}", scram.results, 1)
        acls = await admin._send_to_controller(CreateAcls(principal(shop_id), shop_acls(shop_id)))
        _raise_errors(f"ACLs of {shop_id}", acls.results, 0)
    finally:
        await admin.close()
    await _until_usable(shop_bootstrap, shop_id, password)
    return KafkaAccess(shop_id, shop_id, password, shop_bootstrap, intake_topic(shop_id),
                       outcomes_topic(shop_id), group_prefix(shop_id))


async def _until_usable(shop_bootstrap: str, shop_id: str, password: str,
                        timeout: float = 30.0) -> None:
    """Wait until the broker lets the shop in and shows it its intake topic. The controller
    answers once the credential and the ACLs are in the metadata log; the broker applies them
    a moment later, and a shop that connects in between is refused as if its password were
    wrong."""
    # aiokafka logs each refused try as an error; here they are expected (a filter on a
    # logger is not inherited by its children, hence the two: the client's and the conn's).
    quiet, loggers = _Refusals(), [logging.getLogger(n) for n in ("aiokafka", "aiokafka.conn")]
    for logger in loggers:
        logger.addFilter(quiet)
    try:
        await _tries(shop_bootstrap, shop_id, password, timeout)
    finally:
        for logger in loggers:
            logger.removeFilter(quiet)


class _Refusals(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return False


async def _tries(shop_bootstrap: str, shop_id: str, password: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        client = AIOKafkaClient(bootstrap_servers=shop_bootstrap, request_timeout_ms=5000,
                                security_protocol="SASL_PLAINTEXT",
                                sasl_mechanism="SCRAM-SHA-512", sasl_plain_username=shop_id,
                                sasl_plain_password=password)
        try:
            await client.bootstrap()
            metadata = await client.fetch_all_metadata()
            if intake_topic(shop_id) in metadata.topics():
                return
            problem = "its intake topic is not visible to it yet"
        except KafkaError as exc:
            problem = f"{type(exc).__name__}: {exc}"
        finally:
            await client.close()
        if time.monotonic() > deadline:
            raise AccessError(f"the broker does not let {shop_id} in {timeout:.0f} s after its "
                              f"credential was set: {problem}")
        await asyncio.sleep(0.2)
