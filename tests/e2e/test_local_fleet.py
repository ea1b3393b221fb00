"""The local fleet end to end: `up`, `validate`, `scale`, `serve`, `down` on a real engine.

One fleet, baked once, registered with the FAKE GitHub (tests/fakes/github_jobs.py: the
unit tests' fake plus a job broker) and running the FAKE agent (tests/fakes/runner_agent.py),
which takes jobs from that fake as an ephemeral runner does. The tests run in file order and
share the fleet; `serve --once` drives reconcile cycles so nothing waits on a timer.

Property and fault scenario numbers are those of docs/security.md.
"""

from __future__ import annotations

import json
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from fleet import cli
from fleet.local import docker as backend
from fleet.local.commands import existing_fleet
from fleet.local.engine.engine import client
from fleet.local.registration import Registrar, load_settings
from fleet.local.serve.jobs_file import default_path as default_jobs_path
from tests.e2e import engine_objects
from tests.e2e.fake_app import ORG, RUNNER_GROUP, github_app_env
from tests.e2e.polling import wait_for
from tests.fakes.github_jobs import FakeGitHubWithJobs, FakeJob, WallClock
from tests.fakes.runner_agent import ServedAgent

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

LABELS = "self-hosted,linux,x64,dind"
APP_ID = "4242"
WEBHOOK_SECRET = "e2e-webhook-secret"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def github(fleet_name: str, agent: ServedAgent, app_key) -> Iterator[FakeGitHubWithJobs]:
    """The FAKE GitHub where runner hosts reach it: this machine's address on the fleet
    network (the `agent` fixture created that network)."""
    server = HTTPServer(host=backend.network_gateway(fleet_name), port=0, threaded=True)
    server.start()
    fake = FakeGitHubWithJobs(
        server=server, app_id=APP_ID, public_key=app_key[1], clock=WallClock()
    )
    fake.install(ORG, 1)
    fake.add_group(ORG, RUNNER_GROUP, group_id=7)
    yield fake
    server.stop()


@pytest.fixture(scope="module", autouse=True)
def github_env(github: FakeGitHubWithJobs, app_key) -> Iterator[None]:
    with github_app_env(APP_ID, app_key[0], github.base_url, webhook_secret=WEBHOOK_SECRET):
        yield


def live_hosts(fleet: str) -> list[str]:
    return [c.name for c in backend.list_hosts(fleet) if c.status == "running"]


def registrations(github: FakeGitHubWithJobs, fleet: str) -> dict[str, dict]:
    return {r["name"]: r for r in github.all_runners() if r["name"].startswith(f"{fleet}-")}


def serve_once(fleet: str, *extra: str) -> int:
    return cli.main(["serve", "--once", "--name", fleet, "--idle-grace", "0", *extra])


def host_shell(name: str, command: str) -> str:
    result = client().containers.get(name).exec_run(["sh", "-c", command])
    return result.output.decode(errors="replace")


def wait_finished(name: str, seconds: float = 60) -> None:
    def finished() -> bool:
        probe = backend.probe_host(client().containers.get(name))
        return probe.finished

    wait_for(finished, seconds, f"the runner on {name} to end after its job")


def wait_job(job: FakeJob, status: str, seconds: float) -> FakeJob:
    wait_for(lambda: job.status == status, seconds, f"job {job.id} to be {status}")
    return job


def test_up_bakes_once_boots_two_hosts_validates_and_registers_them(
    fleet_name, agent, github, app_key, capsys, tmp_path
):
    """`up`: one bake (bake.yml, docker commit), two hosts from the image (boot.yml only),
    validated with the canary, then registered just in time and running the agent."""
    argv = ["up", "--name", fleet_name, "--runners", "2", "--labels", LABELS]
    argv += ["--agent-url", agent.url, "--agent-sha256", agent.sha256]
    rc = cli.main([*argv, "--junit", str(tmp_path / "up.xml")])
    out, err = capsys.readouterr()
    assert rc == 0, out + err
    hosts = live_hosts(fleet_name)
    assert len(hosts) == 2
    for host in hosts:
        assert re.search(rf"^{host}\s+registered\s+\d+ s\s+(\d+)/\1\s+\d+", out, re.M), out
    assert "baked fleet/baked-" in out
    # One image, labelled with its bake hash; every host runs from it; no bake host left.
    images = backend.baked_images(fleet_name)
    assert len(images) == 1
    assert images[0].labels[backend.LABEL_BAKE]
    tag = images[0].tags[0]
    assert {client().containers.get(h).image.tags[0] for h in hosts} == {tag}
    bake_hosts = {"label": [f"{backend.LABEL_FLEET}={fleet_name}", "dev.fleet.kind=bake-host"]}
    assert client().containers.list(all=True, filters=bake_hosts) == []
    # Registered with the fleet's labels in the chosen group; each agent came online.
    registered = registrations(github, fleet_name)
    assert set(registered) == set(hosts)
    for runner in registered.values():
        assert [label["name"] for label in runner["labels"]] == LABELS.split(",")
        assert runner["runner_group_id"] == 7
    wait_for(
        lambda: all(r["status"] == "online" for r in registrations(github, fleet_name).values()),
        60,
        "both agents to come online",
    )
    # Property 7: no JIT config in the output, on a command line, or left in a file.
    tokens = list(github.agent_tokens.values())
    assert not [t for t in tokens if t in out + err]
    for host in hosts:
        command_lines = host_shell(host, "cat /proc/[0-9]*/cmdline | tr '\\0' ' '")
        assert not [t for t in tokens if t in command_lines]
        assert "No such file" in host_shell(host, "ls /etc/actions-runner/jitconfig.env")
        processes = host_shell(host, "ps -eo user:20,args | grep '[R]unner.Listener'")
        assert processes.split()[0] == "runner", processes
    # Property 8: the App's private key stays in this process, never on a host. A line from
    # the middle of the PEM: the first ones are the DER header every RSA key of this size
    # shares (the PostgreSQL image's own snakeoil key starts the same way).
    pem_lines = app_key[0].read_text().splitlines()
    key_line = pem_lines[len(pem_lines) // 2][:40]
    for host in hosts:
        found = host_shell(
            host, f"grep -rlF '{key_line}' /etc /opt /home /root /var/cache /tmp || true"
        )
        assert found.strip() == "", found


def test_validate_passes_on_the_registered_fleet(fleet_name, capsys, tmp_path):
    """`validate` against the running fleet (the canary ran in `up` a minute ago on these
    very hosts; here the other checks run with the agents listening)."""
    junit = tmp_path / "validate.xml"
    rc = cli.main(["validate", "--name", fleet_name, "--no-canary", "--junit", str(junit)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert re.search(r"(\d+) passed, 0 failed", out)
    assert junit.read_text().count("<testcase") >= 2 * 25


def test_scale_to_three_starts_a_host_from_the_baked_image(fleet_name, github, capsys, tmp_path):
    junit = tmp_path / "scale.xml"
    rc = cli.main(["scale", "3", "--name", fleet_name, "--no-canary", "--junit", str(junit)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "baking" not in out
    hosts = live_hosts(fleet_name)
    assert len(hosts) == 3
    assert set(registrations(github, fleet_name)) == set(hosts)
    assert len(backend.baked_images(fleet_name)) == 1
    # The baked image declares no volume, so a host from it gets no anonymous volume that
    # would outlive it: its only volume is the named one `down` removes.
    assert backend.baked_images(fleet_name)[0].attrs["Config"].get("Volumes") in (None, {})
    for host in hosts:
        mounts = client().containers.get(host).attrs["Mounts"]
        assert [m["Name"] for m in mounts if m["Type"] == "volume"] == [f"{host}-docker"]


def test_hosts_killed_or_removed_from_outside_are_replaced(fleet_name, github, capsys):
    killed, removed, kept = live_hosts(fleet_name)
    client().containers.get(killed).kill()
    client().containers.get(removed).remove(force=True)  # its data volume stays behind
    assert serve_once(fleet_name, "--idle", "3") == 0, capsys.readouterr().out
    hosts = live_hosts(fleet_name)
    assert len(hosts) == 3
    assert kept in hosts and killed not in hosts and removed not in hosts
    assert set(registrations(github, fleet_name)) == set(hosts)
    leftovers = [
        v.name
        for v in client().volumes.list(filters={"label": [f"{backend.LABEL_FLEET}={fleet_name}"]})
        if v.attrs["Labels"].get(backend.LABEL_HOST) in (killed, removed)
    ]
    assert leftovers == []


def test_an_ephemeral_runner_is_replaced_by_a_fresh_host_after_its_job(fleet_name, github):
    before = set(live_hosts(fleet_name))
    job = wait_job(github.queue_job('echo "ran-on=$(hostname) as=$(id -un)"'), "completed", 90)
    assert job.exit_code == 0, job.output
    assert f"ran-on={job.runner_name} as=runner" in job.output
    wait_finished(job.runner_name)
    assert serve_once(fleet_name, "--idle", "3") == 0
    after = set(live_hosts(fleet_name))
    assert job.runner_name not in after
    assert len(after) == 3 and len(after - before) == 1
    assert set(registrations(github, fleet_name)) == after


def test_a_busy_runner_is_never_retired_while_its_job_runs(fleet_name, github, capsys):
    """A long job (45 s standing in for two hours: the same code path) keeps its host through
    cycles that want the fleet at zero idle runners; a job that lands on a host while it is
    being retired (GitHub's busy flag still false) keeps that host too (property 16)."""
    long_job = github.queue_job("sleep 45; echo long-job-done")
    wait_job(long_job, "in_progress", 60)
    racing = github.queue_job("sleep 25")
    wait_job(racing, "in_progress", 60)
    busy_host, racing_host = long_job.runner_name, racing.runner_name
    idle = set(live_hosts(fleet_name)) - {busy_host, racing_host}

    # The busy flag lags: GitHub still shows the racing runner idle when retiring starts.
    github.runner_by_name(racing_host)["busy"] = False
    settings = load_settings()
    fleet = existing_fleet(fleet_name, _boot(), LABELS.split(","), Registrar(settings), print)
    stale = fleet.observe().by_name()[racing_host].registration
    assert stale is not None and not stale.busy
    assert fleet.retire(racing_host, stale) is False
    assert racing_host in live_hosts(fleet_name)

    for _ in range(2):
        assert serve_once(fleet_name, "--idle", "0") == 0
        hosts = set(live_hosts(fleet_name))
        assert busy_host in hosts and racing_host in hosts
        assert long_job.status == "in_progress"
    assert not idle & set(live_hosts(fleet_name)), "idle hosts beyond the target are retired"

    wait_job(long_job, "completed", 90)
    assert long_job.exit_code == 0 and "long-job-done" in long_job.output
    wait_finished(busy_host)
    wait_finished(racing_host, 60)  # deregistered mid-job: its agent ends when the job does
    assert serve_once(fleet_name, "--idle", "2") == 0
    hosts = set(live_hosts(fleet_name))
    assert len(hosts) == 2 and not {busy_host, racing_host} & hosts
    capsys.readouterr()


def _boot():
    from fleet.local.engine.bootstrap import bootstrap

    return bootstrap(lambda _message: None)


def test_serve_follows_webhooks_and_replaces_used_runners(fleet_name, github, capsys):
    """`serve` in a thread: queued jobs arrive as signed webhooks and raise capacity; each
    used runner is replaced; SIGTERM-style stop ends the loop cleanly."""
    assert serve_once(fleet_name, "--idle", "1") == 0
    before = set(live_hosts(fleet_name))
    assert len(before) == 1
    argv = ["serve", "--name", fleet_name, "--webhook-port", "0", "--interval", "3"]
    argv += ["--idle", "1", "--idle-grace", "0", "--max", "4"]
    args = cli.parser().parse_args(argv)
    autoscaler = cli.build_autoscaler(args, report=print)
    thread = threading.Thread(target=autoscaler.run, daemon=True)
    thread.start()
    try:
        server = wait_for(lambda: autoscaler.server, 30, "the webhook endpoint")
        github.webhook_url = f"http://127.0.0.1:{server.port}/"
        github.webhook_secret = WEBHOOK_SECRET
        jobs = [github.queue_job(f"sleep 8; echo job-{n}") for n in range(3)]
        for job in jobs:
            wait_job(job, "completed", 180)
        assert all(job.exit_code == 0 for job in jobs)
        used = {job.runner_name for job in jobs}
        assert len(used) == len(jobs), "each ephemeral runner takes exactly one job"

        def settled() -> bool:
            hosts = set(live_hosts(fleet_name))
            return not used & hosts and len(hosts) == 1 and not autoscaler.intake.queued()

        wait_for(settled, 180, "used runners replaced and the fleet back to 1 idle host")
    finally:
        github.webhook_url = None
        autoscaler.stop()
        thread.join(timeout=120)
    assert not thread.is_alive()
    sent = github.webhooks_sent
    assert {action for action, _, _ in sent} == {"queued", "in_progress", "completed"}
    assert all(status in (202, 204) for _, _, status in sent), sent
    # Three jobs on three distinct hosts, one of which existed, and one unused idle host left:
    # whatever the timing of webhooks and cycles, serve must have launched at least three.
    launched = {name for cycle in autoscaler.cycles for name in cycle.launched}
    assert len(launched) >= len(jobs) + 1 - len(before), autoscaler.cycles
    assert used <= launched | before
    capsys.readouterr()


def test_serve_stops_cleanly_on_sigterm(fleet_name):
    """`python -m fleet serve` as a process: SIGTERM ends the current wait, the loop stops,
    the webhook port is released and the hosts stay."""
    hosts = live_hosts(fleet_name)
    argv = [sys.executable, "-m", "fleet", "serve", "--name", fleet_name, "--interval", "300"]
    argv += ["--idle", str(len(hosts)), "--webhook-port", "0"]
    process = subprocess.Popen(
        argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    reader.start()
    try:
        wait_for(
            lambda: any("queued" in line for line in lines) or process.poll() is not None,
            120,
            "serve's first cycle",
        )
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        reader.join(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    text = "".join(lines)
    assert process.returncode == 0, text
    assert "SIGTERM: finishing this cycle, then stopping" in text
    assert "stopped (runner hosts keep running" in text
    assert live_hosts(fleet_name) == hosts


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_serve_catches_up_on_a_job_queued_while_it_was_down(fleet_name, github, capsys):
    """A job queued while serve was down (its webhook failed; GitHub never retries) is
    served: serve's first cycle asks GitHub to redeliver failed deliveries, the redelivered
    `queued` event raises capacity from zero, and a fresh host takes the job."""
    assert serve_once(fleet_name, "--idle", "0") == 0
    assert live_hosts(fleet_name) == []
    port = _free_port()
    github.webhook_url = f"http://127.0.0.1:{port}/"
    github.webhook_secret = WEBHOOK_SECRET
    job = github.queue_job("echo caught-up")
    action, guid, status = github.webhooks_sent[-1]
    assert json.loads(github.payloads[guid])["workflow_job"]["id"] == job.id
    assert (action, status) == ("queued", 0), "nothing listens yet: the delivery fails"
    argv = ["serve", "--name", fleet_name, "--webhook-port", str(port), "--interval", "3"]
    argv += ["--idle", "0", "--idle-grace", "0", "--max", "2"]
    autoscaler = cli.build_autoscaler(cli.parser().parse_args(argv), report=print)
    thread = threading.Thread(target=autoscaler.run, daemon=True)
    thread.start()
    try:
        wait_job(job, "completed", 180)
    finally:
        github.webhook_url = None
        autoscaler.stop()
        thread.join(timeout=120)
    assert not thread.is_alive()
    assert job.exit_code == 0 and "caught-up" in job.output
    redelivered = [guid for cycle in autoscaler.cycles for guid in cycle.redelivered]
    assert redelivered == [guid]
    launched = {name for cycle in autoscaler.cycles for name in cycle.launched}
    assert job.runner_name in launched
    assert serve_once(fleet_name, "--idle", "1") == 0
    assert len(live_hosts(fleet_name)) == 1
    capsys.readouterr()


HOSTILE_JOB = r"""
set +e
gw=__GATEWAY__; tag=__TAG__; image=fleet/debian:trixie
echo "host=$(hostname)"
echo "inner-engine-id=$(docker info --format '{{.ID}}')"
echo "socket-mounts=$(grep -c docker.sock /proc/self/mountinfo)"
for sock in $(find / \( -path /proc -o -path /sys \) -prune -o -type s -print 2>/dev/null); do
  id=$(timeout 5 docker -H "unix://$sock" info --format '{{.ID}}' 2>/dev/null)
  if [ -n "$id" ]; then echo "reachable-engine=$sock $id"; fi
done
for ip in "$gw" 172.17.0.1; do
  for port in 2375 2376; do
    if timeout 3 bash -c "exec 3<>/dev/tcp/$ip/$port" 2>/dev/null; then state=open
    else state=closed; fi
    echo "tcp-$ip-$port=$state"
  done
done
echo "imds=$(curl -s -m 3 -o /dev/null -w '%{http_code}' http://169.254.169.254/latest/meta-data/)"
docker run --rm --privileged "$image" sh -c \
  'mount -t tmpfs -o size=64m tmpfs /mnt && dd if=/dev/zero of=/mnt/fill bs=1M count=128' 2>&1 \
  | grep -o 'No space left on device' | head -1 | sed 's/^/disk-full=/'
docker volume create "hostile-$tag-data" >/dev/null
docker run -d --name "hostile-$tag-keeper" -v "hostile-$tag-data:/data" "$image" \
  sh -c 'fallocate -l 256M /data/fill && sleep infinity' >/dev/null
for n in 1 2; do
  docker run -d --privileged --name "hostile-$tag-dind$n" -v /var/lib/docker "$image" \
    sleep infinity >/dev/null
done
sleep 3
echo "leftover-containers=$(docker ps -q | wc -l)"
echo "leftover-volumes=$(docker volume ls -q | wc -l)"
echo "filled-bytes=$(docker exec "hostile-$tag-keeper" stat -c %s /data/fill)"
exit 0
"""


def _report(output: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in output.splitlines():
        key, sep, value = line.partition("=")
        if sep and re.fullmatch(r"[a-z0-9.-]+", key):
            found.setdefault(key, []).append(value.strip())
    return found


def test_a_hostile_job_is_confined_to_its_host_and_the_next_job_gets_a_clean_host(
    fleet_name, github, capsys
):
    """Fault scenario 7, locally: a job fills a disk (a 64 MiB tmpfs to ENOSPC, and a
    256 MiB file in a Docker volume), leaves privileged containers with anonymous volumes,
    probes IMDS, every Unix socket it can find and the machine's Docker TCP ports. The
    machine's engine stays out of reach, the damage stays on that host and goes with it,
    and the next job starts on a clean host."""
    outer_id = client().info()["ID"]
    gateway = backend.network_gateway(fleet_name)
    tag = secrets.token_hex(3)
    script = HOSTILE_JOB.replace("__GATEWAY__", gateway).replace("__TAG__", tag)
    hostile = wait_job(github.queue_job(script), "completed", 180)
    seen = _report(hostile.output)
    victim = hostile.runner_name
    assert seen["host"] == [victim], hostile.output
    # The machine's Docker socket: not mounted, not found, not reachable by TCP.
    assert seen["socket-mounts"] == ["0"], hostile.output
    inner_id = seen["inner-engine-id"][0]
    assert inner_id and inner_id != outer_id
    engines = [value.split()[-1] for value in seen.get("reachable-engine", [])]
    assert engines and set(engines) == {inner_id}, hostile.output
    for ip in (gateway, "172.17.0.1"):
        for port in (2375, 2376):
            assert seen[f"tcp-{ip}-{port}"] == ["closed"], hostile.output
    assert not seen["imds"][0].startswith("2"), hostile.output
    # The damage happened, on that host only.
    assert seen["disk-full"] == ["No space left on device"], hostile.output
    assert seen["leftover-containers"] == ["3"] and int(seen["leftover-volumes"][0]) >= 3
    assert seen["filled-bytes"] == [str(256 * 1024 * 1024)]
    assert not client().containers.list(all=True, filters={"name": f"hostile-{tag}"})
    assert not client().volumes.list(filters={"name": f"hostile-{tag}"})
    others = set(live_hosts(fleet_name)) - {victim}
    for other in others:
        assert host_shell(other, "docker ps -aq; docker volume ls -q").strip() == ""
    # The job-completed hook already emptied the engine; the host itself goes next.
    wait_finished(victim)
    assert host_shell(victim, "docker ps -aq; docker volume ls -q").strip() == ""
    assert serve_once(fleet_name, "--idle", "2") == 0
    assert victim not in live_hosts(fleet_name)
    assert not client().volumes.list(filters={"label": [f"{backend.LABEL_HOST}={victim}"]})

    inspect = github.queue_job(
        'echo "host=$(hostname)"; echo "containers=$(docker ps -aq | wc -l)"; '
        'echo "volumes=$(docker volume ls -q | wc -l)"; '
        'echo "images=$(docker images -q | sort -u | wc -l)"'
    )
    after = _report(wait_job(inspect, "completed", 120).output)
    assert after["host"] != [victim]
    # Only what every fresh host has: the preloaded base image.
    assert (after["containers"], after["volumes"], after["images"]) == (["0"], ["0"], ["1"])
    capsys.readouterr()


def test_down_leaves_no_container_volume_network_image_or_registration(
    fleet_name, github, capsys, engine_before
):
    jobs_file = default_jobs_path(fleet_name)
    assert jobs_file.exists(), "serve kept the jobs its webhooks announced"
    assert cli.main(["down", "--name", fleet_name]) == 0, capsys.readouterr().err
    assert not jobs_file.exists()
    # What down keeps on purpose: the fleet's performance baseline and history, so a fleet
    # brought up again under this name is compared with what it did before.
    left = sorted(p.name for p in jobs_file.parent.iterdir()) if jobs_file.parent.exists() else []
    assert left in ([], ["benchmarks"]), left
    labelled = {"label": [f"{backend.LABEL_FLEET}={fleet_name}"]}
    docker_client = client()
    assert docker_client.containers.list(all=True, filters=labelled) == []
    assert docker_client.volumes.list(filters=labelled) == []
    assert docker_client.networks.list(filters=labelled) == []
    assert docker_client.images.list(filters=labelled) == []
    assert registrations(github, fleet_name) == {}
    # Counted without labels too: nothing up, scale, serve or down made is left.
    assert engine_objects.snapshot().added_since(engine_before) == {}
