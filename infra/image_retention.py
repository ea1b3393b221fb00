"""Baked images that do not pile up: an EC2 Image Builder lifecycle policy over the fleet's recipe.

Every bake leaves an Image Builder image, an AMI and its EBS snapshots; none of them is a
Pulumi resource. The policy (run by Image Builder once a day) deletes, of the images built
from this fleet's recipe, all but the newest ``imageRetention``, with their AMIs and
snapshots:

* selection: the recipe by name, every version (``x.x.x``): the recipe's version is a digest
  of what it holds (infra/image_pipeline.py), so each `pulumi up` that changes it starts a new
  version; no other fleet's recipe has this name (it is derived from the prefix and fleet);
* the rule: DELETE by COUNT. Image Builder counts per recipe version, newest first by creation
  date, and failed or cancelled builds take no place among those kept (AWS user guide, "How
  retention is calculated"). A version that a later `pulumi up` replaced keeps at most
  ``imageRetention`` images; docs/deploy-aws.md says how to remove those;
* never the image the SSM image parameter names: Image Builder writes it when a build's
  distribution succeeds, so it is the newest successful image of its recipe version (a later
  success of any version would have replaced it), the first one kept; ``imageRetention`` is
  at least 2, so two bakes that end out of order still leave it. An image you point the
  parameter at yourself (a rollback) is kept by tagging its AMI ``runner-fleet-keep: true``:
  the rule's AMI exclusion;
* the execution role: trusted by Image Builder only, with AWS's managed lifecycle execution
  policy (infra/iam_images.py says why no narrower one).
"""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws

from fleet.core.config.defaults import IMAGE_KEEP_TAG
from infra.config import FleetConfig
from infra.iam_images import image_lifecycle_trust_policy, lifecycle_execution_policy_arn

# Every version of the recipe (Image Builder's wildcard semantic version).
EVERY_RECIPE_VERSION = "x.x.x"
KEEP_TAG_VALUE = "true"


def image_lifecycle_policy(
    name: str,
    *,
    config: FleetConfig,
    recipe: aws.imagebuilder.ImageRecipe,
    partition: str,
    dns_suffix: str,
    tags: dict[str, str],
    opts: pulumi.ResourceOptions,
) -> aws.imagebuilder.LifecyclePolicy:
    """The execution role, its managed policy, and the lifecycle policy (children of
    ``opts``'s parent)."""
    role = aws.iam.Role(
        f"{name}-lifecycle-role",
        description=f"runner fleet {config.fleet_name}: deletes old baked images",
        assume_role_policy=json.dumps(image_lifecycle_trust_policy(dns_suffix)),
        tags=tags,
        opts=opts,
    )
    execution = aws.iam.RolePolicyAttachment(
        f"{name}-lifecycle-execution",
        role=role.name,
        policy_arn=lifecycle_execution_policy_arn(partition),
        opts=opts,
    )
    return aws.imagebuilder.LifecyclePolicy(
        f"{name}-lifecycle",
        name=config.names.image_builder,
        description=(
            f"runner fleet {config.fleet_name}: keep the newest {config.image_retention} baked "
            "images per recipe version; delete older ones with their AMIs and snapshots"
        ),
        execution_role=role.arn,
        resource_type="AMI_IMAGE",
        status="ENABLED",
        resource_selection=aws.imagebuilder.LifecyclePolicyResourceSelectionArgs(
            recipes=[
                aws.imagebuilder.LifecyclePolicyResourceSelectionRecipeArgs(
                    name=recipe.name, semantic_version=EVERY_RECIPE_VERSION
                )
            ]
        ),
        policy_details=[delete_all_but_newest(config.image_retention)],
        tags=tags,
        # The role must be able to act before the first execution.
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[execution])),
    )


def delete_all_but_newest(retention: int) -> aws.imagebuilder.LifecyclePolicyPolicyDetailArgs:
    """The one rule: DELETE all but the newest ``retention`` images (per recipe version), with
    their AMIs and snapshots; an AMI tagged ``IMAGE_KEEP_TAG: true`` is skipped."""
    return aws.imagebuilder.LifecyclePolicyPolicyDetailArgs(
        action=aws.imagebuilder.LifecyclePolicyPolicyDetailActionArgs(
            type="DELETE",
            include_resources=aws.imagebuilder.LifecyclePolicyPolicyDetailActionIncludeResourcesArgs(
                amis=True, snapshots=True
            ),
        ),
        filter=aws.imagebuilder.LifecyclePolicyPolicyDetailFilterArgs(
            type="COUNT", value=retention
        ),
        exclusion_rules=aws.imagebuilder.LifecyclePolicyPolicyDetailExclusionRulesArgs(
            amis=aws.imagebuilder.LifecyclePolicyPolicyDetailExclusionRulesAmisArgs(
                tag_map={IMAGE_KEEP_TAG: KEEP_TAG_VALUE}
            )
        ),
    )
