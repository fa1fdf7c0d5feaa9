"""API Gateway payload format 2.0 at the edge: parse an event into a typed request, build responses.

Standard library only: this runs before anything from lib/ may be imported.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any, NoReturn

# A synchronous Lambda invocation carries at most 6 MB; base64 costs a third of it.
MAX_IMAGE_BYTES = 4 * 1024 * 1024
MAX_TOP_K = 20
DEFAULT_TOP_K = 5
IMAGE_TYPES = frozenset(
    {
        "image/jpeg",
        "image/jpg",
        "image/png",
        "image/webp",
        "image/gif",
        "image/bmp",
        "image/x-ms-bmp",
        "image/tiff",
    }
)
# Rows a features request may carry at most, whatever a model's manifest allows.
MAX_FEATURE_ROWS = 10_000
# Numbers a features request may carry at most (rows x features).
MAX_FEATURE_VALUES = 1_000_000
# Lambda's synchronous payload limit is 6 MB.
MAX_FEATURES_BODY_BYTES = 6 * 1024 * 1024


@dataclass(frozen=True)
class HttpError:
    """A request that cannot be served, as the client will see it."""

    status: int
    code: str
    message: str


@dataclass(frozen=True)
class Request:
    """The parts of an API Gateway 2.0 event the handler uses."""

    method: str
    path: str
    headers: dict[str, str]
    query: dict[str, str]
    body: bytes
    request_id: str = ""

    @property
    def route(self) -> str:
        """'METHOD /path', as API Gateway's routeKey."""
        return f"{self.method} {self.path}"

    @property
    def content_type(self) -> str:
        """The media type without parameters, lower case."""
        return self.headers.get("content-type", "").split(";")[0].strip().lower()


@dataclass(frozen=True)
class ImagePayload:
    """The image bytes of a /predict request and what was asked of them."""

    data: bytes
    declared_type: str
    top_k: int = DEFAULT_TOP_K
    source: str = field(default="body")


@dataclass(frozen=True)
class FeaturesPayload:
    """The rows of a JSON-features /predict request and what was asked of them."""

    rows: list[list[float]]
    top_k: int = DEFAULT_TOP_K


def parse_event(event: dict[str, Any]) -> Request | HttpError:
    """Turn a payload-format-2.0 event into a Request (or a 400 for a malformed event)."""
    if not isinstance(event, dict):
        return HttpError(400, "bad_event", "the event is not a JSON object")
    # API Gateway always sends objects here; a direct invocation may send anything.
    context = event.get("requestContext") or {}
    http = (context.get("http") or {}) if isinstance(context, dict) else {}
    raw_headers = event.get("headers") or {}
    raw_query = event.get("queryStringParameters") or {}
    if not all(isinstance(part, dict) for part in (context, http, raw_headers, raw_query)):
        return HttpError(400, "bad_event", "requestContext, headers or query is not an object")
    method = str(http.get("method") or "").upper()
    path = str(http.get("path") or event.get("rawPath") or "")
    if not method or not path:
        route_key = str(event.get("routeKey") or "")
        if " " in route_key:
            method, path = route_key.split(" ", 1)
    if not method or not path:
        return HttpError(400, "bad_event", "the event names no HTTP method and path")
    headers = {str(k).lower(): str(v) for k, v in raw_headers.items()}
    query = {str(k): str(v) for k, v in raw_query.items()}
    raw = event.get("body")
    if raw is None:
        body = b""
    elif event.get("isBase64Encoded"):
        try:
            body = base64.b64decode(str(raw), validate=True)
        except (binascii.Error, ValueError):
            return HttpError(400, "bad_body", "the body is marked base64 but is not valid base64")
    else:
        try:
            body = str(raw).encode("utf-8", errors="surrogateescape")
        except UnicodeEncodeError:  # a lone surrogate, which a JSON \ud800 escape can carry
            return HttpError(400, "bad_body", "the body is text that cannot be encoded as UTF-8")
    request_id = str(context.get("requestId") or "")
    return Request(method, path, headers, query, body, request_id)


def parse_top_k(query: dict[str, str]) -> int | HttpError:
    """The top_k query parameter, 1..20 (default 5)."""
    raw = query.get("top_k")
    if raw is None or raw == "":
        return DEFAULT_TOP_K
    try:
        value = int(raw)
    except ValueError:
        return HttpError(400, "bad_top_k", f"top_k must be a whole number from 1 to {MAX_TOP_K}")
    if not 1 <= value <= MAX_TOP_K:
        return HttpError(400, "bad_top_k", f"top_k must be a whole number from 1 to {MAX_TOP_K}")
    return value


def _too_large(size: int) -> HttpError:
    return HttpError(
        413,
        "payload_too_large",
        f"the image is {size} bytes; the limit is {MAX_IMAGE_BYTES} bytes "
        f"({MAX_IMAGE_BYTES // (1024 * 1024)} MiB)",
    )


def extract_image(request: Request) -> ImagePayload | HttpError:
    """Find the image in a /predict request: raw body, multipart field `image`, or JSON base64."""
    top_k = parse_top_k(request.query)
    if isinstance(top_k, HttpError):
        return top_k
    # Refuse oversized bodies before any decoding work.
    if len(request.body) > MAX_IMAGE_BYTES * 4 // 3 + 4096:
        return _too_large(len(request.body))
    ctype = request.content_type
    if not request.body:
        return HttpError(400, "empty_body", "the request has no body; send an image")
    if ctype in IMAGE_TYPES or ctype == "application/octet-stream":
        data, source = request.body, "body"
    elif ctype == "multipart/form-data":
        part = _multipart_image(request)
        if isinstance(part, HttpError):
            return part
        data, ctype, source = part[0], part[1], "multipart"
    elif ctype == "application/json":
        decoded = _json_image(request.body)
        if isinstance(decoded, HttpError):
            return decoded
        data, source = decoded, "json"
    elif not ctype:
        return HttpError(415, "unsupported_media_type", "the request has no content-type")
    else:
        return HttpError(
            415,
            "unsupported_media_type",
            f"content-type {ctype!r} is not supported; send image/jpeg, image/png, image/webp, "
            "image/gif, image/bmp, image/tiff, multipart/form-data with a field 'image', or "
            'application/json {"image_base64": ...}',
        )
    if len(data) > MAX_IMAGE_BYTES:
        return _too_large(len(data))
    if not data:
        return HttpError(422, "empty_image", "the image is empty (0 bytes)")
    return ImagePayload(data=data, declared_type=ctype, top_k=top_k, source=source)


def _multipart_image(request: Request) -> tuple[bytes, str] | HttpError:
    header = request.headers.get("content-type", "")
    if "boundary=" not in header:
        return HttpError(400, "bad_multipart", "multipart/form-data without a boundary")
    try:
        encoded_header = header.encode("latin-1")
    except UnicodeEncodeError:  # HTTP header values are latin-1 at most
        return HttpError(400, "bad_multipart", "the multipart boundary is not latin-1 text")
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + encoded_header + b"\r\n\r\n" + request.body
    )
    if not message.is_multipart():
        return HttpError(400, "bad_multipart", "the multipart body could not be parsed")
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "image":
            payload = part.get_payload(decode=True)
            if not isinstance(payload, bytes):
                return HttpError(400, "bad_multipart", "the field 'image' holds no file")
            return payload, part.get_content_type()
    return HttpError(400, "missing_field", "multipart/form-data needs a field named 'image'")


def _json_image(body: bytes) -> bytes | HttpError:
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        # ValueError covers JSONDecodeError, UnicodeDecodeError and an integer literal beyond
        # Python's 4300-digit limit; RecursionError is what "[[[[..." 100k deep raises.
        return HttpError(400, "bad_json", "the body is not valid JSON")
    if not isinstance(doc, dict) or not isinstance(doc.get("image_base64"), str):
        return HttpError(
            400,
            "missing_field",
            'JSON bodies need {"image_base64": "<base64>"} (image models) or '
            '{"instances": [[number, ...], ...]} (features models)',
        )
    text = doc["image_base64"]
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]  # a data: URL from a canvas
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return HttpError(400, "bad_base64", "image_base64 is not valid base64")


def is_features_request(request: Request) -> bool:
    """True for JSON that names "instances" and no "image_base64": the features kind.

    Any other JSON takes the image path, as before features existed, so a malformed body
    gets the same answer whichever model is served.
    """
    # A byte search, not a parse: the kind is decided before any size check has run.
    body = request.body
    return (
        request.content_type == "application/json"
        and b'"instances"' in body
        and b'"image_base64"' not in body
    )


class _NonFinite(Exception):
    """NaN, Infinity or -Infinity in the body; not a ValueError, so it is not taken for bad JSON."""


def _refuse_constant(name: str) -> NoReturn:
    raise _NonFinite(name)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):  # before int: bool is an int subclass
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _non_finite(where: str) -> HttpError:
    return HttpError(422, "non_finite_value", f"{where} is not a finite number")


def extract_instances(
    request: Request, *, features: int | None, max_rows: int
) -> FeaturesPayload | HttpError:
    """The rows of a features request: a list of equal-length lists of finite numbers.

    `features` is the row length the model expects (None: whatever the first row has);
    `max_rows` is the model's own limit, capped at MAX_FEATURE_ROWS.
    """
    top_k = parse_top_k(request.query)
    if isinstance(top_k, HttpError):
        return top_k
    body = request.body
    if not body:
        return HttpError(
            400, "empty_body", 'the request has no body; send {"instances": [[number, ...]]}'
        )
    if len(body) > MAX_FEATURES_BODY_BYTES:
        return HttpError(
            413,
            "payload_too_large",
            f"the body is {len(body)} bytes; the limit is {MAX_FEATURES_BODY_BYTES} bytes "
            f"({MAX_FEATURES_BODY_BYTES // (1024 * 1024)} MiB)",
        )
    row_limit = min(max_rows, MAX_FEATURE_ROWS)
    too_many_rows = HttpError(
        413,
        "too_many_rows",
        f"at most {row_limit} rows per request (or the rows hold nested arrays)",
    )
    # Every row opens with a "[", and so does the list holding them: counting bytes bounds
    # the rows before json.loads would build a million lists or recurse 100k deep.
    if body.count(b"[") - 1 > row_limit:
        return too_many_rows
    try:
        doc = json.loads(body, parse_constant=_refuse_constant)
    except _NonFinite as exc:
        return _non_finite(f"{exc.args[0]} in the body")
    except (ValueError, RecursionError):
        # ValueError covers JSONDecodeError, UnicodeDecodeError and an integer literal beyond
        # Python's 4300-digit limit; RecursionError is what nesting deeper than ~1000 raises.
        return HttpError(400, "bad_json", "the body is not valid JSON")
    instances = doc.get("instances") if isinstance(doc, dict) else None
    if not isinstance(instances, list):
        return HttpError(
            400, "missing_field", 'JSON features need {"instances": [[number, ...], ...]}'
        )
    if not instances:
        return HttpError(422, "empty_instances", "instances is empty; send at least one row")
    if len(instances) > row_limit:
        return too_many_rows
    first = instances[0]
    width = features if features is not None else len(first) if isinstance(first, list) else 0
    # Before converting anything: the product is known once the row width is.
    if len(instances) * width > MAX_FEATURE_VALUES:
        return HttpError(
            413,
            "too_many_values",
            f"{len(instances)} rows of {width} numbers is {len(instances) * width} numbers; "
            f"the limit is {MAX_FEATURE_VALUES}",
        )
    rows: list[list[float]] = []
    for i, row in enumerate(instances):
        if not isinstance(row, list):
            return HttpError(422, "bad_row", f"instances[{i}] is {_kind(row)}, not an array")
        if not row:
            return HttpError(
                422, "ragged_instances", f"instances[{i}] is empty; rows need at least one number"
            )
        if len(row) != width:
            return HttpError(
                422,
                "ragged_instances",
                f"instances[{i}] has length {len(row)}; expected {width}",
            )
        converted: list[float] = []
        for j, value in enumerate(row):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return HttpError(
                    422,
                    "non_numeric_value",
                    f"instances[{i}][{j}] is {_kind(value)}, not a number",
                )
            try:
                number = float(value)
            except OverflowError:  # an integer literal beyond 1.8e308
                return _non_finite(f"instances[{i}][{j}]")
            if not math.isfinite(number):  # a float literal such as 1e400 parses to inf
                return _non_finite(f"instances[{i}][{j}]")
            converted.append(number)
        rows.append(converted)
    return FeaturesPayload(rows=rows, top_k=top_k)


def json_response(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """A payload-format-2.0 response with a JSON body."""
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json", **(headers or {})},
        "isBase64Encoded": False,
        "body": json.dumps(body, separators=(",", ":")),
    }


def error_response(error: HttpError) -> dict[str, Any]:
    """The JSON error shape every failure uses: {"error": {"code", "message"}}."""
    return json_response(error.status, {"error": {"code": error.code, "message": error.message}})
