"""Webhook signature check (``X-Hub-Signature-256``), done on the raw body before any parsing.

GitHub signs the exact request body with HMAC-SHA256 under the webhook secret and sends
``sha256=<64 hex digits>``. The comparison is constant-time (``hmac.compare_digest``). Several
secrets may be given so a secret can be rotated without dropping deliveries.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence

SIGNATURE_HEADER = "X-Hub-Signature-256"
_SIGNATURE = re.compile(r"^sha256=[0-9a-f]{64}$")


class WebhookError(Exception):
    """The delivery must be rejected."""


class SignatureMissing(WebhookError):
    """No ``X-Hub-Signature-256`` header (unsigned delivery, or the App has no secret set)."""


class SignatureMalformed(WebhookError):
    """The header is not ``sha256=`` followed by 64 lowercase hex digits."""


class SignatureMismatch(WebhookError):
    """The signature does not match the body under any configured secret."""


def _secret_bytes(secret: str | bytes) -> bytes:
    value = secret.encode() if isinstance(secret, str) else bytes(secret)
    if not value:
        raise ValueError("webhook secret is empty: refusing to accept unauthenticated webhooks")
    return value


def compute_signature(secret: str | bytes, body: bytes) -> str:
    """``sha256=<hex>`` for ``body`` under ``secret``, as GitHub computes it."""
    return "sha256=" + hmac.new(_secret_bytes(secret), body, hashlib.sha256).hexdigest()


def verify_signature(
    secrets: str | bytes | Sequence[str | bytes], body: bytes, signature: str | None
) -> None:
    """Return if ``signature`` signs ``body`` under one of ``secrets``; raise otherwise."""
    if isinstance(secrets, str | bytes):
        secrets = [secrets]
    if not secrets:
        raise ValueError("no webhook secret configured")
    expected = [compute_signature(secret, body) for secret in secrets]
    if signature is None or not signature.strip():
        raise SignatureMissing(f"missing {SIGNATURE_HEADER} header")
    signature = signature.strip()
    if not _SIGNATURE.match(signature):
        raise SignatureMalformed(f"{SIGNATURE_HEADER} must be 'sha256=' and 64 hex digits")
    # Compare against every secret (no early exit), so timing says nothing about which matched.
    matched = False
    for candidate in expected:
        matched |= hmac.compare_digest(candidate.encode(), signature.encode())
    if not matched:
        raise SignatureMismatch(f"{SIGNATURE_HEADER} does not match the body")
