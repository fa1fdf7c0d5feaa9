"""The smoke step against an API with an authorizer (issue 12, item 4).

A fake API Gateway on 127.0.0.1 answers /warmup and /predict as the inference function
would, but only to requests that carry what its mode demands: for iam it recomputes the
SigV4 signature with the known test credentials (as API Gateway does with the caller's
secret key), for jwt it wants the expected bearer token. No emulator, no Terraform.
"""

from __future__ import annotations

import json
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from ci import pipeline, promote, smoke, stack

ACCESS_KEY = "AKIDSMOKETEST0000000"
SECRET_KEY = "smoke-test-secret-key/0000000000000000000"
REGION = "eu-west-1"
# The variable the docs and the CLI help name: pinned here, not read from the module.
TOKEN_VARIABLE = "SMOKE_BEARER_TOKEN"
BEARER = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzbW9rZSJ9.c2lnbmF0dXJl"
SIGV4_TIMESTAMP = "%Y%m%dT%H%M%SZ"
AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<credential>[^,]+), "
    r"SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=[0-9a-f]{64}"
)

ROUTES: dict[str, dict[str, Any]] = {
    "/warmup": {"release": "r1"},
    "/predict": {"predictions": [{"label": "7", "score": 0.9}], "release": "r1"},
}

AWS_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_ENDPOINT_URL",
    "AWS_DEFAULT_REGION",
    TOKEN_VARIABLE,
)


@dataclass
class Received:
    """One request the fake API got."""

    method: str
    path: str
    headers: dict[str, str]


@dataclass
class FakeApi:
    """What the fake API Gateway demands, and what it was sent."""

    url: str
    mode: str = "none"
    session_token: str | None = None
    received: list[Received] = field(default_factory=list)


class _Server(ThreadingHTTPServer):
    api: FakeApi


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        api = self.server.api
        api.received.append(Received(self.command, self.path, dict(self.headers.items())))
        refused = _refusal(api, self.command, self.path, self.headers, body)
        if refused is not None:
            self._answer(*refused)
        elif self.path in ROUTES:
            self._answer(200, ROUTES[self.path])
        else:
            self._answer(404, {"message": "Not Found"})

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep pytest's output to the tests' own


def _refusal(
    api: FakeApi, method: str, path: str, headers: Message, body: bytes
) -> tuple[int, dict[str, Any]] | None:
    """What API Gateway would answer instead of invoking the function, or None to let it."""
    if api.mode == "jwt":
        if headers.get("Authorization") != f"Bearer {BEARER}":
            return 401, {"message": "Unauthorized"}
        return None
    if api.mode == "iam":
        reason = _sigv4_mismatch(api, method, path, headers, body)
        return None if reason is None else (403, {"message": reason})
    return None


def _sigv4_mismatch(
    api: FakeApi, method: str, path: str, headers: Message, body: bytes
) -> str | None:
    """Why the request's SigV4 signature is not the one the test credentials give, if it isn't."""
    received = headers.get("Authorization") or ""
    match = AUTHORIZATION.fullmatch(received)
    if match is None:
        return "Missing Authentication Token"
    signed = match["signed"].split(";")
    if not {"host", "x-amz-date"} <= set(signed) or any(headers.get(h) is None for h in signed):
        return "host and x-amz-date must be signed, and every signed header sent"
    try:
        when = datetime.strptime(headers["X-Amz-Date"], SIGV4_TIMESTAMP)
    except ValueError:
        return "X-Amz-Date is not a SigV4 timestamp"
    if abs(datetime.now(UTC).replace(tzinfo=None) - when) > timedelta(minutes=5):
        return "Signature expired"
    if headers.get("X-Amz-Security-Token") != api.session_token:
        return "The security token included in the request is invalid"
    # The same request as it arrived, signed with the credentials the fake trusts at the
    # moment the client signed it: a different secret gives a different signature.
    rebuilt = AWSRequest(
        method=method,
        url=f"http://{headers['Host']}{path}",
        data=body,
        headers={name: str(headers[name]) for name in signed},
    )
    with mock.patch("botocore.auth.get_current_datetime", return_value=when):
        SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "execute-api", REGION).add_auth(rebuilt)
    if rebuilt.headers["Authorization"] != received:
        return "The request signature we calculated does not match the signature you provided"
    return None


@pytest.fixture()
def fake_api() -> Iterator[FakeApi]:
    """The fake API Gateway, on a free port; set .mode in the test."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.api = FakeApi(url=f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server.api
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(autouse=True)
def no_ambient_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No credentials, token, profile, config file or instance metadata from the machine."""
    for name in AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_REGION", REGION)


@pytest.fixture()
def iam_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """The credentials the fake API trusts, in the environment."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)


def names(authorizer: str) -> stack.Stack:
    """A stack as Terraform's outputs would describe it, with this authorizer."""
    return stack.Stack(
        artifacts_bucket="artifacts",
        inference_function="inference",
        syncer_function="syncer",
        api_endpoint="https://unused.execute-api.eu-west-1.amazonaws.com",
        api_authorizer=authorizer,
    )


def test_iam_smoke_passes_a_real_sigv4_check(fake_api: FakeApi, iam_credentials: None) -> None:
    fake_api.mode = "iam"
    result = smoke.smoke(names("iam"), fake_api.url, "r1")
    assert result["predict"]["predictions"][0]["label"] == "7"
    assert [r.path for r in fake_api.received] == ["/warmup", "/predict"]
    for request in fake_api.received:
        match = AUTHORIZATION.fullmatch(request.headers["Authorization"])
        assert match is not None
        assert match["credential"].startswith(f"{ACCESS_KEY}/")
        assert match["credential"].endswith(f"/{REGION}/execute-api/aws4_request")
        assert "content-type" in match["signed"].split(";") or request.path == "/warmup"


def test_iam_smoke_signs_the_session_token_of_assumed_role_credentials(
    fake_api: FakeApi, iam_credentials: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the OIDC role in CircleCI gives: temporary credentials with a session token.
    monkeypatch.setenv("AWS_SESSION_TOKEN", "session-token-from-sts")
    fake_api.mode, fake_api.session_token = "iam", "session-token-from-sts"
    smoke.smoke(names("iam"), fake_api.url, "r1")
    signed = AUTHORIZATION.fullmatch(fake_api.received[0].headers["Authorization"])
    assert signed is not None and "x-amz-security-token" in signed["signed"].split(";")


def test_iam_smoke_with_a_wrong_secret_key_is_refused(
    fake_api: FakeApi, iam_credentials: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-" + SECRET_KEY)
    fake_api.mode = "iam"
    with pytest.raises(smoke.SmokeFailed, match="/warmup answered 403") as failed:
        smoke.smoke(names("iam"), fake_api.url, "r1")
    assert not isinstance(failed.value, smoke.SmokeNotConfigured)
    assert "signature we calculated does not match" in str(failed.value)
    assert "refused the smoke step's credentials" in str(failed.value)


def test_jwt_smoke_sends_the_bearer_token_from_the_environment(
    fake_api: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_VARIABLE, BEARER)
    fake_api.mode = "jwt"
    smoke.smoke(names("jwt"), fake_api.url, "r1")
    assert [r.headers.get("Authorization") for r in fake_api.received] == [f"Bearer {BEARER}"] * 2


def test_jwt_smoke_with_a_wrong_token_is_refused(
    fake_api: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_VARIABLE, "expired." + BEARER)
    fake_api.mode = "jwt"
    with pytest.raises(smoke.SmokeFailed, match="/warmup answered 401") as failed:
        smoke.smoke(names("jwt"), fake_api.url, "r1")
    assert "refused the smoke step's credentials" in str(failed.value)
    assert fake_api.received[0].headers.get("Authorization") == f"Bearer expired.{BEARER}"


@pytest.mark.parametrize(("mode", "status"), [("iam", 403), ("jwt", 401)])
def test_the_fake_api_refuses_requests_without_credentials(
    fake_api: FakeApi, iam_credentials: None, mode: str, status: int
) -> None:
    fake_api.mode = mode
    request = urllib.request.Request(fake_api.url + "/warmup", data=b"", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == status
    # And the smoke step of a stack that believes the API is open fails against it.
    with pytest.raises(smoke.SmokeFailed, match=f"/warmup answered {status}"):
        smoke.smoke(names("none"), fake_api.url, "r1")


def test_jwt_without_a_token_fails_before_sending_anything(fake_api: FakeApi) -> None:
    fake_api.mode = "jwt"
    with pytest.raises(smoke.SmokeNotConfigured, match=TOKEN_VARIABLE):
        smoke.smoke(names("jwt"), fake_api.url, "r1")
    assert fake_api.received == []


def test_iam_without_aws_credentials_fails_before_sending_anything(fake_api: FakeApi) -> None:
    fake_api.mode = "iam"
    with pytest.raises(smoke.SmokeNotConfigured, match="no AWS credentials"):
        smoke.smoke(names("iam"), fake_api.url, "r1")
    assert fake_api.received == []


def test_check_credentials_names_what_to_set(
    iam_credentials: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint = "https://api.example"
    smoke.check_credentials(names("none"), endpoint)
    smoke.check_credentials(names("iam"), endpoint)
    with pytest.raises(smoke.SmokeNotConfigured, match=TOKEN_VARIABLE):
        smoke.check_credentials(names("jwt"), endpoint)
    with pytest.raises(smoke.SmokeNotConfigured, match="'cognito'"):
        smoke.check_credentials(names("cognito"), endpoint)
    monkeypatch.setenv(TOKEN_VARIABLE, BEARER)
    smoke.check_credentials(names("jwt"), endpoint)


def test_check_credentials_asks_nothing_of_the_emulator(monkeypatch: pytest.MonkeyPatch) -> None:
    # Emulated, smoke goes to the local endpoint or the data plane, which enforce no
    # authorizer; only an endpoint named on purpose is treated as the real API.
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    smoke.check_credentials(names("jwt"))
    smoke.check_credentials(names("iam"))
    with pytest.raises(smoke.SmokeNotConfigured):
        smoke.check_credentials(names("jwt"), "http://127.0.0.1:9")


def test_cli_rolls_back_and_blames_the_configuration(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rolled: list[stack.Stack] = []

    def rollback(stack_names: stack.Stack) -> promote.LiveState:
        rolled.append(stack_names)
        return promote.LiveState("4", "r0", None)

    monkeypatch.setattr(stack, "load", lambda: names("jwt"))
    monkeypatch.setattr(promote, "rollback", rollback)
    monkeypatch.setattr(smoke, "deploy_lock", lambda bucket, wait_s: mock.MagicMock())
    assert smoke.main(["--endpoint", "http://127.0.0.1:9"]) == 1
    err = capsys.readouterr().err
    assert "NOT RUN" in err and "configuration, not the release" in err
    assert TOKEN_VARIABLE in err
    assert rolled == [names("jwt")]


def test_cli_check_credentials_only_checks(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(stack, "load", lambda: names("jwt"))
    monkeypatch.setattr(promote, "rollback", mock.Mock(side_effect=AssertionError("rolled back")))
    assert smoke.main(["--check-credentials"]) == 1
    assert TOKEN_VARIABLE in capsys.readouterr().err
    monkeypatch.setenv(TOKEN_VARIABLE, BEARER)
    assert smoke.main(["--check-credentials"]) == 0


def test_pipeline_checks_smoke_credentials_before_building(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(stack, "load", lambda: names("jwt"))
    monkeypatch.setattr(
        pipeline, "target_runtime", mock.Mock(side_effect=AssertionError("went on to build"))
    )
    with pytest.raises(smoke.SmokeNotConfigured, match=TOKEN_VARIABLE):
        pipeline.run(pipeline.Options(with_checks=False))


def test_stack_reads_the_authorizer_and_defaults_to_none(tmp_path: Path) -> None:
    outputs = {
        "artifacts_bucket": "a",
        "inference_function_name": "i",
        "syncer_function_name": "s",
        "api_endpoint": "https://x",
    }
    older = tmp_path / "older.json"
    older.write_text(json.dumps(outputs))
    assert stack.load(older).api_authorizer == "none"
    current = tmp_path / "current.json"
    current.write_text(json.dumps({**outputs, "api_authorizer": {"value": "iam"}}))
    assert stack.load(current).api_authorizer == "iam"
