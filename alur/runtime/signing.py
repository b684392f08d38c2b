"""One HMAC-SHA256 request signature scheme for every signed HTTP call Alur makes or takes:
shops signing API requests, the payment gateway's callbacks, carrier and shop webhooks.

The signed message binds timestamp, method and path (with its query) to the raw body, so a
signature cannot be replayed at another time or against another endpoint.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_VERSION = "v1"


def signed_message(timestamp: str, method: str, path: str, body: bytes) -> bytes:
    return f"{timestamp}.{method.upper()}.{path}.".encode() + body


def sign(secret: str, timestamp: str, method: str, path: str, body: bytes) -> str:
    """The signature header value (`v1=<hex>`) for a request."""
    digest = hmac.new(secret.encode(), signed_message(timestamp, method, path, body),
                      hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}={digest}"


def signed_headers(secret: str, method: str, path: str, body: bytes,
                   prefix: str = "Alur") -> dict[str, str]:
    """`<prefix>-Timestamp` and `<prefix>-Signature` headers for a request sent now."""
    timestamp = str(int(time.time()))
    return {f"{prefix}-Timestamp": timestamp,
            f"{prefix}-Signature": sign(secret, timestamp, method, path, body)}


class BadSignature(ValueError):
    """The request is not signed with the shared secret."""


class StaleSignature(BadSignature):
    """The signature's timestamp is too far from our clock (a replay, or a skewed clock)."""


def verify(secret: str, timestamp: str | None, signature: str | None, method: str, path: str,
           body: bytes, tolerance: float, now: float | None = None) -> None:
    """Raise BadSignature unless `signature` signs this request within `tolerance` seconds."""
    if not timestamp or not signature:
        raise BadSignature("the request is not signed")
    try:
        skew = abs((time.time() if now is None else now) - int(timestamp))
    except ValueError as exc:
        raise BadSignature("the signature timestamp is not a number") from exc
    if skew > tolerance:
        raise StaleSignature(f"the signature timestamp is more than {tolerance:g} s away from "
                           "our clock")
    expected = sign(secret, timestamp, method, path, body)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise BadSignature("the signature does not match the request")
