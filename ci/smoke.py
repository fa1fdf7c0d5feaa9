"""Pipeline step 7: POST /warmup, then POST /predict on a known digit, through the endpoint.

    python -m ci.smoke [--endpoint URL] [--no-rollback]

On failure `live` is rolled back and the step exits non-zero. Against AWS the endpoint
is the HTTP API; against the emulator it is the local endpoint when one answers on
127.0.0.1:8080, else the live alias is invoked through the local data plane with the
same payload-format-2.0 events API Gateway would send.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ci import invoke, stack
from ci.deploy_lock import deploy_lock

LOCAL_ENDPOINT = "http://127.0.0.1:8080"
KNOWN_DIGIT = "7"


class SmokeFailed(RuntimeError):
    """The deployed release did not answer as it must."""


@dataclass(frozen=True)
class Answer:
    """An HTTP answer, however it was obtained."""

    status: int
    body: dict[str, Any]


def known_image() -> bytes:
    """A hand-drawn-looking 7 as a PNG (drawn here, so nothing is downloaded or committed)."""
    from PIL import Image, ImageDraw

    image = Image.new("L", (280, 280), 255)
    draw = ImageDraw.Draw(image)
    draw.line([(60, 60), (220, 60), (120, 240)], fill=0, width=26, joint="curve")
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def _http(endpoint: str, method: str, path: str, body: bytes, ctype: str | None) -> Answer:
    headers = {"content-type": ctype} if ctype else {}
    request = urllib.request.Request(
        endpoint.rstrip("/") + path, data=body, method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return Answer(response.status, json.loads(response.read() or b"{}"))
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, json.loads(exc.read() or b"{}"))


def _event(method: str, path: str, body: bytes, ctype: str | None) -> dict[str, Any]:
    return {
        "version": "2.0",
        "routeKey": f"{method} {path}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": ctype} if ctype else {},
        "requestContext": {
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
            },
            "requestId": f"smoke-{time.time_ns()}",
            "timeEpoch": int(time.time() * 1000),
        },
        "body": base64.b64encode(body).decode(),
        "isBase64Encoded": True,
    }


def _local_endpoint_serves(api_id: str) -> bool:
    """True when the local endpoint on 127.0.0.1:8080 serves this stack's API (not another)."""
    try:
        with urllib.request.urlopen(LOCAL_ENDPOINT + "/_local/api", timeout=2) as response:
            return bool(json.loads(response.read()).get("api_id") == api_id)
    except (urllib.error.URLError, OSError, ValueError):
        return False


@contextmanager
def calling(names: stack.Stack, endpoint: str | None) -> Iterator[Any]:
    """A function (method, path, body, content-type) -> Answer for the chosen way in.

    Through the local data plane the calls share one execution environment, as calls in
    a row share a warm one on Lambda: the /predict after /warmup is not a second cold
    start.
    """
    if endpoint is None and not invoke.uses_emulator():
        endpoint = names.api_endpoint
    if endpoint is None and _local_endpoint_serves(str(stack.outputs().get("api_id", ""))):
        endpoint = LOCAL_ENDPOINT
    if endpoint is not None:
        chosen = endpoint
        yield lambda m, p, b, c: _http(chosen, m, p, b, c)
        return
    with invoke.reusing(names.inference_function, names.live_alias) as send:

        def through_data_plane(method: str, path: str, body: bytes, ctype: str | None) -> Answer:
            result = send(_event(method, path, body, ctype))
            return Answer(int(result["statusCode"]), json.loads(result.get("body") or "{}"))

        yield through_data_plane


def caller(names: stack.Stack, endpoint: str | None) -> Any:
    """One call at a time (each through its own environment when local); see calling()."""

    def call(method: str, path: str, body: bytes, ctype: str | None) -> Answer:
        with calling(names, endpoint) as once:
            return once(method, path, body, ctype)  # type: ignore[no-any-return]

    return call


def smoke(names: stack.Stack, endpoint: str | None, expected_release: str | None) -> dict[str, Any]:
    """Warm up, predict the known digit; raise SmokeFailed with the reason otherwise."""
    with calling(names, endpoint) as call:
        return _smoke(call, expected_release)


def _smoke(call: Any, expected_release: str | None) -> dict[str, Any]:
    warm = call("POST", "/warmup", b"", None)
    if warm.status != 200:
        raise SmokeFailed(f"/warmup answered {warm.status}: {warm.body}")
    if expected_release and warm.body.get("release") != expected_release:
        raise SmokeFailed(f"/warmup serves {warm.body.get('release')}, not {expected_release}")
    predicted = call("POST", "/predict", known_image(), "image/png")
    if predicted.status != 200:
        raise SmokeFailed(f"/predict answered {predicted.status}: {predicted.body}")
    predictions = predicted.body.get("predictions") or []
    if not predictions:
        raise SmokeFailed("/predict returned no predictions")
    labels = [str(p.get("label")) for p in predictions]
    digits_model = set(labels) <= set("0123456789")
    if digits_model and labels[0] != KNOWN_DIGIT:
        raise SmokeFailed(f"/predict read the known {KNOWN_DIGIT} as {labels[0]}")
    return {"warmup": warm.body, "predict": predicted.body}


def main(argv: list[str] | None = None) -> int:
    """CLI of the smoke step."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--endpoint", help="base URL of the API (default: from the stack)")
    parser.add_argument("--release-id", help="the release live must serve")
    parser.add_argument("--no-rollback", action="store_true")
    args = parser.parse_args(argv)
    names = stack.load()
    try:
        result = smoke(names, args.endpoint, args.release_id)
    except (SmokeFailed, invoke.FunctionError, OSError, KeyError, ValueError) as exc:
        print(f"smoke: FAILED: {exc}", file=sys.stderr)
        if not args.no_rollback:
            from ci import promote

            try:
                with deploy_lock(names.artifacts_bucket, wait_s=60):
                    state = promote.rollback(names)
                print(f"smoke: rolled back; live is version {state.version} ({state.release_id})")
            except Exception as rollback_error:
                print(f"smoke: rollback failed too: {rollback_error}", file=sys.stderr)
        return 1
    top = result["predict"]["predictions"][0]
    print(
        f"smoke: ok; release {result['predict'].get('release')} read the known digit as "
        f"{top['label']} ({top['score']:.2f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
