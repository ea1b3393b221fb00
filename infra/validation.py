"""What validating AWS runners needs: the SSM file-transfer bucket and the operator's policy.

`pytest tests/runner --hosts=ansible://runners --ansible-inventory=playbooks/inventories/
aws_ec2.yml` finds the fleet's running instances by the tags the group propagates to them and
reaches each one through the `amazon.aws.aws_ssm` connection (Session Manager: no inbound
ports, no SSH keys). That connection moves files through an S3 bucket: the controller uploads
and downloads, the instance runs curl against presigned URLs the controller signs. Hence:

* the bucket: private (public access blocked, owner-enforced), SSE-KMS with the fleet's key
  and an S3 Bucket Key, TLS only, not versioned (the connection deletes each file after the
  transfer; a version history would keep copies of whatever was transferred), and objects
  that survive an interrupted transfer expire after a day;
* a managed policy for the operator (a person or the validation workflow's OIDC role): find
  instances, start sessions on this fleet's instances only, move files through this bucket
  under this key. The instance role gets nothing for it;
* the tag `runner-fleet-ssm-bucket` on every instance (set by infra/fleet.py on the group),
  which the inventory turns into `ansible_aws_ssm_bucket_name`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import pulumi
import pulumi_aws as aws

from infra.buckets import private_bucket
from infra.config import FLEET_TAG
from infra.iam import bundle_bucket_policy, validation_operator_policy

# An object left by an interrupted transfer is gone the next day.
TRANSFER_EXPIRY_DAYS = 1


def inventory_filters(fleet_name: str) -> dict[str, str]:
    """The aws_ec2 inventory's filters for this fleet: what its instances are tagged with."""
    return {f"tag:{FLEET_TAG}": fleet_name, "instance-state-name": "running"}


class ValidationAccessArgs:
    """Inputs of ValidationAccess."""

    def __init__(
        self,
        *,
        fleet_name: str,
        partition: str,
        region: str,
        account_id: str,
        kms_key_arn: pulumi.Input[str],
        tags: Mapping[str, str],
    ) -> None:
        self.fleet_name = fleet_name
        self.partition = partition
        self.region = region
        self.account_id = account_id
        self.kms_key_arn = kms_key_arn
        self.tags = dict(tags)


class ValidationAccess(pulumi.ComponentResource):
    """The SSM file-transfer bucket and the validation operator's managed policy."""

    # Long on purpose: a component's resources declared in dependency order in its constructor, as
    # Pulumi's examples do.
    def __init__(
        self, name: str, args: ValidationAccessArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("fleet:validation:ValidationAccess", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        locked = private_bucket(
            f"{name}-ssm", kms_key_arn=args.kms_key_arn, tags=args.tags, opts=child
        )
        bucket, ownership, public_access = locked.bucket, locked.ownership, locked.public_access
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-ssm-lifecycle",
            bucket=bucket.id,
            rules=[
                aws.s3.BucketLifecycleConfigurationRuleArgs(
                    id="expire-leftover-transfers",
                    status="Enabled",
                    filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                    expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(
                        days=TRANSFER_EXPIRY_DAYS
                    ),
                    abort_incomplete_multipart_upload=aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                        days_after_initiation=TRANSFER_EXPIRY_DAYS
                    ),
                )
            ],
            opts=child,
        )
        aws.s3.BucketPolicy(
            f"{name}-ssm-policy",
            bucket=bucket.id,
            policy=bucket.arn.apply(lambda arn: json.dumps(bundle_bucket_policy(bucket_arn=arn))),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[public_access, ownership]),
        )
        self.operator_policy_document = pulumi.Output.all(bucket.arn, args.kms_key_arn).apply(
            lambda values: json.dumps(
                validation_operator_policy(
                    partition=args.partition,
                    region=args.region,
                    account_id=args.account_id,
                    fleet_name=args.fleet_name,
                    transfer_bucket_arn=values[0],
                    kms_key_arn=values[1],
                )
            )
        )
        operator_policy = aws.iam.Policy(
            f"{name}-operator",
            description=(
                f"runner fleet {args.fleet_name}: validate its runners over Session Manager "
                "(aws_ec2 inventory, aws_ssm connection)"
            ),
            policy=self.operator_policy_document,
            tags=args.tags,
            opts=child,
        )
        self.bucket_name = bucket.bucket
        self.bucket_arn = bucket.arn
        self.operator_policy_arn = operator_policy.arn
        self.inventory_filters = inventory_filters(args.fleet_name)
        self.register_outputs(
            {
                "bucket": self.bucket_name,
                "operator_policy_arn": self.operator_policy_arn,
                "inventory_filters": self.inventory_filters,
            }
        )
