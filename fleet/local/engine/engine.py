"""Make sure a Docker engine answers and can start privileged containers.

The engine is the one the docker SDK finds from the environment (DOCKER_HOST or
the default socket). When none answers on a Debian/Ubuntu machine we install the
distribution's engine and start it: through systemd when systemd runs, otherwise
as a background process (CI containers, sandboxes). When the engine cannot start
``--privileged`` containers because the machine's capability bounding set is
smaller than what the engine asks for, we register the capability wrapper
(``runc_caps.py``) as the engine's default OCI runtime.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import requests.exceptions

from fleet.errors import FleetError
from fleet.local.engine import runc_caps

DAEMON_JSON = Path("/etc/docker/daemon.json")
WRAPPER_PATH = Path("/usr/local/libexec/fleet/fleet-runc")
WRAPPER_RUNTIME = "fleet-runc"
DOCKERD_LOG = Path("/var/log/fleet-dockerd.log")
ENGINE_WAIT_SECONDS = 90
PROBE_SECONDS = 60

Report = Callable[[str], None]


@dataclass(frozen=True)
class EngineInfo:
    version: str
    api_version: str
    default_runtime: str
    cgroup_version: str


def client(timeout: int = 120) -> docker.DockerClient:
    return docker.from_env(timeout=timeout)


def _ping() -> bool:
    try:
        return bool(client(timeout=5).ping())
    except (docker.errors.DockerException, OSError):
        return False


def _systemd_running() -> bool:
    return Path("/run/systemd/system").is_dir()


def _wait_for_engine(seconds: int = ENGINE_WAIT_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _ping():
            return
        time.sleep(0.5)
    raise FleetError(
        f"the Docker engine did not answer within {seconds} s",
        hint=f"look at {DOCKERD_LOG} (or `journalctl -u docker`) for why dockerd stopped",
    )


def apt_install(packages: list[str], report: Report) -> None:
    """Install Debian packages (root, apt machines only), with an actionable error."""
    if os.geteuid() != 0:
        raise FleetError(
            f"{', '.join(packages)} must be installed and that needs root",
            hint=f"run `sudo apt-get install {' '.join(packages)}` or run this command as root",
        )
    if not shutil.which("apt-get"):
        raise FleetError(
            f"{', '.join(packages)} must be installed and this is not a Debian/Ubuntu machine",
            hint="install them with your distribution's tools, then run the command again",
        )
    report(f"apt-get install {' '.join(packages)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
    ):
        result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise FleetError(
                f"`{' '.join(argv)}` failed (exit {result.returncode}): {result.stderr[-800:]}",
                hint="check the machine's apt sources and network access to the mirror",
            )


def _dockerd_pid() -> int | None:
    try:
        pid = int(Path("/var/run/docker.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if Path(f"/proc/{pid}").exists() else None


def _start_engine(report: Report) -> None:
    if _systemd_running():
        report("starting docker.service")
        subprocess.run(["systemctl", "start", "docker"], check=False, capture_output=True)
    else:
        dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"
        report(f"starting dockerd in the background (log: {DOCKERD_LOG})")
        DOCKERD_LOG.parent.mkdir(parents=True, exist_ok=True)
        with DOCKERD_LOG.open("ab") as log:
            subprocess.Popen(
                [dockerd],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
    _wait_for_engine()


def _stop_engine() -> None:
    if _systemd_running():
        subprocess.run(["systemctl", "stop", "docker"], check=False, capture_output=True)
        return
    pid = _dockerd_pid()
    if pid is None:
        return
    os.kill(pid, 15)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.2)


def _alive(pid: int) -> bool:
    """True while the process runs (a zombie we started ourselves counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    if state == "Z":
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return False
    return True


def ensure_engine(report: Report) -> EngineInfo:
    """Install and start an engine if none answers; return what answers."""
    if not _ping():
        if not shutil.which("dockerd") and not Path("/usr/sbin/dockerd").exists():
            apt_install(["docker.io"], report)
        _start_engine(report)
    return engine_info()


def engine_info() -> EngineInfo:
    info = client().info()
    version = client().version()
    return EngineInfo(
        version=version.get("Version", "?"),
        api_version=version.get("ApiVersion", "?"),
        default_runtime=info.get("DefaultRuntime", "runc"),
        cgroup_version=str(info.get("CgroupVersion", "1")),
    )


def privileged_works(image: str) -> tuple[bool, str]:
    """Start a throwaway privileged container; (worked, engine's error text).

    The container is removed whatever happens: ``run(remove=True)`` leaves a ``Created``
    container behind when the engine refuses to start it, the very case this probes.
    """
    docker_client = client()
    container = None
    try:
        container = docker_client.containers.create(image, ["true"], privileged=True)
        container.start()
        status = container.wait(timeout=PROBE_SECONDS).get("StatusCode", -1)
        if status != 0:
            return False, f"exit status {status}: {container.logs().decode(errors='replace')}"
    except docker.errors.APIError as exc:
        return False, str(exc.explanation or exc)
    except requests.exceptions.RequestException as exc:
        return False, f"no answer from the engine: {exc}"
    finally:
        if container is not None:
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True, v=True)
    return True, ""


def merged_daemon_config(current: dict, wrapper_path: str) -> dict:
    """daemon.json with the capability wrapper registered as the default runtime."""
    runtimes = dict(current.get("runtimes") or {})
    runtimes[WRAPPER_RUNTIME] = {"path": wrapper_path}
    return {**current, "runtimes": runtimes, "default-runtime": WRAPPER_RUNTIME}


def _wrapper_source() -> bytes:
    return Path(runc_caps.__file__).read_bytes()


def _write_wrapper() -> None:
    """Put this version's wrapper in place atomically (shims may be running the old one)."""
    WRAPPER_PATH.parent.mkdir(parents=True, exist_ok=True)
    staged = WRAPPER_PATH.with_name(WRAPPER_PATH.name + ".new")
    staged.write_bytes(_wrapper_source())
    staged.chmod(0o755)
    os.replace(staged, WRAPPER_PATH)


def refresh_capability_wrapper(default_runtime: str, report: Report) -> bool:
    """Replace an installed wrapper that differs from this version's; True if it did.

    The engine starts the wrapper afresh for every runc call, so no restart is needed.
    """
    if default_runtime != WRAPPER_RUNTIME or not WRAPPER_PATH.exists():
        return False
    if WRAPPER_PATH.read_bytes() == _wrapper_source():
        return False
    if os.geteuid() != 0:
        report(f"{WRAPPER_PATH} is an older version; `sudo python -m fleet bootstrap` updates it")
        return False
    _write_wrapper()
    report(f"updated the capability wrapper {WRAPPER_PATH}")
    return True


def install_capability_wrapper(report: Report) -> None:
    """Install the wrapper, register it in daemon.json and restart the engine."""
    if os.geteuid() != 0:
        raise FleetError(
            "the engine cannot start privileged containers and fixing that needs root",
            hint="run `sudo python -m fleet bootstrap` once",
        )
    report(f"registering the capability wrapper {WRAPPER_PATH} as the engine's default runtime")
    _write_wrapper()
    current = json.loads(DAEMON_JSON.read_text()) if DAEMON_JSON.exists() else {}
    DAEMON_JSON.parent.mkdir(parents=True, exist_ok=True)
    DAEMON_JSON.write_text(json.dumps(merged_daemon_config(current, str(WRAPPER_PATH)), indent=2))
    report("restarting the Docker engine")
    _stop_engine()
    _start_engine(report)


def ensure_privileged(image: str, info: EngineInfo, report: Report) -> bool:
    """Make ``--privileged`` work on the engine ``info`` describes, or explain why it cannot.

    Returns True when the engine had to be reconfigured.
    """
    refresh_capability_wrapper(info.default_runtime, report)
    ok, error = privileged_works(image)
    if ok:
        return False
    if "apply caps" not in error or info.default_runtime == WRAPPER_RUNTIME:
        raise FleetError(
            f"the Docker engine cannot start privileged containers: {error}",
            hint="runner hosts need --privileged (systemd + Docker inside); "
            "check the engine's security options (rootless engines cannot do this)",
        )
    install_capability_wrapper(report)
    ok, error = privileged_works(image)
    if not ok:
        raise FleetError(
            f"privileged containers still fail after installing the capability wrapper: {error}",
            hint=f"see {DOCKERD_LOG}; the wrapper is {WRAPPER_PATH}",
        )
    return True
