"""Dependencies run one way: schemas -> runtime -> services -> tools, infrastructure,
simulators, demo and CLI. A module may import from its own layer and the layers before it,
never from one after it (function-level and TYPE_CHECKING imports count too). So the runtime
knows no service, a service knows no tool or simulator, and a simulator is written against a
service's port, not the reverse."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The first prefix that matches names a module's layer (a package's longest names first).
LAYERS: tuple[tuple[str, int], ...] = (
    ("schemas", 0),
    ("alur.runtime", 1), ("alur.settings", 1), ("alur.progress", 1),
    ("services", 2),
    ("alur.tools", 3), ("alur.infra", 3), ("alur.simulators", 3), ("alur.demo", 3),
    ("alur.cli", 3),
)
NAMES = ("schemas", "runtime", "services", "tools, infrastructure, simulators, demo and CLI")


def layer(module: str) -> int | None:
    for prefix, rank in LAYERS:
        if module == prefix or module.startswith(prefix + "."):
            return rank
    return None  # the standard library, a third-party package, or the `alur` package itself


def module_of(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(tree: ast.AST, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in the tree, relative ones resolved."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[:len(package) - (node.level - 1)]
                base = ".".join([*package, base] if base else package)
            found.append((node.lineno, base))
            # `from alur import tools` names a module too
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def wrong_way(root: Path) -> list[str]:
    """Each import that runs against the layers, as `path:line: a (layer) imports b (layer)`."""
    out = []
    for top in ("schemas", "alur", "services"):
        for path in sorted((root / top).rglob("*.py")):
            module = module_of(path, root)
            mine = layer(module)
            if mine is None:
                continue
            tree = ast.parse(path.read_text(), str(path))
            for line, imported in imports(tree, module, path.name == "__init__.py"):
                theirs = layer(imported)
                if theirs is not None and theirs > mine:
                    out.append(f"{path.relative_to(root)}:{line}: {module} ({NAMES[mine]}) "
                               f"imports {imported} ({NAMES[theirs]})")
    return sorted(set(out))


def test_no_module_imports_from_a_later_layer() -> None:
    assert wrong_way(ROOT) == []


def test_a_planted_wrong_way_import_is_found(tmp_path: Path) -> None:
    for top in ("schemas", "alur/runtime", "services/orders", "alur/tools"):
        (tmp_path / top).mkdir(parents=True)
    (tmp_path / "alur/runtime/fine.py").write_text("from schemas import Event\n")
    (tmp_path / "alur/tools/fine.py").write_text("from services.orders import domain\n")
    (tmp_path / "services/orders/reader.py").write_text(
        "def read():\n    from alur.tools.events import read\n    return read\n")
    (tmp_path / "alur/runtime/knows.py").write_text("from ..tools import trace\n")
    (tmp_path / "schemas/up.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import alur.runtime.db\n")
    assert wrong_way(tmp_path) == [
        "alur/runtime/knows.py:1: alur.runtime.knows (runtime) imports alur.tools "
        "(tools, infrastructure, simulators, demo and CLI)",
        "alur/runtime/knows.py:1: alur.runtime.knows (runtime) imports alur.tools.trace "
        "(tools, infrastructure, simulators, demo and CLI)",
        "schemas/up.py:3: schemas.up (schemas) imports alur.runtime.db (runtime)",
        "services/orders/reader.py:2: services.orders.reader (services) imports "
        "alur.tools.events (tools, infrastructure, simulators, demo and CLI)",
        "services/orders/reader.py:2: services.orders.reader (services) imports "
        "alur.tools.events.read (tools, infrastructure, simulators, demo and CLI)",
    ]
