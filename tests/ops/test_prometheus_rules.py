"""deploy/prometheus: the configs and rules load in promtool, every alert has unit tests that
pass, and the committed scrape configs are what the settings generate."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from alur.infra import prometheus
from alur.settings import SERVICES, Settings

DEPLOY = prometheus.DEPLOY
RULES = sorted((DEPLOY / "rules").glob("*.yml"))
TESTS = sorted((DEPLOY / "tests").glob("*.yml"))


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.fail("promtool is missing: scripts/setup.sh installs the Debian 'prometheus' "
                    "package")
    return subprocess.run([tool, *map(str, args)], capture_output=True, text=True, timeout=120)


def test_the_rule_files_pass_promtool_check() -> None:
    result = promtool("check", "rules", *RULES)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus.compose.yml"])
def test_the_scrape_configs_pass_promtool_check(config: str) -> None:
    result = promtool("check", "config", DEPLOY / config)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_alert_unit_tests_pass() -> None:
    result = promtool("test", "rules", *TESTS)
    assert result.returncode == 0, result.stdout + result.stderr


def _alerts() -> set[str]:
    return {rule["alert"] for path in RULES for group in yaml.safe_load(path.read_text())["groups"]
            for rule in group["rules"] if "alert" in rule}


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert _alerts() - firing == set(), "alerts never tested firing"
    assert _alerts() - quiet == set(), "alerts never tested staying quiet"


def test_every_alert_has_a_runbook_entry() -> None:
    runbook = (DEPLOY / "README.md").read_text()
    assert {a for a in _alerts() if f"### {a}" not in runbook} == set()


def test_the_committed_scrape_configs_are_what_the_settings_generate() -> None:
    defaults = Settings.model_construct()
    assert yaml.safe_load((DEPLOY / "prometheus.yml").read_text()) == \
        prometheus.local_config(defaults), "run `alur deploy render`"
    assert yaml.safe_load((DEPLOY / "prometheus.compose.yml").read_text()) == \
        prometheus.compose_config(defaults), "run `alur deploy render`"


def test_every_service_is_scraped_on_its_metrics_port() -> None:
    settings = Settings.model_construct()
    job = prometheus.local_config(settings)["scrape_configs"][0]
    scraped = {c["labels"]["alur_service"]: c["targets"][0] for c in job["static_configs"]}
    assert scraped == {s: f"127.0.0.1:{settings.metrics_port(s)}" for s in SERVICES}
