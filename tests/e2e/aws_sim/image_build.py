"""EC2 Image Builder's part in the simulation: a build instance runs the program's component.

Image Builder launches a build instance from the parent image with the pipeline's instance
profile (no user data of the fleet's), and AWSTOE runs the component document's build phase,
each ExecuteBash step's commands as one bash script, as root. Here the build instance is a
simulated instance booted with empty user data and credentials of the program's build role
at the fake IMDS; the steps run through `docker exec`. The "AMI" is the committed container.

One simulation artifact: a simulated instance's root disk is the container's overlayfs, on
which the Docker engine the bake installs cannot run its overlay2 storage (a real build
instance's root is a block device). So the build instance's /var/lib/docker is a scratch ext4
on its loop device, as the stock path's is; either way it is not part of the image.

What is not simulated: AWSTOE itself (its variables, step outputs, retries), the SSM agent
that drives it, the test phase, and the distribution's copy of the AMI id into the image
parameter (the mocks tests prove that wiring).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from typing import Any

import yaml

from tests.e2e.aws_sim.instance import LoopVolume, SimInstance
from tests.e2e.aws_sim.world import REGION, Deployment, SimAws
from tests.fakes.imds import FakeInstance

BUILD_INSTANCE_ID = "i-0b0b0b0b0b0b0b0b0"
EMPTY_USER_DATA = "#cloud-config\n{}\n"


@dataclass(frozen=True)
class BuildStep:
    name: str
    script: str
    timeout_seconds: int


def build_steps(deployment: Deployment) -> list[BuildStep]:
    """The ExecuteBash steps of the component's build phase, in order."""
    (component,) = deployment.of_type("aws:imagebuilder/component:Component")
    document = yaml.safe_load(component["inputs"]["data"])
    (build,) = [phase for phase in document["phases"] if phase["name"] == "build"]
    steps = []
    for step in build["steps"]:
        assert step["action"] == "ExecuteBash", step
        steps.append(
            BuildStep(
                name=step["name"],
                script="\n".join(step["inputs"]["commands"]),
                timeout_seconds=int(step.get("timeoutSeconds", 7200)),
            )
        )
    return steps


def _declared(deployment: Deployment, typ: str, suffix: str) -> dict[str, Any]:
    (found,) = [r for r in deployment.of_type(typ) if r["name"].endswith(suffix)]
    return found


def build_role_name(deployment: Deployment) -> str:
    """The build role's name in the simulated account (its resource name)."""
    return _declared(deployment, "aws:iam/role:Role", "-build-role")["name"]


def _build_role(aws: SimAws, deployment: Deployment) -> str:
    """The pipeline's build role and its inline policy, created in moto; its name."""
    role = _declared(deployment, "aws:iam/role:Role", "-build-role")
    policy = _declared(deployment, "aws:iam/rolePolicy:RolePolicy", "-build-policy")
    iam = aws.client("iam")
    name = build_role_name(deployment)
    if name not in {r["RoleName"] for r in iam.list_roles()["Roles"]}:
        trust = role["inputs"]["assumeRolePolicy"]
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust)
    document = policy["inputs"]["policy"]
    iam.put_role_policy(RoleName=name, PolicyName="build-policy", PolicyDocument=document)
    return name


def launch_build_instance(aws: SimAws, deployment: Deployment, parent_image: str) -> SimInstance:
    """A build instance from ``parent_image`` with the build role's credentials at the IMDS."""
    role = _build_role(aws, deployment)
    role_arn = aws.client("iam").get_role(RoleName=role)["Role"]["Arn"]
    ip = aws.next_address()
    aws.imds.register(
        ip,
        FakeInstance(
            instance_id=BUILD_INSTANCE_ID,
            region=REGION,
            availability_zone=f"{REGION}a",
            role_name=role,
            credentials=aws.role_credentials(role_arn, BUILD_INSTANCE_ID),
            hop_limit=1,
            lifecycle_state="InService",
        ),
    )
    device_name, gib = deployment.docker_volume()
    vm = SimInstance(
        instance_id=BUILD_INSTANCE_ID,
        fleet=aws.name,
        image=parent_image,
        ip=ip,
        network=aws.network,
        user_data=EMPTY_USER_DATA,
        endpoint_url=aws.endpoint,
        volume=LoopVolume(aws.work_dir / f"{BUILD_INSTANCE_ID}-docker.img", gib),
        device_name=device_name,
        cgroup_version=aws.cgroup_version,
        extra_mounts=aws.extra_mounts,
    )
    return vm.launch()


def run_build_phase(vm: SimInstance, deployment: Deployment, endpoint_url: str) -> list[str]:
    """Run the component's build steps as AWSTOE would; the names of the steps that ran.
    Fails with the step's output when one exits non-zero."""
    assert vm.container is not None
    # Image Builder starts the component once the instance is up; 2 is cloud-init's "done,
    # with recoverable errors" (a warning about the empty user data, for one).
    code, output = vm.shell("cloud-init status --wait --long")
    assert code in (0, 2) and "status: done" in output, output
    # Formatted from this machine: the parent image has no mkfs (the bake installs it).
    subprocess.run(["mkfs.ext4", "-q", "-F", vm.volume.device], check=True, timeout=120)
    code, output = vm.shell(f"mkdir -p /var/lib/docker && mount {vm.device_name} /var/lib/docker")
    assert code == 0, output
    ran = []
    for step in build_steps(deployment):
        result = vm.container.exec_run(
            ["timeout", str(step.timeout_seconds), "bash", "-c", step.script],
            environment={"AWS_ENDPOINT_URL": endpoint_url},
        )
        text = result.output.decode(errors="replace")
        assert result.exit_code == 0, f"step {step.name} exited {result.exit_code}:\n{text[-4000:]}"
        ran.append(step.name)
    return ran
