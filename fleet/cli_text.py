"""What `python -m fleet` prints: tables, the registration note after `up`/`scale`, the
validation report in the terminal, the outdated-agent lines of `status`. Pure: text from the
commands' results."""

from __future__ import annotations

from fleet.local.enrol import HostRow
from fleet.local.observe import OUTDATED_STATE, outdated_message
from fleet.local.validate import Validation

NOT_REGISTERED = (
    "Runners are provisioned and validated but NOT registered with GitHub: "
    "no GitHub App credentials were given (see README, 'Register with GitHub')."
)


def table(rows: list[dict[str, str]], columns: list[str]) -> str:
    """A plain text table (what a person reads in a terminal or a CI log)."""
    widths = {c: max([len(c)] + [len(str(r.get(c, ""))) for r in rows]) for c in columns}
    lines = ["  ".join(c.upper().ljust(widths[c]) for c in columns)]
    lines += ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def rows_table(rows: list[HostRow]) -> str:
    return table(
        [
            {
                "runner": r.name,
                "state": r.state,
                "converge": f"{r.converge_seconds:.0f} s" if r.converge_seconds else "-",
                "checks": f"{r.checks_passed}/{r.checks_total}" if r.checks_total else "-",
                "github": r.github,
            }
            for r in rows
        ],
        ["runner", "state", "converge", "checks", "github"],
    )


def registration_note(registrar: object | None, labels: tuple[str, ...]) -> str:
    if registrar is None:
        return NOT_REGISTERED
    scope = registrar.settings.scope_text  # type: ignore[attr-defined]
    state = getattr(registrar, "state", None)
    if state is not None:
        return (
            f"Runners are registered into {state.describe()} on {scope} as ephemeral "
            f"just-in-time runners (labels {','.join(state.labels)}): each takes one job. "
            f"Run `python -m fleet serve --scale-set {state.name}` to follow its jobs."
        )
    return (
        f"Runners are registered with GitHub ({scope}) as ephemeral just-in-time runners "
        f"with labels {','.join(labels)}: each takes one job. "
        "Run `python -m fleet serve` to replace them after their jobs."
    )


def validation_text(outcome: Validation) -> str:
    """The report in the terminal: checks (your suite's row among them), then warnings."""
    rows = [{"runner": c.host, "check": c.text, "result": c.outcome} for c in outcome.checks]
    rows += [
        {"runner": w.host, "check": w.sentence(), "result": "WARNING"} for w in outcome.warnings
    ]
    counts = outcome.counts()
    warnings = f", {len(outcome.warnings)} performance warning(s)" if outcome.warnings else ""
    return (
        table(rows, ["runner", "check", "result"])
        + f"\n\n{counts['passed']} passed, {counts['failed'] + counts['error']} failed"
        + f"{warnings} in {outcome.seconds:.1f} s; JUnit report: {outcome.junit}"
    )


def outdated_lines(rows: list[dict[str, str]]) -> list[str]:
    """`status`: the hosts whose agent is too old for GitHub (exit 7), named, and how to
    re-bake; none when every agent is current."""
    outdated = [row["runner"] for row in rows if row["runner state"] == OUTDATED_STATE]
    return [outdated_message(outdated)] if outdated else []
