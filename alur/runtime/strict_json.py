"""Request bodies parsed strictly, so that no parse failure becomes a 500 and nothing ambiguous
is accepted.

Python's `json.loads`, which FastAPI uses, raises RecursionError on deep nesting, ValueError on
a 5,000-digit integer, UnicodeDecodeError on bad UTF-8 (all of which FastAPI turned into a 500
here), accepts NaN and Infinity, and lets the last of two equal keys win silently
(`"method": "card", "method": "cod"` was recorded as cash on delivery). `loads` refuses all of
them with `json.JSONDecodeError`, which FastAPI answers as a validation problem (4xx).
`StrictJSONRoute` makes a FastAPI router parse every JSON body this way.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

MAX_DEPTH = 32          # objects and arrays inside each other; our bodies need 5
MAX_NUMBER_LENGTH = 40  # characters of one number literal; money fits in 19 digits


def loads(raw: bytes | str) -> Any:
    """The JSON value of `raw`, or json.JSONDecodeError saying what is wrong with it."""
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise json.JSONDecodeError(f"the body is not UTF-8 ({exc.reason})",
                                       "", exc.start) from None
    else:
        text = raw
    try:
        value = json.loads(text, object_pairs_hook=_object, parse_int=_int,
                           parse_float=_float, parse_constant=_constant)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise json.JSONDecodeError(f"nested deeper than {MAX_DEPTH} levels", text, 0) from None
    except _Refused as exc:
        raise json.JSONDecodeError(str(exc), text, 0) from None
    _check_depth(value, text)
    return value


class _Refused(ValueError):
    pass


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Refused(f"duplicate key {key[:64]!r}")
        out[key] = value
    return out


def _int(literal: str) -> int:
    if len(literal) > MAX_NUMBER_LENGTH:
        raise _Refused(f"a number of {len(literal)} digits is out of range")
    return int(literal)


def _float(literal: str) -> float:
    value = float(literal) if len(literal) <= MAX_NUMBER_LENGTH else math.inf
    if not math.isfinite(value):
        raise _Refused(f"the number {literal[:MAX_NUMBER_LENGTH]} is out of range")
    return value


def _constant(name: str) -> Any:
    raise _Refused(f"{name} is not JSON")


def _check_depth(value: Any, text: str) -> None:
    """Iteratively, so that the check itself cannot run out of stack."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node \
            if isinstance(node, list) else ()
        for child in children:
            if isinstance(child, dict | list):
                if depth + 1 > MAX_DEPTH:
                    raise json.JSONDecodeError(f"nested deeper than {MAX_DEPTH} levels", text, 0)
                stack.append((child, depth + 1))


class StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads(await self.body())
        return self._json


class StrictJSONRoute(APIRoute):
    """A route whose JSON body is parsed by `loads` (pass as an APIRouter's route_class)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict
