"""Against the emulator: apply everything, re-plan clean, destroy everything, in 3 minutes."""

from __future__ import annotations

import time
from typing import Any

import boto3
import pytest

from tests.terraform.conftest import Terraform

pytestmark = [pytest.mark.terraform, pytest.mark.emulator]

NAME = "tfcycle"


def _clients(env: dict[str, str]) -> dict[str, Any]:
    session = boto3.session.Session(
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_REGION"],
    )
    return {
        s: session.client(s, endpoint_url=env["AWS_ENDPOINT_URL"])
        for s in ("lambda", "efs", "s3", "apigatewayv2", "cloudfront", "ec2")
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


def test_apply_replan_clean_destroy(terraform: Terraform) -> None:
    args = ["-input=false", "-no-color", *terraform.state_args(NAME), "-var", f"name={NAME}"]
    started = time.monotonic()

    terraform.run("apply", "-auto-approve", *args, timeout=240)
    applied = time.monotonic()
    created = _ours(terraform.env)
    assert all(len(v) >= 1 for v in created.values()), created
    assert len(created["functions"]) == 2

    lam = _clients(terraform.env)["lambda"]
    config = lam.get_function(FunctionName=f"{NAME}-inference")["Configuration"]
    assert config["FileSystemConfigs"][0]["LocalMountPath"] == "/mnt/ml"
    assert lam.get_alias(FunctionName=f"{NAME}-inference", Name="live")["FunctionVersion"] == "1"
    concurrency = lam.get_function_concurrency(FunctionName=f"{NAME}-inference")
    assert concurrency["ReservedConcurrentExecutions"] == 2

    replan = terraform.run("plan", "-detailed-exitcode", *args, check=False, timeout=120)
    assert replan.returncode == 0, f"re-plan is not clean:\n{replan.stdout}\n{replan.stderr}"

    terraform.run("destroy", "-auto-approve", *args, timeout=240)
    finished = time.monotonic()
    assert _ours(terraform.env) == {k: [] for k in created}, "destroy left resources behind"
    assert finished - started < 180, (
        f"apply {applied - started:.0f} s + re-plan and destroy {finished - applied:.0f} s"
    )
