"""X-Hub-Signature-256 verification (property 12), including GitHub's published test vector.

Property and fault scenario numbers are those of docs/security.md.
"""

from __future__ import annotations

import hmac

import pytest

from fleet.core.github import signature as webhooks
from fleet.core.github.signature import (
    SignatureMalformed,
    SignatureMismatch,
    SignatureMissing,
    compute_signature,
    verify_signature,
)

pytestmark = pytest.mark.unit

# From GitHub's "Validating webhook deliveries" documentation.
VECTOR_SECRET = "It's a Secret to Everybody"
VECTOR_PAYLOAD = b"Hello, World!"
VECTOR_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def test_githubs_published_test_vector_is_reproduced():
    assert compute_signature(VECTOR_SECRET, VECTOR_PAYLOAD) == VECTOR_SIGNATURE


def test_githubs_published_test_vector_is_accepted():
    verify_signature(VECTOR_SECRET, VECTOR_PAYLOAD, VECTOR_SIGNATURE)


@pytest.mark.parametrize("header", [None, "", "   "])
def test_missing_signature_is_rejected(header):
    with pytest.raises(SignatureMissing):
        verify_signature(VECTOR_SECRET, VECTOR_PAYLOAD, header)


@pytest.mark.parametrize(
    "header",
    [
        "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",  # no prefix
        "sha1=757107ea0eb2509fc211221cce984b8a37570b6d",  # the old SHA-1 header format
        "sha256=xyz",
        "sha256=" + "0" * 63,
        "sha256=" + "0" * 65,
        "sha256=" + "g" * 64,
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17,sha256=00",
    ],
)
def test_malformed_signature_is_rejected(header):
    with pytest.raises(SignatureMalformed):
        verify_signature(VECTOR_SECRET, VECTOR_PAYLOAD, header)


def test_signature_of_another_body_is_rejected():
    with pytest.raises(SignatureMismatch):
        verify_signature(VECTOR_SECRET, b"Hello, World?", VECTOR_SIGNATURE)


def test_signature_under_another_secret_is_rejected():
    with pytest.raises(SignatureMismatch):
        verify_signature("another secret", VECTOR_PAYLOAD, VECTOR_SIGNATURE)


def test_every_errors_is_a_webhook_error():
    for error in (SignatureMissing, SignatureMalformed, SignatureMismatch):
        assert issubclass(error, webhooks.WebhookError)


def test_the_comparison_is_constant_time(monkeypatch):
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(webhooks.hmac, "compare_digest", spy)
    verify_signature(VECTOR_SECRET, VECTOR_PAYLOAD, VECTOR_SIGNATURE)
    with pytest.raises(SignatureMismatch):
        verify_signature(VECTOR_SECRET, b"tampered", VECTOR_SIGNATURE)
    assert len(calls) == 2
    assert calls[0] == (VECTOR_SIGNATURE.encode(), VECTOR_SIGNATURE.encode())


def test_rotation_accepts_any_configured_secret_and_compares_against_all(monkeypatch):
    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(webhooks.hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    verify_signature([VECTOR_SECRET, "next secret"], VECTOR_PAYLOAD, VECTOR_SIGNATURE)
    assert len(calls) == 2, "no early exit: timing does not tell which secret matched"
    verify_signature(["old", VECTOR_SECRET], VECTOR_PAYLOAD, VECTOR_SIGNATURE)


@pytest.mark.parametrize("secret", ["", b"", []])
def test_an_empty_secret_is_a_configuration_error_not_an_open_door(secret):
    with pytest.raises(ValueError, match="secret"):
        verify_signature(secret, VECTOR_PAYLOAD, VECTOR_SIGNATURE)


def test_bytes_secret_and_unicode_payload():
    body = '{"name": "caf\u00e9 \u2615"}'.encode()
    signature = compute_signature(b"s3cret", body)
    verify_signature("s3cret", body, signature)
