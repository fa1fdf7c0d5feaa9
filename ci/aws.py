"""The one place that decides where AWS calls go.

boto3 (>= 1.28) and the Terraform AWS provider both honour AWS_ENDPOINT_URL, so
the emulator and real AWS differ only by environment: ``emulator_env`` gives the
variables that point everything at the embedded emulator; with none of them set,
calls go to AWS with the usual credential chain.
"""

from __future__ import annotations

import os
from typing import Any, cast

import boto3
from botocore.config import Config

EMULATOR_ENDPOINT = "http://127.0.0.1:4566"
DEFAULT_REGION = "us-east-1"

# Lambda's largest function timeout. A synchronous Invoke holds its HTTP request open for
# the whole run, so the read timeout must outlast any function (boto3's default, 60 s, ends
# the wait long before a syncer does) plus some slack for cold start and the answer.
LAMBDA_MAX_FUNCTION_TIMEOUT_S = 900
INVOKE_READ_TIMEOUT_S = LAMBDA_MAX_FUNCTION_TIMEOUT_S + 60
# Connecting is quick or broken; nothing is running yet while it is attempted.
INVOKE_CONNECT_TIMEOUT_S = 10


def emulator_env(endpoint: str = EMULATOR_ENDPOINT, region: str = DEFAULT_REGION) -> dict[str, str]:
    """Environment variables that send boto3 and Terraform to the emulator."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        # Never let a profile or IMDS lookup slow down or redirect emulator calls.
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def region() -> str:
    """The region from the environment, us-east-1 by default."""
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION


def client(service: str, endpoint: str | None = None) -> Any:
    """A boto3 client; endpoint overrides AWS_ENDPOINT_URL, which boto3 reads itself."""
    kwargs: dict[str, Any] = {"region_name": region()}
    if endpoint:
        kwargs["endpoint_url"] = endpoint
    # cast: boto3-stubs overloads client() per service literal; callers pass a plain str.
    return cast(Any, boto3).client(service, **kwargs)


def invoke_config(read_timeout: float | None = None) -> Config:
    """Client settings for synchronous Lambda Invoke (see lambda_invoke_client)."""
    return Config(
        read_timeout=INVOKE_READ_TIMEOUT_S if read_timeout is None else read_timeout,
        connect_timeout=INVOKE_CONNECT_TIMEOUT_S,
        # No automatic retry: Invoke is not idempotent. After a read timeout or a 5xx the
        # function may have run or may still be running, and botocore's resend starts a
        # second invocation (the syncer's reserved concurrency of 1 then throttles it, and
        # 429s are resent too). ci.invoke reports these as typed errors; the caller knows
        # which of them is safe to try again.
        retries={"total_max_attempts": 1, "mode": "standard"},
        # A synchronous invoke leaves its connection idle for up to the function's timeout,
        # and NAT gateways drop connections idle for 350 s; AWS recommends keepalive for
        # long invokes. botocore only sets SO_KEEPALIVE: the first probe follows the OS's
        # idle time (net.ipv4.tcp_keepalive_time, 7200 s by default on Linux), which a
        # runner behind NAT needs below 350 s.
        tcp_keepalive=True,
    )


def lambda_invoke_client(endpoint: str | None = None, read_timeout: float | None = None) -> Any:
    """A Lambda client for synchronous Invoke: waits past any function timeout, never resends.

    Use client("lambda") for control-plane calls, whose retries are safe. endpoint overrides
    AWS_ENDPOINT_URL and read_timeout INVOKE_READ_TIMEOUT_S (tests use a fake server and a
    short wait).
    """
    kwargs: dict[str, Any] = {"region_name": region(), "config": invoke_config(read_timeout)}
    if endpoint:
        kwargs["endpoint_url"] = endpoint
    return cast(Any, boto3).client("lambda", **kwargs)
