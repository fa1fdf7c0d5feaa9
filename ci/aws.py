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

EMULATOR_ENDPOINT = "http://127.0.0.1:4566"
DEFAULT_REGION = "us-east-1"


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
