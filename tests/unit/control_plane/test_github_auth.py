"""App JWTs (property 24) and installation tokens, against the fake GitHub where it matters.

Property and fault scenario numbers are those of docs/security.md.
"""

from __future__ import annotations

import jwt
import pytest

from fleet.core.github.app import GitHubApp
from fleet.core.github.auth import (
    AppJwtSigner,
    InstallationToken,
    InstallationTokenCache,
    make_app_jwt,
)
from fleet.core.github.errors import GitHubAuthError, GitHubNotFound

from .conftest import APP_ID

pytestmark = pytest.mark.unit


def decode(token: str, public_key: bytes) -> dict:
    return jwt.decode(
        token,
        public_key,
        algorithms=["RS256"],
        options={"verify_exp": False, "verify_iat": False},
    )


def test_app_jwt_is_rs256_backdated_60s_and_valid_at_most_10_minutes(app_keys, clock):
    token = AppJwtSigner(APP_ID, app_keys[0], clock=clock).token()
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    claims = decode(token, app_keys[1])
    assert claims["iss"] == APP_ID
    assert claims["iat"] == int(clock()) - 60, "iat is backdated against clock drift"
    assert claims["iat"] < clock()
    assert claims["exp"] - claims["iat"] <= 600
    assert claims["exp"] <= clock() + 600


def test_app_jwt_signature_does_not_verify_with_another_key(app_keys, clock):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    other_pem = other.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    token = make_app_jwt(APP_ID, app_keys[0], now=clock())
    with pytest.raises(jwt.InvalidSignatureError):
        decode(token, other_pem)


@pytest.mark.parametrize(("ttl", "backdate"), [(600, 60), (541, 60), (0, 60), (60, -1)])
def test_jwt_lifetimes_github_would_refuse_are_rejected_up_front(app_keys, ttl, backdate):
    with pytest.raises(ValueError, match="JWT"):
        make_app_jwt(APP_ID, app_keys[0], now=1_800_000_000, ttl=ttl, backdate=backdate)


def test_signer_refuses_a_key_that_is_not_an_rsa_private_key(app_keys):
    with pytest.raises(Exception):  # noqa: B017 - PyJWT/cryptography raise several types
        AppJwtSigner(APP_ID, app_keys[1])
    with pytest.raises(Exception):  # noqa: B017
        AppJwtSigner(APP_ID, "not a key")


def test_signer_repr_does_not_show_the_key(app_keys):
    assert "PRIVATE" not in repr(AppJwtSigner(APP_ID, app_keys[0]))


def test_signer_reuses_its_jwt_until_a_minute_before_expiry(app_keys, clock):
    signer = AppJwtSigner(APP_ID, app_keys[0], clock=clock)
    first = signer.token()
    clock.advance(539 - 60)
    assert signer.token() == first
    clock.advance(1)
    second = signer.token()
    assert second != first
    assert decode(second, app_keys[1])["iat"] == int(clock()) - 60
    signer.invalidate()
    clock.advance(1)
    assert signer.token() != second


def test_token_cache_fetches_once_and_refreshes_a_few_minutes_before_expiry(clock):
    fetched: list[int] = []

    def fetch(installation_id: int) -> InstallationToken:
        fetched.append(installation_id)
        return InstallationToken(f"t{len(fetched)}", clock() + 3600, installation_id)

    cache = InstallationTokenCache(fetch, clock=clock, refresh_before=300)
    assert cache.token(7) == "t1"
    clock.advance(3600 - 301)
    assert cache.token(7) == "t1", "more than 5 minutes left: reuse"
    clock.advance(1)
    assert cache.token(7) == "t2", "5 minutes or less left: refresh"
    assert cache.token(8) == "t3", "one token per installation"
    cache.invalidate(7)
    assert cache.token(7) == "t4"
    assert fetched == [7, 7, 8, 7]


def test_installation_token_repr_hides_the_token():
    assert "secret-value" not in repr(InstallationToken("secret-value", 1.0, 1))


def test_app_finds_installations_for_an_org_and_a_repo(app, fake_github):
    fake_github.install("acme", 11)
    fake_github.install("someone/project", 12)
    assert app.installation_id_for_org("acme") == 11
    assert app.installation_id_for_repo("someone/project") == 12
    with pytest.raises(GitHubNotFound):
        app.installation_id_for_org("not-installed")
    with pytest.raises(ValueError, match="owner/name"):
        app.installation_id_for_repo("just-a-name")


def test_app_endpoints_get_a_jwt_the_fake_github_accepts(app, fake_github, app_keys, clock):
    fake_github.install("acme", 11)
    app.installation_id_for_org("acme")
    sent = fake_github.requests[0].headers["Authorization"].removeprefix("Bearer ")
    claims = decode(sent, app_keys[1])
    assert claims["iss"] == APP_ID and claims["exp"] - claims["iat"] <= 600


def test_the_fake_github_refuses_a_jwt_valid_for_too_long(client, fake_github, app_keys, clock):
    """Guards the fake itself: it enforces the 10-minute rule the signer is tested against."""
    from fleet.core.github.client import StaticToken

    fake_github.install("acme", 11)
    now = int(clock())
    too_long = jwt.encode(
        {"iat": now - 60, "exp": now + 900, "iss": APP_ID}, app_keys[0], algorithm="RS256"
    )
    with pytest.raises(GitHubAuthError, match="too far in the future"):
        client.get_json("/orgs/acme/installation", auth=StaticToken(too_long))


def test_installation_tokens_are_cached_and_refreshed_before_expiry(app, fake_github, clock):
    fake_github.install("acme", 11)
    auth = app.installation_auth(11)
    for _ in range(3):
        app.client.get_json("/orgs/acme/actions/runners", auth=auth)
    assert len(fake_github.calls("POST", "/app/installations/11/access_tokens")) == 1
    clock.advance(3600 - 300)  # exactly 5 minutes left: refresh now, not at expiry
    app.client.get_json("/orgs/acme/actions/runners", auth=auth)
    assert len(fake_github.calls("POST", "/app/installations/11/access_tokens")) == 2
    tokens = {r.headers["Authorization"] for r in fake_github.calls("GET", "/orgs/acme")}
    assert len(tokens) == 2


def test_a_revoked_installation_token_is_replaced_and_the_call_succeeds(app, fake_github):
    fake_github.install("acme", 11)
    auth = app.installation_auth(11)
    app.client.get_json("/orgs/acme/actions/runners", auth=auth)
    fake_github.revoke(auth.token())
    assert app.client.get_json("/orgs/acme/actions/runners", auth=auth)["total_count"] == 0
    assert len(fake_github.calls("POST", "/app/installations/11/access_tokens")) == 2


def test_tokens_can_be_limited_to_the_permissions_the_fleet_needs(
    client, app_keys, clock, fake_github
):
    fake_github.install("acme", 11)
    app = GitHubApp(
        client,
        AppJwtSigner(APP_ID, app_keys[0], clock=clock),
        clock=clock,
        permissions={"organization_self_hosted_runners": "write"},
    )
    app.create_installation_token(11)
    assert fake_github.token_bodies == [
        {"permissions": {"organization_self_hosted_runners": "write"}}
    ]


def test_token_expiry_is_read_from_githubs_answer(app, fake_github, clock):
    fake_github.install("acme", 11)
    token = app.create_installation_token(11)
    assert token.expires_at == pytest.approx(clock() + 3600)
    assert token.installation_id == 11
