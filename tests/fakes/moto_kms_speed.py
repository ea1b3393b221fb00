"""moto makes private key material for every KMS key it creates, a fresh RSA-2048 key even
for a symmetric key (the only kind the integration layer creates, one per test): a quarter of
building the simulated AWS world. The material is used only to sign and verify with
asymmetric keys, which these tests never do. ``install`` makes it once per key spec and
process and hands the same material to every key of that spec; everything else about a key
(id, ARN, policy, state, what it encrypts) is moto's own.
"""

from __future__ import annotations

import functools

from moto.kms import models

_original = models.generate_private_key


@functools.cache
def _generate_private_key(key_spec: str) -> object:
    return _original(key_spec)


def install() -> None:
    assert _original.__name__ == "generate_private_key", "moto's KMS key factory changed"
    models.generate_private_key = _generate_private_key
