"""The Image Builder component of the runner image: the fleet's boot files, then the bake.

It writes the boot files an instance's user data writes (rendered by infra/user_data exactly
as for the launch template) and runs `runner-bootstrap --bake-only`. Its version is a digest
of what it holds (Image Builder versions are immutable). AWS limits: a component document is
at most 16,000 characters inline (checked); each number of a semantic version is at most
2^30 - 1.
"""

from __future__ import annotations

import hashlib

from infra.literal_yaml import literal_yaml
from infra.user_data import UserDataSettings, cloud_config

# CreateComponent: `data` is 1-16,000 characters.
COMPONENT_DATA_MAX_CHARS = 16_000
# The boot files the bake reads, as the user data writes them (the rest of the user data's
# files are written again by every instance's cloud-init).
BAKE_FILES = (
    "/etc/runner-fleet/fleet.env",
    "/etc/runner-fleet/inventory.yml",
    "/usr/local/sbin/runner-bootstrap",
)
BAKE_COMMAND = "/usr/local/sbin/runner-bootstrap --bake-only"
# The bake installs packages, the toolchain and the agent: minutes, bounded here.
BAKE_TIMEOUT_S = 3600
_HEREDOC = "RUNNER_FLEET_FILE"
# Image Builder: each of the three numbers of a semantic version is at most 2^30 - 1.
_VERSION_NODE_MAX = 2**30 - 1


def bake_files(settings: UserDataSettings) -> list[dict[str, str]]:
    """The user data's write_files entries the bake needs, unchanged."""
    entries = {entry["path"]: entry for entry in cloud_config(settings)["write_files"]}
    return [entries[path] for path in BAKE_FILES]


def _write_file_command(entry: dict[str, str]) -> str:
    content, path = entry["content"], entry["path"]
    if not content.endswith("\n") or _HEREDOC in content.splitlines():
        raise ValueError(f"{path} cannot be written through a here-document as it is")
    if "{{" in content:
        # AWSTOE replaces {{ ... }} in a document's inputs with its variables.
        raise ValueError(f"{path} holds '{{{{', which Image Builder would substitute")
    owner, group = entry["owner"].split(":")
    return (
        f"install -d -m 0755 {path.rsplit('/', 1)[0]}\n"
        f"cat >{path} <<'{_HEREDOC}'\n{content}{_HEREDOC}\n"
        f"chown {owner}:{group} {path}\n"
        f"chmod {entry['permissions']} {path}\n"
    )


def component_document(settings: UserDataSettings, name: str) -> str:
    """The component's YAML: write the boot files, then bake. Raises ValueError if Image
    Builder would refuse its size."""
    script = "set -euo pipefail\numask 077\n" + "".join(
        _write_file_command(entry) for entry in bake_files(settings)
    )
    document = {
        "name": name,
        "description": "Runner image: the fleet's boot files, then runner-bootstrap --bake-only",
        "schemaVersion": 1.0,
        "phases": [
            {
                "name": "build",
                "steps": [
                    {
                        "name": "WriteBootFiles",
                        "action": "ExecuteBash",
                        "inputs": {"commands": [script]},
                    },
                    {
                        "name": "Bake",
                        "action": "ExecuteBash",
                        "timeoutSeconds": BAKE_TIMEOUT_S,
                        "inputs": {"commands": [BAKE_COMMAND]},
                    },
                ],
            }
        ],
    }
    text = literal_yaml(document)
    if len(text) > COMPONENT_DATA_MAX_CHARS:
        raise ValueError(
            f"the image component is {len(text)} characters; Image Builder accepts "
            f"{COMPONENT_DATA_MAX_CHARS} inline"
        )
    return text


def content_version(*parts: str) -> str:
    """A semantic version that is a digest of `parts`: Image Builder versions are immutable,
    so whatever changes what a component or recipe holds changes its version."""
    digest = hashlib.sha256("\0".join(parts).encode("utf-8")).digest()
    # 1.<a>.<b>: two 30-bit numbers of the digest.
    a = int.from_bytes(digest[:4], "big") & _VERSION_NODE_MAX
    b = int.from_bytes(digest[4:8], "big") & _VERSION_NODE_MAX
    return f"1.{a}.{b}"
