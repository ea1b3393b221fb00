"""A simulated world for the control plane: AWS (moto, IAM enforced), GitHub (fake), instances.

``AwsWorld`` builds what the Pulumi program deploys, in moto: the group (with its tags and
scale-in protection), queue and dead letters, ledger table, KMS key, the GitHub App's
SecureStrings, the playbook bundle, and one role per function plus the instance role, each
with the exact policy document infra/iam*.py produces. Every call after set-up is signed with
the credentials of the role that would make it and checked by ``PolicyEnforcer``.

``Fleet`` plays everyone else, one step at a time:

* GitHub: queues jobs, sends signed ``workflow_job`` deliveries to the webhook function (and
  records each delivery, failed or not, for the reconciler), assigns queued jobs to idle
  online runners, finishes jobs, and removes ephemeral runners afterwards;
* AWS plumbing: the SQS event source mapping (batches of 10, partial failures retried,
  ``maxReceiveCount`` -> dead letters), EventBridge (lifecycle events, schedules), Lambda's
  async retries and on-failure destination;
* the Auto Scaling group: instances wait in Pending:Wait on the launch hook;
* instances: with their own role, fetch the bundle, read and delete their JIT parameter, start
  the agent (which registers at the fake), and leave the group after their one job.

Time is an ``OffsetClock`` (real time plus an offset the test advances), shared by the
functions, the fake GitHub and the checks; nothing sleeps for real.
"""

from __future__ import annotations

import base64
import functools
import json
import random
import types
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import botocore.endpoint
import botocore.loaders
import botocore.session
from botocore.awsrequest import AWSResponse
from moto import mock_aws
from moto.autoscaling.models import autoscaling_backends
from moto.core.authorization import enable_iam_authentication
from moto.core.botocore_stubber import MockRawResponse
from moto.ec2.models import ec2_backends
from moto.iam.aws_managed_policies import aws_managed_policies_data

from fleet.aws.adapters.clients import DEFAULT_CONFIG, WEBHOOK_CONFIG, AwsClients
from fleet.aws.handlers import lifecycle, reaper, scaler, webhook
from fleet.aws.handlers.runtime import Runtime
from fleet.aws.handlers.settings import Settings
from fleet.aws.observe import runner_name
from infra.agent_report import METRIC_NAME as OUTDATED_METRIC
from infra.agent_report import runner_metrics_namespace
from infra.config import (
    FLEET_TAG,
    JIT_INSTANCE_TAG,
    SCALE_SET_MODE,
    ResourceNames,
    control_plane_functions,
)
from infra.control_plane import ControlPlaneArgs, function_environment
from infra.iam import instance_policy, instance_trust_policy
from infra.iam_functions import ControlPlaneResources, function_policies, lambda_trust_policy
from tests.fakes import sqs_event_source as event_source
from tests.fakes.github import FakeGitHubActions, Job
from tests.fakes.payloads import signed, workflow_job
from tests.integration import moto_asg
from tests.integration.moto_asg import LAUNCHING, TERMINATING, LifecycleActions, PendingAction
from tests.integration.moto_iam import PolicyEnforcer

ACCOUNT = "123456789012"
REGION = "eu-west-1"
FLEET = "main"
ORG = "acme"
REPOSITORY = "acme/app"
APP_ID = "424242"
INSTALLATION_ID = 7
GROUP_ID = 42
LABELS = ("self-hosted", "linux", "fleet-a")
WEBHOOK_SECRET = "integration-webhook-secret"
PARAMETER_ROOT = f"/runner-fleet/{FLEET}"
ASG_NAME = f"runner-fleet-{FLEET}"
LAUNCH_HOOK = f"{ASG_NAME}-launch"
TERMINATE_HOOK = f"{ASG_NAME}-terminate"
BUNDLE_BUCKET = "main-bundle-bucket"
BUNDLE_KEY = "bundles/playbooks-0123456789abcdef0123.zip"
APP_PARAMETERS = {
    "app_id": f"{PARAMETER_ROOT}/github-app/app-id",
    "private_key": f"{PARAMETER_ROOT}/github-app/private-key",
    "webhook_secret": f"{PARAMETER_ROOT}/github-app/webhook-secret",
}
FUNCTION_NAMES = {fn: f"{ASG_NAME}-{fn}" for fn in ("webhook", "scaler", "lifecycle", "reaper")}


def app_parameters(github_mode: str) -> dict[str, str]:
    """The GitHub App's parameters the stack creates in ``github_mode``."""
    if github_mode == SCALE_SET_MODE:
        return {k: v for k, v in APP_PARAMETERS.items() if k != "webhook_secret"}
    return APP_PARAMETERS


# githubMode scaleSet: the listener in place of the webhook, and where it remembers its session.
SCALE_SET_FUNCTION_NAMES = {fn: f"{ASG_NAME}-{fn}" for fn in control_plane_functions("scaleSet")}
LISTENER_SESSION_PARAMETER = ResourceNames.for_fleet(FLEET).listener_session_parameter


def control_plane_resources(
    github_mode: str,
    *,
    kms_key_arn: str,
    dead_letter_queue_arn: str,
    queue_arn: str | None = None,
    table_arn: str | None = None,
) -> ControlPlaneResources:
    """What the functions' policy documents are written for in ``github_mode``, as the stack
    names it (the deliveries queue and the ledger exist in webhook mode only)."""
    scale_set = github_mode == SCALE_SET_MODE
    return ControlPlaneResources(
        partition="aws",
        region=REGION,
        account_id=ACCOUNT,
        fleet_name=FLEET,
        asg_name=ASG_NAME,
        parameter_root=PARAMETER_ROOT,
        kms_key_arn=kms_key_arn,
        queue_arn=queue_arn,
        dead_letter_queue_arn=dead_letter_queue_arn,
        table_arn=table_arn,
        metrics_namespace="RunnerFleet",
        github_app_parameter_names=app_parameters(github_mode),
        function_names=SCALE_SET_FUNCTION_NAMES if scale_set else FUNCTION_NAMES,
        listener_session_parameter=LISTENER_SESSION_PARAMETER if scale_set else None,
    )


HANDLERS = {
    "webhook": webhook.handle,
    "scaler": scaler.handle,
    "lifecycle": lifecycle.handle,
    "reaper": reaper.handle,
}
ASYNC_RETRIES = 2  # Lambda's default for asynchronous invocations
MAX_RECEIVE_COUNT = 5
MOTO_IMAGE = "ami-03cf127a"  # one of the images moto ships


# One model loader for every session: botocore otherwise re-reads the service models per
# session, and the harness makes one session per principal.
_LOADER = botocore.loaders.create_loader()


@functools.cache
def ssm_managed_instance_core() -> str:
    """The managed policy's document as moto ships it (parsing moto's file costs 0.1 s)."""
    return json.dumps(
        json.loads(aws_managed_policies_data)["AmazonSSMManagedInstanceCore"]["Document"]
    )


def make_session(**credentials: str) -> boto3.session.Session:
    core = botocore.session.Session()
    core.register_component("data_loader", _LOADER)
    return boto3.session.Session(botocore_session=core, region_name=REGION, **credentials)


def admin_session(endpoint_url: str | None = None) -> boto3.session.Session:
    """An administrator of moto's account, for set-up and inspection (not the principal under
    test); ``endpoint_url`` names a moto server, None the in-process mock."""
    from moto.core.authorization import disable_iam_authentication

    with disable_iam_authentication():
        iam = make_session(aws_access_key_id="x", aws_secret_access_key="x").client(
            "iam", endpoint_url=endpoint_url
        )
        iam.create_user(UserName="admin")
        iam.put_user_policy(
            UserName="admin",
            PolicyName="admin",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
                }
            ),
        )
        key = iam.create_access_key(UserName="admin")["AccessKey"]
    return make_session(
        aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"]
    )


def create_ledger_table(dynamodb: Any, name: str) -> None:
    """The job ledger table as infra/ledger_table.py declares it (key pk, open-jobs index)."""
    dynamodb.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "open_fleet", "AttributeType": "S"},
            {"AttributeName": "queued_at", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "open-jobs",
                "KeySchema": [
                    {"AttributeName": "open_fleet", "KeyType": "HASH"},
                    {"AttributeName": "queued_at", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )


class OffsetClock:
    """Epoch seconds: real time plus an offset; ``sleep`` and ``advance`` move the offset."""

    def __init__(self) -> None:
        import time

        self._time = time.time
        self.offset = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self._time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0, f"negative sleep {seconds}"
        self.sleeps.append(seconds)
        self.offset += seconds

    def now(self) -> datetime:
        return datetime.fromtimestamp(self(), UTC)


class ClockStop:
    """A stop signal (``fleet.core.scaleset_listener.StopSignal``) that is never set and
    whose ``wait`` passes on an ``OffsetClock``: a listener's pauses take no real time."""

    def __init__(self, clock: OffsetClock) -> None:
        self.clock = clock

    def is_set(self) -> bool:
        return False

    def wait(self, timeout: float | None = None) -> bool:
        self.clock.sleep(timeout or 0.0)
        return False


@dataclass
class Throttler:
    """Injects AWS throttling errors before requests reach moto (a ``before-send`` hook)."""

    rate: float = 0.0
    # "service.Operation" or "function/service.Operation"; None: every operation.
    operations: set[str] | None = None
    seed: int = 7
    injected: dict[str, int] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    on_call: Callable[[str], None] | None = None

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def attach(self, client: Any, function: str = "") -> None:
        service = client.meta.service_model.service_name
        protocol = client.meta.service_model.protocol

        def before_send(request: Any, **kwargs: Any) -> AWSResponse | None:
            operation = kwargs["event_name"].split(".")[-1]
            key = f"{service}.{operation}"
            self.attempts[key] = self.attempts.get(key, 0) + 1
            if self.on_call is not None:
                self.on_call(key)
            if self.rate <= 0 or (
                self.operations is not None
                and key not in self.operations
                and f"{function}/{key}" not in self.operations
            ):
                return None
            if self._random.random() >= self.rate:
                return None
            self.injected[key] = self.injected.get(key, 0) + 1
            return _throttling_response(request.url, protocol)

        client.meta.events.register_first(f"before-send.{service}", before_send)


def _throttling_response(url: str, protocol: str) -> AWSResponse:
    if protocol in ("query", "ec2"):
        code = "RequestLimitExceeded" if protocol == "ec2" else "Throttling"
        body = (
            "<ErrorResponse><Error><Type>Sender</Type>"
            f"<Code>{code}</Code><Message>Rate exceeded</Message></Error>"
            "<RequestId>throttled</RequestId></ErrorResponse>"
        )
        if protocol == "ec2":
            body = (
                f"<Response><Errors><Error><Code>{code}</Code><Message>Rate exceeded</Message>"
                "</Error></Errors><RequestID>throttled</RequestID></Response>"
            )
        return AWSResponse(url, 400, {"Content-Type": "text/xml"}, MockRawResponse(body))
    body = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"})
    headers = {
        "Content-Type": "application/x-amz-json-1.0",
        "x-amzn-ErrorType": "ThrottlingException",
        "x-amzn-query-error": "ThrottlingException;Sender",
    }
    return AWSResponse(url, 400, headers, MockRawResponse(body))


@dataclass
class Credentials:
    principal: str
    session: boto3.session.Session


class AwsWorld:
    """The deployed AWS side, in moto (see the module docstring)."""

    def __init__(
        self,
        enforcer: PolicyEnforcer,
        private_key_pem: str,
        *,
        max_size: int,
        github_mode: str = "webhook",
    ) -> None:
        self.enforcer = enforcer
        self.max_size = max_size
        self.github_mode = github_mode
        scale_set = github_mode == SCALE_SET_MODE
        self.admin = admin_session()
        self._admin_clients: dict[str, Any] = {}
        ec2 = self.admin_client("ec2")
        vpc = ec2.create_vpc(CidrBlock="10.64.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.64.0.0/20")["Subnet"]["SubnetId"]
        image = MOTO_IMAGE
        ec2.create_launch_template(
            LaunchTemplateName="runners",
            LaunchTemplateData={
                "ImageId": image,
                "InstanceType": "m7i.xlarge",
                "MetadataOptions": {"HttpTokens": "required", "HttpPutResponseHopLimit": 1},
            },
        )
        autoscaling = self.admin_client("autoscaling")
        autoscaling.create_auto_scaling_group(
            AutoScalingGroupName=ASG_NAME,
            LaunchTemplate={"LaunchTemplateName": "runners", "Version": "$Latest"},
            MinSize=0,
            MaxSize=max_size,
            DesiredCapacity=0,
            VPCZoneIdentifier=subnet,
            NewInstancesProtectedFromScaleIn=True,
            Tags=[
                {"Key": FLEET_TAG, "Value": FLEET, "PropagateAtLaunch": True},
                {"Key": "managed-by", "Value": "pulumi", "PropagateAtLaunch": True},
            ],
        )
        self.group_arn = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[ASG_NAME])[
            "AutoScalingGroups"
        ][0]["AutoScalingGroupARN"]
        kms = self.admin_client("kms")
        self.kms_key_arn = kms.create_key(Description="fleet key")["KeyMetadata"]["Arn"]
        ssm = self.admin_client("ssm")
        for field_name, value in (
            ("app_id", APP_ID),
            ("private_key", private_key_pem),
            ("webhook_secret", WEBHOOK_SECRET),
        ):
            if field_name not in app_parameters(github_mode):
                continue  # scaleSet mode: no webhook secret
            ssm.put_parameter(
                Name=APP_PARAMETERS[field_name],
                Value=value,
                Type="SecureString",
                KeyId=self.kms_key_arn,
            )
        sqs = self.admin_client("sqs")
        self.dlq_url = sqs.create_queue(QueueName=f"{ASG_NAME}-dead-letters")["QueueUrl"]
        self.dlq_arn = sqs.get_queue_attributes(QueueUrl=self.dlq_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        # scaleSet mode: no deliveries queue and no ledger, as the stack deploys it.
        self.queue_url: str | None = None
        self.queue_arn: str | None = None
        self.table: str | None = None
        self.table_arn: str | None = None
        if not scale_set:
            self._webhook_resources()
        s3 = self.admin_client("s3")
        s3.create_bucket(
            Bucket=BUNDLE_BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        s3.put_object(Bucket=BUNDLE_BUCKET, Key=BUNDLE_KEY, Body=b"PK\x05\x06" + b"\0" * 18)

        self.resources = control_plane_resources(
            github_mode,
            kms_key_arn=self.kms_key_arn,
            dead_letter_queue_arn=self.dlq_arn,
            queue_arn=self.queue_arn,
            table_arn=self.table_arn,
        )
        function_names = self.resources.function_names
        if scale_set:  # the stack creates it, with nothing remembered
            ssm.put_parameter(Name=LISTENER_SESSION_PARAMETER, Value="{}", Type="String")
        self.policies = {
            fn: doc for fn, doc in function_policies(self.resources).items() if fn in function_names
        }
        self.instance_policy = instance_policy(
            partition="aws",
            region=REGION,
            account_id=ACCOUNT,
            parameter_root=PARAMETER_ROOT,
            kms_key_arn=self.kms_key_arn,
            bundle_bucket=BUNDLE_BUCKET,
            bundle_key=BUNDLE_KEY,
            asg_name=ASG_NAME,
            fleet_name=FLEET,
        )
        iam = self.admin_client("iam")
        for fn, policy in self.policies.items():
            iam.create_role(
                RoleName=f"{FLEET}-{fn}",
                AssumeRolePolicyDocument=json.dumps(lambda_trust_policy()),
            )
            iam.put_role_policy(
                RoleName=f"{FLEET}-{fn}", PolicyName="inline", PolicyDocument=json.dumps(policy)
            )
        iam.create_role(
            RoleName=f"{FLEET}-instance",
            AssumeRolePolicyDocument=json.dumps(instance_trust_policy()),
        )
        iam.put_role_policy(
            RoleName=f"{FLEET}-instance",
            PolicyName="inline",
            PolicyDocument=json.dumps(self.instance_policy),
        )
        # The managed policy the deployed role has attached, as moto ships its document.
        iam.put_role_policy(
            RoleName=f"{FLEET}-instance",
            PolicyName="AmazonSSMManagedInstanceCore",
            PolicyDocument=ssm_managed_instance_core(),
        )
        self._sts = self.admin_client("sts")
        self.function_sessions = {
            fn: self.assume(f"{FLEET}-{fn}", function_names[fn]) for fn in self.policies
        }
        self._instance_sessions: dict[str, boto3.session.Session] = {}
        self._instance_clients: dict[tuple[str, str], Any] = {}

    def _webhook_resources(self) -> None:
        """The deliveries queue (redrive to the dead letters) and the job ledger table."""
        sqs = self.admin_client("sqs")
        self.queue_url = sqs.create_queue(
            QueueName=f"{ASG_NAME}-deliveries",
            Attributes={
                "RedrivePolicy": json.dumps(
                    {"deadLetterTargetArn": self.dlq_arn, "maxReceiveCount": MAX_RECEIVE_COUNT}
                )
            },
        )["QueueUrl"]
        self.queue_arn = sqs.get_queue_attributes(
            QueueUrl=self.queue_url, AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        self.table = f"{ASG_NAME}-ledger"
        create_ledger_table(self.admin_client("dynamodb"), self.table)
        self.table_arn = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{self.table}"

    def admin_client(self, service: str) -> Any:
        """The administrator's client for ``service``, made once: a boto3 client costs
        milliseconds of CPU to create, and the checks ask for one at every step."""
        if service not in self._admin_clients:
            self._admin_clients[service] = self.admin.client(service)
        return self._admin_clients[service]

    def assume(self, role: str, session_name: str) -> boto3.session.Session:
        creds = self._sts.assume_role(
            RoleArn=f"arn:aws:iam::{ACCOUNT}:role/{role}", RoleSessionName=session_name
        )["Credentials"]
        return make_session(
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
        )

    def instance_session(self, instance_id: str) -> boto3.session.Session:
        """Credentials an instance gets from its instance profile (session = instance id)."""
        if instance_id not in self._instance_sessions:
            self._instance_sessions[instance_id] = self.assume(f"{FLEET}-instance", instance_id)
        return self._instance_sessions[instance_id]

    def instance_client(self, instance_id: str, service: str) -> Any:
        """A client of ``service`` signed with the instance's role, made once per instance."""
        key = (instance_id, service)
        if key not in self._instance_clients:
            self._instance_clients[key] = self.instance_session(instance_id).client(
                service, config=DEFAULT_CONFIG
            )
        return self._instance_clients[key]

    # -- inspection (admin) -------------------------------------------------------------------

    def group(self) -> dict[str, Any]:
        return self.admin_client("autoscaling").describe_auto_scaling_groups(
            AutoScalingGroupNames=[ASG_NAME]
        )["AutoScalingGroups"][0]

    def group_states(self) -> list[Any]:
        return list(
            autoscaling_backends[ACCOUNT][REGION].autoscaling_groups[ASG_NAME].instance_states
        )

    def jit_parameters(self) -> list[str]:
        ssm = self.admin_client("ssm")
        names = []
        for page in ssm.get_paginator("describe_parameters").paginate(
            ParameterFilters=[
                {"Key": "Path", "Option": "Recursive", "Values": [f"{PARAMETER_ROOT}/runners"]}
            ]
        ):
            names += [p["Name"] for p in page["Parameters"]]
        return names

    def dead_letters(self) -> list[dict[str, Any]]:
        sqs = self.admin_client("sqs")
        attrs = sqs.get_queue_attributes(
            QueueUrl=self.dlq_url, AttributeNames=["ApproximateNumberOfMessages"]
        )
        count = int(attrs["Attributes"]["ApproximateNumberOfMessages"])
        return [{}] * count

    def queue_depth(self) -> int:
        sqs = self.admin_client("sqs")
        attrs = sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(
            attrs["ApproximateNumberOfMessagesNotVisible"]
        )

    def ledger_items(self) -> list[dict[str, Any]]:
        dynamodb = self.admin_client("dynamodb")
        items: list[dict[str, Any]] = []
        for page in dynamodb.get_paginator("scan").paginate(TableName=self.table):
            items += page["Items"]
        return items

    def kill_instance(self, instance_id: str) -> None:
        """The instance dies outside the group's control (hardware, spot reclaim)."""
        ec2_backends[ACCOUNT][REGION].terminate_instances([instance_id])
        backend = autoscaling_backends[ACCOUNT][REGION]
        backend.notify_terminate_instances([instance_id])


@dataclass
class AsyncEvent:
    function: str
    event: dict[str, Any]
    attempts: int = 0


@dataclass
class Fleet:
    """Everyone but the control plane (see the module docstring)."""

    aws: AwsWorld
    github: FakeGitHubActions
    clock: OffsetClock
    actions: LifecycleActions
    throttler: Throttler = field(default_factory=Throttler)
    env: dict[str, str] = field(default_factory=dict)
    never_register: set[str] = field(default_factory=set)
    runtimes: dict[str, Runtime] = field(default_factory=dict)
    payloads: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    responses: list[tuple[str, str, int]] = field(default_factory=list)  # guid, action, status
    seen_instances: set[str] = field(default_factory=set)
    booted: set[str] = field(default_factory=set)
    released: set[str] = field(default_factory=set)
    retries: list[AsyncEvent] = field(default_factory=list)
    results: list[tuple[str, Any]] = field(default_factory=list)
    dead_lettered: list[AsyncEvent] = field(default_factory=list)
    max_seen_instances: int = 0
    max_seen_desired: int = 0
    registered: dict[str, int] = field(default_factory=dict)  # instance -> runner id
    job_runner: dict[int, str] = field(default_factory=dict)  # job id -> instance id
    jit_reads: dict[str, str] = field(default_factory=dict)
    # Faults in delivery: late (reordered) and repeated deliveries, decided by a seeded RNG.
    delay_rate: float = 0.0
    duplicate_rate: float = 0.0
    seed: int = 11
    delayed: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    timeline: list[tuple[str, str]] = field(default_factory=list)  # ("aws"|"github", call)
    killed_busy: list[str] = field(default_factory=list)
    lost_terminate_events: set[str] = field(default_factory=set)  # EventBridge loses these
    reruns_started: int = 0
    held: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    vanish_actions: set[tuple[int, str]] = field(default_factory=set)  # (job id, action)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.throttler.on_call = lambda key: self.timeline.append(("aws", key))
        self.github.hooks.append(
            lambda method, path: self.timeline.append(("github", f"{method} {path}"))
        )
        self.settings = Settings.from_env(self.env)
        for fn, session in self.aws.function_sessions.items():
            config = WEBHOOK_CONFIG if fn == "webhook" else DEFAULT_CONFIG
            clients = AwsClients(functools.partial(self._client, session, fn, config))
            self.runtimes[fn] = Runtime(
                self.settings, clients, clock=self.clock, sleep=self.clock.sleep
            )

    def _client(self, session: boto3.session.Session, fn: str, config: Any, service: str) -> Any:
        """A function's client, made at its first use as deployed, with the throttler."""
        client = session.client(service, region_name=REGION, config=config)
        self.throttler.attach(client, fn)
        return client

    # -- invoking functions -------------------------------------------------------------------

    def invoke(self, function: str, event: dict[str, Any]) -> Any:
        """A synchronous invocation (function URL, SQS event source mapping).

        Any instance running a job that the invocation removes from the group is recorded in
        ``killed_busy``: the control plane must never do that.
        """
        busy: set[str] = set()
        if function != "webhook":
            present = {s.instance.id for s in self.aws.group_states()}
            busy = self.busy_instances() & present
        try:
            result = HANDLERS[function](event, self.runtimes[function])
        finally:
            if busy:
                left = {s.instance.id for s in self.aws.group_states()}
                self.killed_busy += sorted(busy - left)
        self.results.append((function, result))
        return result

    def busy_instances(self) -> set[str]:
        """Instances whose runner GitHub shows busy or that run a job in progress."""
        busy = {r["name"].removeprefix(f"{FLEET}-") for r in self.runners().values() if r["busy"]}
        busy |= {
            self.job_runner[j.id]
            for j in self.github.jobs.values()
            if j.status == "in_progress" and j.id in self.job_runner
        }
        return busy

    def invoke_async(self, function: str, event: dict[str, Any]) -> None:
        """An asynchronous invocation (EventBridge): retried, then sent to the dead letters."""
        self._attempt(AsyncEvent(function, event))

    def _attempt(self, pending: AsyncEvent) -> None:
        pending.attempts += 1
        try:
            self.invoke(pending.function, pending.event)
        except Exception as exc:  # Lambda catches whatever a handler raises
            self.results.append((pending.function, exc))
            if pending.attempts <= ASYNC_RETRIES:
                self.retries.append(pending)
                return
            # Lambda's on-failure destination, sent with the function's own role.
            self.runtimes[pending.function].clients.sqs.send_message(
                QueueUrl=self.aws.dlq_url,
                MessageBody=json.dumps(
                    {"requestContext": {"condition": "RetriesExhausted"}, "error": str(exc)}
                ),
            )
            self.dead_lettered.append(pending)

    def retry_async(self) -> None:
        pending, self.retries = self.retries, []
        for event in pending:
            self._attempt(event)

    # -- GitHub side --------------------------------------------------------------------------

    def queue_jobs(self, count: int, *, labels: tuple[str, ...] = LABELS) -> list[Job]:
        jobs = [self.github.new_job(REPOSITORY, labels, self.clock.now()) for _ in range(count)]
        for job in jobs:
            self.deliver(job, "queued")
        return jobs

    def payload(self, job: Job, action: str) -> dict[str, Any]:
        def stamp(value: datetime | None) -> str | None:
            return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else None

        data = workflow_job(
            action,
            job_id=job.id,
            run_id=job.run_id,
            labels=list(job.labels),
            runner_name=job.runner_name,
            conclusion=job.conclusion if action == "completed" else None,
            created_at=stamp(job.created_at) or "",
            started_at=stamp(job.started_at),
            completed_at=stamp(job.completed_at) if action == "completed" else None,
            org=ORG,
        )
        data["repository"]["full_name"] = job.repository
        return data

    def deliver(
        self,
        job: Job,
        action: str,
        *,
        guid: str | None = None,
        lost: bool = False,
        vanish: bool = False,
        hold: bool = False,
    ) -> int:
        """GitHub sends one delivery. ``lost``: it fails before reaching the function (GitHub
        records the failure); ``vanish``: it is never sent at all; ``hold``: it is kept in
        ``held`` for the test to send later (out of order)."""
        guid = guid or str(uuid.uuid4())
        data = self.payload(job, action)
        self.payloads[guid] = (action, data)
        if vanish:
            return 0
        if hold:
            self.held.append((guid, action, data))
            return 0
        if not lost and self.delay_rate and self.rng.random() < self.delay_rate:
            self.delayed.append((guid, action, data))  # arrives later, out of order
            return 0
        status = self._send(guid, action, data, lost=lost)
        if not lost and self.duplicate_rate and self.rng.random() < self.duplicate_rate:
            self.delayed.append((guid, action, data))  # the same delivery again, later
        return status

    def _send(
        self,
        guid: str,
        action: str,
        data: dict[str, Any],
        *,
        lost: bool = False,
        again: bool = False,
    ) -> int:
        status = 502 if lost else self.post(data, guid)
        self.github.add_delivery(guid, status, self.clock.now(), action=action, redelivery=again)
        self.responses.append((guid, action, status))
        return status

    def send_held(self) -> None:
        pending, self.held = self.held, []
        for guid, action, data in pending:
            self._send(guid, action, data)

    def flush_delayed(self) -> None:
        pending, self.delayed = self.delayed, []
        self.rng.shuffle(pending)
        for guid, action, data in pending:
            self._send(guid, action, data, again=True)

    def post(self, data: dict[str, Any], guid: str, *, secret: str = WEBHOOK_SECRET) -> int:
        headers, body = signed(data, delivery=guid, secret=secret)
        return self.post_raw(headers, body)

    def post_raw(self, headers: dict[str, str], body: bytes) -> int:
        event = {
            "version": "2.0",
            "rawPath": "/",
            "headers": {k.lower(): v for k, v in headers.items()},
            "requestContext": {"http": {"method": "POST", "path": "/"}},
            "body": base64.b64encode(body).decode(),
            "isBase64Encoded": True,
        }
        return int(self.invoke("webhook", event)["statusCode"])

    def redeliver_pending(self) -> None:
        """GitHub performs the redeliveries the reconciler asked for (same guid)."""
        pending, self.github.pending_redeliveries = self.github.pending_redeliveries, []
        for delivery in pending:
            _, data = self.payloads[delivery["guid"]]
            status = self.post(data, delivery["guid"])
            self.github.add_delivery(
                delivery["guid"],
                status,
                self.clock.now(),
                action=delivery["action"],
                redelivery=True,
            )
            self.responses.append((delivery["guid"], delivery["action"], status))

    def runners(self) -> dict[int, dict[str, Any]]:
        return self.github.runners.setdefault(f"/orgs/{ORG}", {})

    def assign_jobs(self) -> list[Job]:
        """GitHub's scheduler: each queued job goes to an idle online runner with its labels."""
        assigned = []
        idle = [r for r in self.runners().values() if r["status"] == "online" and not r["busy"]]
        for job in sorted(self.github.jobs.values(), key=lambda j: j.id):
            if job.status != "queued" or not idle:
                continue
            wanted = {label.casefold() for label in job.labels}
            match = next(
                (
                    r
                    for r in idle
                    if wanted
                    <= {label["name"].casefold() for label in r["labels"]} | {"self-hosted"}
                ),
                None,
            )
            if match is None:
                continue
            idle.remove(match)
            match["busy"] = True
            job.status = "in_progress"
            job.started_at = self.clock.now()
            job.runner_id = match["id"]
            job.runner_name = match["name"]
            self.job_runner[job.id] = match["name"].removeprefix(f"{FLEET}-")
            assigned.append(job)
        for job in assigned:
            self.deliver(job, "in_progress", vanish=(job.id, "in_progress") in self.vanish_actions)
        return assigned

    def finish_jobs(
        self,
        jobs: Iterable[Job] | None = None,
        *,
        conclusion: str = "success",
        runner_lost: bool = False,
    ) -> list[Job]:
        """Running jobs complete; their runners go away and their instances leave the group.
        ``runner_lost``: the runner died mid-job; GitHub fails the job and keeps the runner
        registered (offline) until someone removes it."""
        running = [j for j in self.github.jobs.values() if j.status == "in_progress"]
        chosen = list(jobs) if jobs is not None else running
        for job in chosen:
            if job.status != "in_progress":
                continue
            job.status = "completed"
            job.conclusion = conclusion
            job.completed_at = self.clock.now()
            if runner_lost:
                self.runners()[int(job.runner_id or 0)].update(status="offline", busy=False)
            else:
                self.runners().pop(int(job.runner_id or 0), None)  # ephemeral: gone after its job
            self.deliver(job, "completed", vanish=(job.id, "completed") in self.vanish_actions)
            instance_id = self.job_runner.get(job.id)
            if instance_id and self._in_group(instance_id):
                self.instance_terminates_itself(instance_id)
        return chosen

    def cancel(self, job: Job) -> None:
        """Someone cancels a job before a runner took it."""
        job.status = "completed"
        job.conclusion = "cancelled"
        job.completed_at = self.clock.now()
        self.deliver(job, "completed")

    def start_reruns(self) -> list[Job]:
        """GitHub queues a new attempt for each job the reconciler asked to re-run."""
        started = []
        for job_id in self.github.reruns[self.reruns_started :]:
            old = self.github.jobs[job_id]
            started.append(self.github.new_job(old.repository, old.labels, self.clock.now()))
        self.reruns_started = len(self.github.reruns)
        for job in started:
            self.deliver(job, "queued")
        return started

    # -- Auto Scaling and instances ---------------------------------------------------------

    def _in_group(self, instance_id: str) -> bool:
        return any(s.instance.id == instance_id for s in self.aws.group_states())

    def observe(self) -> None:
        group = self.aws.group()
        counted = [
            i for i in group["Instances"] if i["LifecycleState"] in ("Pending:Wait", "InService")
        ]
        self.max_seen_instances = max(self.max_seen_instances, len(counted))
        self.max_seen_desired = max(self.max_seen_desired, group["DesiredCapacity"])

    def asg_tick(self) -> None:
        """New instances wait on the launch hook; instances that left fire the terminate hook."""
        current = {s.instance.id: s for s in self.aws.group_states()}
        for instance_id, state in current.items():
            if instance_id in self.seen_instances:
                continue
            self.seen_instances.add(instance_id)
            state.lifecycle_state = "Pending:Wait"
            token = str(uuid.uuid4())
            self.actions.open(instance_id, PendingAction(ASG_NAME, LAUNCH_HOOK, token, LAUNCHING))
            self.invoke_async("lifecycle", self._lifecycle_event(instance_id, token, launch=True))
        for instance_id in sorted(self.seen_instances - set(current) - self.released):
            self.released.add(instance_id)
            if instance_id in self.lost_terminate_events:
                continue
            token = str(uuid.uuid4())
            self.actions.open(
                instance_id, PendingAction(ASG_NAME, TERMINATE_HOOK, token, TERMINATING)
            )
            self.invoke_async("lifecycle", self._lifecycle_event(instance_id, token, launch=False))
        self.observe()

    def _lifecycle_event(self, instance_id: str, token: str, *, launch: bool) -> dict[str, Any]:
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": lifecycle.LAUNCH if launch else lifecycle.TERMINATE,
            "source": "aws.autoscaling",
            "account": ACCOUNT,
            "time": self.clock.now().isoformat(),
            "region": REGION,
            "resources": [self.aws.group_arn],
            "detail": {
                "LifecycleActionToken": token,
                "AutoScalingGroupName": ASG_NAME,
                "LifecycleHookName": LAUNCH_HOOK if launch else TERMINATE_HOOK,
                "EC2InstanceId": instance_id,
                "LifecycleTransition": LAUNCHING if launch else TERMINATING,
                "Origin": "EC2",
                "Destination": "AutoScalingGroup",
            },
        }

    def spot_warning(self, instance_id: str) -> None:
        self.invoke_async(
            "lifecycle",
            {
                "version": "0",
                "id": str(uuid.uuid4()),
                "detail-type": lifecycle.SPOT_WARNING,
                "source": "aws.ec2",
                "account": ACCOUNT,
                "time": self.clock.now().isoformat(),
                "region": REGION,
                "resources": [f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/{instance_id}"],
                "detail": {"instance-id": instance_id, "instance-action": "terminate"},
            },
        )

    def boot_instances(self) -> list[str]:
        """Instances in service read their JIT config (then delete it) and start the agent."""
        started = []
        for state in self.aws.group_states():
            instance_id = state.instance.id
            if (
                state.lifecycle_state != "InService"
                or instance_id in self.booted
                or instance_id in self.never_register
            ):
                continue
            ssm = self.aws.instance_client(instance_id, "ssm")
            name = self.settings.jit_parameter_template.format(instance_id=instance_id)
            try:
                value = ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
            except ssm.exceptions.ParameterNotFound:
                continue  # not written yet: the boot script keeps waiting
            ssm.delete_parameter(Name=name)
            bundle = self.aws.instance_client(instance_id, "s3")
            bundle.get_object(Bucket=BUNDLE_BUCKET, Key=BUNDLE_KEY)["Body"].read()
            self.booted.add(instance_id)
            self.jit_reads[instance_id] = value
            runner_id = int(value.removeprefix("JITSECRET-"))
            runner = self.runners().get(runner_id)
            if runner is not None and runner["name"] == runner_name(FLEET, instance_id):
                runner["status"] = "online"  # the agent connects with its JIT config
                self.registered[instance_id] = runner_id
            started.append(instance_id)
        return started

    def instance_reports_outdated_agent(self, instance_id: str, namespace: str = "") -> None:
        """runner-terminate-self after the agent exited 7: one datapoint, the instance's role."""
        client = self.aws.instance_session(instance_id).client("cloudwatch", config=DEFAULT_CONFIG)
        client.put_metric_data(
            Namespace=namespace or runner_metrics_namespace(FLEET),
            MetricData=[{"MetricName": OUTDATED_METRIC, "Value": 1.0}],
        )

    def instance_terminates_itself(self, instance_id: str) -> None:
        """runner-terminate-self: leave the group with decrement, using the instance's role."""
        client = self.aws.instance_client(instance_id, "autoscaling")
        client.terminate_instance_in_auto_scaling_group(
            InstanceId=instance_id, ShouldDecrementDesiredCapacity=True
        )

    # -- the SQS event source mapping and the schedules -------------------------------------

    def pump_queue(self, *, max_batches: int = 1000) -> int:
        """The SQS event source mapping: batches of 10 to the scaler, with the scaler's role;
        records it reports failed stay on the queue and come back (receive count grows, and
        past ``maxReceiveCount`` SQS moves them to the dead letters)."""
        sqs, url = self.runtimes["scaler"].clients.sqs, self.aws.queue_url
        processed = 0
        event_source.depth(sqs, url)
        for _ in range(max_batches):
            messages = event_source.receive(sqs, url, 10, visibility_timeout=0)
            if not messages:
                break
            records = [
                {
                    "messageId": m.message_id,
                    "receiptHandle": m.receipt_handle,
                    "body": m.body,
                    "attributes": {"ApproximateReceiveCount": str(m.receive_count)},
                    "eventSource": "aws:sqs",
                }
                for m in messages
            ]
            result = self.invoke("scaler", {"Records": records})
            failed = {f["itemIdentifier"] for f in result["batchItemFailures"]}
            done = [m for m in messages if m.message_id not in failed]
            assert event_source.delete(sqs, url, done) == []
            processed += len(done)
            if not done and failed:
                break  # everything failed: leave the rest for the next pass
        return processed

    def record_only(self, runtime: Runtime) -> int:
        """Another scaler invocation that gets to the ledger first (records, no cycle)."""
        sqs = runtime.clients.sqs
        answer = sqs.receive_message(QueueUrl=self.aws.queue_url, MaxNumberOfMessages=10)
        messages = answer.get("Messages") or []
        records = [{"messageId": m["MessageId"], "body": m["Body"]} for m in messages]
        failed = set(scaler.record_batch(records, runtime))
        done = [m for m in messages if m["MessageId"] not in failed]
        for m in done:
            sqs.delete_message(QueueUrl=self.aws.queue_url, ReceiptHandle=m["ReceiptHandle"])
        return len(done)

    def fresh_runtime(self, function: str, *, clock: Callable[[], float] | None = None) -> Runtime:
        """A new container of ``function`` (its own caches), optionally with a skewed clock."""
        old = self.runtimes[function]
        return Runtime(
            self.settings, old.clients, clock=clock or self.clock, sleep=self.clock.sleep
        )

    def scheduled(self, function: str) -> None:
        self.invoke_async(
            function,
            {
                "version": "0",
                "id": str(uuid.uuid4()),
                "detail-type": "Scheduled Event",
                "source": "aws.events",
                "account": ACCOUNT,
                "time": self.clock.now().isoformat(),
                "region": REGION,
                "resources": [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{function}"],
                "detail": {},
            },
        )

    # -- stepping -----------------------------------------------------------------------------

    def step(
        self,
        *,
        advance: float = 30.0,
        finish: bool = True,
        scaler: bool = True,
        reaper: bool = False,
    ) -> None:
        """One tick of the world, in the order things happen."""
        self.clock.advance(advance)
        self.flush_delayed()
        self.redeliver_pending()
        self.start_reruns()
        self.pump_queue()
        if scaler:
            self.scheduled("scaler")
        self.retry_async()
        self.asg_tick()
        self.boot_instances()
        self.assign_jobs()
        self.pump_queue()
        if finish:
            self.finish_jobs()
        self.asg_tick()
        if reaper:
            self.scheduled("reaper")
        self.observe()

    def run_until(self, done: Callable[[], bool], *, max_steps: int = 60, **step: Any) -> int:
        for n in range(max_steps):
            if done():
                return n
            self.step(**step)
        assert done(), f"not done after {max_steps} steps: {self.describe()}"
        return max_steps

    # -- checks -------------------------------------------------------------------------------

    def jobs_done(self) -> bool:
        return all(job.status == "completed" for job in self.github.jobs.values())

    def settled(self) -> bool:
        """Every job done, every delivery processed, nothing waiting to be retried."""
        return (
            self.jobs_done()
            and not self.delayed
            and not self.retries
            and not self.github.pending_redeliveries
            and len(self.github.reruns) == self.reruns_started
            and self.aws.queue_depth() == 0
        )

    def nothing_left(self) -> bool:
        return not self.aws.group_states() and not self.runners() and not self.aws.jit_parameters()

    def describe(self) -> str:
        statuses: dict[str, int] = {}
        for job in self.github.jobs.values():
            statuses[job.status] = statuses.get(job.status, 0) + 1
        group = self.aws.group()
        return json.dumps(
            {
                "jobs": statuses,
                "desired": group["DesiredCapacity"],
                "instances": [(i["InstanceId"], i["LifecycleState"]) for i in group["Instances"]],
                "runners": [(r["name"], r["status"], r["busy"]) for r in self.runners().values()],
                "queue": self.aws.queue_depth(),
                "dead_letters": len(self.aws.dead_letters()),
                "pending_retries": len(self.retries),
            }
        )


def fleet_environment(aws: AwsWorld, github_url: str, **overrides: Any) -> dict[str, str]:
    """The functions' environment as infra/control_plane.py writes it, for this world (in its
    githubMode)."""
    args = ControlPlaneArgs(
        fleet_name=FLEET,
        github_scope=ORG,
        runner_labels=LABELS,
        runner_group="runner-fleet",
        allow_public_repositories=False,
        asg_name=ASG_NAME,
        launch_hook_name=LAUNCH_HOOK,
        terminate_hook_name=TERMINATE_HOOK,
        kms_key_arn=aws.kms_key_arn,
        parameter_root=PARAMETER_ROOT,
        jit_parameter_template=f"{PARAMETER_ROOT}/runners/{{instance_id}}/jitconfig",
        jit_instance_tag=JIT_INSTANCE_TAG,
        github_app_parameter_names=aws.resources.github_app_parameter_names,
        min_size=0,
        max_size=aws.max_size,
        warm_idle=0,
        job_timeout_minutes=60,
        max_runner_lifetime_minutes=120,
        registration_timeout_minutes=10,
        github_api_url=github_url,
        github_mode=aws.github_mode,
        listener_session_parameter=aws.resources.listener_session_parameter,
    )
    env = function_environment(
        args,
        asg_name=ASG_NAME,
        kms_key_arn=aws.kms_key_arn,
        queue_url=aws.queue_url,
        ledger_table=aws.table,
        partition="aws",
        account_id=ACCOUNT,
    )
    env["AWS_REGION"] = REGION
    env.update({k: str(v) for k, v in overrides.items()})
    return env


def at(clock: OffsetClock, minutes: float) -> datetime:
    return clock.now() + timedelta(minutes=minutes)


MakeFleet = Callable[..., "Fleet"]


@contextmanager
def recorded_aws_sleeps() -> Iterator[list[float]]:
    """botocore's retry backoff, recorded instead of slept."""
    sleeps: list[float] = []
    original = botocore.endpoint.time
    botocore.endpoint.time = types.SimpleNamespace(sleep=sleeps.append)  # type: ignore[assignment]
    try:
        yield sleeps
    finally:
        botocore.endpoint.time = original  # type: ignore[assignment]


@contextmanager
def fleet_maker(server: Any, app_keys: tuple[str, bytes]) -> Iterator[MakeFleet]:
    """A fresh world (moto with IAM enforced, lifecycle actions) and a function that makes
    the fleet in it: what the integration tests' ``make_fleet`` fixture and the storm
    benchmark (bench/storm.py) both use."""
    with ExitStack() as stack:
        stack.enter_context(mock_aws())
        enforcer = PolicyEnforcer(ACCOUNT, REGION)
        stack.enter_context(enforcer.installed())
        actions = stack.enter_context(moto_asg.patched(LifecycleActions()))

        def make(*, max_size: int = 10, throttle: Throttler | None = None, **env: Any) -> Fleet:
            clock = OffsetClock()
            github = FakeGitHubActions(
                server=server, app_id=APP_ID, public_key=app_keys[1], clock=clock
            )
            github.install(ORG, INSTALLATION_ID)
            github.add_group(ORG, "runner-fleet", group_id=GROUP_ID)
            aws = AwsWorld(enforcer, app_keys[0], max_size=max_size)
            stack.enter_context(enable_iam_authentication())
            return Fleet(
                aws=aws,
                github=github,
                clock=clock,
                actions=actions,
                throttler=throttle or Throttler(),
                env=fleet_environment(aws, github.base_url, **env),
            )

        yield make
