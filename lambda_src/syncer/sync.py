"""The syncer's logic, callable without AWS: parse a request, publish a bundle, answer a verdict.

The handler only adds the S3 download; everything about the release is efs_layout's.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from efs_layout import (
    BundleChecksumMismatch,
    BundleError,
    BundleManifestMismatch,
    EfsLayoutError,
    InvalidReleaseId,
    LockBusy,
    ReleaseConflict,
    UnsafeBundleMember,
    VerificationFailed,
    check_release,
    delete_release,
    list_releases,
    store_has,
    unpack_bundle_stream,
)
from lambda_src.syncer.download import DownloadFailed

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class SyncRequest:
    """Publish the bundle at s3://bucket/key, whose sha256 is known, as a release."""

    bucket: str
    key: str
    sha256: str
    release_id: str | None = None


@dataclass(frozen=True)
class CheckRequest:
    """Run the full check of one release (every file hashed)."""

    release_id: str


@dataclass(frozen=True)
class ListRequest:
    """List the releases on EFS."""


@dataclass(frozen=True)
class HaveRequest:
    """Which of these file hashes the store already holds (so a bundle can leave them out)."""

    hashes: tuple[str, ...]


@dataclass(frozen=True)
class DeleteRequest:
    """Delete one release (the pipeline's prune step decides which)."""

    release_id: str


@dataclass(frozen=True)
class Outcome:
    """What the syncer answers: a status the pipeline can act on, and details."""

    status: str  # created | already_present | refused | ok | deleted | busy | error
    code: str
    message: str
    details: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form returned to the invoker."""
        return asdict(self)


Request = SyncRequest | CheckRequest | ListRequest | DeleteRequest | HaveRequest
MAX_HAVE = 200_000


def parse_request(event: Any) -> Request | Outcome:
    """Parse the invocation payload; a malformed one is refused with a reason."""
    if not isinstance(event, dict):
        return _refused("bad_request", "the payload must be a JSON object")
    action = event.get("action", "sync")
    if action == "list":
        return ListRequest()
    if action == "have":
        hashes = event.get("sha256")
        if not isinstance(hashes, list) or len(hashes) > MAX_HAVE:
            return _refused("bad_request", f"have needs a list of at most {MAX_HAVE} sha256")
        if not all(isinstance(h, str) and _SHA256.match(h) for h in hashes):
            return _refused("bad_request", "have needs sha256 values of 64 lower-case hex digits")
        return HaveRequest(tuple(hashes))
    if action in ("check", "delete"):
        release_id = event.get("release_id")
        if not isinstance(release_id, str) or not release_id:
            return _refused("bad_request", f"{action} needs a release_id")
        return CheckRequest(release_id) if action == "check" else DeleteRequest(release_id)
    if action != "sync":
        return _refused("bad_request", f"unknown action {action!r}")
    bucket, key, sha = event.get("bucket"), event.get("key"), event.get("sha256")
    if not all(isinstance(v, str) and v for v in (bucket, key, sha)):
        return _refused("bad_request", "sync needs bucket, key and sha256")
    assert isinstance(bucket, str) and isinstance(key, str) and isinstance(sha, str)
    if not _SHA256.match(sha.lower()):
        return _refused("bad_request", "sha256 must be 64 hex digits")
    release_id = event.get("release_id")
    if release_id is not None and not isinstance(release_id, str):
        return _refused("bad_request", "release_id must be a string")
    return SyncRequest(bucket, key, sha.lower(), release_id)


def publish(
    root: Path, bundle: Path | IO[bytes], request: SyncRequest, lease: float | None = None
) -> Outcome:
    """Unpack a bundle (a file, or the S3 download as it streams in) onto EFS.

    ``lease`` is how long this syncer can still run (Lambda's remaining time): the EFS
    lock carries it, so after a timeout the next sync takes the lock over at once.
    Every failure becomes a refusal, never a raise.
    """
    started = time.perf_counter()
    try:
        if isinstance(bundle, Path):
            with bundle.open("rb") as stream:
                result = unpack_bundle_stream(
                    root,
                    stream,
                    request.sha256,
                    expected_release_id=request.release_id,
                    lock_lease=lease,
                )
        else:
            result = unpack_bundle_stream(
                root,
                bundle,
                request.sha256,
                expected_release_id=request.release_id,
                lock_lease=lease,
            )
    except DownloadFailed as exc:
        return _refused("download_failed", f"s3://{request.bucket}/{request.key}: {exc}")
    except LockBusy as exc:
        return Outcome("busy", "lock_busy", str(exc), {})
    except BundleChecksumMismatch as exc:
        return _refused("checksum_mismatch", str(exc))
    except UnsafeBundleMember as exc:
        return _refused("unsafe_bundle", str(exc))
    except BundleManifestMismatch as exc:
        return _refused("manifest_mismatch", str(exc))
    except ReleaseConflict as exc:
        return _refused("release_conflict", str(exc))
    except VerificationFailed as exc:
        return _refused(f"verdict_{exc.verdict.code.value}", str(exc))
    except InvalidReleaseId as exc:
        return _refused("bad_release_id", str(exc))
    except BundleError as exc:
        return _refused("bad_bundle", str(exc))
    except EfsLayoutError as exc:
        return _refused("release_error", str(exc))
    except OSError as exc:  # EFS full, permissions: the release was not published
        return Outcome("error", "io_error", f"{type(exc).__name__}: {exc}", {})
    return Outcome(
        result.status.value,
        "ok",
        f"release {result.release_id} {result.status.value}",
        {
            "release_id": result.release_id,
            "bytes_total": result.bytes_total,
            "bytes_written_to_store": result.bytes_written_to_store,
            "files_total": result.files_total,
            "files_written_to_store": result.files_written_to_store,
            "files_copied_past_link_limit": result.private_copies,
            "seconds": {
                **{step: round(s, 3) for step, s in result.timings.items()},
                "total": round(time.perf_counter() - started, 3),
            },
        },
    )


def run_local(
    root: Path, request: CheckRequest | ListRequest | DeleteRequest | HaveRequest
) -> Outcome:
    """The requests that need no download."""
    if isinstance(request, HaveRequest):
        present = store_has(root, request.hashes)
        return Outcome(
            "ok",
            "ok",
            f"{len(present)} of {len(request.hashes)} present",
            {"present": sorted(present)},
        )
    if isinstance(request, ListRequest):
        return Outcome("ok", "ok", "releases listed", {"releases": list_releases(root)})
    if isinstance(request, CheckRequest):
        verdict = check_release(root, request.release_id, full=True)
        return Outcome(
            "ok" if verdict.ok else "refused",
            verdict.code.value,
            verdict.message,
            {"release_id": request.release_id},
        )
    try:
        deleted = delete_release(root, request.release_id)
    except LockBusy as exc:
        return Outcome("busy", "lock_busy", str(exc), {})
    except EfsLayoutError as exc:
        return _refused("release_error", str(exc))
    return Outcome(
        "deleted" if deleted.existed else "ok",
        "ok",
        f"release {request.release_id} {'deleted' if deleted.existed else 'was not there'}",
        {"store_bytes_freed": deleted.gc.store_bytes_freed},
    )


def _refused(code: str, message: str) -> Outcome:
    return Outcome("refused", code, message, {})
