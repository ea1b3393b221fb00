"""The job ledger: a DynamoDB table keyed by job (``pk``), with an index of open jobs per fleet
(``fleet.aws.adapters.dynamodb`` reads and writes it)."""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_aws as aws

from infra.config import ResourceNames
from infra.iam_functions import OPEN_JOBS_INDEX


def ledger_table(
    name: str, names: ResourceNames, *, tags: Mapping[str, str], opts: pulumi.ResourceOptions
) -> aws.dynamodb.Table:
    """The table, with expiry (``expires_at``) and point-in-time recovery."""
    return aws.dynamodb.Table(
        f"{name}-ledger",
        name=names.ledger_table,
        billing_mode="PAY_PER_REQUEST",
        hash_key="pk",
        attributes=[
            aws.dynamodb.TableAttributeArgs(name="pk", type="S"),
            aws.dynamodb.TableAttributeArgs(name="open_fleet", type="S"),
            aws.dynamodb.TableAttributeArgs(name="queued_at", type="S"),
        ],
        global_secondary_indexes=[
            aws.dynamodb.TableGlobalSecondaryIndexArgs(
                name=OPEN_JOBS_INDEX,
                key_schemas=[
                    aws.dynamodb.TableGlobalSecondaryIndexKeySchemaArgs(
                        attribute_name="open_fleet", key_type="HASH"
                    ),
                    aws.dynamodb.TableGlobalSecondaryIndexKeySchemaArgs(
                        attribute_name="queued_at", key_type="RANGE"
                    ),
                ],
                projection_type="ALL",
            )
        ],
        ttl=aws.dynamodb.TableTtlArgs(attribute_name="expires_at", enabled=True),
        point_in_time_recovery=aws.dynamodb.TablePointInTimeRecoveryArgs(enabled=True),
        tags=tags,
        opts=opts,
    )
