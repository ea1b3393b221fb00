"""A FAKE runner-host container for `fleet.local.user_suite.run_on_host`: it records every
command and archive it is given and answers from a script, so each way a suite run can end
(and the clean-up after it) is tested without an engine. The real run is e2e."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field

WORK = "/var/tmp/fleet-suite-abc123"
Answer = tuple[int, bytes]


@dataclass
class FakeHostContainer:
    name: str = "fleet-local-runner-1"
    # (first words of a command) -> answer; the longest matching prefix wins.
    answers: dict[tuple[str, ...], Answer | Callable[[list[str]], Answer]] = field(
        default_factory=dict
    )
    calls: list[tuple[list[str], str | None]] = field(default_factory=list)
    archives: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        defaults: dict[tuple[str, ...], Answer] = {
            ("mktemp",): (0, WORK.encode() + b"\n"),
            ("id", "-u"): (0, b"1001\n"),
            ("id", "-g"): (0, b"1001\n"),
            ("cat",): (1, b"cat: no such file\n"),
        }
        self.answers = {**defaults, **self.answers}

    def exec_run(self, argv: list[str], user: str | None = None, workdir: str | None = None):
        self.calls.append((list(argv), user))
        matches = [k for k in self.answers if tuple(argv[: len(k)]) == k]
        if not matches:
            return 0, b""
        answer = self.answers[max(matches, key=len)]
        return answer(argv) if callable(answer) else answer

    def put_archive(self, path: str, data: bytes) -> bool:
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            self.archives[path] = [f"{m.name} {m.uid}:{m.gid} {m.mode:o}" for m in tar.getmembers()]
        return True

    def commands(self) -> list[str]:
        return [" ".join(argv) for argv, _ in self.calls]
