"""Syncer handler: publishes a release bundle from S3 onto EFS. Thin: download and delegate."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import IO, Any, cast

from lambda_src.syncer.sync import Outcome, SyncRequest, parse_request, publish, run_local

LOG = logging.getLogger("syncer")


def _root() -> Path:
    return Path(os.environ.get("EFS_MOUNT_PATH", "/mnt/ml"))


def handle(event: dict[str, Any], context: object) -> dict[str, Any]:
    """Answer one invocation with an Outcome dict; never raises."""
    try:
        request = parse_request(event)
        if isinstance(request, Outcome):
            return request.to_dict()
        if not isinstance(request, SyncRequest):
            return run_local(_root(), request).to_dict()
        return _sync(request, _remaining_seconds(context)).to_dict()
    except Exception as exc:  # answer the pipeline rather than die with a trace
        LOG.exception("unhandled error")
        return Outcome("error", "internal_error", f"{type(exc).__name__}: {exc}", {}).to_dict()


def _remaining_seconds(context: object) -> float | None:
    """How long Lambda lets this invocation run; None without a Lambda context."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if not callable(remaining):
        return None
    millis = remaining()
    return max(0.0, float(millis) / 1000.0) if isinstance(millis, int | float) else None


def _sync(request: SyncRequest, lease: float | None) -> Outcome:
    import boto3  # in the Lambda runtime; imported here so list/check need no AWS

    from lambda_src.syncer.download import S3Stream

    # The bundle is unpacked while it downloads (parallel ranged GETs, in order): it is
    # never stored in /tmp, and it is read once.
    stream = S3Stream(boto3.client("s3"), request.bucket, request.key)
    try:
        return publish(_root(), cast(IO[bytes], stream), request, lease)
    finally:
        stream.close()
