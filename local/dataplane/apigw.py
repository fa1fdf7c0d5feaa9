"""API Gateway HTTP API behaviour, as pure functions: payload-2.0 events, response mapping,
stage throttling. The endpoint wires these to sockets and execution environments."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

# API Gateway's limits: 10 MB per request; Lambda's synchronous payload: 6 MB.
MAX_REQUEST_BYTES = 10 * 1024 * 1024
MAX_EVENT_BYTES = 6 * 1024 * 1024
_TEXT_TYPES = (
    "text/",
    "application/json",
    "application/xml",
    "application/javascript",
    "application/x-www-form-urlencoded",
)


@dataclass(frozen=True)
class HttpRequest:
    """An HTTP request as it reached the endpoint."""

    method: str
    path: str
    raw_query: str
    headers: list[tuple[str, str]]
    body: bytes
    source_ip: str = "127.0.0.1"


@dataclass(frozen=True)
class HttpResponse:
    """What goes back on the socket."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


def _is_text(content_type: str) -> bool:
    return content_type.lower().startswith(_TEXT_TYPES)


def build_event(
    request: HttpRequest, route_key: str, api_id: str, stage: str = "$default"
) -> dict[str, Any]:
    """The payload-format-2.0 event API Gateway sends for this request."""
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in request.headers:
        key = name.lower()
        if key == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
            continue
        # Repeated headers are joined with commas, as API Gateway does.
        headers[key] = f"{headers[key]},{value}" if key in headers else value
    query: dict[str, str] = {}
    for key, value in parse_qsl(request.raw_query, keep_blank_values=True):
        query[key] = f"{query[key]},{value}" if key in query else value
    now = time.time()
    text = _is_text(headers.get("content-type", ""))
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": request.path,
        "rawQueryString": request.raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": api_id,
            "domainName": headers.get("host", "127.0.0.1"),
            "domainPrefix": (headers.get("host", "127.0.0.1").split(".")[0]),
            "http": {
                "method": request.method,
                "path": request.path,
                "protocol": "HTTP/1.1",
                "sourceIp": request.source_ip,
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": uuid.uuid4().hex[:16],
            "routeKey": route_key,
            "stage": stage,
            "time": datetime.fromtimestamp(now, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": not text and bool(request.body),
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if request.body:
        event["body"] = (
            request.body.decode("utf-8", errors="replace")
            if text
            else base64.b64encode(request.body).decode()
        )
    return event


def json_error(
    status: int, message: str, headers: list[tuple[str, str]] | None = None
) -> HttpResponse:
    """API Gateway's own error shape: {"message": ...}."""
    return HttpResponse(
        status,
        [("content-type", "application/json"), *(headers or [])],
        json.dumps({"message": message}).encode(),
    )


def map_response(payload: Any) -> HttpResponse:
    """Turn a function's result into the HTTP response, per payload format 2.0."""
    if not isinstance(payload, dict) or "statusCode" not in payload:
        # 2.0 infers a 200 JSON response from any other valid JSON.
        return HttpResponse(
            200, [("content-type", "application/json")], json.dumps(payload).encode()
        )
    try:
        status = int(payload["statusCode"])
    except (TypeError, ValueError):
        return json_error(500, "Internal Server Error")
    headers = [(str(k), str(v)) for k, v in (payload.get("headers") or {}).items()]
    for cookie in payload.get("cookies") or []:
        headers.append(("set-cookie", str(cookie)))
    body = payload.get("body")
    if body is None:
        data = b""
    elif payload.get("isBase64Encoded"):
        data = base64.b64decode(str(body))
    else:
        data = str(body).encode()
    return HttpResponse(status, headers, data)


@dataclass
class TokenBucket:
    """The stage's throttle: `rate` requests per second with bursts up to `burst`."""

    rate: float
    burst: int
    _tokens: float = field(init=False)
    _last: float = field(init=False, default_factory=time.monotonic)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._tokens = float(self.burst)

    def take(self) -> bool:
        """True if a request may pass now."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False
