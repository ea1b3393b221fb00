"""The one error type the CLI turns into a readable message and a non-zero exit."""

from __future__ import annotations


class FleetError(Exception):
    """Something the user can act on: what failed, and what to do about it."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message
