"""A private S3 bucket: owner-enforced, no public access, SSE-KMS under the fleet's key.

What the playbook bundle's bucket and the SSM file-transfer bucket share; each adds its own
lifecycle, versioning and policy. Resource names are `<prefix>-bucket`, `-ownership`,
`-public-access` and `-encryption`.
"""

from __future__ import annotations

import dataclasses

import pulumi
import pulumi_aws as aws


@dataclasses.dataclass(frozen=True)
class PrivateBucket:
    bucket: aws.s3.Bucket
    ownership: aws.s3.BucketOwnershipControls
    public_access: aws.s3.BucketPublicAccessBlock
    encryption: aws.s3.BucketServerSideEncryptionConfiguration


def private_bucket(
    prefix: str,
    *,
    kms_key_arn: pulumi.Input[str],
    tags: dict[str, str],
    opts: pulumi.ResourceOptions,
) -> PrivateBucket:
    """Declare the bucket and its three locks as children given by ``opts``."""
    bucket = aws.s3.Bucket(f"{prefix}-bucket", force_destroy=True, tags=tags, opts=opts)
    ownership = aws.s3.BucketOwnershipControls(
        f"{prefix}-ownership",
        bucket=bucket.id,
        rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
        opts=opts,
    )
    public_access = aws.s3.BucketPublicAccessBlock(
        f"{prefix}-public-access",
        bucket=bucket.id,
        block_public_acls=True,
        block_public_policy=True,
        ignore_public_acls=True,
        restrict_public_buckets=True,
        opts=opts,
    )
    encryption = aws.s3.BucketServerSideEncryptionConfiguration(
        f"{prefix}-encryption",
        bucket=bucket.id,
        rules=[
            aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                    sse_algorithm="aws:kms", kms_master_key_id=kms_key_arn
                ),
                bucket_key_enabled=True,
            )
        ],
        opts=opts,
    )
    return PrivateBucket(bucket, ownership, public_access, encryption)
