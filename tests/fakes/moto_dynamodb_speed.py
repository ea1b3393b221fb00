"""moto answers a DynamoDB read by walking every attribute value of every item through its
generic response serializer, which tries each of the ten members of ``AttributeValue`` by
several spellings: most of the integration layer's CPU went there (a ledger query of a few
hundred jobs costs a quarter of a second). moto already holds those values in their wire
form (``{"S": "..."}``, ``{"N": "1"}``, nested ``M``/``L`` of the same), so this copies them
as they are. Binary values (``B``, ``BS``) still go through moto, which base64-encodes them.
Only the response's encoding takes the short cut: requests, conditions, indexes and errors
are moto's own.
"""

from __future__ import annotations

from typing import Any

from moto.core import serialize

_BINARY = {"B", "BS"}
_original = serialize.BaseJSONSerializer._serialize_type_structure


def _serialize_type_structure(self: Any, serialized: Any, value: Any, shape: Any, key: str) -> None:
    if (
        key
        and shape.name == "AttributeValue"
        and isinstance(value, dict)
        and len(value) == 1
        and not _BINARY.intersection(value)
        and not _contains_binary(value)
    ):
        self._default_serialize(serialized, value, shape, key)
        return
    _original(self, serialized, value, shape, key)


def _contains_binary(value: Any) -> bool:
    if isinstance(value, dict):
        return any(k in _BINARY or _contains_binary(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_contains_binary(v) for v in value)
    return False


def install() -> None:
    assert _original.__name__ == "_serialize_type_structure", "moto's serializer changed"
    serialize.BaseJSONSerializer._serialize_type_structure = _serialize_type_structure
