"""End-to-end fixtures: a real engine, real runner-host containers, real playbooks.

Nothing here skips: a machine without a working engine fails these tests (CI
installs and starts one through `python -m fleet bootstrap`).

The fleet's modules, docker-py and the fakes are imported by the fixtures, not here: pytest
imports this file in every process, pytest-xdist's controller too, which runs no test.
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from fleet.local.engine.bootstrap import Bootstrap
    from tests.e2e.engine_objects import EngineObjects
    from tests.fakes.runner_agent import ServedAgent


@pytest.fixture(scope="session")
def boot() -> Bootstrap:
    from fleet.local.engine.bootstrap import bootstrap

    return bootstrap(lambda message: print(f"bootstrap: {message}"))


@pytest.fixture(scope="session", autouse=True)
def engine_left_as_found(boot: Bootstrap) -> Iterator[None]:
    """The whole e2e session leaves no container, volume, network or image on the engine,
    labelled or not, beyond the images the project keeps on purpose (engine_objects)."""
    from tests.e2e import engine_objects

    before = engine_objects.snapshot()
    yield
    left = engine_objects.snapshot().added_since(before)
    assert not left, f"the e2e session left these on the machine's engine: {left}"


@pytest.fixture(scope="module")
def engine_before(boot: Bootstrap) -> EngineObjects:
    """The engine's objects before this module's fleet existed."""
    from tests.e2e import engine_objects

    return engine_objects.snapshot()


@pytest.fixture(scope="module")
def fleet_name(engine_before: EngineObjects) -> Iterator[str]:
    from fleet.local import docker as backend
    from fleet.local.serve.jobs_file import default_path as default_jobs_path

    name = f"e2e-{secrets.token_hex(3)}"
    yield name
    backend.remove_fleet(name)
    # What `down` keeps on purpose (the fleet's benchmark baseline) is the test's to remove.
    shutil.rmtree(default_jobs_path(name).parent, ignore_errors=True)


@pytest.fixture(scope="module")
def agent(fleet_name: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedAgent]:
    """The FAKE runner agent, served on this machine's address on the fleet network."""
    from fleet.local import docker as backend
    from tests.fakes.runner_agent import serve_agent

    backend.ensure_network(fleet_name)
    directory = tmp_path_factory.mktemp("agent")
    with serve_agent(directory, backend.network_gateway(fleet_name)) as served:
        yield served


def start_booted_host(boot: Bootstrap, fleet_name: str) -> str:
    from fleet.local import docker as backend

    name = f"{fleet_name}-runner-{secrets.token_hex(3)}"
    spec = backend.HostSpec(
        name=name,
        fleet=fleet_name,
        image=boot.images.runner_host,
        preload_dir=boot.images.preload_dir,
    )
    backend.wait_until_booted(backend.start_host(spec, boot.engine.cgroup_version))
    return name


@pytest.fixture(scope="module")
def host(boot: Bootstrap, fleet_name: str) -> str:
    return start_booted_host(boot, fleet_name)


@pytest.fixture(scope="module")
def local_vars(boot: Bootstrap, agent: ServedAgent) -> dict:
    """The variables `python -m fleet up` would pass, with the fake agent."""
    from fleet.local.commands import UpOptions, local_extravars

    options = UpOptions(agent_url=agent.url, agent_sha256=agent.sha256)
    return local_extravars(boot, options)


@pytest.fixture(scope="module")
def app_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """A GitHub App key pair for the FAKE GitHub: the private key in a 0600 file (what the
    fleet reads), the public key the fake checks the App's JWTs with."""
    from tests.fakes.github import app_key_pair

    private, public = app_key_pair()
    path = tmp_path_factory.mktemp("app") / "app.pem"
    path.write_bytes(private)
    path.chmod(0o600)
    return path, public
