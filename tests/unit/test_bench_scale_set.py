"""The pure parts of bench/scale_set.py: statistics, request kinds, the idle-cost arithmetic,
when the fleet counts as settled, the section it writes into docs/benchmarks.md."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bench._common import write_section
from bench.scale_set import (
    NOT_MEASURED,
    SECTION,
    IdleCost,
    Request,
    classify,
    idle_cost,
    job_timings,
    main,
    ratio,
    render,
    settled,
    summarise,
)

pytestmark = pytest.mark.unit

QUEUE = "/_queue/sessions/0b5e/messages"
SCALE_SETS = "/_services/pipelines/_apis/runtime/runnerscalesets"
SESSIONS = SCALE_SETS + "/1/sessions"


def test_summarise_gives_the_median_the_range_and_the_runs_in_order():
    summary = summarise([3.0, 1.0, 2.0, 10.0])
    assert summary.median == 2.5
    assert (summary.low, summary.high) == (1.0, 10.0)
    assert summary.runs == (3.0, 1.0, 2.0, 10.0)
    assert summarise([4.0]).median == 4.0
    with pytest.raises(ValueError, match="no runs"):
        summarise([])


def test_ratio_of_medians_and_a_dash_when_a_side_is_missing():
    assert ratio(summarise([1.0, 2.0, 9.0]), summarise([4.0])) == "0.50x"
    assert ratio(None, summarise([4.0])) == "—"
    assert ratio(summarise([4.0]), None) == "—"
    assert ratio(summarise([4.0]), summarise([0.0])) == "—"


@pytest.mark.parametrize(
    ("method", "path", "kind"),
    [
        ("GET", QUEUE, "long poll (GET messages)"),
        ("DELETE", QUEUE + "/7", "message delete"),
        ("POST", SESSIONS, "session open"),
        ("PATCH", SESSIONS + "/0b5e", "session refresh"),
        ("DELETE", SESSIONS + "/0b5e", "session close"),
        ("POST", SCALE_SETS + "/1/acquirejobs", "acquire jobs"),
        ("POST", "/orgs/octo-org/actions/runners/registration-token", "admin token (registration)"),
        ("POST", "/actions/runner-registration", "admin token (registration)"),
        ("POST", "/app/installations/1/access_tokens", "App installation token"),
        ("GET", "/orgs/octo-org/installation", "App installation token"),
        ("GET", "/_services/pipelines/_apis/runtime/runnergroups/", "service admin call"),
        ("GET", "/orgs/octo-org/actions/runners", "REST API"),
    ],
)
def test_requests_are_told_apart_by_method_and_path(method, path, kind):
    assert classify(method, path) == kind


def _requests() -> list[Request]:
    startup = [
        Request(0.1, "POST", "/app/installations/1/access_tokens"),
        Request(0.2, "POST", "/orgs/octo-org/actions/runners/registration-token"),
        Request(0.3, "POST", "/actions/runner-registration"),
        Request(0.4, "POST", SESSIONS),
    ]
    polls = [Request(10.0 + 50.0 * n, "GET", QUEUE) for n in range(7)]  # 10, 60, ... 310
    refresh = [Request(200.0, "PATCH", SESSIONS + "/0b5e")]
    return [*polls, *refresh, *startup]  # any order


def test_idle_cost_counts_a_window_from_the_first_long_poll_and_extrapolates_per_hour():
    cost = idle_cost(
        _requests(), listening_from=5.0, window=300.0, hold=50.0, cpu_seconds=0.6, cpu_window=305.0
    )
    # Polls at 10 ... 260 are inside [10, 310); the one at 310 is not.
    assert cost.requests == {"long poll (GET messages)": 6, "session refresh": 1}
    assert cost.total == 7
    assert cost.per_hour(6) == 72.0
    assert cost.startup == {
        "App installation token": 1,
        "admin token (registration)": 2,
        "session open": 1,
    }
    assert cost.cpu_per_hour == pytest.approx(0.6 * 3600 / 305)


def test_idle_cost_without_a_long_poll_says_so():
    only_startup = [r for r in _requests() if r.method != "GET"]
    with pytest.raises(ValueError, match="no long poll"):
        idle_cost(
            only_startup, listening_from=0.0, window=60, hold=50, cpu_seconds=0, cpu_window=60
        )


def test_job_timings_from_the_fakes_stamps():
    queued = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    later = queued + timedelta(seconds=7.25)
    assert job_timings(queued, later, queued + timedelta(seconds=0.5)) == (7.25, 0.5)
    assert job_timings(queued, later, None) == (7.25, None)  # the webhook path
    with pytest.raises(ValueError, match="not taken"):
        job_timings(queued, None, None)
    with pytest.raises(ValueError, match="before the job was queued"):
        job_timings(queued, queued - timedelta(seconds=1), None)


ONLINE = {"status": "online", "busy": False}


def test_the_fleet_is_settled_with_the_wanted_idle_hosts_online_and_nothing_waiting():
    runners = {"h1": ONLINE, "h2": {**ONLINE, "runnerScaleSetId": 1}}
    assert settled({"h1"}, runners, 1, scale_set=False)
    assert settled(set(), runners, 0, scale_set=True)
    assert settled({"h2"}, runners, 1, scale_set=True)
    assert not settled({"h1"}, runners, 1, scale_set=True)  # not in the scale set
    assert not settled({"h1", "h2"}, runners, 1, scale_set=False)  # one too many
    assert not settled({"h1"}, runners, 1, scale_set=False, waiting=1)
    assert not settled({"h3"}, runners, 1, scale_set=False)  # not registered yet
    assert not settled({"h1"}, {"h1": {**ONLINE, "busy": True}}, 1, scale_set=False)
    assert not settled({"h1"}, {"h1": {**ONLINE, "status": "offline"}}, 1, scale_set=False)


def _idle() -> IdleCost:
    return IdleCost(
        window=300.0,
        hold=50.0,
        requests={"long poll (GET messages)": 6},
        startup={"session open": 1, "admin token (registration)": 2},
        cpu_seconds=0.06,
        cpu_window=305.0,
    )


def test_the_section_marks_the_docker_rows_not_yet_measured_and_fills_the_idle_cost():
    text = render(machine="2 cores", runs=5, latency=None, acquired=None, idle=_idle())
    assert text.startswith(SECTION + "\n")
    rows = [line for line in text.splitlines() if line.startswith(("| scale set", "| webhook"))]
    assert len(rows) == 4 and all(NOT_MEASURED in row for row in rows)
    assert "| requests to the service | 72 | 6 in 300 s: long poll (GET messages) 6 |" in text
    assert "| CPU of the listener's process | 0.71 CPU-s" in text
    assert "9.8 ms per long poll" in text  # 0.71 CPU-s over 72 polls an hour
    assert "3 requests: admin token (registration) 2, session open 1" in text


def test_the_section_shows_medians_runs_and_the_ratio_to_the_webhook_path():
    latency = {
        "scale set, warm": summarise([1.0, 1.2, 1.1]),
        "scale set, cold": summarise([9.0, 8.0, 10.0]),
        "webhook, warm": summarise([0.5, 0.6, 0.4]),
        "webhook, cold": summarise([8.0, 8.0, 8.0]),
    }
    text = render(machine="2 cores", runs=3, latency=latency, acquired=summarise([0.05]), idle=None)
    assert "| 1.10 s | 1.00-1.20 s | 1.00, 1.20, 1.10 | 2.20x |" in text
    assert "| 9.00 s | 8.00-10.00 s | 9.00, 8.00, 10.00 | 1.12x |" in text
    assert "| 0.50 s | 0.40-0.60 s | 0.50, 0.60, 0.40 | (the base) |" in text
    assert "acquired by the listener (median): 50 ms" in text
    assert f"Not measured in this run ({NOT_MEASURED})." in text
    assert "median of 3 runs" in text


def test_writing_the_section_replaces_only_its_own(tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text(
        f"# Benchmarks\n\n## Other\n\nkept\n\n{SECTION}\n\nold figures\n\n## Last\n\nx\n"
    )
    section = render(machine="m", runs=5, latency=None, acquired=None, idle=_idle())
    write_section(doc, SECTION, section)
    text = doc.read_text()
    assert "old figures" not in text and text.count(SECTION) == 1
    assert "## Other\n\nkept" in text and text.endswith("## Last\n\nx\n")
    assert section in text


def test_the_command_line_refuses_to_measure_nothing(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--no-latency", "--no-idle-cost"])
    assert stop.value.code == 2
    assert "leave nothing to measure" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--no-latency", "--window", "0"])
    assert "must be more than 0" in capsys.readouterr().err


def test_the_listener_child_says_how_to_call_it(capsys):
    from bench._scale_set_idle import main as child

    assert child([]) == 2
    assert "usage: python -m bench._scale_set_idle SECONDS STATE_DIR" in capsys.readouterr().err


def test_the_commands_the_latency_part_runs_are_ones_the_fleet_takes():
    from bench._scale_set_fleet import serve_argv, up_argv
    from fleet import cli

    webhook = cli.parser().parse_args(serve_argv("bench-1a2b3c", 1, scale_set=False))
    assert (webhook.webhook_port, webhook.scale_set, webhook.idle) == (0, None, 1)
    assert webhook.idle_grace == 0 and webhook.interval == 15  # serve's default cycle
    scale_set = cli.parser().parse_args(serve_argv("bench-1a2b3c", 0, scale_set=True))
    assert (scale_set.webhook_port, scale_set.scale_set, scale_set.idle) == (
        None,
        "bench-scale-set",
        0,
    )
    up = cli.parser().parse_args(up_argv("bench-1a2b3c", "http://10.0.0.1:8/a.tgz", "ab" * 32))
    assert (up.runners, up.no_canary, up.scale_set) == (1, True, None)
    assert up.labels == ("self-hosted", "linux", "x64", "dind")
