"""Cloud-init user data for runner instances, rendered by a pure function.

The document is a `#cloud-config` with `write_files` (the boot script, the self-termination
script, a systemd unit, a drop-in for actions-runner.service, an env file and an Ansible
inventory) and `runcmd` (enable and start the unit). It carries names and paths only: the
JIT config is fetched from SSM on the instance, and no GitHub App secret is ever involved.
"""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path

import yaml

from infra.agent_report import runner_metrics_namespace
from infra.literal_yaml import literal_yaml

HERE = Path(__file__).resolve().parent

# Tool versions installed on a stock image (same pins as requirements.txt; awscli 1.45.11 is
# the release built on botocore 1.43.11).
ANSIBLE_VERSION = "12.3.0"
AWSCLI_VERSION = "1.45.11"

# Where the launch template attaches the Docker volume (NVMe instances rename it; the boot
# script then finds it by size).
DOCKER_DEVICE = "/dev/xvdb"

# EC2 refuses user data larger than this (before base64).
MAX_USER_DATA_BYTES = 16_384


@dataclasses.dataclass(frozen=True)
class UserDataSettings:
    """Everything the instance needs to know: all of it may be read by anyone with
    ec2:DescribeInstanceAttribute, so it must never hold a secret."""

    fleet_name: str
    region: str
    asg_name: str
    launch_hook_name: str
    parameter_root: str
    bundle_bucket: str
    bundle_key: str
    baked_image: bool
    docker_volume_gib: int
    jit_wait_seconds: int


def fleet_env(settings: UserDataSettings) -> str:
    """The shell-sourceable /etc/runner-fleet/fleet.env."""
    values = {
        "FLEET_NAME": settings.fleet_name,
        "AWS_REGION": settings.region,
        "ASG_NAME": settings.asg_name,
        "LAUNCH_HOOK_NAME": settings.launch_hook_name,
        "PARAMETER_ROOT": settings.parameter_root,
        "BUNDLE_BUCKET": settings.bundle_bucket,
        "BUNDLE_KEY": settings.bundle_key,
        "BAKED_IMAGE": "true" if settings.baked_image else "false",
        "DOCKER_DEVICE": DOCKER_DEVICE,
        "DOCKER_VOLUME_GIB": str(settings.docker_volume_gib),
        "JIT_WAIT_SECONDS": str(settings.jit_wait_seconds),
        "METRICS_NAMESPACE": runner_metrics_namespace(settings.fleet_name),
        "ANSIBLE_VERSION": ANSIBLE_VERSION,
        "AWSCLI_VERSION": AWSCLI_VERSION,
    }
    return "".join(f"{key}={shlex.quote(value)}\n" for key, value in values.items())


INVENTORY = {
    "all": {
        "children": {
            "runners": {
                "hosts": {
                    "localhost": {
                        "ansible_connection": "local",
                        # System Python: the apt module needs python3-apt.
                        "ansible_python_interpreter": "/usr/bin/python3",
                    }
                }
            }
        }
    }
}


def _file(path: str, content: str, permissions: str) -> dict[str, str]:
    return {"path": path, "owner": "root:root", "permissions": permissions, "content": content}


def cloud_config(settings: UserDataSettings) -> dict:
    """The cloud-config document as data (see `render_user_data` for the text)."""
    source = {
        name: (HERE / name).read_text(encoding="utf-8")
        for name in (
            "bootstrap.sh",
            "terminate-self.sh",
            "runner-boot.service",
            "terminate-self.conf",
        )
    }
    return {
        "write_files": [
            _file("/etc/runner-fleet/fleet.env", fleet_env(settings), "0600"),
            _file(
                "/etc/runner-fleet/inventory.yml",
                yaml.safe_dump(INVENTORY, sort_keys=False),
                "0644",
            ),
            _file("/usr/local/sbin/runner-bootstrap", source["bootstrap.sh"], "0700"),
            _file("/usr/local/sbin/runner-terminate-self", source["terminate-self.sh"], "0700"),
            _file("/etc/systemd/system/runner-boot.service", source["runner-boot.service"], "0644"),
            _file(
                "/etc/systemd/system/actions-runner.service.d/50-terminate-self.conf",
                source["terminate-self.conf"],
                "0644",
            ),
        ],
        "runcmd": [
            ["systemctl", "daemon-reload"],
            ["systemctl", "enable", "runner-boot.service"],
            # --no-block: runcmd itself runs inside a boot-time unit.
            ["systemctl", "start", "--no-block", "runner-boot.service"],
        ],
    }


def render_user_data(settings: UserDataSettings) -> str:
    """The `#cloud-config` text; raises ValueError if EC2 would refuse its size."""
    body = literal_yaml(cloud_config(settings))
    text = "#cloud-config\n" + body
    size = len(text.encode("utf-8"))
    if size > MAX_USER_DATA_BYTES:
        raise ValueError(f"user data is {size} bytes; EC2 accepts {MAX_USER_DATA_BYTES}")
    return text
