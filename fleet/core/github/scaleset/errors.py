"""The scale-set service's refusals as typed errors. All are ``GitHubError``s, so code that
already treats GitHub errors as "uncertain, stop and retry later" treats these the same way.

The service names its exceptions in the body's ``typeName``; the mapping follows
``actions/scaleset`` (``errors.go``).
"""

from __future__ import annotations

from fleet.core.github.errors import GitHubConflict, GitHubError


class ScaleSetError(GitHubError):
    """A scale-set call failed in a way the caller may want to tell apart."""


class JobStillRunning(ScaleSetError):
    """The runner is running a job: it was not removed (re-check later; never force it)."""


class AgentNotFound(ScaleSetError):
    """No such runner (already gone: an ephemeral runner leaves after its job)."""


class AgentExists(ScaleSetError):
    """A runner with that name is already registered."""


class SessionConflict(ScaleSetError, GitHubConflict):
    """Another session is open on the scale set (409): another listener, or one that died
    without closing its session and has not expired yet."""


class SessionGone(ScaleSetError):
    """The service no longer holds the session this call named: deleted (by this listener's
    own stop, or a take-over), or dropped after its holder stopped polling. The service says
    so as ``RunnerScaleSetSessionExpiredException`` ("The session identifier … is not
    valid."); nothing more can be done with that session: open a new one."""


class QueueTokenExpired(ScaleSetError):
    """The message queue refused the session's token even after a session refresh."""


class ScaleSetNotFound(ScaleSetError):
    """The scale set does not exist (deleted from outside)."""


class AmbiguousName(ScaleSetError):
    """A name the service should know once matched several objects."""


_BY_TYPE_NAME: tuple[tuple[str, type[ScaleSetError]], ...] = (
    ("AgentExistsException", AgentExists),
    ("AgentNotFoundException", AgentNotFound),
    ("JobStillRunningException", JobStillRunning),
    ("SessionExpiredException", SessionGone),  # RunnerScaleSet… (and TaskAgent…, older)
)


def typed(error: GitHubError) -> GitHubError:
    """``error`` as the typed error its ``typeName`` names, or unchanged."""
    for name, cls in _BY_TYPE_NAME:
        if error.type_name and name in error.type_name:
            return cls(
                error.method,
                error.path,
                error.status,
                error.message,
                request_id=error.request_id,
                type_name=error.type_name,
            )
    return error
