"""Pipeline step 7: POST /warmup, then POST /predict on a known digit, through the endpoint.

    python -m ci.smoke [--endpoint URL] [--no-rollback] [--check-credentials]

On failure `live` is rolled back and the step exits non-zero. Against AWS the endpoint
is the HTTP API; against the emulator it is the local endpoint when one answers on
127.0.0.1:8080, else the live alias is invoked through the local data plane with the
same payload-format-2.0 events API Gateway would send.

Calls to the HTTP API (on AWS, or any --endpoint) carry what the stack's `api_authorizer`
output asks for:

- none: nothing;
- jwt: `Authorization: Bearer $SMOKE_BEARER_TOKEN` (a token from the issuer, for one of
  the audiences, the API accepts);
- iam: a SigV4 signature (service execute-api, region from AWS_REGION) with the usual
  credential chain's credentials (the job's OIDC role, environment, profile); the principal
  needs execute-api:Invoke on the API.

Without them the step sends nothing and fails with SmokeNotConfigured, and still rolls back:
a release nobody verified must not stay live. `--check-credentials` runs only that check, so
a pipeline can fail before it promotes anything. The local endpoint and the data plane do not
enforce the authorizer, so calls there carry no credentials.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ci import aws, invoke, stack
from ci.deploy_lock import deploy_lock

LOCAL_ENDPOINT = "http://127.0.0.1:8080"
KNOWN_DIGIT = "7"
BEARER_TOKEN_VARIABLE = "SMOKE_BEARER_TOKEN"
AUTHORIZERS = ("none", "jwt", "iam")

# The headers one request goes with: (method, url, body, headers) -> headers to set.
Credentials = Callable[[str, str, bytes, dict[str, str]], dict[str, str]]


class SmokeFailed(RuntimeError):
    """The deployed release did not answer as it must."""


class SmokeNotConfigured(SmokeFailed):
    """The smoke step lacks the credentials the API's authorizer needs; nothing was sent.

    The cause is the pipeline's configuration, not the release.
    """


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


def _no_credentials(method: str, url: str, body: bytes, headers: dict[str, str]) -> dict[str, str]:
    return {}


def _bearer() -> Credentials:
    token = os.environ.get(BEARER_TOKEN_VARIABLE, "").strip()
    if not token:
        raise SmokeNotConfigured(
            f"api_authorizer is jwt but {BEARER_TOKEN_VARIABLE} is not set: set it to a token "
            "the API's JWT authorizer accepts (its issuer, one of its audiences)"
        )
    header = {"Authorization": f"Bearer {token}"}
    return lambda method, url, body, headers: header


def _sigv4() -> Credentials:
    import boto3
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.exceptions import BotoCoreError, ClientError

    found = boto3.Session().get_credentials()
    hint = (
        "api_authorizer is iam: give the smoke step AWS credentials allowed "
        "execute-api:Invoke on the API (AWS_ROLE_ARN with OIDC, AWS_ACCESS_KEY_ID/"
        "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)"
    )
    if found is None:
        raise SmokeNotConfigured(f"no AWS credentials found; {hint}")
    try:
        # Resolved here, once: a role assumed through OIDC fails now, before any request,
        # and every request is signed with the same key (no refresh between /warmup and
        # /predict).
        frozen = found.get_frozen_credentials()
    except (BotoCoreError, ClientError) as exc:
        raise SmokeNotConfigured(f"AWS credentials could not be resolved ({exc}); {hint}") from exc
    signer = SigV4Auth(frozen, "execute-api", aws.region())

    def sign(method: str, url: str, body: bytes, headers: dict[str, str]) -> dict[str, str]:
        request = AWSRequest(method=method, url=url, data=body, headers=headers)
        signer.add_auth(request)
        return dict(request.headers.items())

    return sign


def credentials(mode: str) -> Credentials:
    """What adds the credentials api_authorizer `mode` needs to a request.

    Raises SmokeNotConfigured, before anything is sent, when they are missing.
    """
    if mode == "none":
        return _no_credentials
    if mode == "jwt":
        return _bearer()
    if mode == "iam":
        return _sigv4()
    raise SmokeNotConfigured(f"api_authorizer is {mode!r}; the smoke step knows {AUTHORIZERS}")


def _through_api(endpoint: str | None) -> bool:
    """True when smoke calls the HTTP API itself (AWS, or an endpoint named on purpose)."""
    return endpoint is not None or not invoke.uses_emulator()


def check_credentials(names: stack.Stack, endpoint: str | None = None) -> None:
    """Raise SmokeNotConfigured if smoke could not call the API as its authorizer demands.

    Sends no request. Meant for before a promote, so a missing token or role fails the
    pipeline while the old release is still live and untouched.
    """
    if _through_api(endpoint):
        credentials(names.api_authorizer)


def _http(
    endpoint: str,
    method: str,
    path: str,
    body: bytes,
    ctype: str | None,
    add_credentials: Credentials = _no_credentials,
) -> Answer:
    headers = {"content-type": ctype} if ctype else {}
    url = endpoint.rstrip("/") + path
    headers.update(add_credentials(method, url, body, headers))
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
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
    if endpoint is not None:
        chosen, add = endpoint, credentials(names.api_authorizer)
        yield lambda m, p, b, c: _http(chosen, m, p, b, c, add)
        return
    if _local_endpoint_serves(str(stack.outputs().get("api_id", ""))):
        yield lambda m, p, b, c: _http(LOCAL_ENDPOINT, m, p, b, c)
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
    """Warm up, predict the known digit; raise SmokeFailed with the reason otherwise.

    SmokeNotConfigured (a SmokeFailed) when the credentials the API needs are missing.
    """
    with calling(names, endpoint) as call:
        return _smoke(call, expected_release)


def _smoke(call: Any, expected_release: str | None) -> dict[str, Any]:
    warm = call("POST", "/warmup", b"", None)
    if warm.status != 200:
        raise SmokeFailed(f"/warmup answered {warm.status}: {warm.body}{_refusal(warm.status)}")
    if expected_release and warm.body.get("release") != expected_release:
        raise SmokeFailed(f"/warmup serves {warm.body.get('release')}, not {expected_release}")
    spec = warm.body.get("input") or {"kind": "image"}
    if spec.get("kind") == "features":
        return _smoke_features(call, warm.body, spec)
    predicted = call("POST", "/predict", known_image(), "image/png")
    if predicted.status != 200:
        raise SmokeFailed(
            f"/predict answered {predicted.status}: {predicted.body}{_refusal(predicted.status)}"
        )
    predictions = predicted.body.get("predictions") or []
    if not predictions:
        raise SmokeFailed("/predict returned no predictions")
    labels = [str(p.get("label")) for p in predictions]
    digits_model = set(labels) <= set("0123456789")
    if digits_model and labels[0] != KNOWN_DIGIT:
        raise SmokeFailed(f"/predict read the known {KNOWN_DIGIT} as {labels[0]}")
    return {"warmup": warm.body, "predict": predicted.body}


def _smoke_features(call: Any, warm: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """Predict the manifest's example rows: one answer per row, or the step fails."""
    rows = spec.get("example") or [[0.0] * int(spec.get("features") or 1)]
    body = json.dumps({"instances": rows}).encode()
    predicted = call("POST", "/predict", body, "application/json")
    if predicted.status != 200:
        raise SmokeFailed(
            f"/predict answered {predicted.status}: {predicted.body}{_refusal(predicted.status)}"
        )
    predictions = predicted.body.get("predictions") or []
    if len(predictions) != len(rows):
        raise SmokeFailed(f"/predict gave {len(predictions)} answers for {len(rows)} rows")
    return {"warmup": warm, "predict": predicted.body}


def _refusal(status: int) -> str:
    # API Gateway answers 401/403 itself when the authorizer refuses; the release never ran.
    if status in (401, 403):
        return (
            " (the API refused the smoke step's credentials: check api_authorizer, "
            f"{BEARER_TOKEN_VARIABLE} or the role's execute-api:Invoke)"
        )
    return ""


def main(argv: list[str] | None = None) -> int:
    """CLI of the smoke step."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--endpoint", help="base URL of the API (default: from the stack)")
    parser.add_argument("--release-id", help="the release live must serve")
    parser.add_argument("--no-rollback", action="store_true")
    parser.add_argument(
        "--check-credentials",
        action="store_true",
        help="only check that the credentials api_authorizer needs are there (jwt: "
        f"{BEARER_TOKEN_VARIABLE}; iam: AWS credentials); send nothing, change nothing",
    )
    args = parser.parse_args(argv)
    names = stack.load()
    if args.check_credentials:
        try:
            check_credentials(names, args.endpoint)
        except SmokeNotConfigured as exc:
            print(f"smoke: NOT CONFIGURED: {exc}", file=sys.stderr)
            return 1
        print(f"smoke: credentials for api_authorizer {names.api_authorizer} are there")
        return 0
    try:
        result = smoke(names, args.endpoint, args.release_id)
    except (SmokeFailed, invoke.FunctionError, OSError, KeyError, ValueError) as exc:
        if isinstance(exc, SmokeNotConfigured):
            print(
                f"smoke: NOT RUN: {exc}. The release was not checked; the cause is the smoke "
                "step's configuration, not the release.",
                file=sys.stderr,
            )
            if not args.no_rollback:
                print(
                    "smoke: rolling back all the same: an unverified release must not stay live",
                    file=sys.stderr,
                )
        else:
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
    if isinstance(top, dict):
        print(
            f"smoke: ok; release {result['predict'].get('release')} read the known digit as "
            f"{top['label']} ({top['score']:.2f})"
        )
    else:
        print(
            f"smoke: ok; release {result['predict'].get('release')} answered the example rows: "
            f"{json.dumps(result['predict']['predictions'])[:200]}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
