#!/usr/bin/env bash
# Installs what Alur needs on a fresh Debian machine, and nothing twice:
# PostgreSQL server binaries and Prometheus (Debian packages), Java and Maven if absent, the Python
# virtualenv with the project, the Kafka broker jars from Maven Central, and kustomize.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
  echo "setup: '$*' needs root; install it by hand" >&2; exit 1; fi; }

apt_updated=""
apt_install() {
  if ! command -v apt-get >/dev/null; then
    echo "setup: missing $*, and this is not a Debian-like system: install it by hand" >&2; exit 1
  fi
  [ -n "$apt_updated" ] || { as_root apt-get update -qq; apt_updated=1; }
  echo "setup: installing $* (Debian packages)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  # Alur runs its own cluster; keep the package from creating and starting a host-wide one.
  if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
    as_root mkdir -p /etc/postgresql-common
    echo "create_main_cluster = false" | as_root tee /etc/postgresql-common/createcluster.conf >/dev/null
  fi
  apt_install postgresql
fi
# Prometheus and promtool: the local scrape target of `alur infra up` and the alert-rule tests.
# Where init scripts run, the package also starts a host-wide server on :9090; Alur ignores it.
command -v promtool >/dev/null || apt_install prometheus
command -v java >/dev/null || apt_install openjdk-17-jre-headless
command -v mvn >/dev/null || apt_install maven

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "setup: Python 3.11 or newer is needed ($python is $("$python" --version 2>&1))" >&2; exit 1
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=.venv/.alur-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ requirements-dev.lock -nt "$stamp" ]; then
  # The exact versions the suite was run with, each checked against its hash
  # (requirements-dev.lock, made by `make lock`); then the project itself, with nothing more.
  echo "setup: installing Python packages into .venv (requirements-dev.lock)"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q --require-hashes -r requirements-dev.lock
  .venv/bin/pip install -q --no-deps -e .
  touch "$stamp"
fi
# kustomize, for the test that builds and validates deploy/k8s: built once from the Go module
# proxy into .alur/bin (no Debian package carries a current one).
kustomize_version=v5.5.0
# `go install` builds report "(devel)" as their version, hence the stamp file.
if [ ! -x .alur/bin/kustomize ] || [ "$(cat .alur/bin/.kustomize-version 2>/dev/null)" != "$kustomize_version" ]; then
  if ! command -v go >/dev/null; then
    # Only the test of deploy/k8s needs it; the demo runs without. That test says what is missing.
    echo "setup: Go is missing, so kustomize is not built (needed by tests/ops/test_k8s.py)" >&2
  else
    echo "setup: building kustomize $kustomize_version into .alur/bin (Go module proxy)"
    GOBIN="$PWD/.alur/bin" GOFLAGS=-mod=mod go install "sigs.k8s.io/kustomize/kustomize/v5@$kustomize_version"
    echo "$kustomize_version" > .alur/bin/.kustomize-version
  fi
fi
.venv/bin/python -c 'from alur.infra.kafka import ensure_jars; from alur.settings import Settings; ensure_jars(Settings())'
echo "setup: ready"
