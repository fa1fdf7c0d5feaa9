"""release_lock(): O_EXCL lock file, timeout with LockBusy, stale-lock takeover."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from efs_layout import LockBusy, StampFields, assemble_release, release_lock
from efs_layout.lock import LEASE_GRACE

SourceFactory = Callable[..., Path]


def test_lock_file_holds_pid_host_and_time(root: Path) -> None:
    with release_lock(root) as info:
        content = json.loads(info.path.read_text())
        assert info.path == root / "locks" / "releases.lock"
        assert content["pid"] == os.getpid()
        assert content["hostname"] == info.hostname
        assert abs(content["time"] - time.time()) < 60
        assert content["token"] == info.token
    assert not info.path.exists()


def test_second_acquirer_times_out(root: Path) -> None:
    with release_lock(root):
        start = time.monotonic()
        with pytest.raises(LockBusy) as busy, release_lock(root, timeout=0.3, poll_interval=0.05):
            pytest.fail("acquired a held lock")
        assert time.monotonic() - start >= 0.3
        assert f"pid {os.getpid()}" in busy.value.holder
        assert isinstance(busy.value, TimeoutError)
    with release_lock(root, timeout=0):
        pass  # free again once released


def test_locks_with_other_names_are_independent(root: Path) -> None:
    with release_lock(root, "releases"), release_lock(root, "prune", timeout=0):
        pass
    with pytest.raises(ValueError), release_lock(root, "../escape"):
        pass


def test_stale_lock_is_taken_over(root: Path) -> None:
    lock = root / "locks" / "releases.lock"
    lock.parent.mkdir(parents=True)
    dead = {"pid": 1, "hostname": "gone", "time": time.time() - 7200, "token": "dead"}
    lock.write_text(json.dumps(dead))
    with release_lock(root, timeout=0, stale_after=3600) as info:
        assert json.loads(lock.read_text())["token"] == info.token
    assert not lock.exists()
    assert [p.name for p in lock.parent.iterdir()] == []  # the renamed stale file is gone too


def test_fresh_lock_is_not_taken_over(root: Path) -> None:
    lock = root / "locks" / "releases.lock"
    lock.parent.mkdir(parents=True)
    alive = {"pid": 1, "hostname": "busy", "time": time.time() - 10, "token": "alive"}
    lock.write_text(json.dumps(alive))
    with pytest.raises(LockBusy, match="busy"), release_lock(root, timeout=0.1, stale_after=3600):
        pass
    assert json.loads(lock.read_text())["token"] == "alive"


def _other_sandbox_lock(root: Path, **fields: object) -> Path:
    """A lock written by a syncer in another Lambda sandbox: pid unknowable from here."""
    lock = root / "locks" / "releases.lock"
    lock.parent.mkdir(parents=True)
    holder = {"pid": 8, "hostname": "169.254.10.1", "time": time.time() - 900, "token": "t"}
    lock.write_text(json.dumps({**holder, **fields}))
    return lock


def test_a_lock_whose_lease_ended_is_taken_over_at_once(root: Path) -> None:
    # A syncer stopped by Lambda's 900 s timeout: its lease (the remaining time it had)
    # has ended, so the next sync need not wait out the 16-minute age rule.
    lock = _other_sandbox_lock(root, expires=time.time() - LEASE_GRACE - 1)
    with release_lock(root, timeout=0) as info:
        assert json.loads(lock.read_text())["token"] == info.token


def test_a_lock_within_its_lease_is_respected(root: Path) -> None:
    lock = _other_sandbox_lock(root, expires=time.time() + 60)
    with pytest.raises(LockBusy), release_lock(root, timeout=0.1):
        pass
    assert json.loads(lock.read_text())["token"] == "t"


def test_a_holder_writes_its_lease(root: Path) -> None:
    with release_lock(root, lease=120) as info:
        content = json.loads(info.path.read_text())
        assert 0 < content["expires"] - content["time"] <= 120
    with release_lock(root) as info:
        assert "expires" not in json.loads(info.path.read_text())


def test_unreadable_stale_lock_is_judged_by_mtime(root: Path) -> None:
    lock = root / "locks" / "releases.lock"
    lock.parent.mkdir(parents=True)
    lock.write_bytes(b"\x00half-writ")
    old = time.time() - 7200
    os.utime(lock, (old, old))
    with release_lock(root, timeout=0, stale_after=3600):
        pass


def test_holder_whose_lock_was_taken_over_does_not_remove_the_new_one(root: Path) -> None:
    with release_lock(root) as first:
        # Someone judged us stale and took over.
        first.path.unlink()
        first.path.write_text(json.dumps({"token": "newcomer", "time": time.time()}))
    assert json.loads(first.path.read_text())["token"] == "newcomer"


def test_writers_respect_the_lock(
    root: Path, fields: StampFields, make_source: SourceFactory
) -> None:
    source = make_source()
    with release_lock(root), pytest.raises(LockBusy):
        assemble_release(root, "r1", source, fields, lock_timeout=0.1)
    assert assemble_release(root, "r1", source, fields).path.is_dir()
