"""The playbook bundle: playbooks/ and the canary suite zipped into a private, encrypted,
versioned S3 bucket.

The bundle is self-sufficient: it holds `playbooks/` and `tests/canary/` at the same places as
in this repository, so an instance that unpacks it runs the bake with the roles' defaults
(the test_toolchain role installs the canary from `{{ playbook_dir }}/../tests/canary`).

The zip is built here, byte for byte reproducible (sorted entries, fixed timestamps), rather
than left to the provider's archive handling: the same playbooks give the same file, and the
object key carries their digest, so a playbook change is a new key, hence new user data,
hence a new launch template version and an instance refresh.

Tear-down: the bucket only holds artefacts built from this repository, so `force_destroy` is
on and `pulumi destroy` removes it with every object version. Noncurrent versions expire
after 30 days.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws
import yaml

from infra.buckets import private_bucket
from infra.iam import bundle_bucket_policy

# Never shipped: caches and editor or Ansible leftovers.
_EXCLUDED_DIRS = {"__pycache__", ".git", ".pytest_cache", ".ansible"}
_EXCLUDED_SUFFIXES = (".pyc", ".retry", ".swp", "~")


# What an instance needs, relative to the project root: the playbooks and the canary suite.
BUNDLE_DIRS = ("playbooks", "tests/canary")
# The stack's runnerVars, passed to the bake and the boot part as extra variables.
RUNNER_VARS_ENTRY = "runner-vars.yml"


def bundle_entries(
    project_root: Path, runner_vars: Mapping[str, Any], dirs: tuple[str, ...] = BUNDLE_DIRS
) -> list[tuple[str, bytes]]:
    """What the zip holds, as (path inside the archive, content), sorted; files keep their
    path relative to the project root."""
    entries = [(RUNNER_VARS_ENTRY, _runner_vars_file(runner_vars))]
    for directory in dirs:
        source_dir = project_root / directory
        for path in sorted(source_dir.rglob("*")):
            relative = path.relative_to(source_dir)
            if not path.is_file() or _EXCLUDED_DIRS.intersection(relative.parts):
                continue
            if path.name.endswith(_EXCLUDED_SUFFIXES):
                continue
            entries.append((f"{directory}/{relative.as_posix()}", path.read_bytes()))
    return sorted(entries)


def _runner_vars_file(runner_vars: Mapping[str, Any]) -> bytes:
    header = "# The stack's runnerVars (Pulumi config), passed to bake.yml and boot.yml.\n"
    return (header + yaml.safe_dump(dict(runner_vars), sort_keys=True)).encode("utf-8")


def bundle_digest(entries: list[tuple[str, bytes]]) -> str:
    """Content digest over names and bytes: same files, same digest, same object key."""
    digest = hashlib.sha256()
    for name, content in entries:
        digest.update(name.encode("utf-8") + b"\0")
        digest.update(hashlib.sha256(content).digest())
    return digest.hexdigest()


def write_bundle(entries: list[tuple[str, bytes]], target: Path) -> Path:
    """Write the entries into a reproducible zip at `target` (parents created)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries:
            entry = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, content)
    return target


class PlaybookBundleArgs:
    """Inputs of PlaybookBundle."""

    def __init__(
        self,
        *,
        project_root: Path,
        build_dir: Path,
        kms_key_arn: pulumi.Input[str],
        tags: dict[str, str],
        runner_vars: Mapping[str, Any] | None = None,
    ) -> None:
        self.project_root = project_root
        self.runner_vars = dict(runner_vars or {})
        self.build_dir = build_dir
        self.kms_key_arn = kms_key_arn
        self.tags = tags


class PlaybookBundle(pulumi.ComponentResource):
    """Bucket locked down (no public access, SSE-KMS, versioning, TLS only) + the zip object."""

    # Long on purpose: a component's resources declared in dependency order in its constructor, as
    # Pulumi's examples do.
    def __init__(
        self, name: str, args: PlaybookBundleArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("fleet:bundle:PlaybookBundle", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        locked = private_bucket(name, kms_key_arn=args.kms_key_arn, tags=args.tags, opts=child)
        bucket, ownership, public_access = locked.bucket, locked.ownership, locked.public_access
        encryption = locked.encryption
        versioning = aws.s3.BucketVersioning(
            f"{name}-versioning",
            bucket=bucket.id,
            versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(
                status="Enabled"
            ),
            opts=child,
        )
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle",
            bucket=bucket.id,
            rules=[
                aws.s3.BucketLifecycleConfigurationRuleArgs(
                    id="expire-old-bundles",
                    status="Enabled",
                    filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                    noncurrent_version_expiration=aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                        noncurrent_days=30
                    ),
                    abort_incomplete_multipart_upload=aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                        days_after_initiation=7
                    ),
                )
            ],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[versioning]),
        )
        aws.s3.BucketPolicy(
            f"{name}-policy",
            bucket=bucket.id,
            policy=bucket.arn.apply(lambda arn: json.dumps(bundle_bucket_policy(bucket_arn=arn))),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[public_access, ownership]),
        )

        entries = bundle_entries(args.project_root, args.runner_vars)
        file_name = f"playbooks-{bundle_digest(entries)[:20]}.zip"
        self.key = f"bundles/{file_name}"
        self.archive = write_bundle(entries, args.build_dir / file_name)
        self.object = aws.s3.BucketObjectv2(
            f"{name}-playbooks",
            bucket=bucket.id,
            key=self.key,
            source=pulumi.FileAsset(str(self.archive)),
            content_type="application/zip",
            server_side_encryption="aws:kms",
            kms_key_id=args.kms_key_arn,
            bucket_key_enabled=True,
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[encryption, versioning]),
        )
        self.bucket_name = bucket.bucket
        self.bucket_arn = bucket.arn
        self.register_outputs({"bucket": self.bucket_name, "key": self.key})
