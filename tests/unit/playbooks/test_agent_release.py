"""actions_runner_version "latest": the newest release, verified against the sha256 it
publishes, never an unverified agent.

The role's module (playbooks/roles/actions_runner/library/actions_runner_release.py) is read
here twice: its pure part as a plain module, and the role's own tasks (resolve.yml, then
download.yml) run by ansible-playbook on this machine against a FAKE releases endpoint on
loopback (tests/fakes/github_releases.py), with the tarball served by the same fake.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.github_releases import FakeRelease, FakeReleases
from tests.fakes.runner_agent import build_tarball
from tests.fakes.scaleset_agent import threaded_server

pytestmark = pytest.mark.unit

ROLES = Path(__file__).resolve().parents[3] / "playbooks" / "roles"
MODULE_PATH = ROLES / "actions_runner" / "library" / "actions_runner_release.py"
VERSION = "2.399.1"


def _load_module():
    spec = importlib.util.spec_from_file_location("actions_runner_release", MODULE_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


release_module = _load_module()
ReleaseError = release_module.ReleaseError


@pytest.fixture(scope="module")
def tarballs() -> dict[str, bytes]:
    return {"x64": build_tarball(VERSION), "arm64": build_tarball(VERSION + "-arm")}


@pytest.fixture
def releases(httpserver) -> FakeReleases:
    return FakeReleases(httpserver)


def _api(releases: FakeReleases, release: FakeRelease) -> dict:
    return releases.to_api(releases.publish(release))


# -- the pure part: which sha256 a release publishes -------------------------------------------


def test_the_asset_digest_gives_the_sha256(releases, tarballs):
    data = _api(releases, FakeRelease(VERSION, tarballs, digest=True, notes=False))
    found = release_module.release_from(data, "x64")
    assert found["sha256"] == hashlib.sha256(tarballs["x64"]).hexdigest()
    assert found["source"] == "asset digest"
    assert found["version"] == VERSION
    assert found["url"].endswith(f"/download/actions-runner-linux-x64-{VERSION}.tar.gz")


def test_the_release_notes_marker_gives_it_when_there_is_no_digest(releases, tarballs):
    data = _api(releases, FakeRelease(VERSION, tarballs, digest=False, notes=True))
    for arch in ("x64", "arm64"):  # each architecture its own marker
        found = release_module.release_from(data, arch)
        assert found["sha256"] == hashlib.sha256(tarballs[arch]).hexdigest()
        assert found["source"] == "release notes"


def test_both_sources_must_agree(releases, tarballs):
    data = _api(releases, FakeRelease(VERSION, tarballs))
    assert release_module.release_from(data, "x64")["source"] == "asset digest and release notes"
    data["assets"][1]["digest"] = "sha256:" + "ab" * 32  # sorted: arm64, x64
    with pytest.raises(ReleaseError, match="different sha256"):
        release_module.release_from(data, "x64")


def test_a_release_that_publishes_no_sha256_is_refused(releases, tarballs):
    data = _api(releases, FakeRelease(VERSION, tarballs, digest=False, notes=False))
    with pytest.raises(ReleaseError, match="publishes no sha256") as refused:
        release_module.release_from(data, "x64")
    assert "never installed" in str(refused.value)
    assert "actions_runner_sha256" in str(refused.value)  # what to do instead


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"prerelease": True}, "prerelease"),
        ({"tag_name": "nightly"}, "not a version"),
        ({"assets": []}, "no asset actions-runner-linux-x64-2.399.1.tar.gz"),
        ({"body": "<!-- BEGIN SHA linux-x64 -->abc<!-- END SHA linux-x64 -->"}, "not a sha256"),
    ],
)
def test_what_is_not_an_installable_release_is_refused(releases, tarballs, change, message):
    data = {**_api(releases, FakeRelease(VERSION, tarballs, digest=False)), **change}
    with pytest.raises(ReleaseError, match=message):
        release_module.release_from(data, "x64")


def test_only_the_architectures_actions_runner_publishes():
    with pytest.raises(ReleaseError, match="architecture 'unsupported'"):
        release_module.release_from({"tag_name": "v1.2.3"}, "unsupported")
    with pytest.raises(ReleaseError, match="owner/name"):
        release_module.latest_release_url("https://api.github.com", "runner")
    assert (
        release_module.latest_release_url("https://ghes.example/api/v3/", "actions/runner")
        == "https://ghes.example/api/v3/repos/actions/runner/releases/latest"
    )


# -- the role's tasks: look up, then download and verify -------------------------------------
#
# One ansible-playbook run plays every case, one inventory host per case (each local, with its
# own FAKE releases endpoint and staging directory; a host that fails leaves the others
# running): a run costs about 1.5 s of CPU, most of it Ansible starting, once instead of six
# times. Each case's outcome is read from the JSON callback: whether its host failed, and the
# messages its tasks reported.

PLAYBOOK = """
- name: Resolve and download the agent as the bake does
  hosts: all
  gather_facts: false
  tasks:
    - name: Find the newest agent release
      ansible.builtin.include_role:
        name: actions_runner
        tasks_from: resolve.yml
    - name: Download and verify it
      ansible.builtin.include_role:
        name: actions_runner
        tasks_from: download.yml
"""

OTHER_SHA256 = hashlib.sha256(b"what the release says it published").hexdigest()


def _cases(tarballs: dict[str, bytes]) -> dict[str, tuple[FakeRelease | None, dict[str, str]]]:
    """Each case: the release its endpoint publishes (None: nothing, 404) and extra vars."""
    return {
        "digest": (FakeRelease(VERSION, tarballs, digest=True, notes=False), {}),
        "notes": (FakeRelease(VERSION, tarballs, digest=False, notes=True), {}),
        "no-sha256": (FakeRelease(VERSION, tarballs, digest=False, notes=False), {}),
        "mismatch": (FakeRelease(VERSION, tarballs, published={"x64": OTHER_SHA256}), {}),
        "own-checksum": (FakeRelease(VERSION, tarballs), {"actions_runner_sha256": "0" * 64}),
        "unanswered": (None, {}),
    }


@dataclass
class Bake:
    """One case's outcome: did its host fail, what its tasks said, what it kept."""

    failed: bool
    output: str
    staging: Path
    releases: FakeReleases

    def kept(self) -> list[str]:
        return sorted(p.name for p in self.staging.iterdir())


def _play(tmp_path: Path, hosts: dict[str, dict[str, str]]) -> dict[str, Any]:
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    (tmp_path / "inventory.yml").write_text(json.dumps({"all": {"hosts": hosts}}))
    env = {
        **os.environ,
        "ANSIBLE_ROLES_PATH": str(ROLES),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
        "ANSIBLE_HOME": str(tmp_path / "ansible-home"),
    }
    run = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            str(tmp_path / "inventory.yml"),
            "--forks",
            str(len(hosts)),
            str(tmp_path / "play.yml"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert run.returncode in (0, 2), run.stdout + run.stderr  # 2: some host failed
    return json.loads(run.stdout)


@pytest.fixture(scope="module")
def bakes(tmp_path_factory: pytest.TempPathFactory, tarballs) -> Iterator[dict[str, Bake]]:
    tmp_path = tmp_path_factory.mktemp("bake")
    with threaded_server() as server:
        hosts: dict[str, dict[str, str]] = {}
        releases: dict[str, FakeReleases] = {}
        for case, (release, extra) in _cases(tarballs).items():
            releases[case] = FakeReleases(server, prefix=f"/{case}")
            if release is not None:
                releases[case].publish(release)
            (tmp_path / "staging" / case).mkdir(parents=True)
            hosts[case] = {
                "ansible_connection": "local",
                "ansible_python_interpreter": sys.executable,
                "actions_runner_version": "latest",
                "actions_runner_arch": "x64",
                "actions_runner_release_api_url": releases[case].api_url,
                "actions_runner_staging_dir": str(tmp_path / "staging" / case),
                **extra,
            }
        report = _play(tmp_path, hosts)
        messages: dict[str, list[str]] = {case: [] for case in hosts}
        for play in report["plays"]:
            for task in play["tasks"]:
                for host, result in task["hosts"].items():
                    messages[host].append(str(result.get("msg", "")))
        yield {
            case: Bake(
                failed=report["stats"][case]["failures"] + report["stats"][case]["unreachable"] > 0,
                output="\n".join(messages[case]),
                staging=tmp_path / "staging" / case,
                releases=releases[case],
            )
            for case in hosts
        }


@pytest.mark.parametrize("case", ["digest", "notes"])
def test_the_bake_downloads_the_newest_release_verified(bakes, tarballs, case):
    bake = bakes[case]
    assert not bake.failed, bake.output
    sha = hashlib.sha256(tarballs["x64"]).hexdigest()
    assert bake.kept() == [f"actions-runner-{VERSION}-{sha[:12]}.tar.gz"]
    assert (bake.staging / bake.kept()[0]).read_bytes() == tarballs["x64"]
    assert f"actions/runner {VERSION} (x64), sha256 {sha}" in bake.output


def test_the_bake_fails_when_the_release_publishes_no_sha256(bakes):
    bake = bakes["no-sha256"]
    assert bake.failed
    assert "publishes no sha256" in bake.output
    assert bake.kept() == []
    assert not [path for path in bake.releases.requests if path.startswith("/download/")]


def test_the_bake_refuses_a_tarball_that_does_not_match_the_published_sha256(bakes):
    bake = bakes["mismatch"]
    assert bake.failed
    assert "checksum" in bake.output.lower()
    assert OTHER_SHA256 in bake.output
    assert bake.kept() == []  # nothing written where the agent is unpacked from


def test_latest_with_a_checksum_of_its_own_is_refused(bakes):
    bake = bakes["own-checksum"]
    assert bake.failed
    assert "Remove actions_runner_sha256" in bake.output
    assert bake.releases.requests == []


def test_an_api_that_does_not_answer_fails_the_bake_with_what_to_set(bakes):
    bake = bakes["unanswered"]  # nothing published: 404
    assert bake.failed
    assert "answered 404" in bake.output
    assert "actions_runner_release_api_url" in bake.output
