"""JSON-lines logs: one object per line with time, level, service, logger and message, plus the
order id, event id and correlation id of the message being handled (set by the batch processor
through context variables, so every log call inside a handler carries them).

Logs never carry customer data: messages name orders by id, and as a safety net anything that
looks like an e-mail address or an international phone number is masked before the line is
written (exception texts, e.g. a validation error quoting its input, are the usual way such data
sneaks in).
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

_order_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("order_id", default=None)
_event_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("event_id", default=None)
_correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "correlation_id", default=None)

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# Phone numbers in international form only, so that offsets, counts and dates stay readable.
_PHONE = re.compile(r"(?<![\w+])\+\d[\d ().-]{6,}\d")


def redact(text: str) -> str:
    """Mask e-mail addresses and phone numbers."""
    return _PHONE.sub("[phone]", _EMAIL.sub("[email]", text))


@contextmanager
def message_context(order_id: str, event_id: str, correlation_id: str) -> Iterator[None]:
    """Tag every log line written inside the block with the message's ids."""
    tokens = (_order_id.set(order_id), _event_id.set(event_id),
              _correlation_id.set(correlation_id))
    try:
        yield
    finally:
        _order_id.reset(tokens[0])
        _event_id.reset(tokens[1])
        _correlation_id.reset(tokens[2])


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str = "alur") -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for key, var in (("order_id", _order_id), ("event_id", _event_id),
                         ("correlation_id", _correlation_id)):
            value = getattr(record, key, None) or var.get()
            if value:
                line[key] = str(value)
        if record.exc_info:
            line["error"] = redact("".join(traceback.format_exception(*record.exc_info)))
        return json.dumps(line, ensure_ascii=False)


def logging_config(service: str, level: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` that writes JSON lines to stderr."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter, "service": service}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json",
                                "stream": "ext://sys.stderr"}},
        "root": {"level": level.upper(), "handlers": ["stderr"]},
    }


def configure(service: str, level: str) -> None:
    """Install the JSON handler for a process that is not a faust worker."""
    import logging.config

    logging.config.dictConfig(logging_config(service, level))
