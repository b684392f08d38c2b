"""Root exceptions of the runtime. `retriable` decides retry versus dead letter."""

from __future__ import annotations


class AlurError(Exception):
    """Root of the runtime's errors."""

    retriable = False


class InfrastructureError(AlurError):
    """A dependency (database, broker, gateway, SMTP) failed; `retriable`: may a retry help?"""

    def __init__(self, message: str, *, retriable: bool = True) -> None:
        super().__init__(message)
        self.retriable = retriable


class ConcurrencyConflict(AlurError):
    """Another writer appended to the stream first; reload and decide again."""

    retriable = True


class StreamBusy(InfrastructureError):
    """A partner call about this stream is in flight (its batch holds the stream's claim):
    try again in a moment."""

    def __init__(self, stream_id: str) -> None:
        super().__init__(f"order {stream_id} has a partner call in flight; try again shortly")


class InvalidEvent(AlurError):
    """The message can never be handled as it is (bad shape, impossible transition)."""


def is_retriable(exc: BaseException) -> bool:
    return bool(getattr(exc, "retriable", False))
