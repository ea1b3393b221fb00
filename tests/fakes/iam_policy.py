"""An IAM identity-policy evaluator for tests: Allow/Deny, wildcards, variables and conditions.

moto checks actions (and, for a few services, resources) but not conditions, so the
integration harness (tests/integration/moto_iam.py) evaluates the policies moto holds with
this instead. It covers what the fleet's documents use: Action and Resource with ``*``/``?``,
``${...}`` variables from the request context, the String*, Arn*, Bool, Numeric* and Null
operators, ``...IfExists``, and ``ForAnyValue:``/``ForAllValues:`` over multi-valued keys,
with IAM's rules for missing keys (a missing key fails a positive operator and satisfies a
negated one; a missing variable fails both). Explicit deny wins; otherwise any allow allows.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

_VARIABLE = re.compile(r"\$\{([^}]+)\}")
ContextValue = str | Sequence[str]


@dataclasses.dataclass(frozen=True)
class Request:
    action: str
    resource: str
    context: Mapping[str, ContextValue] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class StatementRef:
    policy: str
    sid: str

    def __str__(self) -> str:
        return f"{self.policy}#{self.sid}"


@dataclasses.dataclass(frozen=True)
class Evaluation:
    decision: str  # "Allow" | "ExplicitDeny" | "ImplicitDeny"
    allowed_by: tuple[StatementRef, ...] = ()
    denied_by: tuple[StatementRef, ...] = ()

    @property
    def allowed(self) -> bool:
        return self.decision == "Allow"


def as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _single(context: Mapping[str, ContextValue], key: str) -> str | None:
    value = context.get(key)
    if value is None:
        return None
    return value if isinstance(value, str) else (value[0] if value else None)


def _substitute(pattern: str, context: Mapping[str, ContextValue]) -> str | None:
    missing = False

    def replace(match: re.Match[str]) -> str:
        nonlocal missing
        value = _single(context, match.group(1))
        if value is None:
            missing = True
            return ""
        return value

    result = _VARIABLE.sub(replace, pattern)
    return None if missing else result


def glob(pattern: str, value: str, *, case_sensitive: bool = True) -> bool:
    return _glob_regex(pattern, case_sensitive).fullmatch(value) is not None


@functools.cache
def _glob_regex(pattern: str, case_sensitive: bool) -> re.Pattern[str]:
    # Compiled once per pattern: every AWS call of the integration layer matches its action
    # and resources against each statement of the caller's policy.
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(regex, 0 if case_sensitive else re.IGNORECASE)


def _compare(base: str, actual: str, expected: str) -> bool:
    if base in ("StringEquals", "ArnEquals"):
        return actual == expected
    if base == "StringEqualsIgnoreCase":
        return actual.casefold() == expected.casefold()
    if base in ("StringLike", "ArnLike"):
        return glob(expected, actual)
    if base == "Bool":
        return actual.lower() == expected.lower()
    if base.startswith("Numeric"):
        a, e = float(actual), float(expected)
        return {
            "NumericEquals": a == e,
            "NumericLessThan": a < e,
            "NumericLessThanEquals": a <= e,
            "NumericGreaterThan": a > e,
            "NumericGreaterThanEquals": a >= e,
        }[base]
    raise AssertionError(f"condition operator {base} is not supported by this evaluator")


_NEGATED = {
    "StringNotEquals": "StringEquals",
    "StringNotEqualsIgnoreCase": "StringEqualsIgnoreCase",
    "StringNotLike": "StringLike",
    "ArnNotEquals": "ArnEquals",
    "ArnNotLike": "ArnLike",
    "NumericNotEquals": "NumericEquals",
}


def _condition_holds(
    operator: str, key: str, expected: Any, context: Mapping[str, ContextValue]
) -> bool:
    qualifier = None
    if ":" in operator:
        qualifier, operator = operator.split(":", 1)
    if_exists = operator.endswith("IfExists")
    operator = operator.removesuffix("IfExists")
    present = key in context
    if operator == "Null":
        return (not present) == (str(as_list(expected)[0]).lower() == "true")
    if not present and if_exists:
        return True
    values = [_substitute(str(v), context) for v in as_list(expected)]
    negated = operator in _NEGATED
    base = _NEGATED.get(operator, operator)
    if any(v is None for v in values):
        return False  # a variable missing from the context fails, negated or not
    wanted = [v for v in values if v is not None]
    actuals = [str(v) for v in as_list(context[key])] if present else []
    if qualifier == "ForAllValues":
        # True when every value in the request matches one of the policy's (vacuous if none).
        return all(any(_compare(base, a, w) for w in wanted) != negated for a in actuals)
    if qualifier == "ForAnyValue":
        return any(any(_compare(base, a, w) for w in wanted) != negated for a in actuals)
    if not present:
        return negated
    actual = actuals[0]
    matched = any(_compare(base, actual, w) for w in wanted)
    return not matched if negated else matched


def _statement_applies(statement: Mapping[str, Any], request: Request) -> bool:
    if "Action" in statement:
        actions = as_list(statement["Action"])
        if not any(glob(a, request.action, case_sensitive=False) for a in actions):
            return False
    else:
        if any(
            glob(a, request.action, case_sensitive=False) for a in as_list(statement["NotAction"])
        ):
            return False
    resources = [_substitute(r, request.context) for r in as_list(statement.get("Resource", "*"))]
    if not any(r is not None and glob(r, request.resource) for r in resources):
        return False
    for operator, conditions in (statement.get("Condition") or {}).items():
        for key, expected in conditions.items():
            if not _condition_holds(operator, key, expected, request.context):
                return False
    return True


def evaluate(policies: Mapping[str, Mapping[str, Any]], request: Request) -> Evaluation:
    """Evaluate ``request`` against named identity policies."""
    allowed: list[StatementRef] = []
    denied: list[StatementRef] = []
    for name, policy in policies.items():
        for index, statement in enumerate(as_list(policy["Statement"])):
            if not _statement_applies(statement, request):
                continue
            ref = StatementRef(name, str(statement.get("Sid") or index))
            (denied if statement["Effect"] == "Deny" else allowed).append(ref)
    if denied:
        return Evaluation("ExplicitDeny", tuple(allowed), tuple(denied))
    return Evaluation("Allow" if allowed else "ImplicitDeny", tuple(allowed))


def allow_statements(policy: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
    """(Sid, action) of every action an Allow statement grants."""
    for index, statement in enumerate(as_list(policy["Statement"])):
        if statement["Effect"] == "Allow":
            for action in as_list(statement["Action"]):
                yield str(statement.get("Sid") or index), action


def decide(policies: Iterable[Mapping[str, Any]], request: Request) -> str:
    """'Allow', 'ExplicitDeny' or 'ImplicitDeny' for ``request`` against unnamed policies."""
    return evaluate({str(n): policy for n, policy in enumerate(policies)}, request).decision


def statements_by_sid(policy: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """A policy's statements by Sid."""
    return {s["Sid"]: s for s in as_list(policy["Statement"]) if "Sid" in s}
