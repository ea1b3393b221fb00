"""The App's webhook deliveries: find the ones that failed and ask GitHub to send them again.

GitHub does not retry a failed delivery by itself, and keeps deliveries for 3 days. The
reconciler lists recent deliveries (GET /app/hook/deliveries, newest first, cursor pages) and
redelivers (POST /app/hook/deliveries/{id}/attempts) each delivery whose every attempt failed.
A redelivery keeps its ``guid`` (the ``X-GitHub-Delivery`` header), so the queue's dedupe makes
a redelivery of something that did arrive harmless. Listing and redelivering need the App JWT.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from fleet.core.github.client import GitHubClient, TokenSource
from fleet.core.github.errors import GitHubError

REDELIVERY_WINDOW = timedelta(days=3)


@dataclass(frozen=True)
class HookDelivery:
    """One delivery attempt. Redeliveries of the same event share ``guid``."""

    id: int
    guid: str
    delivered_at: datetime
    status_code: int
    status: str = ""
    event: str = ""
    action: str | None = None
    redelivery: bool = False
    installation_id: int | None = None

    @property
    def succeeded(self) -> bool:
        return 200 <= self.status_code < 400

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> HookDelivery:
        delivered = datetime.fromisoformat(str(data["delivered_at"]).replace("Z", "+00:00"))
        if delivered.tzinfo is None:
            delivered = delivered.replace(tzinfo=UTC)
        return cls(
            id=int(data["id"]),
            guid=str(data["guid"]),
            delivered_at=delivered,
            status_code=int(data.get("status_code") or 0),
            status=str(data.get("status") or ""),
            event=str(data.get("event") or ""),
            action=data.get("action"),
            redelivery=bool(data.get("redelivery")),
            installation_id=data.get("installation_id"),
        )


@dataclass(frozen=True)
class RedeliveryReport:
    """What a reconciliation pass did."""

    examined: int
    redelivered: tuple[str, ...] = ()  # guids
    gave_up: tuple[str, ...] = ()  # guids that failed max_attempts times
    errors: tuple[str, ...] = field(default=())  # one line per redelivery that GitHub refused


def list_deliveries(
    client: GitHubClient, auth: TokenSource, *, since: datetime, per_page: int = 100
) -> list[HookDelivery]:
    """Deliveries made at or after ``since`` (newest first); stops paging at the first older one."""
    if since.tzinfo is None:
        raise ValueError("since must be timezone-aware (UTC)")
    found: list[HookDelivery] = []
    for item in client.paginate("/app/hook/deliveries", auth=auth, per_page=per_page):
        delivery = HookDelivery.from_api(item)
        if delivery.delivered_at < since:
            break  # newest first: everything after this is older
        found.append(delivery)
    return found


def failed_deliveries(
    deliveries: Iterable[HookDelivery],
    *,
    events: Sequence[str] | None = ("workflow_job",),
    max_attempts: int = 5,
) -> tuple[list[HookDelivery], list[str]]:
    """Pure: the latest attempt of each guid none of whose attempts succeeded, and the guids
    given up on (``max_attempts`` failures: something on our side refuses them every time)."""
    by_guid: dict[str, list[HookDelivery]] = {}
    for delivery in deliveries:
        if events is not None and delivery.event not in events:
            continue
        by_guid.setdefault(delivery.guid, []).append(delivery)
    retry: list[HookDelivery] = []
    gave_up: list[str] = []
    for guid, attempts in by_guid.items():
        if any(attempt.succeeded for attempt in attempts):
            continue
        if len(attempts) >= max_attempts:
            gave_up.append(guid)
            continue
        retry.append(max(attempts, key=lambda attempt: (attempt.delivered_at, attempt.id)))
    retry.sort(key=lambda delivery: (delivery.delivered_at, delivery.id))
    return retry, gave_up


def redeliver(client: GitHubClient, auth: TokenSource, delivery_id: int) -> None:
    """Ask GitHub to send delivery ``delivery_id`` again (answers 202)."""
    client.request("POST", f"/app/hook/deliveries/{int(delivery_id)}/attempts", auth=auth)


def redeliver_failed(
    client: GitHubClient,
    auth: TokenSource,
    *,
    since: datetime,
    now: datetime,
    events: Sequence[str] | None = ("workflow_job",),
    max_attempts: int = 5,
    limit: int = 100,
) -> RedeliveryReport:
    """Redeliver failed deliveries since ``since`` (clamped to GitHub's 3-day window).

    At most ``limit`` redeliveries per pass (oldest first). A transient GitHub error stops the
    pass and is raised, so the caller retries later; a refusal of one delivery is recorded and
    the pass goes on.
    """
    since = max(since, now - REDELIVERY_WINDOW + timedelta(minutes=5))
    deliveries = list_deliveries(client, auth, since=since)
    retry, gave_up = failed_deliveries(deliveries, events=events, max_attempts=max_attempts)
    done: list[str] = []
    errors: list[str] = []
    for delivery in retry[:limit]:
        try:
            redeliver(client, auth, delivery.id)
        except GitHubError as exc:
            if exc.transient:
                raise
            errors.append(f"{delivery.guid}: {exc}")
            continue
        done.append(delivery.guid)
    return RedeliveryReport(
        examined=len(deliveries),
        redelivered=tuple(done),
        gave_up=tuple(gave_up),
        errors=tuple(errors),
    )
