"""The retire sequence both fleets use: deregister, re-check, remove; never a busy runner.

GitHub may hand a job to any idle runner with matching labels at any moment, and its
``busy`` flag can read false for tens of seconds after it did (docs/security.md, property
16). So a runner host is removed only after three steps, in this order:

1. **deregister** its runner from GitHub. GitHub refuses to delete a runner that runs a job
   (``RunnerBusyError``): the host is kept. A runner the last listing showed busy is not even
   asked about.
2. **re-check**: GitHub again, where the fleet can ask (a runner still listed after deletion
   is kept), then the fleet's own view, read once after every deregistration: a job's worker
   on the host, or an in-progress job in the job ledger naming the runner.
3. **remove** what is still free of a job: terminate the instance, remove the container.

An uncertain answer (a GitHub error the caller names in ``uncertain``) keeps the host: on
uncertain state nothing is removed. The caller supplies the I/O as functions, so the local
fleet (Docker, a host probe, serve's intake) and the AWS scaler (GitHub App, DynamoDB
ledger, Auto Scaling) run the same steps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from fleet.core.github.runners import Runner, RunnerBusyError

# The "why" of each kept host, as reports and logs print it.
BUSY_ON_GITHUB = "busy on GitHub"
REFUSED = "busy: GitHub refused to deregister it"
LEDGER_BUSY = "a job is in progress on it (ledger)"


@dataclass(frozen=True)
class Candidate:
    """A host the scaling decision chose to retire, and its registration (None: none)."""

    key: str  # the host's name, or the instance id
    registration: Runner | None


@dataclass(frozen=True)
class RetireOutcome:
    removed: tuple[str, ...] = ()
    spared: tuple[tuple[str, str], ...] = ()  # (key, why it was kept)


def retire(
    candidates: Iterable[Candidate],
    *,
    deregister: Callable[[Runner], object],
    busy_after: Callable[[Sequence[str]], Mapping[str, str]],
    remove: Callable[[str], bool],
    recheck: Callable[[Runner], Runner | None] | None = None,
    uncertain: tuple[type[Exception], ...] = (),
) -> RetireOutcome:
    """Run the sequence over ``candidates`` (each key once); see the module docstring.

    ``deregister`` deletes a registration (``RunnerBusyError`` if GitHub refuses);
    ``recheck`` reads it again (None: gone); ``busy_after`` answers, once for all the
    deregistered keys, which of them run a job and why; ``remove`` removes one host and says
    whether it did.
    """
    spared: list[tuple[str, str]] = []
    deregistered: list[str] = []
    for candidate in {c.key: c for c in candidates}.values():
        why = _deregister(candidate.registration, deregister, recheck, uncertain)
        if why is None:
            deregistered.append(candidate.key)
        else:
            spared.append((candidate.key, why))
    removed: list[str] = []
    if deregistered:
        busy = busy_after(deregistered)
        for key in deregistered:
            if key in busy:
                spared.append((key, busy[key]))
            elif remove(key):
                removed.append(key)
    return RetireOutcome(removed=tuple(removed), spared=tuple(spared))


def _deregister(
    registration: Runner | None,
    deregister: Callable[[Runner], object],
    recheck: Callable[[Runner], Runner | None] | None,
    uncertain: tuple[type[Exception], ...],
) -> str | None:
    """Steps 1 and 2 on GitHub for one registration: None if it is gone, else why not."""
    if registration is None:
        return None
    if registration.busy:
        return BUSY_ON_GITHUB
    try:
        deregister(registration)
    except RunnerBusyError:
        return REFUSED
    except uncertain as exc:
        return f"deregistration uncertain: {exc}"
    if recheck is None:
        return None
    try:
        again = recheck(registration)
    except uncertain as exc:
        return f"re-check uncertain: {exc}"
    if again is not None:
        return f"{'busy' if again.busy else 'still registered'} after deregistration"
    return None
