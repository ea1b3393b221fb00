"""Baked images that do not pile up (infra/image_retention.py), under Pulumi's mocks: the
lifecycle policy keeps the newest imageRetention images of this fleet's recipe and deletes
older ones with their AMIs and snapshots; its role is Image Builder's only; the setting is
checked by the config model with the command that fixes it.

What AWS does with the policy (once a day, counting per recipe version, failed builds taking
no place) is its documented behaviour, not something these tests can run.
"""

from __future__ import annotations

import json

import pytest
from infra_mocks import ACCOUNT, example_settings

from fleet.core.config.defaults import IMAGE_KEEP_TAG
from infra.config import ConfigError, parse_config
from infra.iam_images import image_lifecycle_trust_policy, lifecycle_execution_policy_arn

pytestmark = pytest.mark.unit

LIFECYCLE = "aws:imagebuilder/lifecyclePolicy:LifecyclePolicy"
RECIPE = "aws:imagebuilder/imageRecipe:ImageRecipe"
ROLE = "aws:iam/role:Role"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
LIFECYCLE_ROLE = "main-image-lifecycle-role"
# The mocks' autoname of it (logical name and a suffix, as Pulumi does).
LIFECYCLE_ROLE_NAME = f"{LIFECYCLE_ROLE}-a1b2c3d"


def _policy(graph) -> dict:
    return graph.one(LIFECYCLE)


def test_the_policy_selects_this_fleets_recipe_and_only_it(default_graph):
    policy = _policy(default_graph)
    recipe = default_graph.one(RECIPE)
    assert policy["name"] == recipe["name"] == "runner-fleet-main-image"
    assert policy["resourceType"] == "AMI_IMAGE"
    assert policy["status"] == "ENABLED"
    # By the recipe's name, every version of it (each `pulumi up` that changes the recipe
    # makes a new version); no tag selection, which could reach another fleet's images.
    assert policy["resourceSelection"] == {
        "recipes": [{"name": recipe["name"], "semanticVersion": "x.x.x"}]
    }


def test_the_policy_keeps_the_newest_n_and_deletes_older_amis_and_snapshots(default_graph):
    (rule,) = _policy(default_graph)["policyDetails"]
    assert rule["action"] == {
        "type": "DELETE",
        "includeResources": {"amis": True, "snapshots": True},
    }
    assert rule["filter"] == {"type": "COUNT", "value": 3}
    # An AMI tagged to be kept (a rollback target) is skipped whatever its place.
    assert rule["exclusionRules"] == {"amis": {"tagMap": {IMAGE_KEEP_TAG: "true"}}}
    assert "newest 3" in _policy(default_graph)["description"]


def test_image_retention_sets_how_many_are_kept(build_graph):
    graph = build_graph({"imageRetention": 7})
    (rule,) = _policy(graph)["policyDetails"]
    assert rule["filter"] == {"type": "COUNT", "value": 7}


def test_another_fleet_selects_its_own_recipe(build_graph):
    graph = build_graph({"fleetName": "arm"})
    selected = _policy(graph)["resourceSelection"]["recipes"]
    assert selected == [{"name": "runner-fleet-arm-image", "semanticVersion": "x.x.x"}]
    assert graph.one(RECIPE)["name"] == "runner-fleet-arm-image"


def test_its_role_is_trusted_by_image_builder_only_with_the_managed_policy(default_graph):
    graph = default_graph
    role = graph.named(ROLE, LIFECYCLE_ROLE)
    trust = json.loads(role["assumeRolePolicy"])
    assert trust == image_lifecycle_trust_policy("amazonaws.com")
    (statement,) = trust["Statement"]
    assert statement["Principal"] == {"Service": "imagebuilder.amazonaws.com"}
    assert (statement["Effect"], statement["Action"]) == ("Allow", "sts:AssumeRole")
    attachment = graph.named(ATTACHMENT, "main-image-lifecycle-execution")
    assert attachment["policyArn"] == (
        "arn:aws:iam::aws:policy/service-role/EC2ImageBuilderLifecycleExecutionPolicy"
    )
    assert attachment["policyArn"] == lifecycle_execution_policy_arn("aws")
    assert attachment["role"] == LIFECYCLE_ROLE_NAME
    # No other permission on the role (named by its name or its id), and the policy runs
    # with exactly this role.
    refs = {LIFECYCLE_ROLE_NAME, f"{LIFECYCLE_ROLE}-id"}
    granted = [
        r.name
        for typ in (ATTACHMENT, "aws:iam/rolePolicy:RolePolicy")
        for r in graph.of_type(typ)
        if r.inputs.get("role") in refs
    ]
    assert granted == ["main-image-lifecycle-execution"]
    assert _policy(graph)["executionRole"] == f"arn:aws:iam::{ACCOUNT}:role/{LIFECYCLE_ROLE_NAME}"
    # The policy is written once the role may act.
    edge = graph.registration(LIFECYCLE, "main-image-lifecycle")
    assert graph.registration(ATTACHMENT, "main-image-lifecycle-execution").urn in (
        edge.dependencies
    )


def test_the_managed_policy_follows_the_partition():
    assert lifecycle_execution_policy_arn("aws-cn") == (
        "arn:aws-cn:iam::aws:policy/service-role/EC2ImageBuilderLifecycleExecutionPolicy"
    )
    trust = image_lifecycle_trust_policy("amazonaws.com.cn")
    assert trust["Statement"][0]["Principal"] == {"Service": "imagebuilder.amazonaws.com.cn"}


def test_without_the_pipeline_there_is_no_lifecycle_policy(shared_graph):
    graph = shared_graph({"imagePipeline": False})
    assert graph.of_type(LIFECYCLE) == []
    assert all(r.name != LIFECYCLE_ROLE for r in graph.of_type(ROLE))


def test_its_names_are_derived_and_checked_by_the_config_model():
    cfg = parse_config(example_settings())
    assert cfg.image_retention == 3
    assert ("image_builder", "runner-fleet-main-image") in cfg.names.every_name()
    assert ("iam_role", LIFECYCLE_ROLE) in cfg.names.autonamed()
    # The Image Builder name is refused with the others when the prefix makes it too long.
    with pytest.raises(ConfigError, match="Image Builder resource name"):
        parse_config({**example_settings(), "ssmParameterPrefix": "p" * 120})


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (1, "1 is outside 2-50; set a value in that range"),
        (51, "51 is outside 2-50; set a value in that range"),
        (0, "0 is outside 2-50"),
        ("three", "expected a whole number, got 'three'"),
        (2.5, "expected a whole number, got 2.5"),
        (True, "expected a whole number, got True"),
    ],
)
def test_image_retention_out_of_range_is_refused_with_the_fix(value, message):
    with pytest.raises(ConfigError) as refused:
        parse_config({**example_settings(), "imageRetention": value})
    (problem,) = refused.value.problems
    assert problem[0] == "imageRetention"
    assert message in problem[1]
    assert "(fix: pulumi config set imageRetention <2-50>)" in problem[1]


@pytest.mark.parametrize("value", [2, 3, 50])
def test_image_retention_within_range_is_accepted(value):
    assert parse_config({**example_settings(), "imageRetention": value}).image_retention == value


def test_the_keep_tag_is_refused_among_the_stacks_tags():
    with pytest.raises(ConfigError) as refused:
        parse_config({**example_settings(), "tags": {IMAGE_KEEP_TAG: "true"}})
    (problem,) = refused.value.problems
    assert problem[0] == "tags"
    assert "would keep every image" in problem[1]
