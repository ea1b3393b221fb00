"""One simulation, set up and torn down: the network, fakes and moto an instance needs.

Used by tests/e2e/test_aws_instance.py (as a module fixture) and bench/aws_instance.py.
``Simulation.deploy`` runs the Pulumi program for a stack config (plus overrides) and
applies what it declares; ``boot_phases`` reads an instance's boot log into the phases the
benchmark reports.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import docker.errors
import docker.types
from pytest_httpserver import HTTPServer

from fleet.local import docker as backend
from fleet.local.engine.bootstrap import Bootstrap
from fleet.local.engine.engine import client
from tests.e2e.aws_sim.instance import cloud_image
from tests.e2e.aws_sim.world import (
    IMDS_ADDRESS,
    NETWORK_SUBNET,
    Deployment,
    Launched,
    SimAws,
    render,
)
from tests.e2e.polling import wait_for
from tests.fakes.github import app_key_pair
from tests.fakes.github_jobs import FakeGitHubWithJobs, FakeJob, WallClock
from tests.fakes.runner_agent import ServedAgent, serve_agent

APP_ID = "31337"
ORG = "acme"
RUNNER_GROUP = "runner-fleet"

# The boot log lines runner-bootstrap writes, in order: the phases of a boot.
PHASES = (
    ("starting", "cloud-init start"),
    ("tools installed", "tools installed"),
    ("Docker volume mounted", "Docker volume mounted"),
    ("bake done", "bake done"),
    ("JIT config fetched", "JIT config fetched"),
    ("runner started", "runner started"),
)


def _network(name: str) -> str:
    """The simulation network; its gateway is 169.254.169.254 (where EC2's IMDS answers).
    Only one can exist (its subnet is fixed): one left by an interrupted run is removed."""
    docker_client = client()
    for stale in docker_client.networks.list(filters={"label": [f"{backend.LABEL_MANAGED}=true"]}):
        stale.reload()
        subnets = [c.get("Subnet") for c in stale.attrs.get("IPAM", {}).get("Config") or []]
        if NETWORK_SUBNET in subnets:
            for container in stale.containers:
                container.remove(force=True, v=True)
            stale.remove()
    created = docker_client.networks.create(
        backend.network_name(name),
        driver="bridge",
        ipam=docker.types.IPAMConfig(
            pool_configs=[docker.types.IPAMPool(subnet=NETWORK_SUBNET, gateway=IMDS_ADDRESS)]
        ),
        labels=backend.fleet_labels(name, backend.KIND_NETWORK),
    )
    return created.name


@dataclass
class Simulation:
    """The world one or more simulated instances live in."""

    name: str
    boot: Bootstrap
    aws: SimAws
    github: FakeGitHubWithJobs
    agent: ServedAgent
    app_keys: tuple[bytes, bytes]
    image: str
    work_dir: Path

    def runner_vars(self, **more: Any) -> dict[str, Any]:
        """The stack's runnerVars for this machine: the fake agent, and the Debian base
        image jobs build on (there is no registry here; the role loads it)."""
        return {
            "actions_runner_url": self.agent.url,
            "actions_runner_sha256": self.agent.sha256,
            "docker_host_preload_images": [
                {
                    "name": self.boot.images.base,
                    "path": f"{backend.PRELOAD_MOUNT}/{self.boot.images.preload_tar.name}",
                }
            ],
            **more,
        }

    def deploy(self, *, runner_vars: dict[str, Any] | None = None, **settings: Any) -> Deployment:
        """Render the program for these stack settings and apply it to the simulated AWS."""
        deployment = self.render(runner_vars=runner_vars, **settings)
        self.aws.apply(deployment)
        return deployment

    def render(self, *, runner_vars: dict[str, Any] | None = None, **settings: Any) -> Deployment:
        """What the program declares for these stack settings (nothing applied)."""
        stack = self.aws.stack_settings(
            runnerVars=self.runner_vars() if runner_vars is None else runner_vars, **settings
        )
        stack_secrets = {
            "githubAppId": APP_ID,
            "githubAppPrivateKey": self.app_keys[0].decode(),
            "githubWebhookSecret": "simulation-webhook-secret",
        }
        build = self.work_dir / f"build-{secrets.token_hex(3)}"
        return render(stack, stack_secrets, build)

    def registered(self) -> list[dict[str, Any]]:
        """Runners registered at GitHub by this fleet."""
        prefix = f"{self.aws.deployment.outputs['autoscalingGroupName'].split('-')[-1]}-"
        return [r for r in self.github.all_runners() if r["name"].startswith(prefix)]

    def jit_parameters(self) -> list[str]:
        ssm = self.aws.client("ssm")
        root = self.aws.deployment.outputs["parameterRoot"]
        answer = ssm.get_parameters_by_path(Path=f"{root}/runners", Recursive=True)
        return [p["Name"] for p in answer["Parameters"]]


@contextmanager
def simulation(boot: Bootstrap, work_dir: Path) -> Iterator[Simulation]:
    name = f"sim-{secrets.token_hex(3)}"
    with ExitStack() as stack:
        stack.callback(backend.remove_fleet, name)
        network = _network(name)
        agent_dir = work_dir / "agent"
        agent_dir.mkdir(parents=True, exist_ok=True)
        agent = stack.enter_context(serve_agent(agent_dir, IMDS_ADDRESS))
        app_keys = app_key_pair()
        server = HTTPServer(host=IMDS_ADDRESS, port=0, threaded=True)
        server.start()
        stack.callback(server.stop)
        github = FakeGitHubWithJobs(
            server=server, app_id=APP_ID, public_key=app_keys[1], clock=WallClock()
        )
        github.install(ORG, 1)
        github.add_group(ORG, RUNNER_GROUP, group_id=7)
        aws = SimAws(
            name=name,
            network=network,
            work_dir=work_dir,
            cgroup_version=boot.engine.cgroup_version,
            github_api_url=github.base_url,
            # Test-only, as for the local fleet: the Debian base image for jobs, where no
            # registry is reachable (runner_vars has the role load it).
            extra_mounts=[
                backend.bind(str(boot.images.preload_dir), backend.PRELOAD_MOUNT, read_only=True)
            ],
        ).start()
        stack.callback(aws.close)
        yield Simulation(
            name=name,
            boot=boot,
            aws=aws,
            github=github,
            agent=agent,
            app_keys=app_keys,
            image=cloud_image(boot.images.base),
            work_dir=work_dir,
        )


# -- reading an instance ------------------------------------------------------------------


def wait_logged(launched: Launched, line: str, seconds: float) -> None:
    """Wait for a runner-bootstrap line; fail early (with the journal) on a failed boot."""

    def check() -> bool:
        log = launched.vm.boot_log()
        if "boot failed" in log and "boot failed" not in line:
            raise AssertionError(f"the boot failed:\n{launched.vm.journal()[-8000:]}")
        return f"runner-bootstrap: {line}" in log

    try:
        wait_for(check, seconds, f"'{line}' on {launched.instance_id}", every=1)
    except AssertionError as exc:
        if "timed out" in str(exc):
            raise AssertionError(f"{exc}\n{launched.vm.journal()[-8000:]}") from exc
        raise


def wait_job(job: FakeJob, seconds: float) -> FakeJob:
    wait_for(lambda: job.status == "completed", seconds, f"job {job.id} to complete", every=1)
    return job


def boot_phases(log: str) -> dict[str, datetime]:
    """When each phase's line was logged (the first time; a Stopped warm-pool instance logs
    again at its second boot), from ``journalctl -o short-iso-precise`` output."""
    seen: dict[str, datetime] = {}
    for line in log.splitlines():
        stamp, _, rest = line.partition(" ")
        _, found, message = rest.partition("runner-bootstrap: ")
        if not found:
            continue
        for marker, phase in PHASES:
            if phase not in seen and message.startswith(marker):
                seen[phase] = datetime.fromisoformat(stamp)
    return seen


def left_the_group(aws: SimAws, launched: Launched, seconds: float = 180) -> None:
    wait_for(
        lambda: not aws.in_group(launched.instance_id),
        seconds,
        f"{launched.instance_id} to leave the group",
        every=1,
    )
