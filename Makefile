# The README's words: `make demo` runs the main job, `make test` the whole suite.
# Both set up what is missing first (scripts/setup.sh), so they work on a fresh machine.
.PHONY: setup demo test faults unit lint infra-up infra-down infra-status schemas lock

setup:
	@scripts/setup.sh

demo: setup
	.venv/bin/alur demo

# The fault suite runs after the rest, in a session of its own: it has its own stack (three
# Kafka nodes) and kills parts of it, so nothing else should share the machine's CPUs with it.
# --durations names the slowest tests, so the suite's time (kept under 20 minutes) has a record.
test: setup lint
	.venv/bin/pytest -m "not fault" --durations=15
	.venv/bin/pytest -m fault --durations=5

faults: setup
	.venv/bin/pytest -m fault

unit: setup
	.venv/bin/pytest tests/unit

lint: setup
	.venv/bin/ruff check .
	.venv/bin/mypy

infra-up: setup
	.venv/bin/alur infra up

infra-down:
	.venv/bin/alur infra down

infra-status:
	.venv/bin/alur infra status

schemas: setup
	.venv/bin/alur schemas samples
	.venv/bin/alur schemas export

# The lock files: every package and its hashes, resolved from pyproject.toml's declared
# dependencies. setup.sh (so `make test`, `make demo` and CI) installs requirements-dev.lock,
# the Dockerfile requirements.lock. Run after changing a dependency, or to upgrade (then run
# the whole suite); pip-tools runs from a virtualenv of its own.
PIP_COMPILE = .alur/pip-tools/bin/pip-compile --quiet --generate-hashes --strip-extras \
	--allow-unsafe --no-emit-find-links
lock:
	[ -x .alur/pip-tools/bin/pip-compile ] || (python3 -m venv .alur/pip-tools && \
		.alur/pip-tools/bin/pip install -q "pip-tools>=7.4")
	$(PIP_COMPILE) --extra dev --output-file requirements-dev.lock pyproject.toml
	$(PIP_COMPILE) --constraint requirements-dev.lock --output-file requirements.lock pyproject.toml
