"""pydantic's ValidationError as (setting, message) pairs a person can act on.

pydantic says "Input should be a valid integer"; the fleet's messages say what was given and
what to give instead ("expected a whole number, got 'half'", "101 is outside 0-100"). Messages
the types write themselves (``fields.refuse``) pass through unchanged; a model check that finds
several problems hands them over at once (``ctx["problems"]``). The callers turn the pairs
into their own error type: ConfigError (stack), SettingsError (functions), FleetError (local).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import annotated_types
from pydantic import BaseModel, ValidationError

Problem = tuple[str, str]


def _field(model: type[BaseModel], key: str) -> Any:
    for name, field in model.model_fields.items():
        aliases = {name, field.alias, field.validation_alias}
        if key in aliases:
            return field
    return None


def _bounds(model: type[BaseModel], key: str) -> tuple[Any, Any]:
    low = high = None
    field = _field(model, key)
    for item in getattr(field, "metadata", ()):
        if isinstance(item, annotated_types.Ge):
            low = item.ge
        elif isinstance(item, annotated_types.Le):
            high = item.le
    return low, high


def _message(model: type[BaseModel], key: str, error: Any) -> str:
    kind, value, ctx = error["type"], error.get("input"), error.get("ctx") or {}
    nested = len(error["loc"]) > 1
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"expected a whole number, got {value!r}"
    if kind in ("float_type", "float_parsing"):
        return f"expected a number, got {value!r}"
    if kind in ("bool_type", "bool_parsing"):
        return f"expected true or false, got {value!r}"
    if kind in ("tuple_type", "list_type") or (nested and kind == "string_type"):
        return f"expected a list of strings, got {value!r}"
    if kind in ("dict_type", "mapping_type") or (nested and kind.startswith("dict")):
        extra = getattr(_field(model, key), "json_schema_extra", None) or {}
        return f"expected {extra.get('expected', 'a map of names to values')}, got {value!r}"
    if kind in ("string_type", "string_too_short"):
        return f"expected a non-empty string, got {value!r}"
    if kind == "literal_error":
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        return f"{value!r} is not one of {', '.join(choices)}"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        low, high = _bounds(model, key)
        return f"{value} is outside {low}-{high}; set a value in that range"
    return f"{value!r}: {error['msg']}"


def problems_of(
    error: ValidationError,
    model: type[BaseModel],
    *,
    missing: Callable[[str], str],
    unknown: Callable[[str], str] | None = None,
) -> list[Problem]:
    """(key, message) for every error, in the order pydantic found them (field order, then the
    model's checks). ``missing(key)`` words a required setting that is absent; ``unknown(key)``
    a key the model does not know."""
    found: list[Problem] = []
    for item in error.errors(include_url=False):
        loc = item["loc"]
        key = str(loc[0]) if loc else ""
        ctx = item.get("ctx") or {}
        if item["type"] == "config":
            if "problems" in ctx:
                found += [tuple(problem) for problem in ctx["problems"]]  # type: ignore[misc]
            elif "messages" in ctx:
                found += [(key, str(message)) for message in ctx["messages"]]
            else:
                found.append((str(ctx.get("key", key)), str(ctx["message"])))
        elif item["type"] == "missing":
            found.append((key, missing(key)))
        elif item["type"] == "extra_forbidden":
            found.append((key, unknown(key) if unknown else "is not a known setting"))
        else:
            found.append((key, _message(model, key, item)))
    return found
