"""Syncer handler: publishes a release bundle from S3 onto EFS. Thin: download and delegate."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

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
        return _sync(request).to_dict()
    except Exception as exc:  # answer the pipeline rather than die with a trace
        LOG.exception("unhandled error")
        return Outcome("error", "internal_error", f"{type(exc).__name__}: {exc}", {}).to_dict()


def _sync(request: SyncRequest) -> Outcome:
    import boto3  # in the Lambda runtime; imported here so list/check need no AWS
    from botocore.exceptions import BotoCoreError, ClientError

    with tempfile.TemporaryDirectory(prefix="bundle-") as tmp:
        bundle = Path(tmp) / Path(request.key).name
        try:
            boto3.client("s3").download_file(request.bucket, request.key, str(bundle))
        except (BotoCoreError, ClientError) as exc:
            return Outcome(
                "refused",
                "download_failed",
                f"s3://{request.bucket}/{request.key}: {exc}",
                {},
            )
        return publish(_root(), bundle, request)
