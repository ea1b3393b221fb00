"""Where a scale set lives, and the two things that follow from it. Pure.

GitHub registers scale sets on an organization, a repository or an enterprise. The
registration token comes from that scope's REST endpoint, and the runner registration names
the scope by its *web* URL (the "config URL": ``https://github.com/my-org``), as
``config.sh --url`` does. On github.com (and GHE.com) the API lives on ``api.HOST``; on
GitHub Enterprise Server it is ``https://HOST/api/v3``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from fleet.core.github.runners import Scope

_SLUG = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,99})$")


@dataclass(frozen=True)
class Target:
    """An organization or repository (``scope``), or an enterprise (``enterprise``)."""

    scope: Scope | None = None
    enterprise: str | None = None

    def __post_init__(self) -> None:
        if (self.scope is None) == (self.enterprise is None):
            raise ValueError("a scale set belongs to an organization/repository or an enterprise")
        if self.enterprise is not None and not _SLUG.match(self.enterprise):
            raise ValueError(f"not an enterprise slug: {self.enterprise!r}")

    @classmethod
    def parse(cls, text: str) -> Target:
        """``my-org``, ``owner/repo`` or ``enterprises/slug``."""
        text = text.strip().strip("/")
        head, _, tail = text.partition("/")
        if head == "enterprises" and tail:
            return cls(enterprise=tail)
        return cls(scope=Scope.for_repository(text) if tail else Scope.for_org(text))

    @property
    def path(self) -> str:
        """The scope's path under the web URL: ``my-org``, ``owner/repo``, ``enterprises/e``."""
        if self.enterprise is not None:
            return f"enterprises/{self.enterprise}"
        assert self.scope is not None
        return self.scope.org or str(self.scope.repository)

    @property
    def registration_token_path(self) -> str:
        """The REST path that mints a registration token for this scope."""
        if self.enterprise is not None:
            return f"/enterprises/{self.enterprise}/actions/runners/registration-token"
        assert self.scope is not None
        return f"{self.scope.prefix}/actions/runners/registration-token"

    def config_url(self, web_url: str) -> str:
        return f"{web_url.rstrip('/')}/{self.path}"


def web_url_for(api_url: str) -> str:
    """The web URL that goes with a REST API base URL.

    ``https://api.github.com`` -> ``https://github.com``; ``https://api.X.ghe.com`` ->
    ``https://X.ghe.com``; ``https://HOST/api/v3`` -> ``https://HOST``; anything else (a test
    fake) is its own web URL.
    """
    parts = urlsplit(api_url.rstrip("/"))
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"GitHub API URL must be http(s)://host[/path], got {api_url!r}")
    host, path = parts.netloc, parts.path
    if host.lower().startswith("api.") and not path:
        host = host[len("api.") :]
    elif path.endswith("/api/v3"):
        path = path[: -len("/api/v3")]
    return f"{parts.scheme}://{host}{path}"
