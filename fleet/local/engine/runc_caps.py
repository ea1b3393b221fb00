#!/usr/bin/python3 -IS
"""OCI runtime wrapper: drop capabilities the machine cannot grant, then exec runc.

Docker 20.10 asks runc for every capability it knows when a container is
``--privileged``. On machines whose capability bounding set lacks one of them
(e.g. CAP_SYS_RESOURCE in some sandboxes) runc fails with "unable to apply caps:
operation not permitted" (moby issue 42906). Newer engines only ask for what the
bounding set holds; this wrapper makes 20.10 do the same. It edits the bundle's
``config.json`` (create/run) or the ``--process`` spec (exec) and then replaces
itself with the real runc. Standard library only: it runs under the system python.

containerd's shim starts it for every runc call (create, start, exec, state, kill,
delete...), so it starts lean: isolated (-I: no PYTHON* variables, no user site, no
current directory on the path) and without the site module (-S: a third of the start
time of a plain python3 on Debian), and it imports json only when there is a spec to edit.
"""

from __future__ import annotations

import os
import sys

# Linux capability numbers (linux/capability.h), index = bit number.
CAPABILITY_NAMES = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
]

RUNC_CANDIDATES = ("/usr/sbin/runc", "/usr/bin/runc", "/usr/local/sbin/runc", "/usr/local/bin/runc")


def bounding_set(status_text: str) -> set[str]:
    """Capability names present in the ``CapBnd`` line of a /proc/*/status text."""
    for line in status_text.splitlines():
        if line.startswith("CapBnd:"):
            mask = int(line.split()[1], 16)
            return {name for bit, name in enumerate(CAPABILITY_NAMES) if mask >> bit & 1}
    raise ValueError("no CapBnd line in status text")


def filter_capabilities(process: dict, allowed: set[str]) -> bool:
    """Remove known capabilities outside ``allowed`` from an OCI process spec.

    Unknown names are kept (runc decides about them). Returns True if anything changed.
    """
    caps = process.get("capabilities") or {}
    known = set(CAPABILITY_NAMES)
    changed = False
    for kind, names in caps.items():
        if not isinstance(names, list):
            continue
        kept = [n for n in names if n not in known or n in allowed]
        if kept != names:
            caps[kind] = kept
            changed = True
    return changed


def spec_file(argv: list[str]) -> str | None:
    """The JSON file runc will read for this invocation, or None if it reads none."""
    command_index = next((i for i, a in enumerate(argv) if a in ("create", "run", "exec")), None)
    if command_index is None:
        return None
    command = argv[command_index]
    args = argv[command_index + 1 :]
    flags = ("--bundle", "-b") if command in ("create", "run") else ("--process", "-p")
    for i, arg in enumerate(args):
        for flag in flags:
            if arg == flag and i + 1 < len(args):
                value = args[i + 1]
                break
            if arg.startswith(flag + "="):
                value = arg.split("=", 1)[1]
                break
        else:
            continue
        return os.path.join(value, "config.json") if command != "exec" else value
    return "config.json" if command != "exec" else None


def rewrite(path: str, allowed: set[str]) -> None:
    import json  # only the calls that carry a spec pay for it

    with open(path, encoding="utf-8") as handle:
        document = json.load(handle)
    process = document.get("process", document) if "ociVersion" in document else document
    if filter_capabilities(process, allowed):
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(document, handle)


def real_runc() -> str:
    configured = os.environ.get("FLEET_REAL_RUNC")
    for candidate in (configured, *RUNC_CANDIDATES):
        if (
            candidate
            and os.access(candidate, os.X_OK)
            and os.path.realpath(candidate) != os.path.realpath(__file__)
        ):
            return candidate
    sys.stderr.write("fleet-runc: no runc binary found (set FLEET_REAL_RUNC)\n")
    raise SystemExit(127)


def main(argv: list[str]) -> None:
    path = spec_file(argv)
    if path and os.path.exists(path):
        with open("/proc/self/status", encoding="ascii") as handle:
            rewrite(path, bounding_set(handle.read()))
    runc = real_runc()
    os.execv(runc, [runc, *argv])  # noqa: S606 - replace ourselves with runc, no shell


if __name__ == "__main__":
    main(sys.argv[1:])
