"""The edge of the inference function: event parsing and image extraction, without AWS."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lambda_src.inference import http
from lambda_src.inference.http import HttpError, ImagePayload, Request


def event(
    body: bytes | str | None = None,
    content_type: str | None = "image/png",
    method: str = "POST",
    path: str = "/predict",
    query: dict[str, str] | None = None,
    b64: bool = True,
) -> dict[str, Any]:
    headers = {"Content-Type": content_type} if content_type else {}
    raw: str | None
    if body is None:
        raw = None
    elif isinstance(body, bytes):
        raw = base64.b64encode(body).decode() if b64 else body.decode("latin-1")
    else:
        raw = body
    return {
        "version": "2.0",
        "routeKey": f"{method} {path}",
        "rawPath": path,
        "headers": headers,
        "queryStringParameters": query,
        "requestContext": {"http": {"method": method, "path": path}, "requestId": "r-1"},
        "body": raw,
        "isBase64Encoded": b64 and isinstance(body, bytes),
    }


def parse(e: dict[str, Any]) -> Request:
    request = http.parse_event(e)
    assert isinstance(request, Request)
    return request


def test_raw_image_body() -> None:
    payload = http.extract_image(parse(event(b"\x89PNG...")))
    assert isinstance(payload, ImagePayload)
    assert payload.data == b"\x89PNG..." and payload.top_k == 5 and payload.source == "body"


def test_headers_are_case_insensitive_and_parameters_dropped() -> None:
    request = parse(event(b"x", content_type="IMAGE/JPEG; charset=binary"))
    assert request.content_type == "image/jpeg"


def test_json_base64_and_data_url() -> None:
    png = b"\x89PNG\r\n"
    for text in (
        base64.b64encode(png).decode(),
        "data:image/png;base64," + base64.b64encode(png).decode(),
    ):
        body = json.dumps({"image_base64": text})
        payload = http.extract_image(parse(event(body, content_type="application/json", b64=False)))
        assert isinstance(payload, ImagePayload) and payload.data == png


def multipart(fields: dict[str, tuple[str, bytes]], boundary: str = "XyZ") -> bytes:
    out = b""
    for name, (ctype, data) in fields.items():
        out += (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                f'filename="{name}.png"\r\nContent-Type: {ctype}\r\n\r\n'
            ).encode()
            + data
            + b"\r\n"
        )
    return out + f"--{boundary}--\r\n".encode()


def test_multipart_field_image() -> None:
    body = multipart({"note": ("text/plain", b"hi"), "image": ("image/png", b"\x89PNGDATA")})
    request = parse(event(body, content_type="multipart/form-data; boundary=XyZ"))
    payload = http.extract_image(request)
    assert isinstance(payload, ImagePayload)
    assert payload.data == b"\x89PNGDATA" and payload.declared_type == "image/png"


@pytest.mark.parametrize(
    ("e", "status", "code"),
    [
        (event(None), 400, "empty_body"),
        (event(b""), 400, "empty_body"),
        (event(b"x", content_type=None), 415, "unsupported_media_type"),
        (event(b"x", content_type="text/html"), 415, "unsupported_media_type"),
        (event("{not json", content_type="application/json", b64=False), 400, "bad_json"),
        (event('{"image": "x"}', content_type="application/json", b64=False), 400, "missing_field"),
        (
            event('{"image_base64": "@@@@"}', content_type="application/json", b64=False),
            400,
            "bad_base64",
        ),
        (
            event(
                multipart({"file": ("image/png", b"x")}),
                content_type="multipart/form-data; boundary=XyZ",
            ),
            400,
            "missing_field",
        ),
        (event(b"x", content_type="multipart/form-data"), 400, "bad_multipart"),
        (event(b"x", query={"top_k": "0"}), 400, "bad_top_k"),
        (event(b"x", query={"top_k": "21"}), 400, "bad_top_k"),
        (event(b"x", query={"top_k": "five"}), 400, "bad_top_k"),
        (event(b"\0" * (http.MAX_IMAGE_BYTES + 1)), 413, "payload_too_large"),
        (event(b"\0" * (7 * 1024 * 1024)), 413, "payload_too_large"),
    ],
)
def test_bad_requests_answer_the_right_status(e: dict[str, Any], status: int, code: str) -> None:
    result = http.extract_image(parse(e))
    assert isinstance(result, HttpError)
    assert (result.status, result.code) == (status, code)
    if status == 413:
        assert str(http.MAX_IMAGE_BYTES) in result.message


def test_base64_flagged_body_with_junk_is_a_400() -> None:
    e = event(b"x")
    e["body"] = "not*base64!"
    result = http.parse_event(e)
    assert isinstance(result, HttpError) and result.status == 400


def test_event_without_method_is_a_400() -> None:
    result = http.parse_event({"headers": {}})
    assert isinstance(result, HttpError) and result.code == "bad_event"


def test_error_response_shape() -> None:
    response = http.error_response(HttpError(415, "unsupported_media_type", "nope"))
    assert response["statusCode"] == 415
    assert json.loads(response["body"]) == {
        "error": {"code": "unsupported_media_type", "message": "nope"}
    }


# No per-example deadline (Hypothesis' default is 200 ms): a busy 2-core machine must not
# turn slowness into failures.
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.one_of(st.none(), st.binary(max_size=256), st.text(max_size=256)),
    ctype=st.one_of(st.none(), st.sampled_from(sorted(http.IMAGE_TYPES)), st.text(max_size=40)),
    b64=st.booleans(),
    top_k=st.one_of(st.none(), st.text(max_size=5), st.integers(-5, 30).map(str)),
    headers_junk=st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=3),
)
def test_parser_never_raises(
    body: bytes | str | None,
    ctype: str | None,
    b64: bool,
    top_k: str | None,
    headers_junk: dict[str, str],
) -> None:
    e = event(body, content_type=ctype, query={"top_k": top_k} if top_k is not None else None)
    e["isBase64Encoded"] = b64
    e["headers"].update(headers_junk)
    request = http.parse_event(e)
    if isinstance(request, HttpError):
        assert 400 <= request.status < 500
        return
    result = http.extract_image(request)
    if isinstance(result, HttpError):
        assert 400 <= result.status < 500
    else:
        assert 1 <= result.top_k <= http.MAX_TOP_K and result.data
