"""The file `serve` keeps its job intake in, so that a restart loses no queued job.

GitHub sends each ``workflow_job`` event once: a job whose ``queued`` webhook was answered
202 and that no host took before ``serve`` stopped would otherwise wait until another event
or an idle runner came along. The intake's snapshot (``Intake.snapshot``) is written when a
webhook brings news, before it is answered, and at the end of every cycle, by replacing the
file in one rename (a crash leaves the old or the new snapshot, never half of one); it is
readable by root only.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from fleet.errors import FleetError

DEFAULT_DIRECTORY = Path("/var/lib/fleet")
MOVE_ASIDE_HINT = (
    "move it aside and start again: jobs it held are caught up through GitHub's redelivery "
    "and the stale-job look-ups"
)


def default_path(fleet: str, directory: Path = DEFAULT_DIRECTORY) -> Path:
    """Where `serve` keeps fleet ``fleet``'s jobs unless told otherwise."""
    return directory / fleet / "serve-jobs.json"


class JobsFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> Any | None:
        """The saved snapshot, or None when there is none yet."""
        text = read_private(
            self.path,
            "serve's job file",
            hint="check its permissions, or pass --jobs-file with another path",
        )
        if text is None:
            return None
        try:
            return json.loads(text)
        except ValueError as exc:
            raise FleetError(
                f"serve's job file {self.path} is not JSON ({exc})", hint=MOVE_ASIDE_HINT
            ) from exc

    def save(self, snapshot: dict[str, Any]) -> None:
        """Replace the file with ``snapshot`` (written, flushed, then renamed into place)."""
        # json.dumps encodes in C; json.dump to a file does not (3x slower here).
        write_private(self.path, json.dumps(snapshot, separators=(",", ":")))

    def remove(self) -> bool:
        """Delete the file (and its directory when nothing else is in it); True if it was there."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        with contextlib.suppress(OSError):  # something else lives there: not ours to remove
            self.path.parent.rmdir()
        return True


def read_private(path: Path, what: str, hint: str) -> str | None:
    """``path``'s text, None when there is no such file; one that cannot be read is an error
    naming ``what`` it is, with ``hint``."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise FleetError(f"cannot read {what} {path}: {exc.strerror}", hint=hint) from exc


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``: written to a root-only temporary file in the same
    directory (made 0700 if missing), flushed, then renamed into place, so a crash leaves
    the old or the new file, never half of one."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:  # mkstemp: mode 0600
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
