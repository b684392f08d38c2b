"""docker-compose.yml, checked statically (no Docker engine runs here): it parses, every Alur
container runs a real `alur` command, and its ports and environment agree with the settings
classes, the Prometheus compose config and the Grafana provisioning."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from alur.cli import build_parser
from alur.infra import prometheus
from alur.settings import CARRIERS, SERVICES, Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
CONTAINERS: dict[str, dict[str, Any]] = COMPOSE["services"]
OURS = {name: c for name, c in CONTAINERS.items() if "build" in c}
SIMULATORS = ("smtp-sink", "gateway-sim", "carrier-kilat", "carrier-nusapost")


@pytest.fixture
def compose_settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings an Alur container sees: its environment, validated by the settings class."""
    environment = {repr(c["environment"]) for c in OURS.values()}
    assert len(environment) == 1, "every Alur container shares one environment"
    for key, value in next(iter(OURS.values()))["environment"].items():
        monkeypatch.setenv(key, str(value))
    return Settings()


def test_the_stack_has_every_component() -> None:
    assert set(OURS) == {*SERVICES, *SIMULATORS}
    assert {"kafka", "postgres", "prometheus", "grafana"} <= set(CONTAINERS)
    assert CONTAINERS["kafka"]["image"].startswith("apache/kafka:4.")


@pytest.mark.parametrize("name", sorted(OURS))
def test_each_container_runs_a_real_alur_command(name: str) -> None:
    command = OURS[name]["command"]
    args = build_parser().parse_args(command)  # exits (fails the test) on an unknown command
    assert (args.command, args.name) == ("run", name)


def test_the_environment_is_made_of_settings_fields() -> None:
    fields = {f"ALUR_{name.upper()}" for name in Settings.model_fields}
    for name, container in OURS.items():
        unknown = set(container["environment"]) - fields
        assert unknown == set(), f"{name} sets variables no setting reads: {unknown}"


def test_ports_and_credentials_agree_with_the_settings(compose_settings: Settings) -> None:
    s = compose_settings
    kafka = CONTAINERS["kafka"]["environment"]
    assert kafka["KAFKA_ADVERTISED_LISTENERS"] == \
        f"PLAINTEXT://{s.kafka_bootstrap},SHOPS://{s.kafka_shop_bootstrap}"
    assert f":{s.kafka_port}" in kafka["KAFKA_LISTENERS"]
    assert f"SHOPS://:{s.kafka_shop_ports[0]}" in kafka["KAFKA_LISTENERS"]
    assert "SHOPS:SASL_PLAINTEXT" in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]
    assert kafka["KAFKA_SUPER_USERS"] == "User:ANONYMOUS"
    assert kafka["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    pg = CONTAINERS["postgres"]["environment"]
    assert (pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"], pg["POSTGRES_DB"]) == \
        (s.pg_user, s.pg_password.get_secret_value(), s.pg_database)
    assert (s.pg_host, s.pg_port) == ("postgres", 5432)
    assert (s.smtp_host, s.gateway_host, s.kafka_host) == ("smtp-sink", "gateway-sim", "kafka")
    assert {s.carrier_url(c) for c in CARRIERS} == {
        f"http://carrier-{c}:{s.carrier_port(c)}" for c in CARRIERS}
    assert s.shipping_url == f"http://shipping:{s.shipping_port}"
    assert CONTAINERS["orders"]["ports"] == [f"{s.api_port}:{s.api_port}"]
    assert s.listen_host == "0.0.0.0"


def _probe_port(name: str) -> int:
    test = " ".join(CONTAINERS[name]["healthcheck"]["test"])
    found = re.search(r"127\.0\.0\.1[:', ]+(\d+)", test)
    assert found, f"{name}'s healthcheck names no local port: {test}"
    return int(found.group(1))


def test_healthchecks_probe_the_ports_the_processes_listen_on(compose_settings: Settings) -> None:
    s = compose_settings
    for name in SERVICES:
        assert "/readyz" in " ".join(CONTAINERS[name]["healthcheck"]["test"])
        assert _probe_port(name) == s.metrics_port(name)
    assert _probe_port("gateway-sim") == s.gateway_port
    assert _probe_port("smtp-sink") == s.smtp_port
    for carrier in CARRIERS:
        assert _probe_port(f"carrier-{carrier}") == s.carrier_port(carrier)


def test_dependencies_exist_and_health_conditions_have_healthchecks() -> None:
    for name, container in CONTAINERS.items():
        for dependency, spec in (container.get("depends_on") or {}).items():
            assert dependency in CONTAINERS, f"{name} depends on unknown {dependency}"
            if spec.get("condition") == "service_healthy":
                assert "healthcheck" in CONTAINERS[dependency], (name, dependency)
    for name in SERVICES:
        assert {"kafka", "postgres"} <= set(CONTAINERS[name]["depends_on"])


def test_prometheus_scrapes_the_compose_services_on_their_metrics_ports(
        compose_settings: Settings) -> None:
    mounts = {container: host for host, container, *_ in
              (v.split(":") for v in CONTAINERS["prometheus"]["volumes"])}
    config = yaml.safe_load((ROOT / mounts["/etc/prometheus/prometheus.yml"]).read_text())
    assert config == prometheus.compose_config(Settings.model_construct())
    targets = {t for c in config["scrape_configs"][0]["static_configs"] for t in c["targets"]}
    assert targets == {f"{name}:{compose_settings.metrics_port(name)}" for name in SERVICES}
    assert (ROOT / mounts["/etc/prometheus/rules"] / "alerts.yml").exists()


def test_grafana_mounts_the_provisioning_and_the_dashboards() -> None:
    grafana = CONTAINERS["grafana"]
    for volume in grafana["volumes"]:
        host = volume.split(":")[0]
        assert (ROOT / host).exists(), host
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (ROOT / "deploy/grafana/dashboards" / Path(home).name).exists()


def test_the_dockerfile_copies_what_exists_and_runs_alur() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for source in re.findall(r"^COPY (.+) \S+$", dockerfile, re.MULTILINE):
        for path in source.split():
            assert (ROOT / path).exists(), path
    assert 'ENTRYPOINT ["alur"]' in dockerfile
