"""GitHub App authentication: RS256 App JWTs and a cache of installation tokens.

No I/O here: fetching a token is a function passed in (see ``fleet.core.github.client.GitHubApp``)
and the clock is injected, so expiry and refresh are tested without waiting.

GitHub's rules (docs: "Generating a JSON Web Token (JWT) for a GitHub App"): sign with RS256;
``iat`` 60 s in the past against clock drift; ``exp`` no more than 10 minutes ahead; ``iss`` is
the App's id (or client id). Installation tokens live one hour; we refresh them a few minutes
early so a token never expires in the middle of a scaling cycle.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

Clock = Callable[[], float]

JWT_BACKDATE_SECONDS = 60
JWT_MAX_SPAN_SECONDS = 600  # exp - iat: GitHub refuses JWTs valid for longer than 10 minutes
DEFAULT_JWT_TTL_SECONDS = JWT_MAX_SPAN_SECONDS - JWT_BACKDATE_SECONDS
DEFAULT_TOKEN_REFRESH_SECONDS = 300


def make_app_jwt(
    app_id: int | str,
    private_key: str | bytes | RSAPrivateKey,
    *,
    now: float,
    ttl: int = DEFAULT_JWT_TTL_SECONDS,
    backdate: int = JWT_BACKDATE_SECONDS,
) -> str:
    """An App JWT with ``iat = now - backdate`` and ``exp = now + ttl`` (span ≤ 10 minutes)."""
    if backdate < 0 or ttl <= 0:
        raise ValueError(f"JWT backdate must be >= 0 and ttl > 0, got {backdate=} {ttl=}")
    if ttl + backdate > JWT_MAX_SPAN_SECONDS:
        raise ValueError(
            f"JWT ttl + backdate is {ttl + backdate}s; GitHub accepts at most "
            f"{JWT_MAX_SPAN_SECONDS}s between iat and exp"
        )
    if not str(app_id).strip():
        raise ValueError("GitHub App id (or client id) is empty")
    issued = int(now)
    claims = {"iat": issued - backdate, "exp": issued + ttl, "iss": str(app_id)}
    return jwt.encode(claims, private_key, algorithm="RS256")


@functools.lru_cache(maxsize=8)
def _rsa_private_key(private_key: str | bytes) -> RSAPrivateKey | str | bytes:
    """The PEM's RSA private key, or the text unchanged if it is not one (``make_app_jwt``
    then refuses it with PyJWT's own error).

    Parsed once per process: loading (and checking) an RSA key costs tens of milliseconds of
    CPU, and every signer a process makes for the same App (a runtime per function
    container, a registration per host) would pay it again. The key object is immutable.
    """
    data = private_key.encode() if isinstance(private_key, str) else private_key
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        return private_key
    return key if isinstance(key, RSAPrivateKey) else private_key


class AppJwtSigner:
    """Makes App JWTs and reuses one until it is close to expiry."""

    def __init__(
        self,
        app_id: int | str,
        private_key: str | bytes,
        *,
        clock: Clock = time.time,
        ttl: int = DEFAULT_JWT_TTL_SECONDS,
        reuse_margin: int = 60,
    ) -> None:
        if reuse_margin >= ttl:
            raise ValueError(f"reuse_margin ({reuse_margin}s) must be shorter than ttl ({ttl}s)")
        self.app_id = str(app_id)
        # Parsed once per process (see _rsa_private_key), not at every JWT.
        self._key = _rsa_private_key(private_key)
        self._clock = clock
        self._ttl = ttl
        self._reuse_margin = reuse_margin
        self._cached: tuple[str, float] | None = None
        self._lock = threading.Lock()
        # Fail at start-up, not at the first webhook, if the key is not an RSA private key.
        make_app_jwt(self.app_id, self._key, now=clock(), ttl=ttl)

    def __repr__(self) -> str:
        return f"AppJwtSigner(app_id={self.app_id!r})"

    def token(self) -> str:
        """A JWT valid for at least ``reuse_margin`` more seconds."""
        with self._lock:
            now = self._clock()
            if self._cached is not None and self._cached[1] - now > self._reuse_margin:
                return self._cached[0]
            value = make_app_jwt(self.app_id, self._key, now=now, ttl=self._ttl)
            self._cached = (value, int(now) + self._ttl)
            return value

    def invalidate(self) -> None:
        """Forget the cached JWT (after a 401, e.g. when the clock was corrected)."""
        with self._lock:
            self._cached = None


@dataclass(frozen=True)
class InstallationToken:
    """An installation access token and when it expires (epoch seconds)."""

    token: str = field(repr=False)
    expires_at: float
    installation_id: int


class InstallationTokenCache:
    """Installation tokens by installation id, refreshed ``refresh_before`` seconds early."""

    def __init__(
        self,
        fetch: Callable[[int], InstallationToken],
        *,
        clock: Clock = time.time,
        refresh_before: float = DEFAULT_TOKEN_REFRESH_SECONDS,
    ) -> None:
        if refresh_before < 0:
            raise ValueError(f"refresh_before must be >= 0, got {refresh_before}")
        self._fetch = fetch
        self._clock = clock
        self._refresh_before = refresh_before
        self._tokens: dict[int, InstallationToken] = {}
        self._lock = threading.Lock()

    def get(self, installation_id: int) -> InstallationToken:
        """A token with more than ``refresh_before`` seconds left, fetching a new one if needed."""
        with self._lock:
            cached = self._tokens.get(installation_id)
            if cached is not None and cached.expires_at - self._clock() > self._refresh_before:
                return cached
            fresh = self._fetch(installation_id)
            self._tokens[installation_id] = fresh
            return fresh

    def token(self, installation_id: int) -> str:
        """The token string for ``installation_id`` (see ``get``)."""
        return self.get(installation_id).token

    def invalidate(self, installation_id: int) -> None:
        """Drop a token GitHub refused (revoked, or the installation was suspended)."""
        with self._lock:
            self._tokens.pop(installation_id, None)
