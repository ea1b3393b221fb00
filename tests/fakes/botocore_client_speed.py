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

Every session and every client also registers about 150 event handlers, and botocore checks
each one as it does so: ``inspect.getfullargspec`` to see that the handler takes ``**kwargs``,
then a translation of the event's name through its aliases, whose cache lives in one event
emitter and starts empty in every copy. Both are pure functions of the handler or the name:
``install`` remembers them once per process (together about a tenth of the integration
layer's CPU time). A handler that is not a plain function or a bound method is still
checked every time, so no cache keeps anything else alive.
"""

from __future__ import annotations

import functools
import types
from typing import Any

from botocore import client, hooks, loaders, session

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


_original_accepts_kwargs = hooks.accepts_kwargs
_takes_kwargs: dict[types.FunctionType, bool] = {}


def _accepts_kwargs(func: Any) -> bool:
    function = getattr(func, "__func__", func)  # a bound method: its function's signature
    if not isinstance(function, types.FunctionType):
        return _original_accepts_kwargs(func)
    if function not in _takes_kwargs:
        _takes_kwargs[function] = bool(_original_accepts_kwargs(function))
    return _takes_kwargs[function]


_original_alias = hooks.EventAliaser._alias_event_name
_aliased: dict[str, str] = {}


def _alias_event_name(self: hooks.EventAliaser, event_name: str) -> str:
    if self._event_aliases != hooks.EVENT_ALIASES:  # aliases of its own: botocore's way
        return _original_alias(self, event_name)
    if event_name not in _aliased:
        _aliased[event_name] = _original_alias(self, event_name)
    return _aliased[event_name]


def install() -> None:
    assert _original.__name__ == "_create_client_class", "botocore's client factory changed"
    client.ClientCreator._create_client_class = _create_client_class
    assert session.create_loader is loaders.create_loader, "botocore's loader factory changed"
    session.create_loader = _shared_loader
    assert _original_accepts_kwargs.__name__ == "accepts_kwargs", "botocore's check changed"
    hooks.accepts_kwargs = _accepts_kwargs
    assert _original_alias.__name__ == "_alias_event_name", "botocore's aliasing changed"
    hooks.EventAliaser._alias_event_name = _alias_event_name
