"""Where the listener function remembers its scale-set session between runs (scaleSet mode).

One SSM String parameter (``FLEET_LISTENER_SESSION_PARAMETER``, created by the Pulumi program
with the value ``{}``) holds ``{"scaleSetId": N, "sessionId": "..."}`` while a run holds a
session, and ``{}`` once that run closed it. A run that died without closing its session
(timeout, crash) leaves the id behind, and the next run takes that session over
(``core.scaleset_listener``: deleted, then a new one opened at once) instead of waiting for
the service to drop it. A session id is not a secret (closing a session needs the admin
token), so a String parameter, without the fleet's key, is enough.

``encode``/``decode`` are pure; ``ListenerSessionMemory`` is the SSM I/O. A value that is not
what ``encode`` writes (edited by hand) reads as "nothing remembered": the worst that costs
is one wait for the service to drop the old session, never a wrong take-over.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from fleet.aws.adapters.clients import error_code

log = logging.getLogger(__name__)

NOTHING = "{}"


@dataclass(frozen=True)
class RememberedSession:
    scale_set_id: int
    session_id: str


def encode(session: RememberedSession | None) -> str:
    if session is None:
        return NOTHING
    return json.dumps(
        {"scaleSetId": session.scale_set_id, "sessionId": session.session_id},
        separators=(",", ":"),
    )


def decode(value: str) -> RememberedSession | None:
    """The session ``value`` names; None for ``{}`` or anything ``encode`` does not write."""
    try:
        data = json.loads(value)
    except ValueError:
        return None
    if not isinstance(data, dict) or not data:
        return None
    scale_set_id, session_id = data.get("scaleSetId"), data.get("sessionId")
    if (
        not isinstance(scale_set_id, int)
        or isinstance(scale_set_id, bool)
        or not isinstance(session_id, str)
        or not session_id
    ):
        return None
    return RememberedSession(scale_set_id, session_id)


class ListenerSessionMemory:
    """The listener's session, remembered in one SSM String parameter."""

    def __init__(self, client: Any, name: str) -> None:
        self.client = client
        self.name = name

    def load(self) -> RememberedSession | None:
        try:
            value = self.client.get_parameter(Name=self.name)["Parameter"]["Value"]
        except ClientError as exc:
            if error_code(exc) == "ParameterNotFound":
                return None  # removed by hand: the next remember() creates it again
            raise
        found = decode(str(value))
        if found is None and str(value) != NOTHING:
            log.warning("ignoring %s: %r is not a remembered session", self.name, value)
        return found

    def remember(self, scale_set_id: int, session_id: str) -> None:
        self._put(encode(RememberedSession(int(scale_set_id), session_id)))

    def clear(self) -> None:
        self._put(NOTHING)

    def _put(self, value: str) -> None:
        self.client.put_parameter(Name=self.name, Value=value, Type="String", Overwrite=True)
