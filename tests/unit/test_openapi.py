"""The committed OpenAPI document is the API's: regenerate it with `alur schemas export`."""

import json

from services.orders import asyncapi
from services.orders.api import openapi


def test_the_committed_openapi_document_matches_the_code() -> None:
    committed = json.loads(openapi.COMMITTED.read_text())
    assert committed == openapi.document(), (
        "services/orders/openapi.json is stale: run `alur schemas export` and commit it")


def test_every_route_is_documented_with_auth_and_its_problems() -> None:
    doc = openapi.document()
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            assert op.get("security") == [{"HTTPBearer": []}], (method, path)
            assert "401" in op["responses"] and op.get("description"), (method, path)
            if method == "post":
                names = {p["name"] for p in op.get("parameters", [])}
                assert "Idempotency-Key" in names, path


def test_the_committed_asyncapi_document_of_the_shop_topics_matches_the_code() -> None:
    committed = json.loads(asyncapi.COMMITTED.read_text())
    assert committed == asyncapi.document(), (
        "services/orders/asyncapi.json is stale: run `alur schemas export` and commit it")
