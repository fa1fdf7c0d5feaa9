"""Invoke a deployed function: through AWS Lambda, or through the local data plane when the
control plane is the embedded emulator (moto cannot run function code)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ci.aws import client


def uses_emulator() -> bool:
    """True when AWS calls go to a loopback endpoint (the embedded emulator)."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
    return "127.0.0.1" in endpoint or "localhost" in endpoint


class FunctionError(RuntimeError):
    """The function raised instead of answering."""


def invoke(function_name: str, payload: Any, qualifier: str | None = None) -> Any:
    """Invoke synchronously and return the decoded payload."""
    if uses_emulator():
        from local.dataplane.environment import invoke_once
        from local.dataplane.functions import resolve

        with _as_function_error(function_name):
            result = invoke_once(resolve(function_name, qualifier), payload)
        return _payload(function_name, result)
    kwargs: dict[str, Any] = {
        "FunctionName": function_name,
        "Payload": json.dumps(payload).encode(),
    }
    if qualifier:
        kwargs["Qualifier"] = qualifier
    response = client("lambda").invoke(**kwargs)
    body = json.loads(response["Payload"].read() or b"null")
    if response.get("FunctionError"):
        raise FunctionError(f"{function_name}: {body}")
    return body


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
    except (EnvironmentDied, InvocationTimeout) as exc:
        raise FunctionError(f"{function_name}: {type(exc).__name__}: {exc}") from exc


def _payload(function_name: str, result: Any) -> Any:
    """A local invocation's payload, or the FunctionError of the error the function raised."""
    if result.error is not None:
        raise FunctionError(f"{function_name}: {result.error['type']}: {result.error['message']}")
    return result.payload
