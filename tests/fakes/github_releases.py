"""A FAKE GitHub releases endpoint for the agent's "latest" mode, on loopback.

It answers ``GET <prefix>/repos/<owner>/<repo>/releases/latest`` with a release shaped as the
GitHub REST API returns it (tag_name, draft, prerelease, body, assets with name,
browser_download_url and digest) and serves the assets themselves under ``/download/``.
What the release publishes about each tarball is chosen per test: the asset's ``digest``,
the ``<!-- BEGIN SHA linux-<arch> -->`` marker in the notes, both, neither, or a checksum
that does not match the bytes served. The base fake (tests/fakes/github_api.py) answers only
with App credentials; the releases endpoint is public, so this one stands alone.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

ARCHITECTURES = ("x64", "arm64")


@dataclass
class FakeRelease:
    """One release: its tarballs per architecture and what it says about their sha256."""

    version: str
    tarballs: dict[str, bytes]
    digest: bool = True  # assets carry "digest": "sha256:<hex>"
    notes: bool = True  # the body carries the BEGIN/END SHA markers
    published: dict[str, str] = field(default_factory=dict)  # arch -> sha256 to publish instead
    prerelease: bool = False

    def sha256(self, arch: str) -> str:
        return self.published.get(arch) or hashlib.sha256(self.tarballs[arch]).hexdigest()

    def asset_name(self, arch: str) -> str:
        return f"actions-runner-linux-{arch}-{self.version}.tar.gz"


class FakeReleases:
    """FAKE: the latest release of one repository, and its assets."""

    def __init__(
        self, server: HTTPServer, repository: str = "actions/runner", prefix: str = ""
    ) -> None:
        """``prefix`` (e.g. ``/case-a``): several fakes, each its own release, on one server."""
        self.server = server
        self.repository = repository
        self.prefix = prefix.rstrip("/")
        self.release: FakeRelease | None = None
        self.requests: list[str] = []  # paths below the prefix
        server.expect_request(
            f"{self.prefix}/repos/{repository}/releases/latest"
        ).respond_with_handler(self._latest)
        server.expect_request(
            re.compile("^" + re.escape(self.prefix) + r"/download/[^/]+$")
        ).respond_with_handler(self._download)

    @property
    def api_url(self) -> str:
        return self.server.url_for(self.prefix or "/").rstrip("/")

    def publish(self, release: FakeRelease) -> FakeRelease:
        self.release = release
        return release

    def to_api(self, release: FakeRelease) -> dict[str, object]:
        """The release as GET .../releases/latest returns it."""
        lines = ["## Changes", "", "Fixes.", "", "## SHA-256 Checksums", ""]
        assets = []
        for asset_id, arch in enumerate(sorted(release.tarballs), start=1):
            name = release.asset_name(arch)
            if release.notes:
                lines.append(
                    f"- {name} <!-- BEGIN SHA linux-{arch} -->{release.sha256(arch)}"
                    f"<!-- END SHA linux-{arch} -->"
                )
            assets.append(
                {
                    "id": asset_id,
                    "name": name,
                    "content_type": "application/gzip",
                    "size": len(release.tarballs[arch]),
                    "digest": f"sha256:{release.sha256(arch)}" if release.digest else None,
                    "browser_download_url": self.server.url_for(f"{self.prefix}/download/{name}"),
                }
            )
        return {
            "tag_name": f"v{release.version}",
            "name": f"v{release.version}",
            "draft": False,
            "prerelease": release.prerelease,
            "body": "\n".join(lines) + "\n",
            "assets": assets,
        }

    def _latest(self, request: Request) -> Response:
        self.requests.append(request.path.removeprefix(self.prefix))
        if self.release is None:
            return Response(json.dumps({"message": "Not Found"}), 404, mimetype="application/json")
        return Response(json.dumps(self.to_api(self.release)), 200, mimetype="application/json")

    def _download(self, request: Request) -> Response:
        self.requests.append(request.path.removeprefix(self.prefix))
        name = request.path.rsplit("/", 1)[-1]
        release = self.release
        for arch in release.tarballs if release else ():
            if release is not None and release.asset_name(arch) == name:
                return Response(release.tarballs[arch], 200, mimetype="application/gzip")
        return Response(b"Not Found", 404)
