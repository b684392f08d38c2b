"""A real SMTP server on loopback (aiosmtpd) that stores each message as a file.

Messages land in `<dir>/new/` as `<n>.eml`, written to a temporary name first and renamed, so a
reader never sees half a message.
"""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


class MaildirHandler:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        (directory / "new").mkdir(parents=True, exist_ok=True)
        (directory / "tmp").mkdir(parents=True, exist_ok=True)
        self._seq = itertools.count()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        name = f"{time.time_ns()}.{os.getpid()}.{next(self._seq)}.eml"
        tmp = self.directory / "tmp" / name
        content = envelope.original_content or b""
        tmp.write_bytes(content)
        os.replace(tmp, self.directory / "new" / name)
        return "250 Message accepted for delivery"


def start_sink(directory: Path, host: str, port: int) -> Controller:
    controller = Controller(MaildirHandler(directory), hostname=host, port=port)
    controller.start()
    return controller


def read_messages(directory: Path) -> list[bytes]:
    new = directory / "new"
    return [p.read_bytes() for p in sorted(new.glob("*.eml"))] if new.exists() else []
