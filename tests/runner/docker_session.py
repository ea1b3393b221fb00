"""A testinfra backend that runs a host's commands through one `docker exec` shell.

    pytest tests/runner --hosts=docker-session://NAME   (or docker-session://USER@NAME)

testinfra's ``docker://`` backend starts a `docker exec` per command. Each one goes
through the docker CLI, dockerd, containerd, a shim and runc (about 45 ms of CPU on the
2-core build machine), and the checks run about 60 commands per host. This backend
starts one ``docker exec -i NAME /bin/sh`` per host and pytest process and runs every
command in it as ``/bin/sh -c COMMAND`` with stdin from /dev/null, the same command line,
user and environment `docker exec` gives, so a check sees no difference; only the
commands' parent is a long-lived shell instead of runc.

Each command's output goes to files in a private temporary directory on the host; the
shell then prints ``<exit status> <stdout bytes> <stderr bytes>`` and both outputs, which
this side reads back exactly (no marker a command's output could forge). The directory is
removed when the shell exits, which it does when this side closes its stdin or dies.
"""

from __future__ import annotations

import atexit
import shlex
import subprocess
import tempfile
import threading
from typing import Any

from testinfra import backend
from testinfra.backend import base

# Runs in the host's /bin/sh (POSIX sh: dash on Debian). mktemp -d makes the directory 0700
# whatever the umask (which commands inherit unchanged). The command's redirections are made
# in the child, which then becomes `/bin/sh -c COMMAND`: a shell waiting on a redirected
# command would write its own notes ("Killed") into the command's stderr. `wc -c <file`
# prints a bare count.
PRELUDE = r"""
fleet_dir=$(mktemp -d /tmp/fleet-session.XXXXXX) || exit 1
trap 'rm -rf "$fleet_dir"' EXIT
exec 2>/dev/null
fleet_run() {
    /bin/sh -c 'exec </dev/null >"$1/out" 2>"$1/err"; exec /bin/sh -c "$2"' _ "$fleet_dir" "$1"
    fleet_rc=$?
    printf '%s %s %s\n' "$fleet_rc" "$(wc -c <"$fleet_dir/out")" "$(wc -c <"$fleet_dir/err")"
    cat "$fleet_dir/out" "$fleet_dir/err"
}
printf 'ready\n'
"""


class SessionLost(RuntimeError):
    """The host's shell went away (host stopped or removed) in the middle of a command."""


class DockerSessionBackend(base.BaseBackend):
    NAME = "docker-session"

    def __init__(self, name: str, *args: Any, **kwargs: Any) -> None:
        self.name, self.user = self.parse_containerspec(name)
        super().__init__(self.name, *args, **kwargs)
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        # What `docker exec` itself says (no such container...), read when starting fails.
        self._errors = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the backend
        atexit.register(self.close)

    def _start(self) -> subprocess.Popen[bytes]:
        user = ["-u", self.user] if self.user is not None else []
        process = subprocess.Popen(
            ["docker", "exec", "-i", *user, self.name, "/bin/sh"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._errors,
        )
        assert process.stdin is not None and process.stdout is not None
        try:
            process.stdin.write(PRELUDE.encode())
            process.stdin.flush()
        except BrokenPipeError:
            pass
        if process.stdout.readline() != b"ready\n":
            process.wait(timeout=30)
            self._errors.seek(0)
            error = self._errors.read().decode(errors="replace").strip()
            self._errors.seek(0)  # the next `docker exec` writes from the start again
            self._errors.truncate()
            raise SessionLost(f"cannot start a shell in {self.name}: {error or 'no output'}")
        return process

    def close(self) -> None:
        """End the shell (it removes its temporary directory on the way out)."""
        process, self._process = self._process, None
        if process is None:
            return
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def _exchange(
        self, process: subprocess.Popen[bytes], command: bytes
    ) -> tuple[int, bytes, bytes]:
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(b"fleet_run " + command + b"\n")
        process.stdin.flush()
        header = process.stdout.readline().split()
        if len(header) != 3:
            raise SessionLost(f"the shell in {self.name} ended during a command")
        rc, out_size, err_size = (int(field) for field in header)
        data = process.stdout.read(out_size + err_size)
        if len(data) != out_size + err_size:
            raise SessionLost(f"the shell in {self.name} ended during a command")
        return rc, data[:out_size], data[out_size:]

    def run(self, command: str, *args: str, **kwargs: Any) -> base.CommandResult:
        cmd = self.get_command(command, *args)
        quoted = self.encode(shlex.quote(cmd))
        with self._lock:
            if self._process is None or self._process.poll() is not None:
                self.close()
                self._process = self._start()
            try:
                rc, stdout, stderr = self._exchange(self._process, quoted)
            except (BrokenPipeError, SessionLost):
                # Never run a command twice: it may have had effects before the shell went.
                self.close()
                raise
        return self.result(rc, self.encode(cmd), stdout, stderr)


def register() -> None:
    """Make ``docker-session://`` a testinfra host spec scheme."""
    backend.BACKENDS.setdefault(DockerSessionBackend.NAME, f"{__name__}.DockerSessionBackend")
