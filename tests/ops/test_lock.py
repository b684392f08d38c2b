"""The lock files: what setup.sh (so `make test`, `make demo` and CI) and the Dockerfile
install. Each declared dependency is pinned, with hashes, the same in both files, and the
environment running this suite is the one the lock describes."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==(\S+) \\\n((?:    --hash=sha256:[0-9a-f]{64}(?: \\)?\n)+)",
                 re.MULTILINE)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lock: str) -> dict[str, str]:
    text = (ROOT / lock).read_text()
    found = {canonical(name): pinned for name, pinned, _ in PIN.findall(text)}
    # every requirement line is a pin with its hashes: nothing unpinned, nothing unhashed
    assert len(found) == len(re.findall(r"^[A-Za-z0-9]", text, re.MULTILINE)), lock
    return found


def declared(*extras: str) -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = list(project["dependencies"])
    for extra in extras:
        names += project["optional-dependencies"][extra]
    return {canonical(re.split(r"[\[<>=~!; ]", name, maxsplit=1)[0]) for name in names}


def test_every_declared_dependency_is_pinned_with_hashes_the_same_in_both_locks() -> None:
    runtime, dev = pins("requirements.lock"), pins("requirements-dev.lock")
    assert declared() <= set(runtime), declared() - set(runtime)
    assert declared("dev") <= set(dev), declared("dev") - set(dev)
    assert {name: dev[name] for name in runtime} == runtime


def test_the_suite_runs_on_what_the_dev_lock_pins() -> None:
    drift = {}
    for name, pinned in pins("requirements-dev.lock").items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            installed = None
        if installed != pinned:
            drift[name] = (pinned, installed)
    assert not drift, f"installed differs from requirements-dev.lock (scripts/setup.sh): {drift}"


def test_setup_and_the_image_install_from_the_locks() -> None:
    setup = (ROOT / "scripts/setup.sh").read_text()
    assert "--require-hashes -r requirements-dev.lock" in setup
    assert "--no-deps -e ." in setup
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "--require-hashes -r requirements.lock" in dockerfile
    assert "--no-deps ." in dockerfile
