"""Syncer handler: publishes a release bundle from S3 onto EFS."""

from __future__ import annotations

from typing import Any


def handle(event: dict[str, Any], context: object) -> dict[str, Any]:
    """Answer one sync request."""
    return {"status": "refused", "reason": "no release format yet"}
