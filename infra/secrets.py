"""Customer-managed KMS key (created, or an existing one) and the GitHub App parameters.

Each secret becomes an SSM SecureString encrypted with the fleet's own key (never the
account's default `aws/ssm` key), so who can decrypt is decided by this key's policy and the
IAM policies that name it. Values arrive as secret Outputs and stay secret in the state.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import pulumi
import pulumi_aws as aws

from infra.config import GithubAppSecrets
from infra.iam import kms_key_policy


class FleetSecretsArgs:
    """Inputs of FleetSecrets."""

    def __init__(
        self,
        *,
        fleet_name: str,
        alias_name: str,
        partition: str,
        account_id: str,
        existing_kms_key_arn: str | None,
        parameter_names: Mapping[str, str],
        github_app: GithubAppSecrets,
        tags: dict[str, str],
    ) -> None:
        self.fleet_name = fleet_name
        self.alias_name = alias_name
        self.partition = partition
        self.account_id = account_id
        self.existing_kms_key_arn = existing_kms_key_arn
        self.parameter_names = parameter_names
        self.github_app = github_app
        self.tags = tags


class FleetSecrets(pulumi.ComponentResource):
    """The fleet's KMS key and the GitHub App SecureString parameters (the webhook secret's
    only in webhook mode)."""

    def __init__(
        self, name: str, args: FleetSecretsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("fleet:secrets:FleetSecrets", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        if args.existing_kms_key_arn:
            self.kms_key_arn: pulumi.Output[str] = pulumi.Output.from_input(
                args.existing_kms_key_arn
            )
        else:
            key = aws.kms.Key(
                f"{name}-key",
                description=f"runner fleet {args.fleet_name}: JIT configs, GitHub App, bundle",
                enable_key_rotation=True,
                deletion_window_in_days=30,
                policy=json.dumps(
                    kms_key_policy(partition=args.partition, account_id=args.account_id)
                ),
                tags=args.tags,
                opts=child,
            )
            aws.kms.Alias(
                f"{name}-alias",
                name=args.alias_name,
                target_key_id=key.key_id,
                opts=child,
            )
            self.kms_key_arn = key.arn

        values = {
            "app_id": args.github_app.app_id,
            "private_key": args.github_app.private_key,
            "webhook_secret": args.github_app.webhook_secret,  # None in scaleSet mode
        }
        self.parameter_arns: dict[str, pulumi.Output[str]] = {}
        for field, value in values.items():
            if value is None:
                continue
            parameter = aws.ssm.Parameter(
                f"{name}-{field.replace('_', '-')}",
                name=args.parameter_names[field],
                description=f"GitHub App {field.replace('_', ' ')} (control plane only)",
                type="SecureString",
                key_id=self.kms_key_arn,
                value=pulumi.Output.secret(value),
                tags=args.tags,
                opts=child,
            )
            self.parameter_arns[field] = parameter.arn
        self.parameter_names = {
            field: name
            for field, name in args.parameter_names.items()
            if values.get(field) is not None
        }
        self.register_outputs(
            {"kms_key_arn": self.kms_key_arn, "parameter_names": self.parameter_names}
        )
