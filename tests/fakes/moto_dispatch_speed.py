"""moto decides whether a response class answers an action by listing the class's functions
with ``inspect.getmembers`` at every request (0.3 ms for EC2's, about 0.4 s of CPU over the
integration layer's ~5,000 requests). A class's functions do not change while the tests run
(the speed-ups that replace moto's functions are installed before the first request), so
``install`` lists each class once per process. Which method answers, and everything it does,
is moto's own.
"""

from __future__ import annotations

import functools

from moto.core import responses

_original = responses.method_names_from_class


@functools.cache
def _method_names_from_class(clazz: object) -> list[str]:
    return _original(clazz)


def install() -> None:
    assert _original.__name__ == "method_names_from_class", "moto's dispatch changed"
    responses.method_names_from_class = _method_names_from_class
