"""A message session on one scale set: open, refresh, close; the long poll; deleting and
acquiring.

- ``open``: ``POST runnerscalesets/{id}/sessions`` ``{"ownerName"}`` -> the session (its queue
  URL and queue token, and the statistics). 409 -> ``SessionConflict``.
- ``get_message``: ``GET {queue}?lastMessageId=N`` with the queue token, ``Accept:
  application/json; api-version=6.0-preview`` and ``X-ScaleSetMaxCapacity``. The service holds
  the request ~50 s: 202 -> None (nothing came), 200 -> a ``Message``. The read timeout is
  longer than the hold (``poll_timeout``) so a quiet queue is a 202, never a timeout.
- ``delete_message``: ``DELETE {queue}/{messageId}``; an undeleted message comes again.
- ``acquire_jobs``: ``POST runnerscalesets/{id}/acquirejobs`` ``[runnerRequestId...]`` with the
  queue token -> the ids acquired.
- A 401 on any queue-token call refreshes the session (``PATCH``, new token) and retries
  once; a second 401 is ``QueueTokenExpired``.
- A session the service no longer holds (deleted under a long poll, taken over, dropped) is
  ``SessionGone`` (or a 404): the poll in flight ends with it, a refresh cannot bring it
  back, and closing it again is no error (``close`` answers False).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

import requests

from fleet.core.github.errors import GitHubAuthError, GitHubError, GitHubNotFound
from fleet.core.github.scaleset.errors import (
    QueueTokenExpired,
    SessionConflict,
    SessionGone,
    typed,
)
from fleet.core.github.scaleset.messages import Message, MessageFormatError, parse_message
from fleet.core.github.scaleset.models import AcquiredJobs, Session
from fleet.core.github.scaleset.service import ACCEPT, SCALE_SETS, ScaleSetService

MAX_CAPACITY_HEADER = "X-ScaleSetMaxCapacity"
# (connect, read): the service answers a quiet long poll after ~50 s.
DEFAULT_POLL_TIMEOUT = (5.0, 70.0)

T = TypeVar("T")


class MessageSession:
    """One session of one listener (``owner``) on scale set ``scale_set_id``."""

    def __init__(
        self,
        service: ScaleSetService,
        scale_set_id: int,
        owner: str,
        *,
        poll_timeout: float | tuple[float, float] = DEFAULT_POLL_TIMEOUT,
    ) -> None:
        self.service = service
        self.scale_set_id = int(scale_set_id)
        self.owner = owner
        self.poll_timeout = poll_timeout
        self.session: Session | None = None
        self.refreshes = 0
        self._lock = threading.RLock()

    @property
    def _path(self) -> str:
        return f"{SCALE_SETS}/{self.scale_set_id}/sessions"

    def _current(self) -> Session:
        if self.session is None:
            raise RuntimeError("the message session is not open: call open() first")
        return self.session

    def open(self) -> Session:
        """Create the session; ``SessionConflict`` when another one is open."""
        with self._lock:
            try:
                answer = self.service.call("POST", self._path, json={"ownerName": self.owner})
            except GitHubError as exc:
                if exc.status == 409:
                    raise SessionConflict(
                        exc.method,
                        exc.path,
                        409,
                        f"scale set {self.scale_set_id} already has an open session "
                        f"({exc.message}); another listener holds it, or one that stopped "
                        "without closing it and has not expired yet",
                        type_name=exc.type_name,
                    ) from exc
                raise
            self.session = Session.model_validate(answer.json())
            return self.session

    def refresh(self) -> Session:
        """A new queue token for the open session (``PATCH``)."""
        with self._lock:
            current = self._current()
            answer = self.service.call("PATCH", f"{self._path}/{current.session_id}")
            self.session = Session.model_validate(answer.json())
            self.refreshes += 1
            return self.session

    def close(self) -> bool:
        """Delete the session; False if the service no longer knew it."""
        with self._lock:
            if self.session is None:
                return False
            try:
                self.service.call("DELETE", f"{self._path}/{self.session.session_id}")
            except (GitHubNotFound, SessionGone):
                return False
            finally:
                self.session = None
            return True

    def close_other(self, session_id: str) -> bool:
        """Delete a session this owner opened before (its id remembered): a take-over."""
        try:
            self.service.call("DELETE", f"{self._path}/{session_id}")
        except (GitHubNotFound, SessionGone):
            return False
        return True

    def _with_queue_token(self, call: Callable[[Session], T]) -> T:
        with self._lock:
            try:
                return call(self._current())
            except GitHubAuthError:
                refreshed = self.refresh()
            try:
                return call(refreshed)
            except GitHubAuthError as exc:
                raise QueueTokenExpired(
                    exc.method,
                    exc.path,
                    401,
                    "the message queue refused the session's token right after a refresh",
                ) from exc

    def get_message(self, last_message_id: int, max_capacity: int) -> Message | None:
        """The next message (None after a quiet long poll); see the module docstring."""

        def poll(session: Session) -> Message | None:
            client = self.service.clients.for_origin(session.message_queue_url)
            params = {"lastMessageId": last_message_id} if last_message_id > 0 else None
            response = _typed(
                lambda: client.request(
                    "GET",
                    session.message_queue_url,
                    auth=None,
                    params=params,
                    headers=self._queue_headers(session, max_capacity),
                    timeout=self.poll_timeout,
                )
            )
            if response.status_code == 202:
                return None
            try:
                return parse_message(response.json())
            except (ValueError, MessageFormatError) as exc:
                raise GitHubError("GET", "message queue", response.status_code, str(exc)) from exc

        return self._with_queue_token(poll)

    def delete_message(self, message_id: int) -> None:
        def delete(session: Session) -> None:
            client = self.service.clients.for_origin(session.message_queue_url)
            url = f"{session.message_queue_url.rstrip('/')}/{int(message_id)}"
            _typed(
                lambda: client.request(
                    "DELETE", url, auth=None, headers=self._queue_headers(session, None)
                )
            )

        self._with_queue_token(delete)

    def acquire_jobs(self, request_ids: Sequence[int]) -> tuple[int, ...]:
        """Acquire these jobs for the scale set; returns the ids the service gave it."""
        ids = [int(i) for i in request_ids]
        if not ids:
            return ()

        def acquire(session: Session) -> tuple[int, ...]:
            headers = {"Authorization": f"Bearer {session.message_queue_access_token}"}
            answer = self.service.call(
                "POST", f"{SCALE_SETS}/{self.scale_set_id}/acquirejobs", json=ids, headers=headers
            )
            return AcquiredJobs.model_validate(answer.json()).value

        return self._with_queue_token(acquire)

    @staticmethod
    def _queue_headers(session: Session, max_capacity: int | None) -> dict[str, str]:
        headers = {
            "Accept": ACCEPT,
            "Authorization": f"Bearer {session.message_queue_access_token}",
        }
        if max_capacity is not None:
            headers[MAX_CAPACITY_HEADER] = str(max(0, int(max_capacity)))
        return headers


def _typed(call: Callable[[], requests.Response]) -> requests.Response:
    try:
        return call()
    except GitHubAuthError:
        raise
    except GitHubError as exc:
        raise typed(exc) from exc
