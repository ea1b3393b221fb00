"""A small IAM policy evaluator for the instance policy's statements and conditions.

moto enforces actions and resources but ignores Condition blocks, so the conditions are
proved here. Covers what the fleet's documents use: Allow/Deny, Action and Resource with
wildcards, `${...}` variables from the request context, and the StringEquals,
StringNotEquals, StringLike and Bool operators with IAM's rules for missing keys (a missing key
fails a positive operator and satisfies a negated one; a missing variable fails both).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from typing import Any

_VARIABLE = re.compile(r"\$\{([^}]+)\}")


@dataclasses.dataclass(frozen=True)
class Request:
    action: str
    resource: str
    context: dict[str, str] = dataclasses.field(default_factory=dict)


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _substitute(pattern: str, context: dict[str, str]) -> str | None:
    missing = False

    def replace(match: re.Match[str]) -> str:
        nonlocal missing
        if match.group(1) not in context:
            missing = True
            return ""
        return context[match.group(1)]

    result = _VARIABLE.sub(replace, pattern)
    return None if missing else result


def _glob(pattern: str, value: str, case_sensitive: bool = True) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    flags = 0 if case_sensitive else re.IGNORECASE
    return re.fullmatch(regex, value, flags) is not None


def _condition_holds(operator: str, key: str, expected: Any, context: dict[str, str]) -> bool:
    present = key in context
    actual = context.get(key)
    values = [_substitute(str(v), context) for v in _as_list(expected)]
    if operator == "StringEquals":
        return present and any(v is not None and actual == v for v in values)
    if operator == "StringLike":
        return present and any(v is not None and _glob(v, str(actual)) for v in values)
    if operator == "StringNotEquals":
        # A variable missing from the context makes the condition false, even when negated.
        if any(v is None for v in values):
            return False
        return not present or all(actual != v for v in values)
    if operator == "Bool":
        return present and any(str(actual).lower() == str(v).lower() for v in values)
    raise AssertionError(f"operator {operator} not supported by this evaluator")


def _matches(statement: dict[str, Any], request: Request) -> bool:
    actions = _as_list(statement["Action"])
    if not any(_glob(a, request.action, case_sensitive=False) for a in actions):
        return False
    resources = [_substitute(r, request.context) for r in _as_list(statement["Resource"])]
    if not any(r is not None and _glob(r, request.resource) for r in resources):
        return False
    for operator, conditions in statement.get("Condition", {}).items():
        for key, expected in conditions.items():
            if not _condition_holds(operator, key, expected, request.context):
                return False
    return True


def decide(policies: Iterable[dict[str, Any]], request: Request) -> str:
    """'Allow', 'ExplicitDeny' or 'ImplicitDeny' for one request against identity policies."""
    allowed = False
    for policy in policies:
        for statement in policy["Statement"]:
            if _matches(statement, request):
                if statement["Effect"] == "Deny":
                    return "ExplicitDeny"
                allowed = True
    return "Allow" if allowed else "ImplicitDeny"
