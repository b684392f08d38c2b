"""Secrets in the settings: never shown, handed to child processes whole, and outside a local
run never left at their `alur-local-*` defaults."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from alur.infra.stack import settings_env
from alur.settings import SECRETS, Settings

OWN = {"pg_password": "pg-9f1c", "kilat_secret": "k-77ab", "nusapost_secret": "n-12cd",
       "inventory_admin_token": "adm-5e5e", "gateway_callback_secret": "gw-0b0b",
       "identity_pepper": "pepper-3a3a3a3a3a3a"}


def test_a_secret_is_never_shown_but_reaches_a_child_process_whole() -> None:
    settings = Settings(**OWN)
    shown = f"{settings!r} {settings.model_dump()}"
    assert not any(value in shown for value in OWN.values())
    env = settings_env(settings)
    assert {name: env[f"ALUR_{name.upper()}"] for name in SECRETS} == OWN
    assert ":pg-9f1c@" in settings.pg_dsn and settings.carrier_secret("kilat") == "k-77ab"


def test_a_production_run_refuses_every_default_secret_and_names_each() -> None:
    assert set(SECRETS) == set(OWN)
    Settings()  # a local run keeps the defaults
    with pytest.raises(ValidationError) as refused:
        Settings(environment="production", **{**OWN, "kilat_secret": "alur-local-kilat-secret",
                                              "identity_pepper": "alur-local-identity-pepper"})
    assert "ALUR_KILAT_SECRET, ALUR_IDENTITY_PEPPER" in str(refused.value)
    assert "ALUR_PG_PASSWORD" not in str(refused.value)
    assert Settings(environment="production", **OWN).environment == "production"
