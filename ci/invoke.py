"""Invoke a deployed function: through AWS Lambda, or through the local data plane when the
control plane is the embedded emulator (moto cannot run function code)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from botocore.exceptions import ClientError, ReadTimeoutError

from ci.aws import lambda_invoke_client

# What Lambda puts in errorMessage when it stopped a function at its timeout.
_LAMBDA_TIMEOUT_MESSAGE = "Task timed out after"
# errorType of the same event on runtimes that report one.
_LAMBDA_TIMEOUT_TYPE = "Sandbox.Timedout"


def uses_emulator() -> bool:
    """True when AWS calls go to a loopback endpoint (the embedded emulator)."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
    return "127.0.0.1" in endpoint or "localhost" in endpoint


class FunctionError(RuntimeError):
    """The function raised instead of answering."""


class InvokeThrottled(FunctionError):
    """Lambda refused to start the function: its concurrency limit is reached.

    Nothing ran, so trying again later is safe.
    """


class InvokeTimedOut(FunctionError):
    """No answer in time: the function hit its own timeout, or the client stopped waiting.

    In the second case the invocation may still be running; trying again starts another.
    """


def invoke(function_name: str, payload: Any, qualifier: str | None = None) -> Any:
    """Invoke synchronously and return the decoded payload."""
    if uses_emulator():
        from local.dataplane.environment import invoke_once
        from local.dataplane.functions import resolve

        # invoke_once starts its own environment and has no concurrency cap, so the local
        # path never throttles.
        with _as_function_error(function_name):
            result = invoke_once(resolve(function_name, qualifier), payload)
        return _payload(function_name, result)
    return invoke_lambda(lambda_invoke_client(), function_name, payload, qualifier)


def invoke_lambda(lam: Any, function_name: str, payload: Any, qualifier: str | None = None) -> Any:
    """Invoke through a Lambda client and return the decoded payload.

    Throttling raises InvokeThrottled and timeouts InvokeTimedOut. Other ClientErrors
    (missing function, access denied, Lambda's own 5xx) propagate unchanged: they are not
    the function's failures, and the caller gets botocore's code and request id.
    """
    kwargs: dict[str, Any] = {
        "FunctionName": function_name,
        "Payload": json.dumps(payload).encode(),
    }
    if qualifier:
        kwargs["Qualifier"] = qualifier
    try:
        response = lam.invoke(**kwargs)
    except ReadTimeoutError as exc:
        raise InvokeTimedOut(
            f"{function_name}: no answer within the client's read timeout; "
            f"the invocation may still be running: {exc}"
        ) from exc
    except ClientError as exc:
        error: dict[str, Any] = dict(exc.response.get("Error") or {})
        metadata: dict[str, Any] = dict(exc.response.get("ResponseMetadata") or {})
        status = metadata.get("HTTPStatusCode")
        if error.get("Code") == "TooManyRequestsException" or status == 429:
            raise InvokeThrottled(
                f"{function_name}: throttled: {error.get('Message') or exc}"
            ) from exc
        raise
    body = json.loads(response["Payload"].read() or b"null")
    if response.get("FunctionError"):
        if _is_lambda_timeout(body):
            raise InvokeTimedOut(f"{function_name}: {body}")
        raise FunctionError(f"{function_name}: {body}")
    return body


def _is_lambda_timeout(body: Any) -> bool:
    """True for the error payload Lambda returns when it stopped a function at its timeout."""
    if not isinstance(body, dict):
        return False
    return body.get("errorType") == _LAMBDA_TIMEOUT_TYPE or _LAMBDA_TIMEOUT_MESSAGE in str(
        body.get("errorMessage", "")
    )


@contextmanager
def reusing(function_name: str, qualifier: str | None = None) -> Iterator[Callable[[Any], Any]]:
    """A caller for several invocations in a row that reuse one execution environment.

    Lambda keeps an environment warm between invocations that follow each other; the
    local data plane's one-shot invoke_once() would cold-start one per call instead. Here
    one runner process serves every call and stops at the end. On AWS every call is a
    plain invoke (Lambda decides about reuse).
    """
    if not uses_emulator():
        yield lambda payload: invoke(function_name, payload, qualifier)
        return
    from local.dataplane.environment import ExecutionEnvironment
    from local.dataplane.functions import resolve

    with _as_function_error(function_name):
        environment = ExecutionEnvironment(resolve(function_name, qualifier))

    def call(payload: Any) -> Any:
        with _as_function_error(function_name):
            result = environment.invoke(payload)
        return _payload(function_name, result)

    try:
        yield call
    finally:
        environment.stop()


@contextmanager
def _as_function_error(function_name: str) -> Iterator[None]:
    """A local environment killed or timed out fails as Lambda reports it: a function error."""
    from local.dataplane.environment import EnvironmentDied, InvocationTimeout

    try:
        yield
    except InvocationTimeout as exc:
        raise InvokeTimedOut(f"{function_name}: {type(exc).__name__}: {exc}") from exc
    except EnvironmentDied as exc:
        raise FunctionError(f"{function_name}: {type(exc).__name__}: {exc}") from exc


def _payload(function_name: str, result: Any) -> Any:
    """A local invocation's payload, or the FunctionError of the error the function raised."""
    if result.error is not None:
        raise FunctionError(f"{function_name}: {result.error['type']}: {result.error['message']}")
    return result.payload
