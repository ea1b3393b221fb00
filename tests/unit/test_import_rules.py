"""The import rule of fleet/, checked on the import graph (docs/design.md, "Import rules").

``fleet.local`` and ``fleet.aws`` use ``fleet.core``, never each other; ``fleet.core`` uses
neither (nor the CLI); the Lambda package (``fleet.core`` + ``fleet.aws``) needs nothing
outside itself; ``infra`` imports ``fleet.core`` only (the one config model, shared with the
functions and the local fleet) and reads the rest of fleet/ as files to package. Every import
counts, including those inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]

# (importer prefix, imported prefixes it must never reach)
FORBIDDEN = {
    "fleet.core": ("fleet.aws", "fleet.local", "fleet.cli", "fleet.errors", "fleet.__main__"),
    "fleet.aws": ("fleet.local", "fleet.cli", "fleet.errors", "fleet.__main__"),
    "fleet.local": ("fleet.aws", "fleet.cli", "fleet.__main__"),
    "infra": ("fleet",),
}
# (importer prefix, the prefixes it may reach inside a banned one)
ALLOWED = {"infra": ("fleet.core",)}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, module: str) -> set[str]:
    """Every module ``path`` imports (``from a import b`` counts as ``a`` and ``a.b``)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def import_graph(root: Path, packages: tuple[str, ...]) -> dict[str, set[str]]:
    graph = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            module = module_name(path, root)
            graph[module] = imports_of(path, module)
    return graph


def within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def violations(graph: dict[str, set[str]]) -> list[str]:
    found = []
    for importer, imported in sorted(graph.items()):
        for prefix, banned in FORBIDDEN.items():
            if not within(importer, prefix):
                continue
            allowed = ALLOWED.get(prefix, ())
            found += [
                f"{importer} imports {name}"
                for name in sorted(imported)
                if any(within(name, b) for b in banned)
                and not any(within(name, a) for a in allowed)
            ]
    return found


def test_local_and_aws_use_core_never_each_other_and_core_uses_neither():
    graph = import_graph(ROOT, ("fleet", "infra"))
    assert {"fleet.core.retire", "fleet.aws.handlers.scaler", "fleet.local.fleet"} <= set(graph)
    assert violations(graph) == []
    # Both fleets do use core (the rule is not met by accident of an empty graph), and so do
    # the Pulumi program and both fleets' settings: one config model.
    assert "fleet.core.retire" in graph["fleet.aws.handlers.scaler"]
    assert "fleet.core.retire" in graph["fleet.local.hosts"]
    assert "fleet.core.config.stack" in graph["infra.config"]
    assert "fleet.core.config.settings" in graph["fleet.aws.handlers.settings"]
    assert "fleet.core.config.settings" in graph["fleet.local.registration"]


def test_the_config_model_needs_no_pulumi():
    """fleet.core ships to Lambda, where there is no pulumi: the config model must not need it."""
    graph = import_graph(ROOT, ("fleet",))
    core = {m: names for m, names in graph.items() if within(m, "fleet.core")}
    assert "fleet.core.config.stack" in core
    assert [
        f"{m} imports {n}"
        for m, names in sorted(core.items())
        for n in sorted(names)
        if within(n, "pulumi") or within(n, "pulumi_aws")
    ] == []


def test_the_lambda_package_is_closed_under_its_imports():
    """Everything core + aws import from fleet/ is in core + aws: the zip needs no more."""
    graph = import_graph(ROOT, ("fleet",))
    shipped = {m for m in graph if within(m, "fleet.core") or within(m, "fleet.aws")}
    needed = {
        name
        for module in shipped
        for name in graph[module]
        if within(name, "fleet") and name in graph
    }
    assert needed - shipped - {"fleet"} == set()


def test_the_check_catches_a_forbidden_import(tmp_path):
    """The rule can fail: a core module importing the local fleet, even inside a function."""
    (tmp_path / "fleet" / "core").mkdir(parents=True)
    (tmp_path / "fleet" / "__init__.py").write_text("")
    (tmp_path / "fleet" / "core" / "__init__.py").write_text("")
    (tmp_path / "fleet" / "core" / "bad.py").write_text(
        "def f():\n    from fleet.local import docker\n"
    )
    (tmp_path / "fleet" / "core" / "relative.py").write_text("from ..aws import adapters\n")
    (tmp_path / "infra").mkdir()
    (tmp_path / "infra" / "__init__.py").write_text("")
    (tmp_path / "infra" / "ok.py").write_text("from fleet.core.config import stack\n")
    (tmp_path / "infra" / "bad.py").write_text("import fleet.aws.handlers.settings\n")
    graph = import_graph(tmp_path, ("fleet", "infra"))
    assert violations(graph) == [
        "fleet.core.bad imports fleet.local",
        "fleet.core.bad imports fleet.local.docker",
        "fleet.core.relative imports fleet.aws",
        "fleet.core.relative imports fleet.aws.adapters",
        "infra.bad imports fleet.aws.handlers.settings",
    ]
