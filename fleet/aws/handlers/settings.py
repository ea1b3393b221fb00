"""The control plane functions' settings: their environment -> one typed, validated object.

The model is ``fleet.core.config.settings.ControlPlaneSettings`` (pydantic-settings, on the
field types the stack model uses); the Pulumi program (infra/control_plane.py,
``function_environment``) writes the variables from the stack model, and every function gets
the same set. They hold names, paths and numbers only: secrets stay in SSM and are read at run
time. ``Settings.from_env`` reports every problem at once, naming the variable and what a
good value looks like.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import ValidationError

from fleet.core.config.problems import problems_of
from fleet.core.config.settings import ControlPlaneSettings, from_environ, variables

__all__ = ["VARIABLES", "Settings", "SettingsError"]


class SettingsError(ValueError):
    """The environment does not configure the control plane; lists every problem."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        lines = [f"{name}: {message}" for name, message in problems]
        super().__init__(
            "control plane settings are invalid (they come from the function's environment, "
            "written by infra/control_plane.py):\n  " + "\n  ".join(lines)
        )


class Settings(ControlPlaneSettings):
    """Everything a control plane function needs, validated."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Parse and validate ``environ``; raises ``SettingsError`` naming every bad variable."""
        try:
            return from_environ(cls, environ)
        except ValidationError as error:
            raise SettingsError(
                problems_of(error, cls, missing=lambda name: f"is not set ({VARIABLES[name]})")
            ) from None


# Variable -> what it means (also the order of the error report).
VARIABLES: dict[str, str] = variables(Settings)
