"""An AWS runner instance's whole life, run for real on this machine.

Each test boots "EC2 instances" (privileged systemd containers from a Debian 13 cloud image:
cloud-init, no Ansible, no Docker) through cloud-init's NoCloud datasource, seeded with the
user data the Pulumi program renders for the simulation's stack config. Real on the way:
cloud-init, `runner-bootstrap`, the AWS CLI's signed calls, the bundle the program writes
(from S3), `bake.yml` and `boot.yml`, the JIT hand-over through SSM, the lifecycle function's
code, a containerized job, `runner-terminate-self`.

Stand-ins (tests/e2e/aws_sim): moto in server mode for AWS, with IAM enforced using the
policy documents the program writes (tests/integration/moto_iam.py evaluates resources and
conditions); a fake IMDSv2 at 169.254.169.254 that sends token answers with the launch
template's hop limit as IP TTL; a loop device as the EBS Docker volume; the fake GitHub and
the fake runner agent; the Auto Scaling service's part (launches, lifecycle events, warm-pool
transitions, removing the VMs of instances that left) played by the test.

What cannot run here: the real EC2 VM boot (firmware, kernel, NVMe device naming), the
real runner agent and GitHub's job service, real IAM (moto evaluates the documents; KMS
grants and calls AWS services make on the caller's behalf are not seen), EventBridge and
Lambda themselves (the function's code runs in this process), and real hibernation.
docs/deploy-aws.md lists the same.

By hand, to debug a boot: `pytest tests/e2e/test_aws_instance.py -k stock -s` and, while it
runs, `docker exec -it <fleet>-<instance-id> journalctl -f -u runner-boot.service`.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from fleet.aws.observe import runner_name
from fleet.local.engine.bootstrap import Bootstrap
from tests.e2e.aws_sim.image_build import (
    build_role_name,
    launch_build_instance,
    run_build_phase,
)
from tests.e2e.aws_sim.scenario import (
    Simulation,
    left_the_group,
    simulation,
    wait_job,
    wait_logged,
)
from tests.e2e.aws_sim.world import Launched
from tests.e2e.polling import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
STOCK_BOOT_SECONDS = 900
BAKED_BOOT_SECONDS = 300
BAKED_AMI = "ami-0123456789abcdef0"  # the id the stack config names; the image is local

# A job of the kind the fleet is for: the canary's testcontainers PostgreSQL and privileged
# TLS DinD tests under xdist; then what a hostile job would try against the instance
# metadata service from a container on the bridge network.
CONTAINERIZED_JOB = r"""
cd /opt/fleet/canary
pytest -n 2 -q -p no:cacheprovider test_postgres.py test_dind.py
probe='exec 3<>/dev/tcp/169.254.169.254/80 || exit 0
printf "PUT /latest/api/token HTTP/1.0\r\nX-aws-ec2-metadata-token-ttl-seconds: 60\r\n\r\n" >&3
timeout 5 cat <&3'
answer=$(docker run --rm fleet/debian:trixie bash -c "$probe" 2>&1 | head -c 200 | tr -d '\r\n')
echo "container-token-answer=[${answer}]"
"""
SMALL_JOB = 'echo "ran-on=$(hostname) as=$(id -un)"'


@pytest.fixture(scope="module")
def sim(boot: Bootstrap, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulation]:
    with simulation(boot, tmp_path_factory.mktemp("aws-sim")) as world:
        yield world


@pytest.fixture(autouse=True)
def clean_group(sim: Simulation) -> Iterator[None]:
    """Each test starts with an empty group and no runner registered: what a failed test
    left is scaled in and released."""
    yield
    sim.aws.clear()


@pytest.fixture(scope="module")
def ami(sim: Simulation) -> dict[str, str]:
    """The image the stock-path test commits after its bake (the baked path boots it)."""
    return {}


def validate(name: str, vars_file: Path, junit: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "tests/runner",
            f"--hosts=docker-session://{name}",
            f"--runner-vars={vars_file}",
            f"--junitxml={junit}",
            "-p",
            "no:cacheprovider",
            "-q",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )


def finish_life(sim: Simulation, launched: Launched, script: str = SMALL_JOB) -> None:
    """The runner takes one job, leaves its group (shrinking it), and is deregistered."""
    name = runner_name("sim", launched.instance_id)
    job = wait_job(sim.github.queue_job(script), 600)
    assert job.exit_code == 0, job.output[-4000:]
    assert job.runner_name == name
    left_the_group(sim.aws, launched)
    released = sim.aws.reap_left(launched.instance_id)
    assert released["result"] == "released", released
    assert sim.github.runner_by_name(name) is None
    assert sim.registered() == []
    assert sim.jit_parameters() == []


def gone_with_nothing_registered(sim: Simulation, launched: Launched, reason: str) -> str:
    """A failed instance leaves its group by itself, saying why; its terminate hook leaves
    nothing registered at GitHub and no JIT parameter behind. Returns its boot log."""
    left_the_group(sim.aws, launched, 600)
    log = launched.vm.boot_log()
    assert reason in log, log[-4000:]
    assert "leaves" in log and "boot failed" in log, log[-4000:]
    sim.aws.reap_left(launched.instance_id)
    assert sim.registered() == []
    assert sim.jit_parameters() == []
    return log


def test_a_stock_instance_bakes_registers_runs_a_containerized_job_and_leaves(
    sim: Simulation, ami: dict[str, str], tmp_path: Path
):
    deployment = sim.deploy()
    launched = sim.aws.launch(sim.image)
    answer = sim.aws.fire_launch_hook(launched.instance_id)
    assert answer["result"] == "jit-config-stored", answer
    name = runner_name("sim", launched.instance_id)

    wait_logged(launched, "bake done", STOCK_BOOT_SECONDS)
    # The image pipeline's snapshot: this instance's root disk, baked, not yet registered.
    ami["image"] = launched.vm.commit(f"fleet/{sim.name}-ami", "baked")
    wait_logged(launched, "runner started", BAKED_BOOT_SECONDS)

    # The JIT config was read once and deleted; the runner is online at GitHub; the config
    # is in no log and on no command line of the instance.
    assert sim.jit_parameters() == []
    try:
        wait_for(
            lambda: (sim.github.runner_by_name(name) or {}).get("status") == "online",
            60,
            f"{name} online at GitHub",
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{launched.vm.journal('actions-runner')[-6000:]}") from exc
    runner_id = int(sim.github.runner_by_name(name)["id"])
    # The config and the token in it go in through the environment and a file, so no
    # command line holds them.
    needles = f"{sim.github.jit_configs[runner_id]}\n{sim.github.agent_tokens[runner_id]}"
    found = launched.vm.container.exec_run(
        [
            "bash",
            "-c",
            'printf %s "$NEEDLE" > /run/needle; '
            "journalctl --no-pager | grep -c -F -f /run/needle; "
            "cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' ' | grep -c -F -f /run/needle; "
            "grep -rl -F -f /run/needle /var/log /opt/runner-fleet /etc /tmp 2>/dev/null "
            "| grep -v '^/run/needle$' | wc -l; rm -f /run/needle",
        ],
        environment={"NEEDLE": needles},
    ).output.decode()
    assert found.split() == ["0", "0", "0"], found

    # A call outside the instance policy is denied (IAM enforcement is on).
    app_key = deployment.outputs["githubAppParameterNames"]["private_key"]
    status, output = launched.vm.shell(
        f"AWS_ENDPOINT_URL={sim.aws.endpoint} AWS_DEFAULT_REGION={sim.aws.region} "
        f"/opt/runner-fleet/venv/bin/aws ssm get-parameter --name {app_key} --with-decryption"
    )
    assert status != 0 and "AccessDenied" in output, output

    # Idle: the validation suite with the canary passes against the instance.
    vars_file = tmp_path / "runner-vars.yml"
    vars_file.write_text(yaml.safe_dump(sim.runner_vars()))
    checked = validate(launched.vm.name, vars_file, tmp_path / "validation.xml")
    assert checked.returncode == 0, checked.stdout[-6000:] + checked.stderr[-2000:]

    # The job; from a container on its bridge network, IMDS gives no token (hop limit 1),
    # while the instance itself gets one.
    status, own = launched.vm.shell(
        "curl -s -m 5 -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' "
        "http://169.254.169.254/latest/api/token"
    )
    assert status == 0 and len(own) > 20, own
    job = wait_job(sim.github.queue_job(CONTAINERIZED_JOB), 600)
    assert job.exit_code == 0, job.output[-4000:]
    assert "passed" in job.output
    assert "container-token-answer=[]" in job.output, job.output[-2000:]

    # After its one job the instance leaves by itself, asking for a smaller group.
    left_the_group(sim.aws, launched)
    assert sim.aws.desired_capacity() == 0
    assert sim.aws.reap_left(launched.instance_id)["result"] == "released"
    assert sim.registered() == []
    role = f"role/{deployment.instance_role}"
    allowed = {
        c.action for c in sim.aws.enforcer.calls if c.principal == role and c.evaluation.allowed
    }
    assert allowed >= {
        "s3:GetObject",
        "ssm:GetParameter",
        "ssm:DeleteParameter",
        "autoscaling:TerminateInstanceInAutoScalingGroup",
    }
    denied = {c.action for c in sim.aws.enforcer.denied(role)}
    assert "ssm:GetParameter" in denied


def test_a_baked_image_skips_tools_and_bake_and_goes_straight_to_the_runner(
    sim: Simulation, ami: dict[str, str]
):
    assert ami, "the stock-path test makes the image"
    sim.deploy(amiId=BAKED_AMI, bakedImage=True)
    launched = sim.aws.launch(ami["image"])
    assert sim.aws.fire_launch_hook(launched.instance_id)["result"] == "jit-config-stored"
    wait_logged(launched, "runner started", BAKED_BOOT_SECONDS)
    log = launched.vm.boot_log()
    assert "baked image: true" in log
    assert "installing ansible" not in log and "running the bake part" not in log
    finish_life(sim, launched)


@pytest.mark.parametrize(
    ("pool_state", "image"),
    # Stopped from the stock image: the bake runs inside the warm pool, and AWS stops the
    # instance only once the instance says it is prepared.
    [("Stopped", "stock"), ("Running", "baked")],
)
def test_a_warm_pool_instance_is_prepared_then_serves_when_it_enters_service(
    sim: Simulation, ami: dict[str, str], pool_state: str, image: str
):
    assert ami, "the stock-path test makes the image"
    warm = {"warmPoolSize": 1, "warmPoolState": pool_state, "maxSize": 2}
    if image == "stock":
        sim.deploy(**warm)
    else:
        sim.deploy(amiId=BAKED_AMI, bakedImage=True, **warm)
    launched = sim.aws.launch(sim.image if image == "stock" else ami["image"], warm_pool=True)
    answer = sim.aws.fire_launch_hook(launched.instance_id, destination="WarmPool")
    assert answer["result"].startswith("warm-pool"), answer
    assert sim.jit_parameters() == [], "no JIT config for a warm-pool launch"

    # Prepared: the instance itself completes its launch hook, and only then.
    wait_for(
        lambda: sim.aws.states().get(launched.instance_id) == f"Warmed:{pool_state}",
        STOCK_BOOT_SECONDS,
        f"{launched.instance_id} in Warmed:{pool_state}",
    )
    log = launched.vm.boot_log()
    assert log.index("bake done") < log.index("prepared for the warm pool"), log[-3000:]
    if pool_state == "Stopped":
        launched.vm.stop()

    # Scale-out from the warm pool: AWS starts it (a second boot, for Stopped), the launch
    # hook fires again, the control plane writes its JIT config.
    answer = sim.aws.enter_service_from_warm_pool(launched)
    assert answer["result"] == "jit-config-stored", answer
    wait_logged(launched, "runner started", BAKED_BOOT_SECONDS)
    assert sim.aws.states()[launched.instance_id] == "InService"
    finish_life(sim, launched)


def test_faults_end_with_the_instance_gone_and_nothing_registered(
    sim: Simulation, ami: dict[str, str]
):
    """A JIT config never written (boot deadline), a corrupt bundle, a missing bundle: each
    instance leaves its group by itself with the reason in its log. The first waits out the
    boot deadline (5 min) while the others run."""
    assert ami, "the stock-path test makes the image"
    deployment = sim.deploy(amiId=BAKED_AMI, bakedImage=True)
    bucket, key = deployment.outputs["bundleBucket"], deployment.outputs["bundleKey"]
    s3 = sim.aws.client("s3")

    never_answered = sim.aws.launch(ami["image"])  # its launch hook never reaches us
    wait_logged(never_answered, "bake done", BAKED_BOOT_SECONDS)

    s3.put_object(Bucket=bucket, Key=key, Body=b"this is not a zip")
    corrupt = sim.aws.launch(ami["image"])
    assert sim.aws.fire_launch_hook(corrupt.instance_id)["result"] == "jit-config-stored"
    gone_with_nothing_registered(sim, corrupt, "is not a playbook bundle")

    s3.delete_object(Bucket=bucket, Key=key)
    missing = sim.aws.launch(ami["image"])
    assert sim.aws.fire_launch_hook(missing.instance_id)["result"] == "jit-config-stored"
    gone_with_nothing_registered(sim, missing, "cannot download the bundle")

    jit = deployment.outputs["jitParameterTemplate"].format(instance_id=never_answered.instance_id)
    gone_with_nothing_registered(sim, never_answered, f"no JIT config at {jit} after 300s")
    sim.deploy(amiId=BAKED_AMI, bakedImage=True)  # the bundle back for the tests after


def test_a_bake_failing_halfway_ends_the_instance(sim: Simulation):
    sim.deploy(runner_vars=sim.runner_vars(actions_runner_sha256="0" * 64))
    launched = sim.aws.launch(sim.image)
    assert sim.aws.fire_launch_hook(launched.instance_id)["result"] == "jit-config-stored"
    log = gone_with_nothing_registered(sim, launched, "running the bake part")
    assert "actions_runner" in log and "bake done" not in log, log[-4000:]


def test_a_reboot_mid_bake_bakes_again_and_the_runner_serves(sim: Simulation):
    sim.deploy()
    launched = sim.aws.launch(sim.image)
    assert sim.aws.fire_launch_hook(launched.instance_id)["result"] == "jit-config-stored"
    wait_logged(launched, "running the bake part", STOCK_BOOT_SECONDS)
    wait_for(
        lambda: "TASK [docker_host" in launched.vm.journal("runner-boot.service"),
        120,
        "the bake to be inside the docker_host role",
    )
    launched.vm.reboot()
    wait_logged(launched, "runner started", STOCK_BOOT_SECONDS)
    log = launched.vm.boot_log()
    assert log.count("runner-bootstrap: running the bake part") == 2, log[-4000:]
    assert "boot failed" not in log
    finish_life(sim, launched)


def test_the_image_pipeline_component_bakes_an_image_that_boots_straight_to_the_runner(
    sim: Simulation,
):
    """`runner-bootstrap --bake-only` as Image Builder runs it: the component's build steps
    on a build instance holding the pipeline's build role. An instance from that image skips
    the bake because of the marker the bake left (no `bakedImage` flag), then serves a job."""
    deployment = sim.deploy()
    pipeline = sim.render(imagePipeline=True)
    assert pipeline.outputs["bundleKey"] == deployment.outputs["bundleKey"]
    build = launch_build_instance(sim.aws, pipeline, sim.image)
    try:
        assert run_build_phase(build, pipeline, sim.aws.endpoint) == ["WriteBootFiles", "Bake"]
        image = build.commit(f"fleet/{sim.name}-ami", "pipeline")
    finally:
        build.terminate()
        sim.aws.imds.forget(build.ip)
    # The build role was enough (read the bundle), and nothing it did was denied.
    build_role = f"role/{build_role_name(pipeline)}"
    assert "s3:GetObject" in sim.aws.enforcer.actions(build_role)
    assert sim.aws.enforcer.denied(build_role) == []

    launched = sim.aws.launch(image)
    assert sim.aws.fire_launch_hook(launched.instance_id)["result"] == "jit-config-stored"
    wait_logged(launched, "runner started", BAKED_BOOT_SECONDS)
    log = launched.vm.boot_log()
    assert "baked image: false" in log  # the stack says stock; the image's marker decides
    assert "running the bake part" not in log
    finish_life(sim, launched)
