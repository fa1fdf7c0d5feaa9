"""Faults injected into a deploy: a corrupted bundle in S3, a syncer killed mid-unpack, EFS full.

Each one must leave no partial release under releases/, keep `live` serving its release
through the local endpoint, never promote the failed release, and let a re-run publish it.
The real pipeline steps run against the session's stack; none of them moves `live`.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from ci import promote, publish, stack, syncer_client
from ci.aws import client
from efs_layout import (
    LockBusy,
    collect_garbage,
    list_releases,
    make_bundle,
    release_lock,
    store_has,
)
from efs_layout.release import build_manifest
from efs_layout.stamp import build_stamp
from efs_layout.verify import check_release
from lambda_src.syncer.sync import SyncRequest
from lambda_src.syncer.sync import publish as syncer_publish
from tests.conftest import REPO_ROOT, Deployed, Endpoint, endpoint_process
from tests.faults.conftest import (
    entries,
    package_with_new_bytes,
    predict,
    unique_release_id,
)
from tests.lambda_src import releases

pytestmark = [pytest.mark.emulator, pytest.mark.terraform]

MiB = 1024 * 1024


def live_release() -> str:
    """The release the live alias serves, from the emulator's control plane."""
    return promote.live_state(stack.load()).release_id


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def store_files(root: Path) -> set[str]:
    return {p.name for p in (root / "store").rglob("*") if p.is_file()}


def syncer(payload: dict[str, Any]) -> syncer_client.SyncerAnswer:
    return syncer_client.call(stack.load().syncer_function, payload)


def assert_serves(url: str, release_id: str) -> None:
    status, body, _ = predict(url)
    assert status == 200, body
    assert body["release"] == release_id and body["predictions"][0]["label"] == "3"


# (a) -----------------------------------------------------------------------------------


def test_a_bundle_corrupted_in_s3_is_refused_never_promoted_and_a_republish_succeeds(
    deployed: Deployed, aws_env: Deployed, stack_efs: Path, endpoint: Endpoint, tmp_path: Path
) -> None:
    live = live_release()
    assert_serves(endpoint.url, live)
    packaged = package_with_new_bytes(deployed, tmp_path, 512 * 1024)
    release_json = tmp_path / "release" / "release.json"
    new_file = sha256_of(tmp_path / "lib" / "fault_payload.bin")
    before = (entries(stack_efs / "releases"), entries(stack_efs / "tmp"), store_files(stack_efs))

    # What ci.publish does, with the object damaged between the upload and the syncer.
    bucket = stack.load().artifacts_bucket
    key = publish.upload(bucket, packaged)
    s3 = client("s3")
    data = bytearray(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    data[len(data) // 2] ^= 0xFF
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(data))
    answer = syncer(
        {"bucket": bucket, "key": key, "sha256": packaged.sha256, "release_id": packaged.release_id}
    )

    assert (answer.status, answer.code) == ("refused", "checksum_mismatch"), answer
    after = (entries(stack_efs / "releases"), entries(stack_efs / "tmp"), store_files(stack_efs))
    assert after == before, "the refused bundle left something on EFS"
    assert not store_has(stack_efs, [new_file])
    assert_serves(endpoint.url, live)

    refused = deployed.module("ci.promote", "--release", str(release_json))
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "failed the stamp check" in refused.stderr and "missing" in refused.stderr
    assert live_release() == live

    rerun = deployed.module("ci.publish", "--release", str(release_json))
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"published {packaged.release_id} (created)" in rerun.stdout
    assert syncer({"action": "check", "release_id": packaged.release_id}).ok
    assert live_release() == live
    assert_serves(endpoint.url, live)


# (b) -----------------------------------------------------------------------------------


def _runner_of(pid: int, parent: int) -> bool:
    """True if pid is an execution environment (runner.py) started by the parent process."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    ppid = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("PPid:"))
    return ppid == parent and b"runner.py" in cmdline


def test_b_a_syncer_killed_mid_unpack_leaves_no_partial_release_and_a_rerun_publishes(
    deployed: Deployed, aws_env: Deployed, stack_efs: Path, endpoint: Endpoint, tmp_path: Path
) -> None:
    live = live_release()
    assert_serves(endpoint.url, live)
    # Large and incompressible: the syncer spends seconds writing it, time enough to kill it.
    packaged = package_with_new_bytes(deployed, tmp_path, 64 * MiB)
    release_json = tmp_path / "release" / "release.json"
    releases_before = entries(stack_efs / "releases")
    stages_before = entries(stack_efs / "tmp")
    lock = stack_efs / "locks" / "releases.lock"
    # The syncer downloads into TMPDIR; a killed one leaves the bundle there.
    env = dict(deployed.env, TMPDIR=str(tmp_path))
    proc = subprocess.Popen(
        [sys.executable, "-m", "ci.publish", "--release", str(release_json)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        while not list((stack_efs / "tmp").glob("stage-*/incoming/*.part")):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the syncer never started writing"
            time.sleep(0.005)
        # The lock names its holder: the syncer's execution environment, mid-write.
        holder = json.loads(lock.read_text())["pid"]
        assert _runner_of(holder, proc.pid), f"pid {holder} is not the syncer of this publish"
        os.kill(holder, signal.SIGKILL)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    assert proc.returncode == 1, out + err
    assert "Traceback" not in err and "the syncer failed" in err, err
    assert packaged.release_id not in list_releases(stack_efs)
    assert entries(stack_efs / "releases") == releases_before, "a partial release is visible"
    leftovers = entries(stack_efs / "tmp") - stages_before
    assert leftovers, "the kill came after the syncer had finished"
    # The dead syncer's lock is still there; the next writer must not wait 16 minutes for it.
    assert json.loads(lock.read_text())["pid"] == holder
    assert_serves(endpoint.url, live)

    started = time.monotonic()
    rerun = deployed.module("ci.publish", "--release", str(release_json))
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"published {packaged.release_id} (created)" in rerun.stdout
    assert time.monotonic() - started < 60, "the re-run waited for the dead syncer's lock"
    assert not lock.exists()
    assert syncer({"action": "check", "release_id": packaged.release_id}).ok
    assert live_release() == live
    # What the dead syncer left in tmp/ is garbage (collected after an hour, here at once).
    assert collect_garbage(stack_efs, tmp_max_age=0).tmp_entries_removed >= len(leftovers)
    assert not leftovers & entries(stack_efs / "tmp")


def test_b_lock_of_a_killed_holder_on_this_machine_is_taken_over_at_once(tmp_path: Path) -> None:
    root = tmp_path / "efs"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, sys; from efs_layout import release_lock; "
            "held = release_lock(sys.argv[1]); held.__enter__(); os.kill(os.getpid(), 9)",
            str(root),
        ],
        cwd=REPO_ROOT,
    )
    assert holder.wait(timeout=60) == -signal.SIGKILL
    lock = root / "locks" / "releases.lock"
    dead = json.loads(lock.read_text())
    assert dead["pid"] == holder.pid and time.time() - dead["time"] < 60  # far from stale
    with release_lock(root, timeout=0) as info:
        assert json.loads(lock.read_text())["token"] == info.token != dead["token"]
    assert entries(lock.parent) == set()


@pytest.mark.parametrize("case", ["other-namespace", "live-process", "no-namespace"])
def test_b_lock_of_a_holder_that_may_be_alive_is_not_taken_over(tmp_path: Path, case: str) -> None:
    root = tmp_path / "efs"
    lock = root / "locks" / "releases.lock"
    with release_lock(root) as mine:
        here = json.loads(mine.path.read_text())
    unused_pid = _unused_pid()
    held = {
        "other-namespace": {**here, "pid": unused_pid, "pid_namespace": "another-boot/pid:[1]"},
        "live-process": {**here, "pid": os.getpid(), "token": "live"},
        "no-namespace": {
            k: v for k, v in {**here, "pid": unused_pid}.items() if k != "pid_namespace"
        },
    }[case]
    assert "pid_namespace" in here
    lock.write_text(json.dumps({**held, "time": time.time(), "token": case}))
    with pytest.raises(LockBusy), release_lock(root, timeout=0.2, poll_interval=0.05):
        pass
    assert json.loads(lock.read_text())["token"] == case


def _unused_pid() -> int:
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    for pid in range(pid_max - 1, 1, -1):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            continue
    raise AssertionError("no unused pid")


# (c) -----------------------------------------------------------------------------------


class _Tmpfs:
    """A tmpfs mounted on a directory: a file system that really fills up (needs root)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def mount(self, size: int) -> bool:
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(self.path)],
            capture_output=True,
            check=False,
        )
        return proc.returncode == 0

    def resize(self, size: int) -> None:
        subprocess.run(
            ["mount", "-o", f"remount,size={size}", str(self.path)], check=True, capture_output=True
        )

    def used(self) -> int:
        st = os.statvfs(self.path)
        return (st.f_blocks - st.f_bfree) * st.f_frsize

    def unmount(self) -> None:
        if subprocess.run(["umount", str(self.path)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(self.path)], check=False)


@pytest.fixture()
def tmpfs(tmp_path: Path) -> Iterator[_Tmpfs]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; the injected-ENOSPC test covers EFS full")
    fs = _Tmpfs(tmp_path / "full-efs")
    fs.path.mkdir()
    if not fs.mount(2048 * MiB):
        pytest.skip("mount -t tmpfs is not permitted here; the injected-ENOSPC test covers it")
    try:
        yield fs
    finally:
        fs.unmount()


def test_c_efs_full_on_a_real_small_file_system_fails_clearly_and_publishes_once_freed(
    deployed: Deployed,
    aws_env: Deployed,
    stack_efs: Path,
    tmpfs: _Tmpfs,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A copy of the stack's EFS (hard links kept) on a tmpfs with 512 KiB free; an endpoint,
    # the syncer and the steps all pointed at it. `live` and the shared EFS stay untouched.
    fs_id = deployed.outputs["efs_file_system_id"]
    subprocess.run(
        ["cp", "-a", str(deployed.build_dir / "efs" / fs_id), str(tmpfs.path)], check=True
    )
    root = tmpfs.path / fs_id / stack_efs.relative_to(deployed.build_dir / "efs" / fs_id)
    tmpfs.resize(tmpfs.used() + 512 * 1024)
    full_env = {"LOCAL_EFS_ROOT": str(tmpfs.path), "TMPDIR": str(tmp_path)}
    monkeypatch.setenv("LOCAL_EFS_ROOT", str(tmpfs.path))
    env = dict(deployed.env, **full_env)
    live = live_release()
    packaged = package_with_new_bytes(deployed, tmp_path / "pkg", 4 * MiB)
    release_json = tmp_path / "pkg" / "release" / "release.json"
    # Parts already there are a dead writer's from an earlier test, copied with the rest.
    before = (
        entries(root / "releases"),
        entries(root / "tmp"),
        store_files(root),
        set(root.rglob("*.part")),
    )

    with endpoint_process(deployed, tmp_path / "endpoint", full_env) as full:
        assert_serves(full.url, live)
        failed = _step(env, "ci.publish", "--release", str(release_json))
        assert failed.returncode == 1, failed.stdout + failed.stderr
        assert "io_error" in failed.stderr and "No space left on device" in failed.stderr
        assert "Traceback" not in failed.stderr
        after = (
            entries(root / "releases"),
            entries(root / "tmp"),
            store_files(root),
            set(root.rglob("*.part")),
        )
        assert after == before, "the failed publish left something on EFS"
        assert not (root / "locks" / "releases.lock").exists()
        assert_serves(full.url, live)
        refused = _step(env, "ci.promote", "--release", str(release_json))
        assert refused.returncode == 1 and "missing" in refused.stderr, refused.stderr
        assert live_release() == live

        tmpfs.resize(tmpfs.used() + 64 * MiB)  # space freed
        rerun = _step(env, "ci.publish", "--release", str(release_json))
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        assert f"published {packaged.release_id} (created)" in rerun.stdout
        assert check_release(root, packaged.release_id, full=True).ok
        assert_serves(full.url, live)


def _step(env: dict[str, str], module: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


class _FullDisk:
    """A file object that accepts ``budget["left"]`` more bytes, then fails with ENOSPC."""

    def __init__(self, inner: Any, budget: dict[str, int]) -> None:
        self._inner = inner
        self._budget = budget

    def write(self, data: bytes) -> int:
        room = self._budget["left"]
        if len(data) > room:
            self._inner.write(data[:room])
            self._budget["left"] = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._budget["left"] -= len(data)
        return int(self._inner.write(data))

    def __enter__(self) -> _FullDisk:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._inner.close()


def _bundle(tmp: Path, release_id: str, payload: bytes) -> tuple[Path, str]:
    src = releases.source_tree(
        tmp / f"src-{release_id}", {"w": 1}, lib_files={"lib/payload.bin": payload}
    )
    stamp = build_stamp(release_id, build_manifest(src), releases.fields())
    info = make_bundle(src, stamp, tmp / f"{release_id}.tar.gz")
    return info.path, info.sha256


def test_c_efs_full_injected_enospc_is_a_typed_failure_and_publishes_once_freed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where no tmpfs can be mounted: the store's copy loop, the one place that writes
    release content, fails with ENOSPC after 256 KiB."""
    root = tmp_path / "efs"
    old_id, new_id = unique_release_id(), "20991231T235959Z-0000001"
    old_path, old_sha = _bundle(tmp_path, old_id, os.urandom(MiB))
    assert syncer_publish(root, old_path, SyncRequest("b", "k", old_sha)).status == "created"
    new_path, new_sha = _bundle(tmp_path, new_id, os.urandom(4 * MiB))
    before = (store_files(root), entries(root / "tmp"))

    budget = {"left": 256 * 1024}
    real_fdopen = os.fdopen
    with monkeypatch.context() as patch:
        patch.setattr(os, "fdopen", lambda *a, **k: _FullDisk(real_fdopen(*a, **k), budget))
        outcome = syncer_publish(root, new_path, SyncRequest("b", "k", new_sha, new_id))
    assert budget["left"] == 0, "the injected fault never fired"

    assert (outcome.status, outcome.code) == ("error", "io_error"), outcome
    assert "No space left on device" in outcome.message
    assert list_releases(root) == [old_id]
    assert (store_files(root), entries(root / "tmp")) == before
    assert not (root / "locks" / "releases.lock").exists()
    assert check_release(root, old_id, full=True).ok

    again = syncer_publish(root, new_path, SyncRequest("b", "k", new_sha, new_id))
    assert again.status == "created", again
    assert list_releases(root) == sorted([old_id, new_id])
