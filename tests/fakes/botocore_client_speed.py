"""botocore builds a new Python class for every client it creates: one method per operation
of the service (EC2 has about 700), then a ``creating-client-class`` event. The integration
layer creates about thirty clients per test (each function's role, the administrator, every
instance's role), and building their classes was a fifth of its CPU time. ``install``
builds each service's class once per process and reuses it.

The class holds only the operation methods and the operation name mapping; a client's state
(credentials, endpoint, event hooks such as moto's and the throttling injector's, retry
configuration) lives in the instance and is still made per client. Every session the tests
make registers the same class-building handlers (boto3's defaults), so the cached class is
the one botocore would have built.

Every botocore session also makes its own model loader, which reads and parses the service
and endpoint JSON files again (each boto3 session moto's ``mock_aws`` makes, the tests' own
sessions): ``install`` also gives every session one loader per data path, whose caches keep
what it parsed (the files do not change while the tests run).
"""

from __future__ import annotations

import functools
from typing import Any

from botocore import client, loaders, session

_original = client.ClientCreator._create_client_class
_classes: dict[tuple[str, str], type] = {}


def _create_client_class(self: Any, service_name: str, service_model: Any) -> type:
    key = (service_name, service_model.api_version)
    if key not in _classes:
        _classes[key] = _original(self, service_name, service_model)
    return _classes[key]


@functools.cache
def _shared_loader(search_path_string: str | None = None) -> loaders.Loader:
    return loaders.create_loader(search_path_string)


def install() -> None:
    assert _original.__name__ == "_create_client_class", "botocore's client factory changed"
    client.ClientCreator._create_client_class = _create_client_class
    assert session.create_loader is loaders.create_loader, "botocore's loader factory changed"
    session.create_loader = _shared_loader
