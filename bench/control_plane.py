"""Benchmark the control plane: scaling decision time, AWS calls per cycle, webhook handling.

1. Decision time: ``fleet.aws.observe.observe`` + ``fleet.core.scaling.decide`` (the pure part of a
   scaling cycle) for queued jobs x runners at 1k x 100, 10k x 1k and 100k x 10k, side by
   side, to show the cost is linear (goal: 10k x 1k within 50 ms).
2. AWS calls per scaling cycle: one warm scheduled cycle of the real scaler against moto and
   the fake GitHub, counted with a botocore ``before-call`` hook, for 0, 1, 5 and 20 retired
   runners (goal: a constant plus one call per retired runner).
3. Webhook handling per event: the pure pipeline, the handler with an in-memory queue, and the
   handler sending to SQS in moto.
4. `serve`'s webhook intake with its jobs file: one delivery recorded (file replaced) with
   100, 1,000 and 10,000 jobs held.

Usage: ``.venv/bin/python -m bench.control_plane --write docs/benchmarks.md``
"""

from __future__ import annotations

import argparse
import base64
import os
import platform
import statistics
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench._common import cpu_model, write_section
from fleet.aws.observe import GroupInstance, observe
from fleet.core.github.runners import Runner
from fleet.core.ledger import JobRecord, JobState
from fleet.core.scaling import FleetLimits, decide
from fleet.core.webhook import handle_delivery

SECTION = "## Control plane (`bench/control_plane.py`)"
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
LIMITS = FleetLimits(max_size=20_000, max_scale_up_per_cycle=20_000)


def _machine() -> str:
    return f"{os.cpu_count()} cores ({cpu_model()}), Python {platform.python_version()}"


def _timed(function: Callable[[], Any], repeats: int) -> list[float]:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        samples.append(time.perf_counter() - started)
    return samples


# -- 1. decision time ---------------------------------------------------------------------------


def fleet_inputs(jobs: int, runners: int) -> dict[str, Any]:
    """``jobs`` open jobs (a tenth of them running) and ``runners`` instances (a tenth busy,
    a tenth booting, the rest idle)."""
    instances = [GroupInstance(f"i-{n:017x}", "InService", protected=True) for n in range(runners)]
    launched = {i.instance_id: NOW - timedelta(minutes=3 + n % 50) for n, i in enumerate(instances)}
    registered = []
    for n, instance in enumerate(instances):
        if n % 10 == 0:
            continue  # booting: not registered yet
        registered.append(
            Runner(id=n, name=f"main-{instance.instance_id}", status="online", busy=n % 10 == 1)
        )
    records = []
    for n in range(jobs):
        running = n % 10 == 0
        records.append(
            JobRecord(
                job_id=n + 1,
                state=JobState.IN_PROGRESS if running else JobState.QUEUED,
                run_id=n + 1,
                repository="acme/app",
                queued_at=NOW - timedelta(seconds=n % 600),
                runner_name=f"main-{instances[n % runners].instance_id}" if running else None,
            )
        )
    return {"instances": instances, "launched_at": launched, "runners": registered, "jobs": records}


def decision(inputs: dict[str, Any]) -> Any:
    view = observe(fleet="main", boot_deadline=LIMITS.boot_deadline, now=NOW, **inputs)
    return decide(view.queued, view.runners, LIMITS, NOW)


def bench_decisions(repeats: int) -> list[dict[str, Any]]:
    rows = []
    for jobs, runners in ((1_000, 100), (10_000, 1_000), (100_000, 10_000)):
        inputs = fleet_inputs(jobs, runners)
        decision(inputs)  # warm-up
        samples = _timed(lambda inputs=inputs: decision(inputs), repeats)
        median = statistics.median(samples)
        rows.append(
            {
                "size": f"{jobs:,} jobs x {runners:,} runners",
                "median_ms": median * 1000,
                "best_ms": min(samples) * 1000,
                "per_item_us": median / (jobs + runners) * 1e6,
            }
        )
    return rows


# -- 2. AWS calls per cycle ---------------------------------------------------------------------


def bench_calls_per_cycle(retirements: tuple[int, ...]) -> list[dict[str, Any]]:
    from pytest_httpserver import HTTPServer

    from fleet.aws.adapters.clients import SERVICES
    from tests.fakes.github import app_key_pair
    from tests.integration.harness import fleet_maker, recorded_aws_sleeps

    private_pem, public = app_key_pair()
    rows = []
    busy = 3
    for retire in retirements:
        server = HTTPServer()
        server.start()
        with ExitStack() as stack:
            stack.callback(server.stop)
            stack.enter_context(recorded_aws_sleeps())
            make = stack.enter_context(fleet_maker(server, (private_pem.decode(), public)))
            fleet = make(max_size=40, FLEET_MAX_SCALE_UP_PER_CYCLE=40)
            clock, github = fleet.clock, fleet.github
            # `busy` runners with a job, `retire` idle ones whose jobs were cancelled.
            jobs = fleet.queue_jobs(busy + retire)
            fleet.pump_queue()
            for job in jobs[busy:]:
                fleet.cancel(job)
            fleet.step(finish=False)
            fleet.pump_queue()
            fleet.scheduled("scaler")  # warm: secrets read, token fetched
            clock.advance(6 * 60)  # past the idle grace
            calls: Counter[str] = Counter()
            scaler_clients = fleet.runtimes["scaler"].clients
            for client in (getattr(scaler_clients, name) for name in SERVICES):
                client.meta.events.register(
                    "before-call", lambda model, calls=calls, **_: calls.update([model.name])
                )
            github_before = len(github.requests)
            fleet.scheduled("scaler")
            report = fleet.results[-1][1]
            assert len(report["terminated"]) == retire, report
            rows.append(
                {
                    "retired": retire,
                    "aws_calls": sum(calls.values()),
                    "breakdown": dict(sorted(calls.items())),
                    "github_calls": len(github.requests) - github_before,
                }
            )
    return rows


# -- 3. webhook handling --------------------------------------------------------------------------


def bench_webhook(events: int) -> list[dict[str, Any]]:
    from moto import mock_aws

    from fleet.aws.adapters.sqs import DeliveryQueue
    from fleet.aws.handlers import webhook
    from fleet.aws.handlers.settings import Settings
    from tests.fakes.payloads import signed, workflow_job

    secret = "bench-secret"  # noqa: S105 - a throwaway secret for timing
    env = {
        "FLEET_NAME": "main",
        "FLEET_GITHUB_SCOPE": "acme",
        "FLEET_RUNNER_LABELS": "self-hosted,linux,fleet-a",
        "FLEET_APP_ID_PARAMETER": "/f/app-id",
        "FLEET_APP_PRIVATE_KEY_PARAMETER": "/f/key",
        "FLEET_WEBHOOK_SECRET_PARAMETER": "/f/secret",
        "FLEET_ASG_NAME": "g",
        "FLEET_KMS_KEY_ARN": "arn:aws:kms:eu-west-1:123456789012:key/k",
        "FLEET_JIT_PARAMETER_TEMPLATE": "/f/{instance_id}/jitconfig",
        "FLEET_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/q",
        "FLEET_LEDGER_TABLE": "ledger",
        "FLEET_AWS_ACCOUNT_ID": "123456789012",
        "FLEET_MAX_SIZE": "10",
        "AWS_REGION": "eu-west-1",
    }
    deliveries = []
    for n in range(events):
        headers, body = signed(
            workflow_job("queued", job_id=n + 1), delivery=f"d-{n}", secret=secret
        )
        deliveries.append(
            (
                headers,
                body,
                {
                    "headers": {k.lower(): v for k, v in headers.items()},
                    "requestContext": {"http": {"method": "POST"}},
                    "body": base64.b64encode(body).decode(),
                    "isBase64Encoded": True,
                },
            )
        )

    class MemoryQueue:
        def send(self, delivery: Any) -> str:
            return "m"

    class Runtime:
        def __init__(self, queue: Any) -> None:
            self.settings = Settings.from_env(env)
            self.queue = queue

        def webhook_secret(self) -> str:
            return secret

    labels = ("self-hosted", "linux", "fleet-a")
    pure = [
        _timed(lambda h=h, b=b: handle_delivery(h, b, secret=secret, fleet_labels=labels), 1)[0]
        for h, b, _ in deliveries
    ]
    memory = Runtime(MemoryQueue())
    handler = [_timed(lambda e=e: webhook.handle(e, memory), 1)[0] for _, _, e in deliveries]
    with mock_aws():
        import boto3

        sqs = boto3.client("sqs", region_name="eu-west-1")
        url = sqs.create_queue(QueueName="q")["QueueUrl"]
        moto_rt = Runtime(DeliveryQueue(sqs, url))
        webhook.handle(deliveries[0][2], moto_rt)  # warm-up
        with_sqs = [_timed(lambda e=e: webhook.handle(e, moto_rt), 1)[0] for _, _, e in deliveries]

    def row(name: str, samples: list[float]) -> dict[str, Any]:
        ordered = sorted(samples)
        return {
            "path": name,
            "median_us": statistics.median(ordered) * 1e6,
            "p99_us": ordered[int(len(ordered) * 0.99) - 1] * 1e6,
        }

    return [
        row("`handle_delivery` (signature, parse, labels)", pure),
        row("webhook handler, in-memory queue", handler),
        row("webhook handler, SQS send to moto", with_sqs),
    ]


def bench_jobs_file(held: tuple[int, ...], events: int) -> list[dict[str, Any]]:
    """`serve`'s webhook intake with its jobs file: one delivery accepted and the file
    replaced (snapshot, JSON, fsync, rename) before the answer, with ``held`` jobs held."""
    import tempfile

    from fleet.core.ledger import JobEvent
    from fleet.core.webhook import QueuedDelivery, parse_workflow_job_event
    from fleet.local.serve.intake import Intake
    from fleet.local.serve.jobs_file import JobsFile
    from tests.fakes.payloads import workflow_job

    def delivery(n: int) -> QueuedDelivery:
        payload = workflow_job("queued", job_id=n, labels=["self-hosted", "linux"])
        return QueuedDelivery(f"d-{n}", JobEvent.from_webhook(parse_workflow_job_event(payload)))

    rows = []
    for count in held:
        with tempfile.TemporaryDirectory(prefix="fleet-bench-jobs-") as directory:
            intake = Intake()
            for n in range(1, count + 1):
                intake.accept(delivery(n))
            jobs_file = JobsFile(Path(directory) / "serve-jobs.json")
            jobs_file.save(intake.snapshot())
            intake.persist = jobs_file.save
            arriving = [delivery(count + n) for n in range(1, events + 1)]
            samples = [_timed(lambda d=d, i=intake: i.accept(d), 1)[0] for d in arriving]
            size = jobs_file.path.stat().st_size
        rows.append(
            {
                "held": count,
                "median_ms": statistics.median(samples) * 1e3,
                "max_ms": max(samples) * 1e3,
                "size_kib": size / 1024,
            }
        )
    return rows


# -- report ---------------------------------------------------------------------------------------


def render(
    decisions: list[dict],
    calls: list[dict],
    hooks: list[dict],
    runs: int,
    events: int,
    jobs_file: list[dict],
) -> str:
    lines = [
        SECTION,
        "",
        f"Measured on {_machine()}, {datetime.now(UTC):%Y-%m-%d}; reproduce with "
        "`.venv/bin/python -m bench.control_plane --write docs/benchmarks.md`.",
        "",
        f"### Scaling decision (`observe` + `decide`, median of {runs} runs)",
        "",
        "| fleet | median | best | per job or runner |",
        "| --- | ---: | ---: | ---: |",
    ]
    for r in decisions:
        lines.append(
            f"| {r['size']} | {r['median_ms']:.1f} ms | {r['best_ms']:.1f} ms | "
            f"{r['per_item_us']:.2f} µs |"
        )
    lines += [
        "",
        "Goal: 10k x 1k within 50 ms. The time per job or runner stays flat from 1k to 100k jobs: "
        "the cost is linear (one pass over each input; choosing k runners to retire is "
        "O(n log k)).",
        "",
        "### AWS calls per scaling cycle (warm scheduled cycle, moto, counted by botocore hook)",
        "",
        "| retired runners | AWS calls | of which | GitHub calls |",
        "| ---: | ---: | --- | ---: |",
    ]
    for r in calls:
        breakdown = ", ".join(f"{k} {v}" for k, v in r["breakdown"].items())
        lines.append(f"| {r['retired']} | {r['aws_calls']} | {breakdown} | {r['github_calls']} |")
    lines += [
        "",
        "Goal: a constant plus one call per retired runner. The constant is one "
        "DescribeAutoScalingGroups, one DescribeInstances (per 1000 instances), one Query of the "
        "open-jobs index (per ~1 MB of open jobs), one PutMetricData and at most one "
        "SetDesiredCapacity; retiring adds one Query (the ledger re-check, shared by every "
        "retirement) and one TerminateInstanceInAutoScalingGroup per runner. GitHub: one list "
        "of runners, then a DELETE and a GET (the re-check) per retired runner.",
        "",
        f"### Webhook handling per event (median and p99 of {events} events)",
        "",
        "| path | median | p99 |",
        "| --- | ---: | ---: |",
    ]
    for r in hooks:
        lines.append(f"| {r['path']} | {r['median_us']:.0f} µs | {r['p99_us']:.0f} µs |")
    lines += [
        "",
        "The function's own work is the first two rows; a deployed function adds one SQS "
        "SendMessage round trip (typically a few ms in-region), far inside GitHub's 10 s.",
        "",
        "### `serve`: a webhook recorded in the jobs file before it is answered",
        "",
        "| jobs held | median | max | file |",
        "| ---: | ---: | ---: | ---: |",
    ]
    for r in jobs_file:
        lines.append(
            f"| {r['held']:,} | {r['median_ms']:.1f} ms | {r['max_ms']:.1f} ms | "
            f"{r['size_kib']:,.0f} KiB |"
        )
    lines += [
        "",
        "Each accepted delivery replaces the whole file (the intake's snapshot, entries "
        "reused for jobs that did not change, JSON, fsync, rename): the cost grows with the "
        "jobs held, up to the intake's bound of 10,000, still far inside GitHub's 10 s.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="repeats per decision size")
    parser.add_argument("--events", type=int, default=2000, help="webhook events to time")
    parser.add_argument("--write", type=Path, help="replace this section in a Markdown file")
    args = parser.parse_args()
    decisions = bench_decisions(args.runs)
    calls = bench_calls_per_cycle((0, 1, 5, 20))
    hooks = bench_webhook(args.events)
    jobs_file = bench_jobs_file((100, 1_000, 10_000), events=50)
    section = render(decisions, calls, hooks, args.runs, args.events, jobs_file)
    print(section)
    if args.write:
        write_section(args.write, SECTION, section)


if __name__ == "__main__":
    main()
