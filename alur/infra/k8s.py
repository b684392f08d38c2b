"""Kubernetes manifests for running Alur beyond one machine, on an existing Kafka (Strimzi) and
PostgreSQL (e.g. CloudNativePG). Built here from the settings and the topic catalogue, so ports,
partition counts and probes cannot drift from the code; `alur deploy render` writes them under
deploy/k8s/, where a hand-written kustomization.yaml ties them together.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from alur.infra import prometheus
from alur.settings import CARRIERS, SECRETS, SERVICES, Settings
from schemas.catalogue import ALL_TOPICS

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
PARTITIONS = 12     # per topic: the ceiling for replicas of one consumer group
REPLICATION = 3
KAFKA_CLUSTER = "alur-kafka"                      # the Strimzi Kafka resource's name
KAFKA_BOOTSTRAP = f"{KAFKA_CLUSTER}-kafka-bootstrap"
POSTGRES_HOST = "alur-pg-rw"                      # CloudNativePG's read-write service
POSTGRES_SECRET = "alur-pg-app"                   # CloudNativePG's app user secret
# The Secret the operator makes with Alur's own secrets, one ALUR_* variable per key: every
# setting of SECRETS but the database password (which comes from POSTGRES_SECRET).
ALUR_SECRET = "alur-secrets"
UID = 10001                                       # the Dockerfile's user


# Services that serve HTTP besides /metrics: the shop API, the gateway's callbacks, the
# inventory admin API, the carriers' webhooks.
HTTP_PORTS: dict[str, Callable[[Settings], int]] = {
    "orders": lambda s: s.api_port, "payments": lambda s: s.payments_port,
    "inventory": lambda s: s.inventory_port, "shipping": lambda s: s.shipping_port}


def _labels(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/component": "service"}


def config(settings: Settings) -> dict[str, str]:
    """The ALUR_* variables every pod shares (the kustomization's ConfigMap)."""
    return {
        "ALUR_KAFKA_HOST": KAFKA_BOOTSTRAP, "ALUR_KAFKA_PORT": "9092",
        "ALUR_PG_HOST": POSTGRES_HOST, "ALUR_PG_PORT": "5432", "ALUR_PG_DATABASE": "app",
        "ALUR_SMTP_HOST": "smtp-sink", "ALUR_SMTP_PORT": str(settings.smtp_port),
        "ALUR_GATEWAY_HOST": "gateway-sim", "ALUR_GATEWAY_PORT": str(settings.gateway_port),
        # The gateway calls payments back through its Service (port 80 -> payments_port).
        "ALUR_PAYMENTS_HOST": "payments", "ALUR_PAYMENTS_PORT": str(settings.payments_port),
        # Each carrier simulator has a Service named carrier-<name>; carriers call shipping.
        "ALUR_CARRIER_HOST": "carrier-{carrier}",
        "ALUR_SHIPPING_HOST": "shipping", "ALUR_SHIPPING_PORT": str(settings.shipping_port),
        "ALUR_LISTEN_HOST": "0.0.0.0", "ALUR_PARTITIONS": str(PARTITIONS),
        "ALUR_METRICS_PORT_BASE": str(settings.metrics_port_base),
        "ALUR_STATE_DIR": "/tmp/alur", "ALUR_LOG_LEVEL": "info",
        # Refuses to start with any secret left at its local default (alur/settings.py).
        "ALUR_ENVIRONMENT": "production",
    }


def secret_variables() -> list[str]:
    """The keys of ALUR_SECRET: the ALUR_* variables of the secrets the pods read from it."""
    return [f"ALUR_{name.upper()}" for name in SECRETS if name != "pg_password"]


def _base_container(name: str) -> dict[str, Any]:
    """`alur run NAME` with the shared config, the database secret, and no privileges."""
    return {
        "name": name, "image": "alur", "args": ["run", name],
        "envFrom": [{"configMapRef": {"name": "alur-config"}},
                    {"secretRef": {"name": ALUR_SECRET}}],
        "env": [{"name": variable,
                 "valueFrom": {"secretKeyRef": {"name": POSTGRES_SECRET, "key": key}}}
                for variable, key in (("ALUR_PG_USER", "username"),
                                      ("ALUR_PG_PASSWORD", "password"))],
        "securityContext": {"runAsNonRoot": True, "runAsUser": UID,
                            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }


def _container(name: str, settings: Settings) -> dict[str, Any]:
    ports = [{"name": "metrics", "containerPort": settings.metrics_port(name)}]
    if name in HTTP_PORTS:
        ports.append({"name": "http", "containerPort": HTTP_PORTS[name](settings)})
    probe = {"httpGet": {"path": "/healthz", "port": "metrics"}, "periodSeconds": 10,
             "timeoutSeconds": 3, "failureThreshold": 6}
    return {
        **_base_container(name),
        "ports": ports,
        "startupProbe": {**probe, "periodSeconds": 2, "failureThreshold": 60},
        "livenessProbe": probe,
        "readinessProbe": {**probe, "httpGet": {"path": "/readyz", "port": "metrics"},
                           "periodSeconds": 5, "failureThreshold": 2},
        "resources": {"requests": {"cpu": "200m", "memory": "256Mi"},
                      "limits": {"memory": "512Mi"}},
    }


def service_resources(name: str, settings: Settings) -> list[dict[str, Any]]:
    labels = _labels(name)
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    # Leaving the consumer group cleanly takes a session timeout at worst.
                    "terminationGracePeriodSeconds": 30,
                    "containers": [_container(name, settings)],
                    "volumes": [{"name": "tmp", "emptyDir": {}}],
                    "topologySpreadConstraints": [{
                        "maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                        "whenUnsatisfiable": "ScheduleAnyway",
                        "labelSelector": {"matchLabels": labels}}],
                },
            },
        },
    }
    ports = [{"name": "metrics", "port": settings.metrics_port(name), "targetPort": "metrics"}]
    if name == "orders":
        ports.insert(0, {"name": "http", "port": 80, "targetPort": "http"})
    elif name in HTTP_PORTS:
        port = HTTP_PORTS[name](settings)
        ports.insert(0, {"name": "http", "port": port, "targetPort": "http"})
    service = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": name, "labels": labels},
               "spec": {"selector": labels, "ports": ports}}
    autoscaler = {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            # More consumers than partitions would sit idle: the partition count is the cap.
            "minReplicas": 2, "maxReplicas": PARTITIONS,
            "metrics": [{"type": "Resource", "resource": {
                "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
        },
    }
    budget = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
              "metadata": {"name": name, "labels": labels},
              "spec": {"maxUnavailable": 1, "selector": {"matchLabels": labels}}}
    return [deployment, service, autoscaler, budget]


def pod_monitor() -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor",
        "metadata": {"name": "alur", "labels": {"app.kubernetes.io/name": "alur"}},
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/component": "service"}},
            "podMetricsEndpoints": [{
                "port": "metrics", "path": "/metrics", "interval": "15s",
                # The same target label as the local and compose scrape configs.
                "relabelings": [{
                    "sourceLabels": ["__meta_kubernetes_pod_label_app_kubernetes_io_name"],
                    "targetLabel": "alur_service"}],
            }],
        },
    }


def prometheus_rule() -> dict[str, Any]:
    groups = [g for path in sorted((prometheus.DEPLOY / "rules").glob("*.yml"))
              for g in yaml.safe_load(path.read_text())["groups"]]
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
            "metadata": {"name": "alur", "labels": {"app.kubernetes.io/name": "alur"}},
            "spec": {"groups": groups}}


def kafka_topics() -> list[dict[str, Any]]:
    return [{
        "apiVersion": "kafka.strimzi.io/v1beta2", "kind": "KafkaTopic",
        "metadata": {"name": topic.replace(".", "-"),
                     "labels": {"strimzi.io/cluster": KAFKA_CLUSTER}},
        "spec": {"topicName": topic, "partitions": PARTITIONS, "replicas": REPLICATION,
                 "config": {"min.insync.replicas": 2, "retention.ms": 7 * 24 * 3600 * 1000}},
    } for topic in ALL_TOPICS]


def simulators(settings: Settings) -> list[dict[str, Any]]:
    """The gateway and carrier simulators and the SMTP sink, for a cluster that has no real
    ones (staging)."""
    out: list[dict[str, Any]] = []
    carriers = [(f"carrier-{c}", settings.carrier_port(c)) for c in CARRIERS]
    for name, port in (("gateway-sim", settings.gateway_port), ("smtp-sink", settings.smtp_port),
                       *carriers):
        labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/component": "simulator"}
        container = _base_container(name)
        container.update(
            ports=[{"name": "main", "containerPort": port}],
            readinessProbe={"tcpSocket": {"port": "main"}, "periodSeconds": 5},
            resources={"requests": {"cpu": "50m", "memory": "128Mi"},
                       "limits": {"memory": "256Mi"}})
        out += [
            {"apiVersion": "apps/v1", "kind": "Deployment",
             "metadata": {"name": name, "labels": labels},
             "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                      "template": {"metadata": {"labels": labels},
                                   "spec": {"containers": [container],
                                            "volumes": [{"name": "tmp", "emptyDir": {}}]}}}},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": labels},
             "spec": {"selector": labels,
                      "ports": [{"name": "main", "port": port, "targetPort": "main"}]}},
        ]
    return out


def _dump(docs: list[dict[str, Any]], what: str) -> str:
    header = (f"# {what}\n# Generated by alur/infra/k8s.py (`alur deploy render`); edit there, "
              "or patch in an overlay.\n")
    return header + "---\n".join(yaml.safe_dump(d, sort_keys=False) for d in docs)


def files(settings: Settings) -> dict[str, str]:
    out = {f"services/{name}.yaml": _dump(service_resources(name, settings),
                                          f"The {name} service: Deployment, Service, "
                                          "HorizontalPodAutoscaler, PodDisruptionBudget.")
           for name in SERVICES}
    out["monitoring.yaml"] = _dump([pod_monitor(), prometheus_rule()],
                                   "Prometheus Operator: scrape every service pod; the rules and "
                                   "alerts of deploy/prometheus/rules.")
    out["kafka-topics.yaml"] = _dump(kafka_topics(), "Strimzi topics with their partition counts.")
    out["simulators.yaml"] = _dump(simulators(settings), "Gateway and carrier simulators, "
                                                          "SMTP sink.")
    out["config.env"] = "".join(f"{k}={v}\n" for k, v in config(settings).items())
    return out


def write_manifests(settings: Settings) -> list[Path]:
    paths = []
    for name, text in files(settings).items():
        path = DEPLOY / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        paths.append(path)
    return paths
