"""One deploy at a time: a lock object in the artifacts bucket, taken with a conditional write.

S3's If-None-Match: * makes the PUT fail when the object exists, so two pipelines cannot
both hold the lock; a lock older than its time to live (a killed pipeline) is taken over.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from ci.aws import client

LOCK_KEY = "locks/deploy.lock"
DEFAULT_TTL_S = 3600.0


class DeployLockBusy(RuntimeError):
    """Another pipeline holds the deploy lock."""


@dataclass(frozen=True)
class LockHolder:
    """Who holds the lock, as written in the lock object."""

    owner: str
    acquired_at: float

    def describe(self) -> str:
        """One line for a message."""
        age = time.time() - self.acquired_at
        return f"{self.owner} (for {age:.0f} s)"


def _owner() -> str:
    job = os.environ.get("CIRCLE_BUILD_URL") or os.environ.get("CIRCLE_JOB")
    return job or f"{socket.gethostname()}:{os.getpid()}"


def _read(s3: Any, bucket: str) -> LockHolder | None:
    try:
        body = s3.get_object(Bucket=bucket, Key=LOCK_KEY)["Body"].read()
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
            return None
        raise
    try:
        doc = json.loads(body)
        return LockHolder(str(doc["owner"]), float(doc["acquired_at"]))
    except (ValueError, KeyError, TypeError):
        return LockHolder("unreadable lock", 0.0)


def _abandoned(holder: LockHolder) -> bool:
    """True when the holder ran on this machine and its process is gone (killed pipeline)."""
    host, _, pid = holder.owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _try_put(s3: Any, bucket: str, holder: LockHolder) -> bool:
    body = json.dumps({"owner": holder.owner, "acquired_at": holder.acquired_at}).encode()
    try:
        s3.put_object(Bucket=bucket, Key=LOCK_KEY, Body=body, IfNoneMatch="*")
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("PreconditionFailed", "ConditionalRequestConflict"):
            return False
        raise
    return True


@contextmanager
def deploy_lock(
    bucket: str, wait_s: float = 0.0, ttl_s: float = DEFAULT_TTL_S, poll_s: float = 2.0
) -> Iterator[LockHolder]:
    """Hold the deploy lock for the with-block; wait up to wait_s for it, then fail clearly."""
    s3 = client("s3")
    me = LockHolder(_owner(), time.time())
    deadline = time.monotonic() + wait_s
    while not _try_put(s3, bucket, me):
        current = _read(s3, bucket)
        if current is not None and (
            time.time() - current.acquired_at > ttl_s or _abandoned(current)
        ):
            # A pipeline killed while holding the lock; its work is safe to redo.
            s3.delete_object(Bucket=bucket, Key=LOCK_KEY)
            continue
        if time.monotonic() >= deadline:
            who = current.describe() if current else "another pipeline"
            raise DeployLockBusy(f"the deploy lock is held by {who}; try again when it is done")
        time.sleep(poll_s)
    try:
        yield me
    finally:
        current = _read(s3, bucket)
        if current is not None and current.owner == me.owner:
            s3.delete_object(Bucket=bucket, Key=LOCK_KEY)
