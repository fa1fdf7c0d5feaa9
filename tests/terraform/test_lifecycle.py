"""Against the emulator: apply everything, re-plan clean, destroy everything, in 3 minutes."""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
import pytest

from tests.conftest import HeadStarts
from tests.terraform.conftest import Terraform

pytestmark = [pytest.mark.terraform, pytest.mark.emulator]

NAME = "tfcycle"
ACCESS_POINT_KEY = "elasticfilesystem:AccessPointArn"


def _clients(env: dict[str, str]) -> dict[str, Any]:
    session = boto3.session.Session(
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_REGION"],
    )
    return {
        s: session.client(s, endpoint_url=env["AWS_ENDPOINT_URL"])
        for s in ("lambda", "efs", "s3", "apigatewayv2", "cloudfront", "ec2", "iam")
    }


def _ours(env: dict[str, str]) -> dict[str, list[str]]:
    c = _clients(env)
    return {
        "functions": [
            f["FunctionName"]
            for f in c["lambda"].list_functions()["Functions"]
            if f["FunctionName"].startswith(NAME)
        ],
        "file_systems": [
            f["FileSystemId"]
            for f in c["efs"].describe_file_systems()["FileSystems"]
            if f.get("CreationToken", "").startswith(NAME)
        ],
        "buckets": [
            b["Name"] for b in c["s3"].list_buckets()["Buckets"] if b["Name"].startswith(NAME)
        ],
        "apis": [
            a["ApiId"] for a in c["apigatewayv2"].get_apis()["Items"] if a["Name"].startswith(NAME)
        ],
        "vpcs": [
            v["VpcId"]
            for v in c["ec2"].describe_vpcs()["Vpcs"]
            if any(t["Value"] == f"{NAME}-vpc" for t in v.get("Tags", []))
        ],
    }


def test_apply_replan_clean_destroy(terraform: Terraform, head_starts: HeadStarts) -> None:
    head_starts.result("lifecycle", apply_replan_destroy, terraform)


def apply_replan_destroy(terraform: Terraform) -> None:
    """The cycle itself; the session starts it early, as it mostly waits on the provider."""
    args = ["-input=false", "-no-color", *terraform.state_args(NAME), "-var", f"name={NAME}"]
    started = time.monotonic()

    terraform.apply(*args, timeout=330)
    applied = time.monotonic()
    created = _ours(terraform.env)
    assert all(len(v) >= 1 for v in created.values()), created
    assert len(created["functions"]) == 2

    lam = _clients(terraform.env)["lambda"]
    config = lam.get_function(FunctionName=f"{NAME}-inference")["Configuration"]
    assert config["FileSystemConfigs"][0]["LocalMountPath"] == "/mnt/ml"
    assert lam.get_alias(FunctionName=f"{NAME}-inference", Name="live")["FunctionVersion"] == "1"
    # No reservation by default: on a new account one fails the apply (quota about 10).
    for function in ("inference", "syncer"):
        concurrency = lam.get_function_concurrency(FunctionName=f"{NAME}-{function}")
        assert "ReservedConcurrentExecutions" not in concurrency, (function, concurrency)

    _check_rendered_policies(terraform.env)

    replan = terraform.run("plan", "-detailed-exitcode", *args, check=False, timeout=120)
    assert replan.returncode == 0, f"re-plan is not clean:\n{replan.stdout}\n{replan.stderr}"

    terraform.run("destroy", "-auto-approve", *args, timeout=240)
    finished = time.monotonic()
    assert _ours(terraform.env) == {k: [] for k in created}, "destroy left resources behind"
    # About 115 s on two idle cores (README: "within 3 minutes"), 208 s at load average 12.
    # The bound catches a wait that regressed (the provider polling for minutes), not load.
    assert finished - started < 360, (
        f"apply {applied - started:.0f} s + re-plan and destroy {finished - applied:.0f} s"
    )


def _statements(document: str | dict[str, Any]) -> list[dict[str, Any]]:
    doc = json.loads(document) if isinstance(document, str) else document
    statements = doc["Statement"]
    return [statements] if isinstance(statements, dict) else list(statements)


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _check_rendered_policies(env: dict[str, str]) -> None:
    """The policies as AWS holds them (real ARNs), not just as Terraform spells them."""
    c = _clients(env)
    (fs_id,) = _ours(env)["file_systems"]
    points = {
        tag["Value"]: ap["AccessPointArn"]
        for ap in c["efs"].describe_access_points(FileSystemId=fs_id)["AccessPoints"]
        for tag in ap.get("Tags", [])
        if tag["Key"] == "Name"
    }
    reader = points[f"{NAME}-inference-ro"]
    writer = points[f"{NAME}-syncer-rw"]

    efs_policy = c["efs"].describe_file_system_policy(FileSystemId=fs_id)["Policy"]
    by_sid = {s["Sid"]: s for s in _statements(efs_policy)}
    bypass = by_sid["DenyMountsThatBypassTheAccessPoints"]
    assert bypass["Effect"] == "Deny"
    assert sorted(_as_list(bypass["Condition"]["StringNotEquals"][ACCESS_POINT_KEY])) == sorted(
        [reader, writer]
    )
    writes = by_sid["DenyWritesExceptThroughTheSyncerAccessPoint"]
    assert _as_list(writes["Condition"]["StringNotEquals"][ACCESS_POINT_KEY]) == [writer]
    assert by_sid["DenyRootAccess"]["Effect"] == "Deny"
    assert by_sid["DenyWithoutTLS"]["Condition"]["Bool"]["aws:SecureTransport"] == "false"

    for role, access_point in (("inference", reader), ("syncer", writer)):
        document = c["iam"].get_role_policy(RoleName=f"{NAME}-{role}", PolicyName=role)
        for statement in _statements(document["PolicyDocument"]):
            actions = _as_list(statement["Action"])
            resources = _as_list(statement["Resource"])
            assert not any("*" in a for a in actions), (role, actions)
            if "*" in resources:
                assert set(actions) <= {"ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets"}
            if any(a.startswith("elasticfilesystem:") for a in actions):
                condition = statement["Condition"]["StringEquals"][ACCESS_POINT_KEY]
                assert _as_list(condition) == [access_point], (role, condition)
                assert "elasticfilesystem:ClientRootAccess" not in actions
                if role == "inference":
                    assert actions == ["elasticfilesystem:ClientMount"]

    (api_id,) = _ours(env)["apis"]
    cors = c["apigatewayv2"].get_api(ApiId=api_id)["CorsConfiguration"]
    (distribution,) = [
        d
        for d in c["cloudfront"].list_distributions()["DistributionList"].get("Items", [])
        if d["Comment"] == f"{NAME} front end"
    ]
    assert cors["AllowOrigins"] == [f"https://{distribution['DomainName']}"]
    routes = c["apigatewayv2"].get_routes(ApiId=api_id)["Items"]
    assert {r.get("AuthorizationType", "NONE") for r in routes} == {"NONE"}
