# The README's words: `make demo` runs the main job, `make test` the whole suite.
# Both set up what is missing first (scripts/setup.sh), so they work on a fresh machine.
.PHONY: setup demo test unit lint infra-up infra-down infra-status schemas

setup:
	@scripts/setup.sh

demo: setup
	.venv/bin/alur demo

test: setup lint
	.venv/bin/pytest

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
