"""YAML text in which multi-line strings are literal blocks, so scripts stay readable: the
cloud-config user data and the Image Builder component document.

The emitter is libyaml's when PyYAML was built with it (the Debian and PyPI wheels are): the
same text as PyYAML's pure-Python emitter (a unit test compares the two on the program's
documents), about ten times faster, and the program renders both documents at every
preview. Without libyaml the pure-Python emitter is used.
"""

from __future__ import annotations

from typing import Any

import yaml

_EMITTER: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def literal_dumper(base: type[yaml.SafeDumper]) -> type[yaml.SafeDumper]:
    """A dumper class on ``base`` that writes multi-line strings as literal blocks."""
    dumper = type("LiteralDumper", (base,), {})
    dumper.add_representer(str, _str_representer)
    return dumper


LiteralDumper = literal_dumper(_EMITTER)


def literal_yaml(document: Any) -> str:
    """``document`` as block YAML, keys in their given order, lines never folded."""
    return yaml.dump(document, Dumper=LiteralDumper, sort_keys=False, width=1000)
