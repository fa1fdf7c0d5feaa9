"""A lock file under ``<root>/locks`` that works on EFS.

fcntl/flock locks are not reliable across Lambda sandboxes on NFS, so the lock is a file
created with ``O_CREAT | O_EXCL`` (atomic on NFSv4) holding pid, host, time and a random
token. A lock older than ``stale_after`` seconds is assumed to belong to a writer that
died (a Lambda is killed after at most 15 minutes) and is taken over. A lock whose holder
ran under this kernel and pid namespace (boot id + pid namespace, written into the lock)
and whose process is gone is taken over at once: a syncer killed mid-unpack on this machine
would otherwise block every publish for 16 minutes. Lambda sandboxes are separate VMs with
boot ids of their own, so between sandboxes a holder that knows its deadline writes it
into the lock (``lease``: a Lambda's remaining time), and the lock is taken over as soon
as that deadline has passed, since Lambda has stopped the holder by then. Without a lease
only the age counts.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from efs_layout.errors import LockBusy
from efs_layout.layout import PathLike, locks_path, make_dirs

log = logging.getLogger(__name__)

# Lambda's hard limit is 900 s; a minute more covers clock skew between sandboxes.
DEFAULT_STALE_AFTER = 960.0
DEFAULT_TIMEOUT = 60.0
# A lease is trusted this long past its end: clocks of Lambda sandboxes (Amazon Time Sync)
# differ by far less, and a holder's last write may land just after its deadline.
LEASE_GRACE = 30.0
_NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")


@dataclass(frozen=True)
class LockInfo:
    """A held lock: its file and what was written into it."""

    path: Path
    token: str
    pid: int
    hostname: str
    acquired_at: float  # time.time() of the holder


def _pid_namespace() -> str | None:
    """This kernel's boot id and this process's pid namespace, or None where unknown.

    A pid means the same process only within one pid namespace of one running kernel;
    the hostname alone does not say that (containers and sandboxes reuse hostnames).
    """
    try:
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return None
    return f"{boot_id}/{namespace}" if boot_id and namespace else None


def _payload(token: str, lease: float | None) -> tuple[bytes, float]:
    now = time.time()
    body: dict[str, object] = {
        "pid": os.getpid(),
        "hostname": os.uname().nodename,
        "time": now,
        "token": token,
    }
    if lease is not None:
        body["expires"] = now + lease
    namespace = _pid_namespace()
    if namespace is not None:
        body["pid_namespace"] = namespace
    return (json.dumps(body, sort_keys=True) + "\n").encode(), now


def _holder_is_dead(holder: dict[str, object] | None) -> bool:
    """True only when the holder ran in our pid namespace and its process no longer exists.

    Anything less certain (another machine or sandbox, no namespace in the lock, a pid
    that exists, even if reused) counts as alive and is left to the age rule.
    """
    if holder is None:
        return False
    namespace = _pid_namespace()
    pid = holder.get("pid")
    if namespace is None or holder.get("pid_namespace") != namespace:
        return False
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def _lease_ended(holder: dict[str, object] | None) -> bool:
    """True when the holder wrote a deadline into the lock and it has passed (with grace)."""
    expires = holder.get("expires") if holder is not None else None
    if not isinstance(expires, int | float) or isinstance(expires, bool):
        return False
    return time.time() > float(expires) + LEASE_GRACE


def _read_holder(path: Path) -> tuple[dict[str, object] | None, float | None]:
    """The lock's JSON content (None if unreadable or half written) and its mtime."""
    try:
        raw = path.read_bytes()
        mtime = os.stat(path).st_mtime
    except OSError:
        return None, None
    try:
        data = json.loads(raw)
    except ValueError:
        return None, mtime
    return (data if isinstance(data, dict) else None), mtime


def _describe(holder: dict[str, object] | None) -> str:
    if holder is None:
        return "an unknown holder"
    return f"pid {holder.get('pid')} on {holder.get('hostname')} since {holder.get('time')}"


def _try_create(path: Path, payload: bytes) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    try:
        os.write(fd, payload)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    os.close(fd)
    return True


def _take_over(path: Path, stale_token: object) -> None:
    """Remove a stale lock file without removing a fresh one that replaced it meanwhile."""
    grave = path.with_name(f"{path.name}.stale-{secrets.token_hex(8)}")
    try:
        os.rename(path, grave)
    except FileNotFoundError:
        return  # another waiter removed it first
    moved, _ = _read_holder(grave)
    moved_token = moved.get("token") if moved is not None else None
    if stale_token is not None and moved_token != stale_token:
        # Between our read and our rename someone took the lock legitimately: give it back,
        # unless yet another lock exists by now, which then wins.
        try:
            os.link(grave, path)
        except FileExistsError:
            log.warning("lock %s: could not restore the lock of %s", path, _describe(moved))
    os.unlink(grave)


@contextmanager
def release_lock(
    root: PathLike,
    name: str = "releases",
    *,
    timeout: float = DEFAULT_TIMEOUT,
    stale_after: float = DEFAULT_STALE_AFTER,
    poll_interval: float = 0.2,
    lease: float | None = None,
) -> Iterator[LockInfo]:
    """Hold ``<root>/locks/<name>.lock`` for the duration of the ``with`` block.

    Waits up to ``timeout`` seconds, then raises LockBusy. A lock whose holder wrote it
    more than ``stale_after`` seconds ago, whose holder's lease has ended, or whose holder
    is known dead (same kernel and pid namespace, process gone), is taken over. ``lease``
    is how long this holder can live at most (a Lambda's remaining time): a waiter takes
    over once it has passed. The lock is not re-entrant: a holder that asks again waits
    for itself and times out.
    """
    if not _NAME_RE.fullmatch(name):
        raise ValueError(f"not a valid lock name: {name!r}")
    directory = locks_path(root)
    make_dirs(directory)
    path = directory / f"{name}.lock"
    token = secrets.token_hex(16)
    deadline = time.monotonic() + timeout
    while True:
        payload, acquired_at = _payload(token, lease)
        if _try_create(path, payload):
            break
        holder, mtime = _read_holder(path)
        written = holder.get("time") if holder is not None else None
        # Trust the holder's clock when it wrote one; the file's mtime comes from the server.
        since = written if isinstance(written, int | float) else mtime
        if since is not None and time.time() - float(since) > stale_after:
            log.warning("lock %s: taking over stale lock of %s", path, _describe(holder))
            _take_over(path, holder.get("token") if holder is not None else None)
            continue
        if _lease_ended(holder):
            log.warning("lock %s: the lease of %s has ended", path, _describe(holder))
            _take_over(path, holder.get("token") if holder is not None else None)
            continue
        if _holder_is_dead(holder):
            log.warning("lock %s: taking over the lock of dead %s", path, _describe(holder))
            _take_over(path, holder.get("token") if holder is not None else None)
            continue
        if time.monotonic() >= deadline:
            raise LockBusy(str(path), _describe(holder))
        time.sleep(max(0.0, min(poll_interval, deadline - time.monotonic())))

    info = LockInfo(path, token, os.getpid(), os.uname().nodename, acquired_at)
    try:
        yield info
    finally:
        current, _ = _read_holder(path)
        if current is not None and current.get("token") == token:
            os.unlink(path)
        else:
            log.warning(
                "lock %s was taken over while held; leaving it to %s", path, _describe(current)
            )
