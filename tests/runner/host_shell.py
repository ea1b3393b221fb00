"""Run commands on a runner host as root or as another user, through testinfra."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from testinfra.backend.base import CommandResult
from testinfra.host import Host


@dataclass(frozen=True)
class Shell:
    """Runs commands on the host as root (sudo when the connection user is not root) or,
    through runuser, as another user. testinfra quotes the %s arguments."""

    host: Host
    sudo: bool
    user: str | None = None

    def _privileged(self) -> AbstractContextManager[Any]:
        return self.host.sudo() if self.sudo else nullcontext()

    def run(self, command: str, *args: str) -> CommandResult:
        if self.user is not None:
            command, args = "runuser -u %s -- " + command, (self.user, *args)
        with self._privileged():
            return self.host.run(command, *args)

    def check(self, command: str, *args: str) -> str:
        """stdout of a command that must succeed; the failure shows what it printed."""
        result = self.run(command, *args)
        assert result.rc == 0, (
            f"`{result.command}` exited {result.rc}\nstdout: {result.stdout[-2000:]}\n"
            f"stderr: {result.stderr[-2000:]}"
        )
        return result.stdout.rstrip("\n")

    def as_user(self, user: str) -> Shell:
        return Shell(self.host, self.sudo, user)
