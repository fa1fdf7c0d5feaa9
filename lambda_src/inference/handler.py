"""Inference handler (API Gateway HTTP API, payload format 2.0)."""

from __future__ import annotations

import json
import os
from typing import Any


def _response(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(body),
    }


def handle(event: dict[str, Any], context: object) -> dict[str, Any]:
    """Answer one API Gateway event."""
    release = os.environ.get("RELEASE_ID", "none")
    route = event.get("routeKey", "")
    if route == "GET /health":
        return _response(200, {"release": release, "loaded": False})
    return _response(
        503,
        {"error": {"code": "release_unavailable", "message": f"release {release!r} is not loaded"}},
    )
