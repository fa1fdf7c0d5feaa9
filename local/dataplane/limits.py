"""Lambda's resources for one local execution environment: memory cap and CPU share.

Lambda gives a function exactly its MemorySize (an environment that goes over is killed;
the invocation fails with Runtime.OutOfMemory) and CPU in proportion to it: one vCPU at
1,769 MB. A plain process on this machine has all 24 GB and both cores, so the local data
plane puts each environment in its own cgroup (v1 `memory` and `cpu` controllers, written
as root) with those limits. Where that is not possible (not root, no cgroup v1, another
OS) `support()` says why once and environments run unlimited, as before.

Why hand-written and not a library: the cgroup v1 file interface is four files here;
the PyPI wrappers target cgroup v2 or systemd, which this machine does not run.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
# "At 1,769 MB, a function has the equivalent of one vCPU" (Lambda developer guide).
MB_PER_VCPU = 1769
CFS_PERIOD_US = 100_000
# LOCAL_DATAPLANE_LIMITS=off runs environments unlimited even where cgroups work.
SWITCH = "LOCAL_DATAPLANE_LIMITS"
# Lambda's errorType for an environment killed for exceeding its memory.
OUT_OF_MEMORY = "Runtime.OutOfMemory"


@dataclass(frozen=True)
class Support:
    """Whether environments get Lambda's limits here, and if not, why."""

    ok: bool
    reason: str = ""


def vcpus(memory_mb: int, cores: int | None = None) -> float:
    """The CPU share Lambda gives ``memory_mb``: MemorySize / 1769, at most the machine's cores."""
    available = cores if cores is not None else (os.cpu_count() or 1)
    return min(float(available), memory_mb / MB_PER_VCPU)


def _own_path(controller: str) -> Path | None:
    """This process's cgroup directory for a v1 ``controller``, or None."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return CGROUP_ROOT / controller / path.lstrip("/")
    return None


def _parent(controller: str) -> Path | None:
    own = _own_path(controller)
    return None if own is None else own / f"lambda-local-{os.getpid()}"


def sweep_stale() -> int:
    """Remove the empty parents of data-plane processes that are gone; return how many.

    A process killed outright (SIGKILL, a test's timeout) never runs its atexit, and its
    lambda-local-<pid> directories stay behind, empty.
    """
    removed = 0
    for controller in ("memory", "cpu"):
        own = _own_path(controller)
        if own is None or not own.is_dir():
            continue
        for parent in own.glob("lambda-local-*"):
            pid = parent.name.removeprefix("lambda-local-")
            if not pid.isdigit() or int(pid) == os.getpid() or Path(f"/proc/{pid}").exists():
                continue
            for child in [c for c in parent.iterdir() if c.is_dir()]:
                with contextlib.suppress(OSError):
                    child.rmdir()  # only empty ones: a cgroup with processes refuses
            with contextlib.suppress(OSError):
                parent.rmdir()
                removed += 1
    return removed


@functools.cache
def support() -> Support:
    """Whether per-environment cgroups can be made here (checked once, by making one)."""
    if os.environ.get(SWITCH, "").lower() in ("off", "0", "false", "no"):
        return Support(False, f"{SWITCH}=off")
    if not sys.platform.startswith("linux"):
        return Support(False, f"not Linux ({sys.platform})")
    if os.geteuid() != 0:
        return Support(False, "not root: cgroup limits need root")
    for controller, knob in (("memory", "memory.limit_in_bytes"), ("cpu", "cpu.cfs_quota_us")):
        parent = _parent(controller)
        if parent is None or not (parent.parent / knob).exists():
            return Support(False, f"no cgroup v1 {controller} controller")
        probe = parent / f"probe-{uuid.uuid4().hex[:8]}"
        try:
            probe.mkdir(parents=True)
            probe.rmdir()
        except OSError as exc:
            return Support(False, f"cannot make a {controller} cgroup: {exc.strerror or exc}")
    sweep_stale()
    atexit.register(_remove_parents)  # once per process (support() is cached)
    return Support(True)


def describe() -> str:
    """One line for the data plane's start: whether environments get Lambda's limits."""
    found = support()
    if found.ok:
        return (
            "limits: each environment gets its function's memory size (killed above it, "
            f"{OUT_OF_MEMORY}) and MemorySize/{MB_PER_VCPU} of a core (cgroup v1)"
        )
    return f"limits: NOT applied ({found.reason}); environments may use the whole machine"


class EnvironmentLimits:
    """The cgroups of one execution environment: made at start, removed when it is gone."""

    def __init__(self, name: str, memory_mb: int, cpus: float) -> None:
        memory_parent, cpu_parent = _parent("memory"), _parent("cpu")
        assert memory_parent is not None and cpu_parent is not None  # support() said ok
        self.memory_mb = memory_mb
        self.cpus = cpus
        self.memory = memory_parent / name
        self.cpu = cpu_parent / name
        self.memory.mkdir(parents=True)
        self.cpu.mkdir(parents=True)
        limit = str(memory_mb * 1024 * 1024)
        (self.memory / "memory.limit_in_bytes").write_text(limit)
        swap = self.memory / "memory.memsw.limit_in_bytes"
        if swap.exists():  # no swapping past the cap either, as on Lambda
            with contextlib.suppress(OSError):
                swap.write_text(limit)
        (self.cpu / "cpu.cfs_period_us").write_text(str(CFS_PERIOD_US))
        (self.cpu / "cpu.cfs_quota_us").write_text(str(max(1000, int(cpus * CFS_PERIOD_US))))
        # Opened now, written in the child before exec: the runner's first import already
        # runs under the limits.
        self._procs = [str(self.memory / "cgroup.procs"), str(self.cpu / "cgroup.procs")]

    def join(self) -> None:
        """Move the calling process into both cgroups (Popen's preexec_fn, in the child)."""
        for procs in self._procs:
            fd = os.open(procs, os.O_WRONLY)
            try:
                os.write(fd, b"0")  # "0": the writing process itself
            finally:
                os.close(fd)

    def oom_killed(self) -> bool:
        """Whether the kernel killed a process of this environment for its memory."""
        try:
            control = (self.memory / "memory.oom_control").read_text()
        except OSError:
            return False
        for line in control.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value) > 0
        # Kernels before 4.13 do not count kills; a hit limit is the next best sign.
        try:
            return int((self.memory / "memory.failcnt").read_text()) > 0
        except (OSError, ValueError):
            return False

    def cpu_throttled_us(self) -> int:
        """How long the environment was held back by its CPU share, in microseconds."""
        try:
            stat = (self.cpu / "cpu.stat").read_text()
        except OSError:
            return 0
        for line in stat.splitlines():
            key, _, value = line.partition(" ")
            if key == "throttled_time":
                return int(value) // 1000
        return 0

    def remove(self) -> None:
        """Remove both cgroups (call once their processes have exited)."""
        for directory in (self.memory, self.cpu):
            with contextlib.suppress(OSError):
                directory.rmdir()


def _remove_parents() -> None:
    # The per-process parents stay while the data plane runs (removing one between two
    # environments would race with the next one's mkdir); they go when it exits.
    for controller in ("memory", "cpu"):
        parent = _parent(controller)
        if parent is not None:
            with contextlib.suppress(OSError):
                parent.rmdir()


def for_environment(name: str, memory_mb: int) -> EnvironmentLimits | None:
    """Limits for a new environment of a ``memory_mb`` function, or None where unsupported."""
    if not support().ok:
        return None
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in name)[:80]
    return EnvironmentLimits(f"{safe}-{uuid.uuid4().hex[:8]}", memory_mb, vcpus(memory_mb))
