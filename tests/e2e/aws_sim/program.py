"""Run the Pulumi program under mocks and write what it declares as JSON (a subprocess).

Usage: python -m tests.e2e.aws_sim.program SETTINGS.json OUT.json

SETTINGS.json holds {"settings": {...stack settings...}, "secrets": {...}, "build_dir": DIR}.
OUT.json gets {"resources": [{"type", "name", "inputs"}...], "outputs": {...},
"bundle_archive": PATH}. A subprocess, because Pulumi's mocks are global to a process and
the unit tests install their own.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pulumi

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests" / "unit" / "infra"))
sys.path.insert(0, str(ROOT))

from infra_mocks import MOCKS, MONITOR, PROJECT, run_program, set_stack_config  # noqa: E402

pulumi.runtime.set_mocks(MOCKS, project=PROJECT, stack="simulation", preview=False, monitor=MONITOR)


def _skip_lambda_dependencies(requirements, target: Path, platform: str, python: str) -> None:
    # The simulation runs the functions' code in the test process; their zip is not used.
    target.mkdir(parents=True, exist_ok=True)


def render(settings: dict[str, Any], secrets: dict[str, str], build_dir: Path) -> dict[str, Any]:
    import infra.lambda_package

    infra.lambda_package.pip_install = _skip_lambda_dependencies
    set_stack_config(settings, secrets)
    fleet, outputs = run_program(build_dir)
    return {
        "resources": [{"type": r.typ, "name": r.name, "inputs": r.inputs} for r in MOCKS.resources],
        "outputs": outputs,
        "bundle_archive": str(fleet.bundle.archive),
    }


def main(argv: list[str]) -> int:
    request = json.loads(Path(argv[1]).read_text())
    result = render(request["settings"], request["secrets"], Path(request["build_dir"]))
    Path(argv[2]).write_text(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
