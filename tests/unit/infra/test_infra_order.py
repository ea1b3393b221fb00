"""Creation and deletion order, as the engine sees it under the mocks.

The engine creates a resource only after the resources it depends on, and deletes it before
them. The mock monitor records every RegisterResource request in arrival order with the URNs
it depends on, so these tests read the order and the edges the real engine would get.

What must hold: the control plane (functions, rules, queue, ledger) exists before the group's
first launch, whose lifecycle hooks it answers, and outlives the group on destroy, so that
draining instances are deregistered by the terminate hook.
"""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.unit

GROUP = "aws:autoscaling/group:Group"
CONTROL_PLANE = "fleet:control_plane:ControlPlane"

SHAPES = {
    "example": {},
    "instances at once": {"minSize": 2},
    "warm pool": {"warmPoolSize": 2, "instanceTypes": ["m7i.xlarge"], "imagePipeline": False},
}


def _group_and_control_plane(graph):
    group = graph.registration(GROUP, "main-group-asg")
    control_plane = graph.registration(CONTROL_PLANE, "main-control-plane")
    return group, graph.descendants(control_plane.urn)


def _transitive_dependencies(graph, urn: str) -> set[str]:
    by_urn = {r.urn: r for r in graph.registrations}
    seen: set[str] = set()
    todo = [urn]
    while todo:
        for dependency in by_urn[todo.pop()].dependencies:
            if dependency not in seen:
                seen.add(dependency)
                todo.append(dependency)
    return seen


@pytest.mark.parametrize("overrides", SHAPES.values(), ids=SHAPES.keys())
def test_the_control_plane_is_registered_before_the_group(shared_graph, overrides):
    graph = shared_graph(overrides)
    group, control_plane = _group_and_control_plane(graph)
    order = [r.urn for r in graph.registrations]
    types = {r.typ for r in control_plane}
    assert {
        "aws:lambda/function:Function",
        "aws:cloudwatch/eventRule:EventRule",
        "aws:cloudwatch/eventTarget:EventTarget",
        "aws:lambda/permission:Permission",
        "aws:sqs/queue:Queue",
        "aws:dynamodb/table:Table",
    } <= types
    assert max(order.index(r.urn) for r in control_plane) < order.index(group.urn)


@pytest.mark.parametrize("overrides", SHAPES.values(), ids=SHAPES.keys())
def test_the_group_depends_on_every_control_plane_resource(shared_graph, overrides):
    # Destroy runs dependency edges backwards: the group goes first, the functions after.
    graph = shared_graph(overrides)
    group, control_plane = _group_and_control_plane(graph)
    missing = {(r.typ, r.name) for r in control_plane if r.urn not in group.dependencies}
    assert missing == set()


def test_no_control_plane_resource_depends_on_the_group(shared_graph):
    graph = shared_graph(
        {"warmPoolSize": 2, "instanceTypes": ["m7i.xlarge"], "imagePipeline": False}
    )
    group, control_plane = _group_and_control_plane(graph)
    for resource in control_plane:
        assert group.urn not in _transitive_dependencies(graph, resource.urn), resource.name


def test_the_lifecycle_rule_and_policies_name_the_group_by_its_fixed_name(default_graph):
    graph = default_graph
    group = graph.one(GROUP)
    rule = graph.named("aws:cloudwatch/eventRule:EventRule", "main-control-plane-lifecycle-events")
    assert json.loads(rule["eventPattern"])["detail"]["AutoScalingGroupName"] == [group["name"]]
    lifecycle = graph.named("aws:lambda/function:Function", "main-control-plane-lifecycle")
    assert lifecycle["environment"]["variables"]["FLEET_ASG_NAME"] == group["name"]
    policy = json.loads(
        graph.named("aws:iam/rolePolicy:RolePolicy", "main-control-plane-lifecycle-policy")[
            "policy"
        ]
    )
    (complete,) = [s for s in policy["Statement"] if s["Sid"] == "CompleteLifecycleActions"]
    assert complete["Resource"].endswith(f":autoScalingGroupName/{group['name']}")


def test_the_group_waits_for_its_playbooks_and_instance_role(default_graph):
    graph = default_graph
    group = graph.registration(GROUP, "main-group-asg")
    bundle = graph.registration("aws:s3/bucketObjectv2:BucketObjectv2", "main-bundle-playbooks")
    policy = graph.registration("aws:iam/rolePolicy:RolePolicy", "main-instance-policy")
    assert {bundle.urn, policy.urn} <= group.dependencies


@pytest.mark.parametrize(
    "overrides", [{}, {"warmPoolSize": 2, "instanceTypes": ["m7i.xlarge"], "imagePipeline": False}]
)
def test_destroy_drains_the_group_through_its_terminate_hook(shared_graph, overrides):
    # A forced delete drops pending lifecycle actions; a drained group terminates each
    # instance through the terminate hook, which the control plane (still there) answers.
    group = shared_graph(overrides).one(GROUP)
    assert group["forceDelete"] is False
    assert group["forceDeleteWarmPool"] is False
    hooks = {h["lifecycleTransition"] for h in group["initialLifecycleHooks"]}
    assert "autoscaling:EC2_INSTANCE_TERMINATING" in hooks
