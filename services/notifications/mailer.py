"""The e-mail port and its SMTP adapter."""

from __future__ import annotations

import asyncio
import smtplib
from email.charset import QP, Charset
from email.header import Header
from email.mime.text import MIMEText
from email.policy import compat32
from typing import Protocol

from alur.runtime.errors import InfrastructureError


class Mailer(Protocol):
    async def send(self, to: str, subject: str, body: str, message_id: str) -> None:
        """Deliver one message; raises InfrastructureError (retriable or not) on failure."""

    async def close(self) -> None:
        """End any open session."""


class SmtpMailer:
    """Keeps `sessions` SMTP sessions open between messages, each sending one message at a
    time; a session the server dropped is opened again. More sessions send a batch's e-mails
    side by side, and widen the crash window: each may have an e-mail in flight that the
    sent-e-mail log has not recorded yet, sent again after a restart (ALUR_SMTP_SESSIONS)."""

    def __init__(self, host: str, port: int, sender: str = "orders@alur.local",
                 sessions: int = 1) -> None:
        self._sender = sender
        self._idle: asyncio.LifoQueue[_Session] = asyncio.LifoQueue()
        self._all = [_Session(host, port) for _ in range(sessions)]
        for session in self._all:
            self._idle.put_nowait(session)

    async def send(self, to: str, subject: str, body: str, message_id: str) -> None:
        raw = compose(self._sender, to, subject, body, message_id)
        session = await self._idle.get()
        try:
            await asyncio.to_thread(session.send, self._sender, to, raw)
        finally:
            self._idle.put_nowait(session)

    async def close(self) -> None:
        for _ in self._all:  # each once it is idle
            session = await self._idle.get()
            await asyncio.to_thread(session.quit)


# SMTP's line ends: sendmail sends bytes as they are.
_SMTP_LINES = compat32.clone(linesep="\r\n")
_UTF8 = Charset("utf-8")
_UTF8.body_encoding = QP  # readable in the raw message, unlike base64


def compose(sender: str, to: str, subject: str, body: str, message_id: str) -> bytes:
    """The message as sent: plain text, 7-bit when it is ASCII, quoted-printable UTF-8 when
    not. Built with the email package's compat32 classes: the `email.policy.default` parser
    of every header cost a third of the notifications service's CPU under load."""
    for header in (sender, to, subject, message_id):
        if "\r" in header or "\n" in header:  # compat32 would write it as a header break
            raise InfrastructureError(f"a line break in an e-mail header: {header!r}",
                                      retriable=False)
    msg = MIMEText(body, "plain", "us-ascii" if body.isascii() else _UTF8)  # type: ignore[arg-type]
    msg["From"], msg["To"] = sender, to
    msg["Subject"] = subject if subject.isascii() else Header(subject, "utf-8")  # type: ignore[assignment]
    # A stable Message-ID: a re-send after a crash is recognisable as the same message.
    msg["Message-ID"] = message_id
    return msg.as_bytes(policy=_SMTP_LINES)


class _Session:
    def __init__(self, host: str, port: int) -> None:
        self._host, self._port = host, port
        self._smtp: smtplib.SMTP | None = None

    def send(self, sender: str, to: str, raw: bytes) -> None:
        try:
            try:
                self._session().sendmail(sender, [to], raw)
            except smtplib.SMTPServerDisconnected:
                self._smtp = None  # an idle session timed out: one fresh try
                self._session().sendmail(sender, [to], raw)
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

    def quit(self) -> None:
        if self._smtp is None:
            return
        try:
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
