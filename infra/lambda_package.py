"""The control plane's Lambda package: fleet/core + fleet/aws plus their dependencies, zipped.

``build_lambda_package`` writes ``build/control-plane-<digest>.zip``, byte for byte reproducible
(sorted entries, fixed timestamps), so the same sources give the same file and Lambda sees no
change. Dependencies are installed once per requirement set into ``build/lambda-deps-<hash>``
with pip, as wheels built for the Lambda platform (``--platform manylinux2014_<arch>
--only-binary=:all:``): the machine running ``pulumi up`` may be another OS or architecture.
Their pins come from requirements.txt, so the functions run what the tests ran.

Only ``fleet/core`` and ``fleet/aws`` are shipped, by folder (``LAMBDA_SOURCES``): never the CLI,
the local fleet (``fleet/local``) or the playbooks.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

# The functions run fleet/core and fleet/aws, whole folders: the import rule (tested in
# tests/unit/test_import_rules.py) keeps both free of fleet/local and the CLI.
LAMBDA_SOURCES = ("fleet/__init__.py", "fleet/core", "fleet/aws")
# Distributions the functions import, pinned in requirements.txt; pip adds what they depend on
# (pydantic-core, a compiled wheel, for the functions' architecture; python-dotenv...).
LAMBDA_DISTRIBUTIONS = (
    "boto3",
    "botocore",
    "PyJWT",
    "cryptography",
    "requests",
    "pydantic",
    "pydantic-settings",
)
LAMBDA_PYTHON = "3.12"
PLATFORMS = {"arm64": "manylinux2014_aarch64", "x86_64": "manylinux2014_x86_64"}

_EXCLUDED_DIRS = {"__pycache__", ".pytest_cache"}
_COMPLETE_MARKER = ".complete"

Installer = Callable[[Sequence[str], Path, str, str], None]


@dataclasses.dataclass(frozen=True)
class LambdaPackage:
    path: Path
    digest: str  # sha256 over entry names and contents (hex)
    source_code_hash: str  # base64 sha256 of the zip, as Lambda reports it

    @property
    def files(self) -> list[str]:
        with zipfile.ZipFile(self.path) as archive:
            return archive.namelist()


def lambda_requirements(requirements_txt: Path) -> list[str]:
    """``name==version`` of each of ``LAMBDA_DISTRIBUTIONS`` as pinned in requirements.txt."""
    pins: dict[str, str] = {}
    for line in requirements_txt.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\s*([A-Za-z0-9_.-]+)\s*==\s*([^\s#;]+)", line)
        if match:
            pins[match.group(1).lower()] = f"{match.group(1)}=={match.group(2)}"
    missing = [name for name in LAMBDA_DISTRIBUTIONS if name.lower() not in pins]
    if missing:
        raise ValueError(
            f"{requirements_txt} pins no version for {', '.join(missing)}: the control plane "
            "functions ship exactly the pinned versions; add name==version lines"
        )
    return [pins[name.lower()] for name in LAMBDA_DISTRIBUTIONS]


def pip_install(requirements: Sequence[str], target: Path, platform: str, python: str) -> None:
    """Install wheels of ``requirements`` for ``platform``/``python`` into ``target``."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        "--platform",
        platform,
        "--implementation",
        "cp",
        "--python-version",
        python,
        "--only-binary=:all:",
        "--target",
        str(target),
        *requirements,
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(
            f"pip could not install the control plane's dependencies for {platform} "
            f"(Python {python}): {result.stderr.strip()[-2000:]}\n"
            "It needs PyPI (or your index) to be reachable from the machine running pulumi."
        )


def source_files(project_root: Path) -> list[tuple[str, Path]]:
    """(name in the zip, file) of the fleet modules the functions run."""
    files: list[tuple[str, Path]] = []
    for entry in LAMBDA_SOURCES:
        path = project_root / entry
        if path.is_file():
            files.append((entry, path))
        elif path.is_dir():
            files += [
                (p.relative_to(project_root).as_posix(), p)
                for p in sorted(path.rglob("*.py"))
                if not _EXCLUDED_DIRS.intersection(p.relative_to(project_root).parts)
            ]
        else:
            raise FileNotFoundError(f"{path} is missing: the control plane functions need it")
    return files


def dependency_files(deps_dir: Path) -> list[tuple[str, Path]]:
    return [
        (p.relative_to(deps_dir).as_posix(), p)
        for p in sorted(deps_dir.rglob("*"))
        if p.is_file()
        and p.name != _COMPLETE_MARKER
        and not p.name.endswith(".pyc")
        and not _EXCLUDED_DIRS.intersection(p.relative_to(deps_dir).parts)
    ]


def install_dependencies(
    requirements: Sequence[str],
    build_dir: Path,
    *,
    platform: str,
    python: str,
    install: Installer | None = None,
) -> Path:
    """The dependency directory for this requirement set, installed on first use."""
    key = hashlib.sha256("\n".join([platform, python, *requirements]).encode()).hexdigest()[:16]
    deps_dir = build_dir / f"lambda-deps-{key}"
    if (deps_dir / _COMPLETE_MARKER).is_file():
        return deps_dir
    staging = build_dir / f"lambda-deps-{key}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    (install or pip_install)(requirements, staging, platform, python)
    (staging / _COMPLETE_MARKER).write_text("\n".join(requirements) + "\n", encoding="utf-8")
    shutil.rmtree(deps_dir, ignore_errors=True)
    staging.rename(deps_dir)
    return deps_dir


def build_lambda_package(
    project_root: Path,
    build_dir: Path,
    *,
    architecture: str = "arm64",
    python: str = LAMBDA_PYTHON,
    requirements: Sequence[str] | None = None,
    install: Installer | None = None,
) -> LambdaPackage:
    """Build (or reuse) the functions' zip under ``build_dir``; see the module docstring."""
    if architecture not in PLATFORMS:
        raise ValueError(f"architecture must be one of {', '.join(PLATFORMS)}, got {architecture}")
    if requirements is None:
        requirements = lambda_requirements(project_root / "requirements.txt")
    deps_dir = install_dependencies(
        requirements, build_dir, platform=PLATFORMS[architecture], python=python, install=install
    )
    entries = source_files(project_root)
    sources = {name for name, _ in entries}
    entries += [(name, path) for name, path in dependency_files(deps_dir) if name not in sources]
    entries.sort(key=lambda entry: entry[0])
    digest = hashlib.sha256()
    for name, path in entries:
        digest.update(name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    target = build_dir / f"control-plane-{digest.hexdigest()[:20]}.zip"
    if not target.is_file():
        partial = target.with_suffix(".partial")
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, path in entries:
                info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, path.read_bytes())
        partial.rename(target)
    code_hash = base64.b64encode(hashlib.sha256(target.read_bytes()).digest()).decode()
    return LambdaPackage(path=target, digest=digest.hexdigest(), source_code_hash=code_hash)
