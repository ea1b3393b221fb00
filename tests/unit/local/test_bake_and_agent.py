"""The bake hash (what re-bakes the fleet's image), and the FAKE agent's job protocol."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from fleet.local.bake import bake_hash
from fleet.local.registration import Registrar
from tests.fakes.runner_agent import build_tarball

pytestmark = pytest.mark.unit


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    root = tmp_path / "playbooks"
    (root / "roles" / "r" / "tasks").mkdir(parents=True)
    (root / "roles" / "r" / "tasks" / "main.yml").write_text("- name: x\n")
    (root / "site.yml").write_text("---\n")
    return root


def test_the_bake_hash_follows_playbooks_variables_and_base_image(recipe):
    base = bake_hash({"a": 1}, "img:1", [recipe])
    assert bake_hash({"a": 1}, "img:1", [recipe]) == base
    assert bake_hash({"a": 2}, "img:1", [recipe]) != base
    assert bake_hash({"a": 1}, "img:2", [recipe]) != base
    (recipe / "roles" / "r" / "tasks" / "main.yml").write_text("- name: y\n")
    assert bake_hash({"a": 1}, "img:1", [recipe]) != base


def test_boot_only_variables_and_caches_do_not_re_bake(recipe):
    base = bake_hash({"a": 1}, "img:1", [recipe])
    boot_only = {"a": 1, "actions_runner_jitconfig": "secret"}
    assert bake_hash(boot_only, "img:1", [recipe]) == base
    # The preload list is baked into the host's preload unit: a change re-bakes.
    preload = [{"name": "debian:trixie", "path": "/var/cache/fleet/preload/debian.tar"}]
    assert bake_hash({"a": 1, "docker_host_preload_images": preload}, "img:1", [recipe]) != base
    (recipe / "roles" / "__pycache__").mkdir()
    (recipe / "roles" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    (recipe / ".ansible").mkdir()
    (recipe / ".ansible" / "cache").write_text("x")
    assert bake_hash({"a": 1}, "img:1", [recipe]) == base


def test_the_fake_agent_tarball_is_the_same_every_time():
    assert build_tarball() == build_tarball()


def _unpack_agent(target: Path) -> Path:
    with tarfile.open(fileobj=io.BytesIO(build_tarball())) as tar:
        tar.extractall(target, filter="data")
    hooks = target / "hooks.log"
    (target / ".env").write_text(
        f"ACTIONS_RUNNER_HOOK_JOB_STARTED={target / 'hook.sh'}\n"
        f"ACTIONS_RUNNER_HOOK_JOB_COMPLETED={target / 'hook.sh'}\n"
    )
    (target / "hook.sh").write_text(f"#!/bin/sh\necho hook >> {hooks}\n")
    (target / "hook.sh").chmod(0o755)
    return target


def test_the_fake_agent_takes_one_job_from_the_fake_github_and_reports_it(
    github, settings, tmp_path
):
    """The listener (run directly: run.sh refuses root, and tests run as root) goes online,
    takes a job matching its labels, runs it in Runner.Worker with both hooks, reports the
    result, and the fake drops the ephemeral registration."""
    agent = _unpack_agent(tmp_path / "agent")
    registrar = Registrar(settings)
    jit = registrar.register("f-runner-aaa", ["self-hosted", "linux", "dind"])
    other = github.queue_job("echo never", labels=("self-hosted", "gpu"))
    job = github.queue_job('echo "hello from $PWD"; exit 3')
    result = _run_listener(agent, jit.encoded_jit_config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert job.status == "completed" and job.exit_code == 3
    assert "hello from" in job.output and f"_work/{job.id}" in job.output
    assert job.runner_name == "f-runner-aaa"
    assert other.status == "queued"
    assert (agent / "hooks.log").read_text() == "hook\nhook\n"
    assert github.runner_by_name("f-runner-aaa") is None  # ephemeral: gone after its job
    assert jit.encoded_jit_config not in result.stdout + result.stderr


def test_the_fake_agent_exits_when_its_runner_is_deleted(github, settings, tmp_path):
    agent = _unpack_agent(tmp_path / "agent")
    registrar = Registrar(settings)
    jit = registrar.register("f-runner-bbb", ["self-hosted", "linux"])
    env = {
        **os.environ,
        "ACTIONS_RUNNER_INPUT_JITCONFIG": jit.encoded_jit_config,
        "FAKE_AGENT_POLL_SECONDS": "0.05",  # notices the deletion within 50 ms, not 1 s
    }
    listener = subprocess.Popen(
        [sys.executable, str(agent / "bin" / "Runner.Listener")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 20
    while github.runner_by_name("f-runner-bbb")["status"] != "online":
        assert time.monotonic() < deadline, "the fake agent never came online"
        time.sleep(0.1)
    registrar.deregister(registrar.runners("f-runner-")["f-runner-bbb"])
    output, _ = listener.communicate(timeout=30)
    assert listener.returncode == 1
    assert "removed from GitHub" in output


@pytest.mark.parametrize(("asked", "code"), [("1", 7), ("", 1)])
def test_the_fake_agent_exits_7_when_too_old_only_if_asked_to(
    github, settings, tmp_path, asked, code
):
    """As the real agent: refused as too old, it exits 7 with
    ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE set (the runner unit's Environment=,
    playbooks/roles/actions_runner), else 1."""
    agent = _unpack_agent(tmp_path / "agent")
    github.deprecated_agents = True
    jit = Registrar(settings).register("f-runner-ccc", ["self-hosted", "linux"])
    result = _run_listener(
        agent, jit.encoded_jit_config, ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE=asked
    )
    assert result.returncode == code, result.stdout + result.stderr
    assert "too old" in result.stdout


def _run_listener(agent: Path, jit_config: str, **env: str) -> subprocess.CompletedProcess:
    """The fake agent's listener run to its end with a JIT config (and ``env``; an empty
    value unsets the variable)."""
    environment = {**os.environ, "ACTIONS_RUNNER_INPUT_JITCONFIG": jit_config, **env}
    environment = {name: value for name, value in environment.items() if value}
    return subprocess.run(
        [sys.executable, str(agent / "bin" / "Runner.Listener")],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
