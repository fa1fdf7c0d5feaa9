"""Promote moves `live` only after the version it published is Active.

A real boto3 Lambda client with botocore's Stubber: the endpoint is never contacted, and
the Stubber fails the test if a call arrives out of the queued order.
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from ci import promote, stack, syncer_client

FUNCTION = "inference"
ALIAS = "live"


def _config(version: str, release_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "FunctionName": FUNCTION,
        "Version": version,
        "CodeSha256": "abc",
        "Environment": {"Variables": {"RELEASE_ID": release_id}},
        **extra,
    }


def test_alias_moves_after_the_published_version_is_active(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lam = boto3.client(
        "lambda",
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    names = stack.Stack(
        artifacts_bucket="artifacts",
        inference_function=FUNCTION,
        syncer_function="syncer",
        api_endpoint="https://api.invalid",
        live_alias=ALIAS,
    )
    monkeypatch.setattr(promote, "client", lambda service, endpoint=None: lam)
    monkeypatch.setattr(
        syncer_client,
        "call",
        lambda function, payload, busy_retries=10: syncer_client.SyncerAnswer(
            "ok", "stamp_ok", "", {}
        ),
    )
    monkeypatch.setattr(promote, "PUBLISH_WAIT_DELAY_S", 0, raising=False)

    stubber = Stubber(lam)
    stubber.add_response(
        "get_alias",
        {"Name": ALIAS, "FunctionVersion": "3", "Description": "release r1; previous version 2"},
        {"FunctionName": FUNCTION, "Name": ALIAS},
    )
    stubber.add_response(
        "get_function_configuration",
        _config("3", "r1"),
        {"FunctionName": FUNCTION, "Qualifier": "3"},
    )
    stubber.add_response(
        "get_function_configuration", _config("$LATEST", "r1"), {"FunctionName": FUNCTION}
    )
    stubber.add_response("update_function_configuration", _config("$LATEST", "r2"))
    stubber.add_response(  # the function_updated_v2 waiter
        "get_function",
        {"Configuration": _config("$LATEST", "r2", State="Active", LastUpdateStatus="Successful")},
        {"FunctionName": FUNCTION},
    )
    stubber.add_response(
        "publish_version",
        _config("4", "r2", State="Pending"),
        {"FunctionName": FUNCTION, "Description": "release r2"},
    )
    stubber.add_response(  # the published_version_active waiter, until Active
        "get_function_configuration",
        _config("4", "r2", State="Pending"),
        {"FunctionName": FUNCTION, "Qualifier": "4"},
    )
    stubber.add_response(
        "get_function_configuration",
        _config("4", "r2", State="Active"),
        {"FunctionName": FUNCTION, "Qualifier": "4"},
    )
    stubber.add_response(
        "update_alias",
        {"Name": ALIAS, "FunctionVersion": "4"},
        {
            "FunctionName": FUNCTION,
            "Name": ALIAS,
            "FunctionVersion": "4",
            "Description": "release r2; previous version 3",
        },
    )
    with stubber:
        state = promote.promote(names, "r2")
    stubber.assert_no_pending_responses()
    assert state == promote.LiveState("4", "r2", "3")
