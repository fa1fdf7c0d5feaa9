"""Lambda's memory cap and CPU share per local execution environment (cgroup v1).

On this kind of machine (Linux, root, cgroup v1 memory and cpu controllers) the limits
must be in force: the tests below are skipped only where limits.support() says they
cannot be, with its reason, and a test checks that CI machines like this one are not
such a place.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import sys
import zipfile
from pathlib import Path

import pytest

from local.dataplane import limits
from local.dataplane.functions import FunctionSpec
from local.dataplane.pool import FunctionPool

HANDLER = """
import os, time
def handle(event, context):
    if "allocate_mb" in event:
        block = bytearray(event["allocate_mb"] * 1024 * 1024)
        for i in range(0, len(block), 4096):  # touch every page: resident, not just reserved
            block[i] = 1
        return {"allocated": len(block)}
    if "spin_s" in event:
        wall, cpu = time.monotonic(), time.process_time()
        while time.monotonic() - wall < event["spin_s"]:
            pass
        return {"cpu_share": (time.process_time() - cpu) / (time.monotonic() - wall)}
    return {"ok": True}
"""

SUPPORT = limits.support()
needs_limits = pytest.mark.skipif(not SUPPORT.ok, reason=f"no cgroup limits: {SUPPORT.reason}")


def make_spec(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, memory_mb: int
) -> FunctionSpec:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("fn.py", HANDLER)
    data = buf.getvalue()
    (tmp_path / "lambda").mkdir(exist_ok=True)
    (tmp_path / "lambda" / f"{name}.zip").write_bytes(data)
    monkeypatch.setenv("BUILD_DIR", str(tmp_path))
    return FunctionSpec(
        name=name,
        version="1",
        handler="fn.handle",
        runtime=f"python{sys.version_info[0]}.{sys.version_info[1]}",
        memory_mb=memory_mb,
        timeout_s=30,
        environment={},
        code_sha256=base64.b64encode(hashlib.sha256(data).digest()).decode(),
        reserved_concurrency=1,
    )


def test_the_cpu_share_is_memory_over_1769_mb_capped_at_the_cores() -> None:
    assert limits.vcpus(1769, cores=2) == pytest.approx(1.0)
    assert limits.vcpus(1024, cores=2) == pytest.approx(1024 / 1769)
    assert limits.vcpus(10240, cores=2) == 2.0


def test_limits_are_available_on_a_linux_root_machine_with_cgroup_v1() -> None:
    """So that the tests below are never skipped in CI here (only where they cannot run)."""
    here = (
        sys.platform.startswith("linux")
        and os.geteuid() == 0
        and Path("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists()
        and Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").exists()
        and os.environ.get(limits.SWITCH, "").lower() != "off"
    )
    if here:
        assert SUPPORT.ok, SUPPORT.reason
    else:
        assert not SUPPORT.ok and SUPPORT.reason


@needs_limits
def test_an_environment_over_its_memory_is_killed_and_answers_out_of_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = FunctionPool(lambda: make_spec(tmp_path, monkeypatch, "small", 128), tmp_path / "logs")
    other = FunctionPool(lambda: make_spec(tmp_path, monkeypatch, "other", 512), tmp_path / "logs")
    try:
        assert other.invoke({}).kind == "ok"
        assert small.invoke({"allocate_mb": 32}).kind == "ok"  # under the cap: serves
        outcome = small.invoke({"allocate_mb": 300})
        assert outcome.kind == "crashed"
        assert limits.OUT_OF_MEMORY in outcome.message and "128 MB" in outcome.message
        assert small.environment_count == 0
        log = (tmp_path / "logs" / "small.log").read_text()
        report = [line for line in log.splitlines() if line.startswith("REPORT")][-1]
        assert "Memory Size: 128 MB" in report
        assert f"Status: error\tError Type: {limits.OUT_OF_MEMORY}" in report
        # The other function's environment kept serving, and the small one starts again.
        assert other.invoke({}).kind == "ok" and other.started_environments == 1
        assert small.invoke({}).kind == "ok"
    finally:
        small.close()
        other.close()


@needs_limits
@pytest.mark.parametrize("memory_mb", [885, 1769])
def test_a_busy_loop_gets_its_share_of_a_core(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, memory_mb: int
) -> None:
    pool = FunctionPool(
        lambda: make_spec(tmp_path, monkeypatch, f"spin{memory_mb}", memory_mb), tmp_path / "logs"
    )
    try:
        outcome = pool.invoke({"spin_s": 2.0})
        assert outcome.kind == "ok"
        expected = memory_mb / limits.MB_PER_VCPU
        # CFS enforces the quota per 100 ms period; the loop may also be delayed by others.
        assert expected * 0.7 <= outcome.payload["cpu_share"] <= expected * 1.1, outcome.payload
    finally:
        pool.close()


@needs_limits
def test_an_environments_cgroups_go_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = FunctionPool(lambda: make_spec(tmp_path, monkeypatch, "gone", 256), tmp_path / "logs")
    try:
        assert pool.invoke({}).kind == "ok"
        (environment,) = pool._environments
        assert environment.limits is not None
        made = [environment.limits.memory, environment.limits.cpu]
        assert all(path.is_dir() for path in made)
        assert (environment.limits.memory / "memory.limit_in_bytes").read_text().strip() == str(
            256 * 1024 * 1024
        )
        assert str(environment.pid) in (environment.limits.memory / "cgroup.procs").read_text()
    finally:
        pool.close()
    assert not any(path.exists() for path in made)


@needs_limits
def test_parents_left_by_killed_processes_are_swept() -> None:
    own = limits._own_path("cpu")
    assert own is not None
    dead = 4_194_000  # above any pid this machine hands out (pid_max is 4194304 at most)
    stale = own / f"lambda-local-{dead}" / "env-gone"
    stale.mkdir(parents=True)
    assert limits.sweep_stale() >= 1
    assert not stale.parent.exists()
