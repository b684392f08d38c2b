"""The e-mail as the SMTP adapter sends it (services.notifications.mailer.compose)."""

from __future__ import annotations

import email
from email import policy

import pytest

from alur.runtime.errors import InfrastructureError
from services.notifications.mailer import compose


def test_an_ascii_message_is_plain_7bit_with_smtp_line_ends() -> None:
    raw = compose("orders@alur.local", "ada@example.com", "Order ord_1 shipped",
                  "Hello Ada,\n\n.a line that starts with a dot\n", "<n1@alur.local>")
    assert b"\n" not in raw.replace(b"\r\n", b"")
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert (msg["From"], msg["To"], msg["Subject"], msg["Message-ID"]) == (
        "orders@alur.local", "ada@example.com", "Order ord_1 shipped", "<n1@alur.local>")
    assert msg["Content-Transfer-Encoding"] == "7bit"
    assert msg.get_content() == "Hello Ada,\r\n\r\n.a line that starts with a dot\r\n"


def test_non_ascii_text_survives_the_trip() -> None:
    raw = compose("orders@alur.local", "siti@example.co.id", "Pesanan ord_2 dikirim — ✓",
                  "Halo Siti Nurhaliza, ¡gracias!\n", "<n2@alur.local>")
    assert raw.isascii()
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert msg["Subject"] == "Pesanan ord_2 dikirim — ✓"
    assert msg["Content-Transfer-Encoding"] == "quoted-printable"
    assert msg.get_content().replace("\r\n", "\n") == "Halo Siti Nurhaliza, ¡gracias!\n"


@pytest.mark.parametrize("field", ["to", "subject", "message_id"])
def test_a_line_break_in_a_header_is_refused_for_good(field: str) -> None:
    values = {"to": "ada@example.com", "subject": "Order ord_3", "message_id": "<n3@alur>"}
    values[field] += "\r\nBcc: everyone@example.com"
    with pytest.raises(InfrastructureError) as refused:
        compose("orders@alur.local", values["to"], values["subject"], "body\n",
                values["message_id"])
    assert not refused.value.retriable
