"""A container started with memory and CPU limits runs inside them (the host's engine
enforces cgroup limits, so a suite that sizes its containers gets what it asked for)."""

from __future__ import annotations

from testcontainers.core.container import DockerContainer

MEMORY_BYTES = 256 * 1024 * 1024
CPU_PERIOD_US = 100_000
CPU_QUOTA_US = 50_000  # half a CPU
# cgroup v2 files first, then their cgroup v1 equivalents.
MEMORY_FILES = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
CPU_FILES = ("/sys/fs/cgroup/cpu.max", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us")


def _first_readable(container: DockerContainer, paths: tuple[str, ...]) -> str:
    for path in paths:
        result = container.exec(["/bin/busybox", "cat", path])
        if result.exit_code == 0:
            return result.output.decode().strip()
    raise AssertionError(f"none of {paths} is readable in the container")


def test_a_container_sees_the_memory_and_cpu_limits_it_was_started_with(
    busybox_image: str,
) -> None:
    container = (
        DockerContainer(busybox_image)
        .with_command(["/bin/busybox", "sleep", "120"])
        .with_kwargs(mem_limit=MEMORY_BYTES, cpu_period=CPU_PERIOD_US, cpu_quota=CPU_QUOTA_US)
    )
    with container as started:
        memory = _first_readable(started, MEMORY_FILES)
        cpu = _first_readable(started, CPU_FILES)
    assert int(memory) == MEMORY_BYTES
    # v2: "<quota> <period>"; v1: the quota alone.
    assert cpu.split()[0] == str(CPU_QUOTA_US), cpu
    if len(cpu.split()) == 2:
        assert cpu.split()[1] == str(CPU_PERIOD_US), cpu
