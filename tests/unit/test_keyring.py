"""Sealing personal data (alur/runtime/keyring.py): what is sealed opens only with its own
customer's key, and a service opens a batch's values with one key look-up."""

from __future__ import annotations

import asyncio
import os

import pytest

from alur.runtime.keyring import Erased, KeyLoader, seal, unseal

KEY = os.urandom(32)


def test_a_sealed_value_opens_with_its_key_and_customer_only() -> None:
    sealed = seal(KEY, "cus_a", {"customer": {"email": "a@example.com"}}, ["email"])
    assert "a@example.com" not in sealed.model_dump_json() and sealed.fields == ["email"]
    assert unseal(KEY, sealed) == {"customer": {"email": "a@example.com"}}
    with pytest.raises(Erased):
        unseal(os.urandom(32), sealed)
    with pytest.raises(Erased):  # moved to another customer: the associated data differs
        unseal(KEY, sealed.model_copy(update={"key_id": "cus_b"}))


async def test_values_opened_in_one_turn_take_one_look_up_and_a_missing_key_is_erased(
        ) -> None:
    asked: list[list[str]] = []
    keys = {"cus_a": KEY, "cus_b": os.urandom(32)}

    async def fetch(ids: list[str]) -> dict[str, bytes]:
        asked.append(sorted(ids))
        return {i: keys[i] for i in ids if i in keys}

    loader = KeyLoader(fetch)
    values = [seal(keys[c], c, {"n": n}, ["n"]) for n, c in enumerate(["cus_a", "cus_b",
                                                                        "cus_a"])]
    opened = await asyncio.gather(*(loader.open(v) for v in values))
    assert [o["n"] for o in opened] == [0, 1, 2] and asked == [["cus_a", "cus_b"]]
    del keys["cus_a"]  # forgotten: the next turn asks again and finds no key
    with pytest.raises(Erased):
        await loader.open(values[0])
    assert asked[-1] == ["cus_a"]
