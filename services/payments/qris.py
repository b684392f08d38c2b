"""QRIS payloads: the text a dynamic QRIS code carries (EMVCo merchant-presented mode, as Bank
Indonesia's QRIS standard profiles it).

A payload is a run of TLV fields, each a two-digit tag, a two-digit length and the value, and
ends with tag 63: a CRC-16/CCITT-FALSE (polynomial 0x1021, initial 0xFFFF) over everything
before it, tag and length of field 63 included, as four upper-case hex digits. A dynamic code
(point of initiation `12`) carries its amount (tag 54) and is paid once; the bill number
(tag 62, sub-tag 01, at most 25 characters) is the gateway's id for the payment request.

`payload` builds one (the gateway simulator's job); `read` parses and checks one (what a
wallet app does before it pays, and what the tests do).
"""

from __future__ import annotations

from dataclasses import dataclass

QRIS_GUI = "ID.CO.QRIS.WWW"
IDR_NUMERIC = "360"  # ISO 4217 numeric code of the rupiah, the only currency QRIS carries


class InvalidPayload(ValueError):
    """Not a well-formed QRIS payload, or its checksum does not match."""


def crc16(text: str) -> str:
    """CRC-16/CCITT-FALSE of `text` (UTF-8), as four upper-case hex digits."""
    crc = 0xFFFF
    for byte in text.encode():
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return f"{crc:04X}"


def _field(tag: str, value: str) -> str:
    if len(value) > 99:
        raise ValueError(f"QRIS field {tag} is longer than 99 characters")
    return f"{tag}{len(value):02d}{value}"


def payload(*, merchant_id: str, merchant_name: str, city: str, postal_code: str,
            amount: int, bill_number: str) -> str:
    """A dynamic QRIS payload for `amount` rupiah, whose bill number is `bill_number`."""
    if amount <= 0:
        raise ValueError("a dynamic QRIS code carries a positive amount")
    body = "".join((
        _field("00", "01"),  # payload format indicator
        _field("01", "12"),  # point of initiation: dynamic, paid once
        _field("51", _field("00", QRIS_GUI) + _field("02", merchant_id) + _field("03", "UMI")),
        _field("52", "5999"),  # merchant category code: miscellaneous retail
        _field("53", IDR_NUMERIC),
        _field("54", str(amount)),
        _field("58", "ID"),
        _field("59", merchant_name[:25]),
        _field("60", city[:15]),
        _field("61", postal_code[:10]),
        _field("62", _field("01", bill_number[:25])),
    )) + "6304"
    return body + crc16(body)


@dataclass(frozen=True)
class Qris:
    fields: dict[str, str]

    @property
    def dynamic(self) -> bool:
        return self.fields.get("01") == "12"

    @property
    def amount(self) -> int | None:
        raw = self.fields.get("54")
        return int(raw.split(".")[0]) if raw else None

    @property
    def bill_number(self) -> str | None:
        return _tlv(self.fields.get("62", "")).get("01")


def _tlv(text: str) -> dict[str, str]:
    fields, at = {}, 0
    while at < len(text):
        tag, size = text[at:at + 2], text[at + 2:at + 4]
        if len(tag) < 2 or not size.isdigit() or at + 4 + int(size) > len(text):
            raise InvalidPayload(f"truncated field at {at}")
        fields[tag] = text[at + 4:at + 4 + int(size)]
        at += 4 + int(size)
    return fields


def read(text: str) -> Qris:
    """The fields of a payload, checked: TLV well formed, CRC right, QRIS and rupiah."""
    if len(text) < 8 or text[-8:-4] != "6304":
        raise InvalidPayload("no CRC field (63) at the end")
    if crc16(text[:-4]) != text[-4:].upper():
        raise InvalidPayload("the CRC does not match")
    fields = _tlv(text)
    if fields.get("00") != "01":
        raise InvalidPayload("payload format indicator is not 01")
    if QRIS_GUI not in fields.get("51", ""):
        raise InvalidPayload("no QRIS merchant account (tag 51)")
    if fields.get("53") != IDR_NUMERIC:
        raise InvalidPayload("QRIS pays rupiah (currency 360) only")
    return Qris(fields)
