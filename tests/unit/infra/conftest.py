"""Installs the Pulumi mocks, then imports infra: the order Pulumi's unit testing needs.

`build_graph` runs the real program (read_config -> RunnerFleet -> stack outputs) against the
mocks with config given through `pulumi.runtime.set_all_config`, and returns every resource
the program registered with its inputs, plus the resolved stack outputs.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pulumi
import pytest

from tests.fakes import pulumi_stack_speed

PROJECT_ROOT = Path(__file__).resolve().parents[3]
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

from infra_mocks import (  # noqa: E402
    ACCOUNT,
    KMS_KEY_ARN,
    MOCKS,
    MONITOR,
    PROJECT,
    REGION,
    SECRETS,
    FleetMocks,
    Graph,
    example_settings,
    fake_pip_install,
    make_project,
    run_program,
    set_stack_config,
)

pulumi.runtime.set_mocks(MOCKS, project=PROJECT, stack="unit", preview=False, monitor=MONITOR)
pulumi_stack_speed.install()

# Only now may infra be imported.
from infra.config import required_secret_keys  # noqa: E402
from infra.iam import instance_policy  # noqa: E402


@pytest.fixture
def playbooks_dir(tmp_path: Path) -> Path:
    return make_project(tmp_path)


@pytest.fixture(autouse=True)
def lambda_dependencies(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    """pip stand-in for the control plane package: one small module, no network, no wait.
    Returns the (requirements..., platform, python) of each install it was asked for."""
    calls: list[tuple[str, ...]] = []
    monkeypatch.setattr("infra.lambda_package.pip_install", fake_pip_install(calls))
    return calls


@pytest.fixture
def mocks() -> Iterator[FleetMocks]:
    MOCKS.reset()
    MOCKS.image_architecture = None
    yield MOCKS
    # The mocks are global: a test that changed them leaves them as the next one expects.
    MOCKS.reset()
    MOCKS.image_architecture = None


def build(
    mocks: FleetMocks,
    project_root: Path,
    build_dir: Path,
    overrides: dict[str, Any] | None = None,
    drop: tuple[str, ...] = (),
    secrets: dict[str, str] | None = None,
) -> Graph:
    """Run the program with the example settings plus ``overrides``; return its Graph. The
    secrets are those the settings' githubMode needs, unless ``secrets`` says otherwise."""
    settings = {**example_settings(), **(overrides or {})}
    for key in drop:
        settings.pop(key, None)
    if secrets is None:
        needed = required_secret_keys(settings.get("githubMode"))
        secrets = {key: value for key, value in SECRETS.items() if key in needed}
    set_stack_config(settings, secrets)
    mocks.reset()
    fleet, resolved = run_program(build_dir, project_root=project_root)
    return Graph(
        list(mocks.resources), resolved, fleet, list(mocks.registrations), list(mocks.calls)
    )


@pytest.fixture
def build_graph(mocks: FleetMocks, playbooks_dir: Path, tmp_path: Path):
    """Run the program with the example settings plus `overrides`; return its Graph."""

    def build_one(
        overrides: dict[str, Any] | None = None,
        drop: tuple[str, ...] = (),
        secrets: dict[str, str] | None = None,
    ) -> Graph:
        return build(mocks, playbooks_dir.parent, tmp_path / "build", overrides, drop, secrets)

    return build_one


@pytest.fixture(scope="session")
def shared_graph(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Graph]:
    """The program with the example settings plus ``overrides`` (less ``drop``), built once
    per configuration in each test process, in a stand-in project nobody changes: for the
    tests that only read the graph (a program run costs about 0.25 s of CPU, and many tests
    read the same configuration). A test that changes the project or the mocks, or looks at
    what a build wrote, builds its own with ``build_graph``."""
    root = tmp_path_factory.mktemp("shared-project")
    make_project(root)
    graphs: dict[str, Graph] = {}

    def shared(overrides: dict[str, Any] | None = None, drop: tuple[str, ...] = ()) -> Graph:
        key = json.dumps([overrides or {}, sorted(drop)], sort_keys=True)
        if key not in graphs:
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr("infra.lambda_package.pip_install", fake_pip_install([]))
                MOCKS.reset()
                MOCKS.image_architecture = None
                # Each configuration its own build directory: a graph's files stay its own.
                graphs[key] = build(MOCKS, root, root / f"build-{len(graphs)}", overrides, drop)
            MOCKS.reset()
            MOCKS.image_architecture = None
        return graphs[key]

    return shared


@pytest.fixture(scope="session")
def default_graph(shared_graph: Callable[..., Graph]) -> Graph:
    """The program with the example settings, built once per test process: for the many
    tests that only read it (each one building it again took most of this layer's time)."""
    return shared_graph()


@pytest.fixture
def example_instance_policy() -> Callable[[str], dict[str, Any]]:
    """The inline policy the example fleet's instance role gets under the mocks, for a bundle
    key (test_infra_policies proves its properties; test_infra_graph that it is deployed)."""

    def policy(bundle_key: str) -> dict[str, Any]:
        return instance_policy(
            partition="aws",
            region=REGION,
            account_id=ACCOUNT,
            parameter_root="/runner-fleet/main",
            kms_key_arn=KMS_KEY_ARN,
            bundle_bucket="main-bundle-bucket-a1b2c3d",
            bundle_key=bundle_key,
            asg_name="runner-fleet-main",
            fleet_name="main",
        )

    return policy
