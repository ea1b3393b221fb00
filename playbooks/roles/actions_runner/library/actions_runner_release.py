#!/usr/bin/python
"""Ansible module: the newest actions/runner release and the sha256 it publishes.

The pure part (``release_from``, ``published_sha256``, ``asset_name``) reads a release as the
GitHub REST API returns it (``GET /repos/{owner}/{repo}/releases/latest``: the newest
published release that is neither a draft nor a prerelease) and never touches the network;
``main`` fetches it with Ansible's own HTTP client. The tests import this file as a plain
module (tests/unit/playbooks/test_agent_release.py).

Where the sha256 comes from, in this order:

1. the asset's ``digest`` field, ``sha256:<64 hex>``, which GitHub computes for every asset
   uploaded since mid-2025;
2. the release notes: actions/runner writes each asset's checksum between
   ``<!-- BEGIN SHA linux-x64 -->`` and ``<!-- END SHA linux-x64 -->`` (``linux-arm64`` for
   arm64).

When both are there they must agree. When neither gives a sha256 the module fails: an agent
is never installed unverified. The role then downloads the asset with ``get_url`` and
``checksum: sha256:...``, so a tarball that does not match is refused before it is written.
"""

from __future__ import annotations

import json
import re

DOCUMENTATION = r"""
module: actions_runner_release
short_description: Find the newest actions/runner release and the sha256 it publishes
description:
  - Reads the latest release of the agent's repository through the GitHub REST API and
    returns the version, the download URL and the published sha256 of the Linux tarball
    for one architecture.
  - Fails when the release publishes no sha256 for that tarball (neither the asset's
    digest nor the checksum marker in the release notes).
options:
  api_url:
    description: REST API base (https://api.github.com, or https://HOST/api/v3 for GHES).
    type: str
    default: https://api.github.com
  repository:
    description: owner/name of the agent's repository.
    type: str
    default: actions/runner
  arch:
    description: Asset architecture as the release names it (x64, arm64).
    type: str
    required: true
  timeout:
    description: Seconds to wait for the API.
    type: int
    default: 30
author: runner-fleet
"""

RETURN = r"""
version:
  description: The release's version (its tag without the leading v).
  type: str
  returned: success
url:
  description: Where the tarball is downloaded from (the asset's browser_download_url).
  type: str
  returned: success
sha256:
  description: The published sha256 of the tarball, 64 lowercase hexadecimal characters.
  type: str
  returned: success
source:
  description: Where the sha256 came from (asset digest, release notes, or both).
  type: str
  returned: success
"""

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_VERSION = re.compile(r"^v?(\d+\.\d+\.\d+)$")
_REPOSITORY = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
ARCHITECTURES = ("x64", "arm64")


class ReleaseError(ValueError):
    """The release cannot be installed as the agent; the message says why and what to do."""


def asset_name(version: str, arch: str) -> str:
    """The Linux tarball's name in an actions/runner release."""
    return f"actions-runner-linux-{arch}-{version}.tar.gz"


def _notes_sha256(body: str, arch: str) -> str | None:
    marker = re.search(
        rf"<!--\s*BEGIN SHA linux-{re.escape(arch)}\s*-->\s*([0-9A-Fa-f]+)\s*"
        rf"<!--\s*END SHA linux-{re.escape(arch)}\s*-->",
        body or "",
    )
    return marker.group(1).lower() if marker else None


def published_sha256(asset: dict, body: str, arch: str) -> tuple[str, str]:
    """(sha256, where it came from) for ``asset``; raises ReleaseError if the release
    publishes none, or two that disagree."""
    found: dict[str, str] = {}
    digest = asset.get("digest") or ""
    if isinstance(digest, str) and digest.lower().startswith("sha256:"):
        found["asset digest"] = digest.split(":", 1)[1].strip().lower()
    notes = _notes_sha256(body, arch)
    if notes is not None:
        found["release notes"] = notes
    bad = {source: value for source, value in found.items() if not _SHA256.match(value)}
    if bad:
        source, value = next(iter(bad.items()))
        raise ReleaseError(f"the {source} give {value!r} for {asset['name']}: not a sha256")
    if not found:
        raise ReleaseError(
            f"the release publishes no sha256 for {asset['name']} (no asset digest, no "
            f"<!-- BEGIN SHA linux-{arch} --> marker in its notes); an unverified agent is "
            "never installed: pin actions_runner_version with actions_runner_sha256 instead"
        )
    if len(set(found.values())) > 1:
        raise ReleaseError(
            f"the asset digest and the release notes give different sha256 for "
            f"{asset['name']} ({found['asset digest']} and {found['release notes']}); "
            "refusing to guess: pin actions_runner_version with actions_runner_sha256"
        )
    return next(iter(found.values())), " and ".join(found)


def release_from(data: object, arch: str) -> dict:
    """version, url, sha256 and source of the Linux tarball for ``arch`` in ``data`` (the
    API's release object); raises ReleaseError for anything that is not an installable,
    verifiable agent release."""
    if arch not in ARCHITECTURES:
        raise ReleaseError(f"architecture {arch!r}: actions/runner publishes {ARCHITECTURES}")
    if not isinstance(data, dict) or "tag_name" not in data:
        raise ReleaseError("the answer is not a release (no tag_name)")
    if data.get("draft") or data.get("prerelease"):
        raise ReleaseError(f"release {data['tag_name']} is a draft or a prerelease")
    tag = str(data["tag_name"])
    match = _VERSION.match(tag)
    if not match:
        raise ReleaseError(f"release tag {tag!r} is not a version (vX.Y.Z)")
    version = match.group(1)
    name = asset_name(version, arch)
    assets = [a for a in data.get("assets") or [] if isinstance(a, dict)]
    asset = next((a for a in assets if a.get("name") == name), None)
    if asset is None or not asset.get("browser_download_url"):
        raise ReleaseError(f"release {tag} has no asset {name}")
    sha256, source = published_sha256(asset, str(data.get("body") or ""), arch)
    return {
        "version": version,
        "url": str(asset["browser_download_url"]),
        "sha256": sha256,
        "source": source,
    }


def latest_release_url(api_url: str, repository: str) -> str:
    if not _REPOSITORY.match(repository):
        raise ReleaseError(f"repository {repository!r}: expected owner/name")
    if not api_url.startswith(("https://", "http://")):
        raise ReleaseError(f"api_url {api_url!r}: expected an http(s) URL")
    return f"{api_url.rstrip('/')}/repos/{repository}/releases/latest"


def main() -> None:
    from ansible.module_utils.basic import AnsibleModule
    from ansible.module_utils.urls import fetch_url

    module = AnsibleModule(
        argument_spec={
            "api_url": {"type": "str", "default": "https://api.github.com"},
            "repository": {"type": "str", "default": "actions/runner"},
            "arch": {"type": "str", "required": True},
            "timeout": {"type": "int", "default": 30},
        },
        supports_check_mode=True,
    )
    params = module.params
    try:
        url = latest_release_url(params["api_url"], params["repository"])
    except ReleaseError as exc:
        module.fail_json(msg=str(exc))
    response, info = fetch_url(
        module,
        url,
        headers={"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"},
        timeout=params["timeout"],
    )
    if info.get("status") != 200 or response is None:
        module.fail_json(
            msg=f"GET {url} answered {info.get('status')}: {info.get('msg', '')}; the newest "
            "agent cannot be looked up (set actions_runner_release_api_url, or pin "
            "actions_runner_version with actions_runner_sha256)"
        )
    try:
        data = json.loads(response.read())
    except ValueError as exc:
        module.fail_json(msg=f"GET {url}: the answer is not JSON ({exc})")
    try:
        release = release_from(data, params["arch"])
    except ReleaseError as exc:
        module.fail_json(msg=f"{url}: {exc}")
    module.exit_json(changed=False, **release)


if __name__ == "__main__":
    main()
