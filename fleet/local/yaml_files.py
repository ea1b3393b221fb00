"""Reading a user's YAML file that must hold a mapping, with errors the CLI can show."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from fleet.errors import FleetError


def load_mapping(path: Path, what: str, *, mapping_of: str = "", hint: str = "") -> dict[str, Any]:
    """The mapping in YAML file ``path`` (empty file: ``{}``); ``what`` names the file in
    errors ("vars file"), ``mapping_of`` and ``hint`` say what the mapping should hold."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise FleetError(f"cannot read {what} {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise FleetError(f"{what} {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise FleetError(
            f"{what} {path} must be a mapping" + (f" of {mapping_of}" if mapping_of else ""),
            hint=hint,
        )
    return data
