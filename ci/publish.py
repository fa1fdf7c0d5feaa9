"""Pipeline step 5: upload the bundle to the artifacts bucket, then have the syncer publish it.

    python -m ci.publish --release build/release/release.json

Multipart upload for large bundles, with a progress bar on a terminal. Exits non-zero
unless the syncer answers created or already_present (its verdict is printed).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from boto3.s3.transfer import TransferConfig

from ci import invoke, paths, stack, syncer_client
from ci.aws import client
from ci.deploy_lock import DeployLockBusy, deploy_lock
from ci.package_release import PackagedRelease

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RELEASE = paths.build_dir() / "release" / "release.json"
PUBLISHED_JSON = "published.json"
# Parts of 16 MiB, eight at a time: a 250 MB bundle goes up as 16 parallel part uploads
# (S3 serves each connection at tens of MB/s; one stream would leave the link idle).
MULTIPART = TransferConfig(
    multipart_threshold=16 * 1024**2, multipart_chunksize=16 * 1024**2, max_concurrency=8
)


class PublishFailed(RuntimeError):
    """The syncer refused the release, or the upload failed."""


@dataclass(frozen=True)
class Published:
    """What publish moved and what the syncer said."""

    release_id: str
    key: str
    uploaded_bytes: int
    stored_bytes: int
    release_bytes: int
    status: str
    upload_seconds: float = 0.0
    # The syncer's own account: stream (download + verify + write), commit, link, check.
    syncer_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def moved_fraction(self) -> float:
        """Bytes that travelled (upload) over the release's size."""
        return self.uploaded_bytes / max(1, self.release_bytes)


def bundle_key(release_id: str) -> str:
    """Where a release's bundle lives in the artifacts bucket."""
    return f"releases/{release_id}.tar.gz"


def upload(bucket: str, release: PackagedRelease) -> str:
    """Upload the bundle (multipart above 64 MiB); show progress when stderr is a terminal."""
    key = bundle_key(release.release_id)
    callback = None
    bar = None
    if sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=release.bundle_bytes, unit="B", unit_scale=True, desc="upload")
        callback = bar.update
    try:
        client("s3").upload_file(release.bundle, bucket, key, Config=MULTIPART, Callback=callback)
    finally:
        if bar is not None:
            bar.close()
    return key


def publish(release: PackagedRelease, names: stack.Stack, out_dir: Path) -> Published:
    """Upload and sync one release; raise PublishFailed if the syncer refuses it."""
    started = time.perf_counter()
    key = upload(names.artifacts_bucket, release)
    uploaded = time.perf_counter() - started
    try:
        answer = syncer_client.call(
            names.syncer_function,
            {
                "bucket": names.artifacts_bucket,
                "key": key,
                "sha256": release.sha256,
                "release_id": release.release_id,
            },
        )
    except invoke.FunctionError as exc:
        # Killed mid-unpack (out of memory, timeout): nothing became visible on EFS, and
        # its lock is recoverable (efs_layout.lock), so a re-run repairs this failure.
        raise PublishFailed(f"the syncer failed on {release.release_id}: {exc}") from exc
    if not answer.ok:
        raise PublishFailed(
            f"the syncer refused {release.release_id}: {answer.code}: {answer.message}"
        )
    published = Published(
        release_id=release.release_id,
        key=key,
        uploaded_bytes=release.bundle_bytes,
        stored_bytes=int(answer.details.get("bytes_written_to_store", 0)),
        release_bytes=release.release_bytes,
        status=answer.status,
        upload_seconds=round(uploaded, 2),
        syncer_seconds={
            str(k): float(v) for k, v in dict(answer.details.get("seconds") or {}).items()
        },
    )
    (out_dir / PUBLISHED_JSON).write_text(json.dumps(asdict(published), indent=2) + "\n")
    return published


def main(argv: list[str] | None = None) -> int:
    """CLI of the publish step."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--release", type=Path, default=DEFAULT_RELEASE)
    parser.add_argument("--lock-wait", type=float, default=0.0, help="seconds to wait for the lock")
    args = parser.parse_args(argv)
    release = PackagedRelease.load(args.release)
    names = stack.load()
    try:
        with deploy_lock(names.artifacts_bucket, wait_s=args.lock_wait):
            published = publish(release, names, args.release.parent)
    except (PublishFailed, DeployLockBusy) as exc:
        print(f"publish: {exc}", file=sys.stderr)
        return 1
    print(
        f"published {published.release_id} ({published.status}): moved {published.uploaded_bytes} "
        f"of {published.release_bytes} bytes ({published.moved_fraction:.1%}), "
        f"{published.stored_bytes} new bytes on EFS"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
