"""The size limits of the product's code (docs/design.md, "Size limits"): no module over 400
lines and no function over 60 unless a reason is written next to it, in the module's
docstring ("Size: ...") or in a comment right above the function ("# Long on purpose: ...")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("fleet", "infra")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def oversized(root: Path) -> list[str]:
    found = []
    for package in PRODUCT:
        for path in sorted((root / package).rglob("*.py")):
            text = path.read_text()
            lines = text.splitlines()
            tree = ast.parse(text)
            name = path.relative_to(root).as_posix()
            docstring = ast.get_docstring(tree) or ""
            if len(lines) > MAX_MODULE_LINES and "Size:" not in docstring:
                found.append(f"{name}: {len(lines)} lines")
            for node in ast.walk(tree):
                if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                length = node.end_lineno - node.lineno + 1
                first = min([node.lineno, *[d.lineno for d in node.decorator_list]])
                if length > MAX_FUNCTION_LINES and not _reason_above(lines, first):
                    found.append(f"{name}:{node.lineno} {node.name}: {length} lines")
    return found


def _reason_above(lines: list[str], first: int) -> bool:
    """A "# Long on purpose:" comment block ends right above line ``first`` (1-based)."""
    index = first - 2
    while index >= 0 and lines[index].strip().startswith("#"):
        if lines[index].strip().startswith("# Long on purpose:"):
            return True
        index -= 1
    return False


def test_no_module_or_function_is_over_the_limits_without_a_written_reason():
    assert oversized(ROOT) == []


def test_the_check_catches_a_long_function_and_a_long_module(tmp_path):
    (tmp_path / "fleet").mkdir()
    (tmp_path / "infra").mkdir()
    body = "".join(f"    x{n} = {n}\n" for n in range(70))
    (tmp_path / "fleet" / "long.py").write_text(f'"""A module."""\n\n\ndef f():\n{body}')
    (tmp_path / "infra" / "big.py").write_text('"""A module."""\n' + "x = 1\n" * 401)
    (tmp_path / "infra" / "excused.py").write_text(
        '"""A module.\n\nSize: big on purpose."""\n'
        + "x = 1\n" * 401
        + f"\n\n# Long on purpose: a reason.\ndef g():\n{body}"
    )
    assert oversized(tmp_path) == ["fleet/long.py:4 f: 71 lines", "infra/big.py: 402 lines"]
