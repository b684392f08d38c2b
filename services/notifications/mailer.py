"""The e-mail port and its SMTP adapter."""

from __future__ import annotations

import asyncio
import smtplib
from email.message import EmailMessage
from typing import Protocol

from alur.runtime.errors import InfrastructureError


class Mailer(Protocol):
    async def send(self, to: str, subject: str, body: str, message_id: str) -> None:
        """Deliver one message; raises InfrastructureError (retriable or not) on failure."""


class SmtpMailer:
    def __init__(self, host: str, port: int, sender: str = "orders@alur.local") -> None:
        self._host, self._port, self._sender = host, port, sender

    async def send(self, to: str, subject: str, body: str, message_id: str) -> None:
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = self._sender, to, subject
        # A stable Message-ID: a re-send after a crash is recognisable as the same message.
        msg["Message-ID"] = message_id
        msg.set_content(body)
        await asyncio.to_thread(self._send, msg)

    def _send(self, msg: EmailMessage) -> None:
        try:
            with smtplib.SMTP(self._host, self._port, timeout=10) as smtp:
                smtp.send_message(msg)
        except smtplib.SMTPResponseException as exc:
            raise InfrastructureError(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}",
                                      retriable=exc.smtp_code < 500) from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise InfrastructureError(f"SMTP unavailable: {exc}") from exc


class InMemoryMailer:
    """The fake: records what would have been sent."""

    def __init__(self) -> None:
        self.sent: list[dict[str, str]] = []

    async def send(self, to: str, subject: str, body: str, message_id: str) -> None:
        self.sent.append({"to": to, "subject": subject, "body": body, "message_id": message_id})
