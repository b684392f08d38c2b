"""deploy/k8s: `kustomize build` succeeds, every built-in resource validates against the
Kubernetes JSON schemas (offline, strict), and the custom resources and the wiring between
resources agree with the code: commands, ports, probes, partition counts, scrape labels."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from alur.cli import build_parser
from alur.infra import k8s, prometheus
from alur.settings import SECRETS, SERVICES, Settings
from schemas.catalogue import ALL_TOPICS

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = "1.31.0"
# Operators' resources: not in the Kubernetes schemas; their wiring is checked below instead.
CUSTOM = {("monitoring.coreos.com/v1", "PodMonitor"),
          ("monitoring.coreos.com/v1", "PrometheusRule"),
          ("kafka.strimzi.io/v1beta2", "KafkaTopic")}


@pytest.fixture(scope="module")
def built() -> list[dict[str, Any]]:
    binary = ROOT / ".alur" / "bin" / "kustomize"
    if not binary.exists():
        pytest.fail("kustomize is missing: scripts/setup.sh builds it into .alur/bin with Go "
                    "1.22+ (install Go, then run make test again)")
    result = subprocess.run([str(binary), "build", str(k8s.DEPLOY)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def of_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def test_the_generated_manifests_are_committed() -> None:
    for name, text in k8s.files(Settings.model_construct()).items():
        assert (k8s.DEPLOY / name).read_text() == text, f"{name}: run `alur deploy render`"


def test_every_builtin_resource_validates_against_the_kubernetes_schemas(built) -> None:
    builtin = [d for d in built if (d["apiVersion"], d["kind"]) not in CUSTOM]
    assert {d["kind"] for d in builtin} >= {"Deployment", "Service", "HorizontalPodAutoscaler",
                                            "PodDisruptionBudget", "ConfigMap", "Namespace"}
    for doc in builtin:
        try:
            kubernetes_validate.validate(doc, KUBERNETES, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message} at "
                        f"{'.'.join(map(str, exc.path))}")
    assert {d["metadata"].get("namespace") for d in built if d["kind"] != "Namespace"} == {"alur"}


def test_each_service_runs_its_alur_command_with_probes_on_its_metrics_port(built) -> None:
    settings = Settings.model_construct()
    deployments = of_kind(built, "Deployment")
    config = of_kind(built, "ConfigMap")
    [config_map] = config.values()
    for name in SERVICES:
        [container] = deployments[name]["spec"]["template"]["spec"]["containers"]
        args = build_parser().parse_args(container["args"])
        assert (args.command, args.name) == ("run", name)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["metrics"] == settings.metrics_port(name)
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
        assert container["envFrom"] == [
            {"configMapRef": {"name": config_map["metadata"]["name"]}},
            {"secretRef": {"name": k8s.ALUR_SECRET}}]
        assert container["resources"]["requests"] and container["resources"]["limits"]
    assert {f"ALUR_{k.upper()}" for k in Settings.model_fields} >= set(config_map["data"])
    # A production run: every secret from a Secret, none at its local default.
    assert config_map["data"]["ALUR_ENVIRONMENT"] == "production"
    assert not set(k8s.secret_variables()) & set(config_map["data"])
    assert {f"ALUR_{k.upper()}" for k in SECRETS} == {*k8s.secret_variables(),
                                                      "ALUR_PG_PASSWORD"}


def test_autoscaling_is_capped_by_the_topic_partitions(built) -> None:
    topics = of_kind(built, "KafkaTopic")
    assert {t["spec"]["topicName"] for t in topics.values()} == set(ALL_TOPICS)
    partitions = {t["spec"]["partitions"] for t in topics.values()}
    [config_map] = of_kind(built, "ConfigMap").values()
    assert partitions == {int(config_map["data"]["ALUR_PARTITIONS"])}
    for name, hpa in of_kind(built, "HorizontalPodAutoscaler").items():
        assert hpa["spec"]["scaleTargetRef"]["name"] == name
        assert name in of_kind(built, "Deployment")
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"] <= min(partitions)
    assert set(of_kind(built, "HorizontalPodAutoscaler")) == set(SERVICES)
    for topic in topics.values():
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == k8s.KAFKA_CLUSTER
        assert topic["spec"]["replicas"] >= topic["spec"]["config"]["min.insync.replicas"]


def test_the_pod_monitor_selects_every_service_pod_and_its_metrics_port(built) -> None:
    [monitor] = of_kind(built, "PodMonitor").values()
    selector = monitor["spec"]["selector"]["matchLabels"]
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    selected = set()
    for name, deployment in of_kind(built, "Deployment").items():
        template = deployment["spec"]["template"]
        if selector.items() <= template["metadata"]["labels"].items():
            selected.add(name)
            [container] = template["spec"]["containers"]
            assert endpoint["port"] in {p["name"] for p in container["ports"]}
    assert selected == set(SERVICES)
    assert endpoint["relabelings"][0]["targetLabel"] == "alur_service"


def test_the_prometheus_rule_carries_the_tested_rule_files(built) -> None:
    [rule] = of_kind(built, "PrometheusRule").values()
    expected = [g for path in sorted((prometheus.DEPLOY / "rules").glob("*.yml"))
                for g in yaml.safe_load(path.read_text())["groups"]]
    assert rule["spec"]["groups"] == expected


def test_services_select_their_own_pods(built) -> None:
    deployments = of_kind(built, "Deployment")
    for name, service in of_kind(built, "Service").items():
        labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items()
        [container] = deployments[name]["spec"]["template"]["spec"]["containers"]
        names = {p["name"] for p in container["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= names
