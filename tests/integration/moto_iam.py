"""moto's IAM enforcement, with resources and conditions evaluated.

moto authenticates every request (signature, access key -> user or assumed role) and collects
the principal's policies, then evaluates actions only against the resource "*" for most
services and ignores Condition blocks. That cannot run the fleet's documents: their allows
name resources (so they would never match "*") and their denies carry conditions (so they
would always apply). ``PolicyEnforcer`` keeps moto's pipeline and replaces only the final
evaluation step: it works out the request's resource ARN and condition context from the
request and moto's state (parameter tags, group tags, the caller's instance), evaluates the
policies moto holds with tests/fakes/iam_policy.py, records the outcome, and raises moto's own
AccessDenied when the answer is not Allow.

What it cannot see: calls AWS services make on the caller's behalf (SSM -> KMS), and the
Lambda runtime's log writes. Tests list those as not exercisable and assert them on the
documents instead.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from moto.autoscaling.models import autoscaling_backends
from moto.iam import access_control
from moto.iam.models import iam_backends
from moto.ssm.models import ssm_backends

from tests.fakes.iam_policy import Evaluation, Request, evaluate

# IAM authorizes batch calls as their single-item action; moto reports the API name.
ACTION_ALIASES = {
    "sqs:SendMessageBatch": "sqs:SendMessage",
    "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
}
SERVICE_PREFIXES = {"monitoring": "cloudwatch"}


@dataclass(frozen=True)
class Call:
    principal: str  # "role/<name>" or "user/<name>"
    session: str | None
    action: str
    resource: str
    evaluation: Evaluation


class PolicyEnforcer:
    """Replaces moto's policy evaluation while installed (see the module docstring)."""

    def __init__(self, account_id: str, region: str, partition: str = "aws") -> None:
        self.account_id = account_id
        self.region = region
        self.partition = partition
        self.calls: list[Call] = []
        self.moto_check: Any = None  # moto's own evaluation, while installed

    # -- what tests read ----------------------------------------------------------------------

    def denied(self, principal: str | None = None) -> list[Call]:
        return [
            c
            for c in self.calls
            if not c.evaluation.allowed and (principal is None or c.principal == principal)
        ]

    def used(self, principal: str) -> set[tuple[str, str]]:
        """(statement Sid, action) pairs that allowed a call of ``principal``."""
        out: set[tuple[str, str]] = set()
        for call in self.calls:
            if call.principal == principal and call.evaluation.allowed:
                for ref in call.evaluation.allowed_by:
                    out.add((ref.sid, call.action))
        return out

    def actions(self, principal: str) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for call in self.calls:
            if call.principal == principal:
                counts[call.action] += 1
        return dict(counts)

    # -- installation ---------------------------------------------------------------------------

    @contextmanager
    def installed(self) -> Iterator[PolicyEnforcer]:
        enforcer = self
        original = access_control.IAMRequestBase.check_action_permitted
        self.moto_check = original

        def check_action_permitted(request: Any, resource: str) -> None:
            enforcer._check(request, resource)

        access_control.IAMRequestBase.check_action_permitted = check_action_permitted
        try:
            yield self
        finally:
            access_control.IAMRequestBase.check_action_permitted = original

    # -- evaluation -----------------------------------------------------------------------------

    def _check(self, request: Any, moto_resource: str) -> None:
        service, _, name = request._action.partition(":")
        action = f"{SERVICE_PREFIXES.get(service, service)}:{name}"
        action = ACTION_ALIASES.get(action, action)
        if action == "sts:GetCallerIdentity":
            return
        key = request._access_key
        principal, session, policies = self._principal(key)
        params = _params(request)
        resource, context = self._resource(action, params, moto_resource)
        context.setdefault(
            "aws:PrincipalArn", f"arn:{self.partition}:iam::{self.account_id}:{principal}"
        )
        if session and session.startswith("i-"):
            # EC2 fills this in for requests signed with an instance's role credentials.
            context["ec2:SourceInstanceARN"] = (
                f"arn:{self.partition}:ec2:{self.region}:{self.account_id}:instance/{session}"
            )
        evaluation = evaluate(policies, Request(action, resource, context))
        self.calls.append(Call(principal, session, action, resource, evaluation))
        if not evaluation.allowed:
            request._raise_access_denied()

    def _principal(self, key: Any) -> tuple[str, str | None, dict[str, dict[str, Any]]]:
        backend = iam_backends[self.account_id]["global"]
        policies: dict[str, dict[str, Any]] = {}
        if isinstance(key, access_control.AssumedRoleAccessKey):
            role = backend.get_role(key._owner_role_name)
            for name, document in role.policies.items():
                policies[name] = _document(document)
            for arn, policy in role.managed_policies.items():
                policies[arn] = _document(_default_version(policy))
            return f"role/{role.name}", key._session_name, policies
        user = backend.get_user(key._owner_user_name)
        for name, document in user.policies.items():
            policies[name] = _document(document)
        return f"user/{user.name}", None, policies

    def _resource(
        self, action: str, params: dict[str, Any], moto_resource: str
    ) -> tuple[str, dict[str, Any]]:
        service = action.split(":", 1)[0]
        context: dict[str, Any] = {}
        if service in ("sqs", "s3", "iam", "sts"):
            return moto_resource, context
        arn_base = f"arn:{self.partition}:{service}:{self.region}:{self.account_id}"
        if service == "ssm":
            name = params.get("Name") or params.get("ResourceId") or params.get("Path")
            if not name or action == "ssm:DescribeParameters":
                return "*", context
            name = name if name.startswith("/") else f"/{name}"
            tags = self._ssm_tags(name)
            for k, v in tags.items():
                context[f"ssm:resourceTag/{k}"] = v
            request_tags = {t["Key"]: t["Value"] for t in params.get("Tags") or []}
            for k, v in request_tags.items():
                context[f"aws:RequestTag/{k}"] = v
            if request_tags:
                context["aws:TagKeys"] = list(request_tags)
            return f"{arn_base}:parameter{name}", context
        if service == "autoscaling":
            group = self._asg(params)
            if group is None:
                return "*", context
            for tag in group.tags:
                context[f"autoscaling:ResourceTag/{tag['Key']}"] = tag["Value"]
            return group.arn, context
        if service == "dynamodb":
            table = params.get("TableName")
            if not table:
                return "*", context
            arn = f"{arn_base}:table/{table}"
            if params.get("IndexName"):
                arn += f"/index/{params['IndexName']}"
            return arn, context
        if service == "cloudwatch":
            if params.get("Namespace"):
                context["cloudwatch:namespace"] = params["Namespace"]
            return "*", context
        return "*", context  # ec2 Describe*: no resource-level permissions

    def _ssm_tags(self, name: str) -> dict[str, str]:
        backend = ssm_backends[self.account_id][self.region]
        if name not in backend._parameters:
            return {}
        return dict(backend.list_tags_for_resource("Parameter", name))

    def _asg(self, params: dict[str, Any]) -> Any:
        backend = autoscaling_backends[self.account_id][self.region]
        name = params.get("AutoScalingGroupName")
        if isinstance(name, list):
            name = name[0] if name else None
        if name:
            return backend.autoscaling_groups.get(name)
        instance_id = params.get("InstanceId")
        if instance_id:
            for group in backend.autoscaling_groups.values():
                if any(s.instance.id == instance_id for s in group.instance_states):
                    return group
            # Gone already: the caller still names a group of this account by the instance.
            return None
        return None


def _default_version(policy: Any) -> Any:
    return next(v.document for v in policy.versions if v.is_default)


def _document(document: Any) -> dict[str, Any]:
    return json.loads(document) if isinstance(document, str) else dict(document)


def _params(request: Any) -> dict[str, Any]:
    body = request._body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str) and body.strip().startswith("{"):
        try:
            return json.loads(body)
        except json.JSONDecodeError:
            pass
    data = request._data
    if isinstance(data, dict) and data:
        flat: dict[str, Any] = {}
        for k, v in data.items():
            flat[k] = v[0] if isinstance(v, list) and len(v) == 1 else v
        return flat
    if isinstance(body, str) and "=" in body:
        return {k: v[0] for k, v in parse_qs(body).items()}
    return {}
