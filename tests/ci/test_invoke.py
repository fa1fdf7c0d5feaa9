"""Synchronous Lambda invokes: one request per invoke, typed throttle and timeout failures.

A fake Lambda endpoint on 127.0.0.1 counts the Invoke requests that reach it. ci.invoke
would send any 127.0.0.1 endpoint to the local data plane, so these tests switch that off
and go through the AWS path with AWS_ENDPOINT_URL aimed at the fake.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ci import aws, invoke, syncer_client

FUNCTION = "syncer"
INVOKE_PATH = f"/2015-03-31/functions/{FUNCTION}/invocations"
THROTTLE_BODY = {
    "Type": "User",
    "message": "Rate Exceeded.",
    "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded",
}
SHORT_READ_TIMEOUT_S = 1.0


@dataclass
class FakeLambda:
    """What the fake answers to Invoke, and how many Invokes reached it."""

    endpoint: str = ""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    delay_s: float = 0.0
    invokes: int = 0
    released: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _handler(fake: FakeLambda) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            if self.path != INVOKE_PATH:
                self.send_error(404)
                return
            with fake.lock:
                fake.invokes += 1
            if fake.delay_s:
                # An Event, not sleep: teardown releases a handler still "running".
                fake.released.wait(fake.delay_s)
            data = json.dumps(fake.body).encode()
            try:
                self.send_response(fake.status)
                for name, value in fake.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                pass  # the client gave up (read timeout) and closed the connection

    return Handler


@pytest.fixture()
def fake_lambda(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLambda]:
    """A fake Lambda endpoint that ci.invoke.invoke talks to over the AWS path."""
    fake = FakeLambda()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    # A short poll interval: shutdown() waits up to one interval.
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    fake.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    for key, value in {
        "AWS_ENDPOINT_URL": fake.endpoint,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE"):
        monkeypatch.delenv(key, raising=False)
    # The fake is on 127.0.0.1, which uses_emulator() would route to the local data plane.
    monkeypatch.setattr(invoke, "uses_emulator", lambda: False)
    try:
        yield fake
    finally:
        fake.released.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _raised(call: Callable[[], Any]) -> Exception:
    """The exception call() raised; the test fails if it returned."""
    try:
        result = call()
    except Exception as exc:
        return exc
    pytest.fail(f"returned {result!r} instead of raising")


def test_throttle_is_one_request_and_invoke_throttled(fake_lambda: FakeLambda) -> None:
    fake_lambda.status = 429
    fake_lambda.headers = {"x-amzn-ErrorType": "TooManyRequestsException"}
    fake_lambda.body = THROTTLE_BODY
    started = time.monotonic()
    raised = _raised(lambda: invoke.invoke(FUNCTION, {"action": "check"}))
    assert fake_lambda.invokes == 1, "botocore resent the throttled Invoke"
    assert isinstance(raised, invoke.InvokeThrottled), repr(raised)
    assert "Rate Exceeded" in str(raised)
    assert time.monotonic() - started < 3


def test_read_timeout_is_one_request_and_invoke_timed_out(
    fake_lambda: FakeLambda, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(aws, "INVOKE_READ_TIMEOUT_S", SHORT_READ_TIMEOUT_S, raising=False)
    fake_lambda.delay_s = SHORT_READ_TIMEOUT_S + 2
    fake_lambda.body = {"status": "created"}
    started = time.monotonic()
    raised = _raised(lambda: invoke.invoke(FUNCTION, {"action": "check"}))
    elapsed = time.monotonic() - started
    assert fake_lambda.invokes == 1, "botocore resent the Invoke after its read timeout"
    assert isinstance(raised, invoke.InvokeTimedOut), repr(raised)
    assert "may still be running" in str(raised)
    assert SHORT_READ_TIMEOUT_S <= elapsed < SHORT_READ_TIMEOUT_S + 1.5


def test_function_timeout_is_invoke_timed_out(fake_lambda: FakeLambda) -> None:
    fake_lambda.headers = {"X-Amz-Function-Error": "Unhandled"}
    fake_lambda.body = {
        "errorMessage": "2026-01-05T10:00:00.000Z 0b1c Task timed out after 900.00 seconds"
    }
    with pytest.raises(invoke.InvokeTimedOut, match=r"Task timed out after 900\.00 seconds"):
        invoke.invoke(FUNCTION, {"action": "check"})
    assert fake_lambda.invokes == 1


def test_function_error_stays_function_error(fake_lambda: FakeLambda) -> None:
    fake_lambda.headers = {"X-Amz-Function-Error": "Unhandled"}
    fake_lambda.body = {"errorType": "KeyError", "errorMessage": "'release_id'"}
    with pytest.raises(invoke.FunctionError) as raised:
        invoke.invoke(FUNCTION, {"action": "check"})
    assert not isinstance(raised.value, (invoke.InvokeTimedOut, invoke.InvokeThrottled))


def test_answer_is_returned_decoded(fake_lambda: FakeLambda) -> None:
    fake_lambda.body = {"status": "ok", "code": "stamp_ok", "details": {"files": 3}}
    assert invoke.invoke(FUNCTION, {"action": "check"}) == fake_lambda.body
    assert fake_lambda.invokes == 1


def test_invoke_lambda_takes_a_client(fake_lambda: FakeLambda) -> None:
    fake_lambda.body = [1, 2]
    lam = aws.lambda_invoke_client(fake_lambda.endpoint, read_timeout=SHORT_READ_TIMEOUT_S)
    assert invoke.invoke_lambda(lam, FUNCTION, {}) == [1, 2]


def test_invoke_client_outwaits_any_function_and_never_resends() -> None:
    config = aws.invoke_config()
    assert config.read_timeout > aws.LAMBDA_MAX_FUNCTION_TIMEOUT_S
    assert config.retries["total_max_attempts"] == 1
    assert config.tcp_keepalive is True


class _Calls:
    """A stand-in for ci.invoke.invoke that plays back outcomes and counts calls."""

    def __init__(self, *outcomes: Any) -> None:
        self.outcomes = list(outcomes)
        self.count = 0

    def __call__(self, function_name: str, payload: Any, qualifier: str | None = None) -> Any:
        self.count += 1
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


@pytest.fixture()
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Backoff waits of syncer_client.call, recorded instead of slept."""
    waited: list[float] = []
    monkeypatch.setattr(syncer_client.time, "sleep", waited.append)
    return waited


def test_syncer_call_retries_a_throttle_like_busy(
    monkeypatch: pytest.MonkeyPatch, sleeps: list[float]
) -> None:
    calls = _Calls(
        invoke.InvokeThrottled("syncer: throttled"),
        {"status": "busy", "code": "lock_held"},
        {"status": "created", "code": "created", "message": "done"},
    )
    monkeypatch.setattr(invoke, "invoke", calls)
    answer = syncer_client.call("syncer", {"action": "check"})
    assert answer.ok and answer.status == "created"
    assert calls.count == 3
    assert sleeps == [2.0, 4.0]


def test_syncer_call_gives_up_after_bounded_throttles(
    monkeypatch: pytest.MonkeyPatch, sleeps: list[float]
) -> None:
    calls = _Calls(*(invoke.InvokeThrottled("syncer: throttled") for _ in range(3)))
    monkeypatch.setattr(invoke, "invoke", calls)
    with pytest.raises(invoke.InvokeThrottled):
        syncer_client.call("syncer", {"action": "check"}, busy_retries=2)
    assert calls.count == 3
    assert len(sleeps) == 2


def test_syncer_call_does_not_retry_a_timeout(
    monkeypatch: pytest.MonkeyPatch, sleeps: list[float]
) -> None:
    calls = _Calls(invoke.InvokeTimedOut("syncer: read timeout"), {"status": "created"})
    monkeypatch.setattr(invoke, "invoke", calls)
    with pytest.raises(invoke.InvokeTimedOut, match="may still be running") as raised:
        syncer_client.call("syncer", {"action": "check"})
    assert "did not answer within its timeout" in str(raised.value)
    # Callers that handle FunctionError (ci.publish) still catch it.
    assert isinstance(raised.value, invoke.FunctionError)
    assert calls.count == 1
    assert sleeps == []
