"""The simulated AWS account and GitHub around simulated instances.

``Deployment`` is what the Pulumi program declares for a stack config (run under mocks in a
subprocess, tests/e2e/aws_sim/program.py). ``SimAws`` serves moto on the simulation network
(``ThreadedMotoServer``; IAM enforced with tests/integration/moto_iam.py, so every call an
instance makes is judged by the policy document the program wrote), applies a deployment to
it (bundle object, instance role and policy, launch template, group, hooks, warm pool, the
GitHub App parameters, the ledger table), and plays the Auto Scaling service: it launches
instances as containers (tests/e2e/aws_sim/instance.py), sends their lifecycle events to the
real lifecycle function, and removes the VMs of instances that left the group. The fake IMDS
hands each instance credentials of the instance role, as a session named after the instance
(EC2 fills ``ec2:SourceInstanceARN`` from it).
"""

from __future__ import annotations

import base64
import ipaddress
import itertools
import json
import subprocess
import sys
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from docker.types import Mount
from moto.autoscaling.models import autoscaling_backends
from moto.core.authorization import enable_iam_authentication
from moto.iam.aws_managed_policies import aws_managed_policies_data
from moto.server import ThreadedMotoServer

from fleet.aws.handlers import lifecycle
from fleet.aws.handlers.runtime import Runtime
from tests.e2e.aws_sim.instance import LoopVolume, SimInstance
from tests.fakes.imds import FakeImds, FakeInstance
from tests.integration import moto_asg
from tests.integration.harness import admin_session
from tests.integration.moto_asg import LAUNCHING, TERMINATING, PendingAction
from tests.integration.moto_iam import PolicyEnforcer

ACCOUNT = "123456789012"  # moto's default account
REGION = "eu-west-1"
MOTO_IMAGE = "ami-03cf127a"  # one of the images moto ships
ROOT = Path(__file__).resolve().parents[3]

# The simulation network: its gateway (this machine's address on it) is 169.254.169.254,
# so the fake IMDS listens where EC2's is, and instances reach moto and GitHub there too.
NETWORK_SUBNET = "169.254.169.0/24"
IMDS_ADDRESS = "169.254.169.254"


@dataclass
class Deployment:
    """What the program registered for one stack config (see the module docstring)."""

    resources: list[dict[str, Any]]
    outputs: dict[str, Any]
    bundle_archive: Path

    def of_type(self, typ: str) -> list[dict[str, Any]]:
        return [r for r in self.resources if r["type"] == typ]

    def one(self, typ: str) -> dict[str, Any]:
        (found,) = self.of_type(typ)
        return found["inputs"]

    @property
    def user_data(self) -> str:
        encoded = self.one("aws:ec2/launchTemplate:LaunchTemplate")["userData"]
        return base64.b64decode(encoded).decode()

    @property
    def launch_template(self) -> dict[str, Any]:
        return self.one("aws:ec2/launchTemplate:LaunchTemplate")

    @property
    def hop_limit(self) -> int:
        return int(self.launch_template["metadataOptions"]["httpPutResponseHopLimit"])

    def docker_volume(self) -> tuple[str, int]:
        """(device name, GiB) of the launch template's second volume: the Docker volume."""
        mappings = self.launch_template["blockDeviceMappings"]
        docker = mappings[1]
        return docker["deviceName"], int(docker["ebs"]["volumeSize"])

    @property
    def instance_role(self) -> str:
        return self.outputs["instanceRoleArn"].rsplit("/", 1)[1]

    @property
    def instance_policy(self) -> dict[str, Any]:
        for policy in self.of_type("aws:iam/rolePolicy:RolePolicy"):
            if policy["name"].endswith("-instance-policy"):
                return json.loads(policy["inputs"]["policy"])
        raise AssertionError("the program declared no instance policy")

    @property
    def group(self) -> dict[str, Any]:
        return self.one("aws:autoscaling/group:Group")

    def function_environment(self, function: str) -> dict[str, str]:
        for candidate in self.of_type("aws:lambda/function:Function"):
            if candidate["inputs"]["name"].endswith(f"-{function}"):
                return dict(candidate["inputs"]["environment"]["variables"])
        raise AssertionError(f"the program declared no {function} function")


def render(settings: dict[str, Any], secrets: dict[str, str], build_dir: Path) -> Deployment:
    """Run the program under mocks (a subprocess: Pulumi's mocks are global)."""
    build_dir.mkdir(parents=True, exist_ok=True)
    request = build_dir / "render-request.json"
    answer = build_dir / "render-answer.json"
    request.write_text(
        json.dumps({"settings": settings, "secrets": secrets, "build_dir": str(build_dir)})
    )
    done = subprocess.run(
        [sys.executable, "-m", "tests.e2e.aws_sim.program", str(request), str(answer)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, f"the program failed under mocks:\n{done.stderr[-4000:]}"
    data = json.loads(answer.read_text())
    return Deployment(data["resources"], data["outputs"], Path(data["bundle_archive"]))


@dataclass
class Launched:
    """An instance the simulated group launched, and the container that is its VM."""

    instance_id: str
    vm: SimInstance
    imds: FakeInstance


@dataclass
class SimAws:
    """moto + fake IMDS + the Auto Scaling service's part (see the module docstring)."""

    name: str  # the simulation's name: its containers and images carry it as their fleet
    network: str
    work_dir: Path
    cgroup_version: str
    github_api_url: str
    extra_mounts: list[Mount] = field(default_factory=list)
    port: int = 0
    stack: ExitStack = field(default_factory=ExitStack)
    instances: dict[str, Launched] = field(default_factory=dict)
    _addresses: Any = None
    region: str = REGION

    # -- start and stop ---------------------------------------------------------------------

    def start(self) -> SimAws:
        self.moto = ThreadedMotoServer(ip_address=IMDS_ADDRESS, port=self.port, verbose=False)
        self.moto.start()
        self.stack.callback(self.moto.stop)
        self.port = self.moto._server.server_port  # type: ignore[union-attr]
        self.endpoint = f"http://{IMDS_ADDRESS}:{self.port}"
        self.enforcer = PolicyEnforcer(ACCOUNT, REGION)
        self.stack.enter_context(self.enforcer.installed())
        self.actions = self.stack.enter_context(moto_asg.patched(moto_asg.LifecycleActions()))
        self.stack.enter_context(enable_iam_authentication())
        self.admin = admin_session(self.endpoint)
        self.imds = FakeImds(IMDS_ADDRESS, 80).start()
        self.stack.callback(self.imds.stop)
        self._addresses = itertools.islice(ipaddress.ip_network(NETWORK_SUBNET).hosts(), 10, None)
        ec2 = self.client("ec2")
        vpc = ec2.create_vpc(CidrBlock="10.64.0.0/16")["Vpc"]["VpcId"]
        self.subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.64.1.0/24")["Subnet"]["SubnetId"]
        self.kms_key_arn = self.client("kms").create_key(Description="fleet key")["KeyMetadata"][
            "Arn"
        ]
        return self

    def close(self) -> None:
        for launched in list(self.instances.values()):
            launched.vm.terminate()
        self.stack.close()

    def client(self, service: str) -> Any:
        return self.admin.client(service, endpoint_url=self.endpoint)

    # -- deploy ------------------------------------------------------------------------------

    def stack_settings(self, **overrides: Any) -> dict[str, Any]:
        """Stack settings naming what exists in this account (key, subnet)."""
        return {
            "githubScope": "acme",
            "fleetName": "sim",
            "runnerLabels": ["self-hosted", "linux", "dind"],
            "runnerGroup": "runner-fleet",
            "kmsKeyArn": self.kms_key_arn,
            "subnetIds": [self.subnet],
            "instanceTypes": ["m7i.xlarge"],
            "rootVolumeGiB": 30,
            "dockerVolumeGiB": 20,
            "registrationTimeoutMinutes": 5,
            # The simulation plays Auto Scaling with the launch template's image id and warm
            # pools; the Image Builder pipeline (resolve:ssm:) is proved under the mocks.
            "imagePipeline": False,
            **overrides,
        }

    def apply(self, deployment: Deployment) -> None:
        """Create (or update) in moto what the program declared."""
        self.deployment = deployment
        outputs = deployment.outputs
        s3 = self.client("s3")
        bucket = outputs["bundleBucket"]
        if bucket not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
            s3.create_bucket(
                Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION}
            )
        s3.put_object(
            Bucket=bucket, Key=outputs["bundleKey"], Body=deployment.bundle_archive.read_bytes()
        )
        self._apply_iam(deployment)
        self._apply_parameters(deployment)
        self._apply_ledger(outputs["ledgerTable"])
        self._apply_group(deployment)

    def _apply_iam(self, deployment: Deployment) -> None:
        iam = self.client("iam")
        role = deployment.instance_role
        if role not in {r["RoleName"] for r in iam.list_roles()["Roles"]}:
            (trust,) = [
                candidate["inputs"]["assumeRolePolicy"]
                for candidate in deployment.of_type("aws:iam/role:Role")
                if candidate["name"].endswith("-instance-role")
            ]
            iam.create_role(RoleName=role, AssumeRolePolicyDocument=trust)
            # The managed policy the program attaches, as moto ships its document.
            iam.put_role_policy(
                RoleName=role,
                PolicyName="AmazonSSMManagedInstanceCore",
                PolicyDocument=json.dumps(
                    json.loads(aws_managed_policies_data)["AmazonSSMManagedInstanceCore"][
                        "Document"
                    ]
                ),
            )
        iam.put_role_policy(
            RoleName=role,
            PolicyName="instance-policy",
            PolicyDocument=json.dumps(deployment.instance_policy),
        )

    def _apply_parameters(self, deployment: Deployment) -> None:
        ssm = self.client("ssm")
        for parameter in deployment.of_type("aws:ssm/parameter:Parameter"):
            inputs = parameter["inputs"]
            value = inputs["value"]
            if isinstance(value, dict):  # a secret, as the engine hands it over
                value = value["value"]
            ssm.put_parameter(
                Name=inputs["name"],
                Value=value,
                Type=inputs["type"],
                KeyId=inputs.get("keyId") or self.kms_key_arn,
                Overwrite=True,
            )

    def _apply_ledger(self, table: str) -> None:
        from tests.integration.harness import create_ledger_table

        dynamodb = self.client("dynamodb")
        if table not in dynamodb.list_tables()["TableNames"]:
            create_ledger_table(dynamodb, table)

    def _apply_group(self, deployment: Deployment) -> None:
        ec2 = self.client("ec2")
        autoscaling = self.client("autoscaling")
        template = deployment.launch_template
        # The instance gets its user data from the deployment directly (the seed); moto's
        # template carries what it checks (image, type, IMDS options).
        data = {
            "ImageId": MOTO_IMAGE,
            "InstanceType": "m7i.xlarge",
            "MetadataOptions": {
                "HttpTokens": template["metadataOptions"]["httpTokens"],
                "HttpPutResponseHopLimit": deployment.hop_limit,
                "HttpEndpoint": template["metadataOptions"]["httpEndpoint"],
            },
        }
        name = "runners"
        existing = ec2.describe_launch_templates()["LaunchTemplates"]
        if not any(t["LaunchTemplateName"] == name for t in existing):
            ec2.create_launch_template(LaunchTemplateName=name, LaunchTemplateData=data)
        group = deployment.group
        group_name = group["name"]
        if not autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group_name])[
            "AutoScalingGroups"
        ]:
            autoscaling.create_auto_scaling_group(
                AutoScalingGroupName=group_name,
                LaunchTemplate={"LaunchTemplateName": name, "Version": "$Latest"},
                MinSize=int(group["minSize"]),
                MaxSize=int(group["maxSize"]),
                DesiredCapacity=0,
                VPCZoneIdentifier=self.subnet,
                NewInstancesProtectedFromScaleIn=bool(group["protectFromScaleIn"]),
                Tags=[
                    {
                        "Key": tag["key"],
                        "Value": tag["value"],
                        "PropagateAtLaunch": bool(tag["propagateAtLaunch"]),
                    }
                    for tag in group["tags"]
                ],
            )
        for hook in group["initialLifecycleHooks"]:
            autoscaling.put_lifecycle_hook(
                AutoScalingGroupName=group_name,
                LifecycleHookName=hook["name"],
                LifecycleTransition=hook["lifecycleTransition"],
                HeartbeatTimeout=int(hook["heartbeatTimeout"]),
                DefaultResult=hook["defaultResult"],
            )
        self.group_name = group_name
        self.hooks = {h["lifecycleTransition"]: h["name"] for h in group["initialLifecycleHooks"]}

    # -- the lifecycle function ----------------------------------------------------------------

    def lifecycle_runtime(self) -> Runtime:
        """The lifecycle function as deployed: the program's environment, the fake GitHub."""
        env = self.deployment.function_environment("lifecycle")
        env["FLEET_GITHUB_API_URL"] = self.github_api_url
        env.setdefault("AWS_REGION", REGION)
        session = self.admin
        runtime = Runtime.from_env(env, session=session)
        # The function's clients talk to moto: rebuild them on its endpoint.
        from fleet.aws.adapters.clients import DEFAULT_CONFIG, SERVICES, AwsClients

        runtime.clients = AwsClients(
            **{
                name: session.client(name, endpoint_url=self.endpoint, config=DEFAULT_CONFIG)
                for name in SERVICES
            }
        )
        return runtime

    def lifecycle_event(
        self, instance_id: str, token: str, *, launch: bool, origin: str, destination: str
    ) -> dict[str, Any]:
        transition = LAUNCHING if launch else TERMINATING
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": lifecycle.LAUNCH if launch else lifecycle.TERMINATE,
            "source": "aws.autoscaling",
            "account": ACCOUNT,
            "time": datetime.now(UTC).isoformat(),
            "region": REGION,
            "resources": [],
            "detail": {
                "LifecycleActionToken": token,
                "AutoScalingGroupName": self.group_name,
                "LifecycleHookName": self.hooks[transition],
                "EC2InstanceId": instance_id,
                "LifecycleTransition": transition,
                "Origin": origin,
                "Destination": destination,
            },
        }

    def fire_launch_hook(
        self, instance_id: str, *, origin: str = "EC2", destination: str = "AutoScalingGroup"
    ) -> dict[str, Any]:
        """The launch hook holds the instance; EventBridge hands the event to the function."""
        token = str(uuid.uuid4())
        warm = destination == "WarmPool"
        pool_state = self.deployment.group.get("warmPool", {}).get("poolState", "Stopped")
        self.actions.open(
            instance_id,
            PendingAction(
                self.group_name,
                self.hooks[LAUNCHING],
                token,
                LAUNCHING,
                on_continue=f"Warmed:{pool_state}" if warm else "InService",
            ),
        )
        self.set_state(instance_id, "Warmed:Pending:Wait" if warm else "Pending:Wait")
        event = self.lifecycle_event(
            instance_id, token, launch=True, origin=origin, destination=destination
        )
        return lifecycle.handle(event, self.lifecycle_runtime())

    def fire_terminate_hook(self, instance_id: str) -> dict[str, Any]:
        token = str(uuid.uuid4())
        self.actions.open(
            instance_id, PendingAction(self.group_name, self.hooks[TERMINATING], token, TERMINATING)
        )
        event = self.lifecycle_event(
            instance_id, token, launch=False, origin="AutoScalingGroup", destination="EC2"
        )
        return lifecycle.handle(event, self.lifecycle_runtime())

    # -- the group ---------------------------------------------------------------------------

    def _group_backend(self) -> Any:
        return autoscaling_backends[ACCOUNT][REGION].autoscaling_groups[self.group_name]

    def states(self) -> dict[str, str]:
        """Instance id -> lifecycle state, for the instances the group has."""
        return {s.instance.id: s.lifecycle_state for s in self._group_backend().instance_states}

    def set_state(self, instance_id: str, state: str) -> None:
        for s in self._group_backend().instance_states:
            if s.instance.id == instance_id:
                s.lifecycle_state = state

    def desired_capacity(self) -> int:
        return int(self._group_backend().desired_capacity)

    def launch(self, image: str, *, warm_pool: bool = False) -> Launched:
        """The group launches one instance (desired capacity + 1, or into the warm pool)."""
        autoscaling = self.client("autoscaling")
        before = set(self.states())
        autoscaling.set_desired_capacity(
            AutoScalingGroupName=self.group_name, DesiredCapacity=self.desired_capacity() + 1
        )
        (instance_id,) = set(self.states()) - before
        if warm_pool:
            # Warm-pool instances do not count against desired capacity.
            self.set_state(instance_id, "Warmed:Pending:Wait")
            autoscaling.set_desired_capacity(
                AutoScalingGroupName=self.group_name, DesiredCapacity=self.desired_capacity() - 1
            )
        credentials = self._credentials(instance_id)
        ip = self.next_address()
        fake = FakeInstance(
            instance_id=instance_id,
            region=REGION,
            availability_zone=f"{REGION}a",
            role_name=self.deployment.instance_role,
            credentials=credentials,
            hop_limit=self.deployment.hop_limit,
            lifecycle_state="Warmed:Stopped" if warm_pool else "InService",
        )
        self.imds.register(ip, fake)
        device_name, gib = self.deployment.docker_volume()
        vm = SimInstance(
            instance_id=instance_id,
            fleet=self.name,
            image=image,
            ip=ip,
            network=self.network,
            user_data=self.deployment.user_data,
            endpoint_url=self.endpoint,
            volume=LoopVolume(self.work_dir / f"{instance_id}-docker.img", gib),
            device_name=device_name,
            cgroup_version=self.cgroup_version,
            extra_mounts=self.extra_mounts,
        )
        launched = Launched(instance_id, vm, fake)
        self.instances[instance_id] = launched
        vm.launch()
        return launched

    def next_address(self) -> str:
        """A free address on the simulation's network, for a new instance."""
        return str(next(self._addresses))

    def enter_service_from_warm_pool(self, launched: Launched) -> dict[str, Any]:
        """Scale-out from the warm pool: the instance counts against desired capacity again,
        is started if it was stopped (a second boot), and its launch hook fires."""
        instance_id = launched.instance_id
        stopped = self.states()[instance_id] == "Warmed:Stopped"
        launched.imds.lifecycle_state = "InService"
        self.set_state(instance_id, "Pending:Wait")
        self.client("autoscaling").set_desired_capacity(
            AutoScalingGroupName=self.group_name, DesiredCapacity=self.desired_capacity() + 1
        )
        if stopped:
            launched.vm.start()
        return self.fire_launch_hook(instance_id, origin="WarmPool")

    def _credentials(self, instance_id: str):
        """Instance-profile credentials: the instance role, a session named after it."""
        return self.role_credentials(self.deployment.outputs["instanceRoleArn"], instance_id)

    def role_credentials(self, role_arn: str, session_name: str):
        """What the IMDS hands out for an instance profile: a fresh session of ``role_arn``."""
        sts = self.client("sts")

        def fetch() -> dict[str, Any]:
            answer = sts.assume_role(RoleArn=role_arn, RoleSessionName=session_name)
            creds = answer["Credentials"]
            return {
                "AccessKeyId": creds["AccessKeyId"],
                "SecretAccessKey": creds["SecretAccessKey"],
                "Token": creds["SessionToken"],
                "Expiration": creds["Expiration"],
            }

        return fetch

    def in_group(self, instance_id: str) -> bool:
        return instance_id in self.states()

    def clear(self) -> None:
        """Every instance still there is scaled in and released (between tests)."""
        autoscaling = self.client("autoscaling")
        for instance_id in list(self.instances):
            if self.in_group(instance_id):
                autoscaling.terminate_instance_in_auto_scaling_group(
                    InstanceId=instance_id, ShouldDecrementDesiredCapacity=True
                )
            self.reap_left(instance_id)

    def reap_left(self, instance_id: str) -> dict[str, Any]:
        """An instance left the group: its terminate hook runs, then EC2 removes the VM."""
        result = self.fire_terminate_hook(instance_id)
        launched = self.instances.pop(instance_id)
        launched.vm.terminate()
        self.imds.forget(launched.vm.ip)
        return result
