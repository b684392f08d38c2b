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

    async def close(self) -> None:
        """End any open session."""


class SmtpMailer:
    """Keeps one SMTP session open between messages; reconnects when the server drops it."""

    def __init__(self, host: str, port: int, sender: str = "orders@alur.local") -> None:
        self._host, self._port, self._sender = host, port, sender
        self._smtp: smtplib.SMTP | None = None
        self._lock = asyncio.Lock()

    async def send(self, to: str, subject: str, body: str, message_id: str) -> None:
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = self._sender, to, subject
        # A stable Message-ID: a re-send after a crash is recognisable as the same message.
        msg["Message-ID"] = message_id
        msg.set_content(body)
        async with self._lock:  # one session, one message at a time
            await asyncio.to_thread(self._send, msg)

    def _send(self, msg: EmailMessage) -> None:
        try:
            try:
                self._session().send_message(msg)
            except smtplib.SMTPServerDisconnected:
                self._smtp = None  # an idle session timed out: one fresh try
                self._session().send_message(msg)
        except smtplib.SMTPResponseException as exc:
            self._drop()
            raise InfrastructureError(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}",
                                      retriable=exc.smtp_code < 500) from exc
        except (OSError, smtplib.SMTPException) as exc:
            self._drop()
            raise InfrastructureError(f"SMTP unavailable: {exc}") from exc

    def _session(self) -> smtplib.SMTP:
        if self._smtp is None:
            self._smtp = smtplib.SMTP(self._host, self._port, timeout=10)
        return self._smtp

    def _drop(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.close()
            finally:
                self._smtp = None

    async def close(self) -> None:
        async with self._lock:
            if self._smtp is not None:
                await asyncio.to_thread(self._quit)

    def _quit(self) -> None:
        try:
            assert self._smtp is not None
            self._smtp.quit()
        except (OSError, smtplib.SMTPException):
            pass
        finally:
            self._smtp = None


class InMemoryMailer:
    """The fake: records what would have been sent."""

    def __init__(self) -> None:
        self.sent: list[dict[str, str]] = []

    async def send(self, to: str, subject: str, body: str, message_id: str) -> None:
        self.sent.append({"to": to, "subject": subject, "body": body, "message_id": message_id})

    async def close(self) -> None:
        return None
