"""What matters in the stack, pinned on the JSON of a real plan against the emulator."""

from __future__ import annotations

from typing import Any

import pytest

from tests.terraform.conftest import Terraform, plan_json

pytestmark = [pytest.mark.terraform, pytest.mark.emulator]


@pytest.fixture(scope="module")
def plan(terraform: Terraform) -> dict[str, Any]:
    return plan_json(terraform, "pins")


def _planned(plan: dict[str, Any]) -> dict[str, dict[str, Any]]:
    resources = plan["planned_values"]["root_module"]["resources"]
    return {r["address"]: r for r in resources}


def _config(plan: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["address"]: r for r in plan["configuration"]["root_module"]["resources"]}


def _statements(plan: dict[str, Any], document: str) -> list[dict[str, Any]]:
    return list(
        _config(plan)[f"data.aws_iam_policy_document.{document}"]["expressions"]["statement"]
    )


def _const(block: dict[str, Any], key: str) -> Any:
    return block.get(key, {}).get("constant_value")


def test_efs_is_encrypted_with_elastic_throughput(plan: dict[str, Any]) -> None:
    fs = _planned(plan)["aws_efs_file_system.models"]["values"]
    assert fs["encrypted"] is True
    assert fs["throughput_mode"] == "elastic"


def test_efs_policy_denies_non_tls_access(plan: dict[str, Any]) -> None:
    denies = [s for s in _statements(plan, "efs_access") if _const(s, "effect") == "Deny"]
    assert len(denies) == 1
    condition = denies[0]["condition"][0]
    assert _const(condition, "test") == "Bool"
    assert _const(condition, "variable") == "aws:SecureTransport"
    assert _const(condition, "values") == ["false"]
    assert _const(denies[0], "actions") == ["*"]
    policy = _config(plan)["aws_efs_file_system_policy.models"]["expressions"]["policy"]
    assert "data.aws_iam_policy_document.efs_access.json" in policy["references"]


def test_inference_reads_only_and_syncer_writes(plan: dict[str, Any]) -> None:
    planned = _planned(plan)
    reader = planned["aws_efs_access_point.inference"]["values"]
    writer = planned["aws_efs_access_point.syncer"]["values"]
    root = reader["root_directory"][0]
    assert reader["root_directory"] == writer["root_directory"]
    owner = root["creation_info"][0]
    # The tree belongs to the syncer's user; the reader is another user, and
    # mode 0755 leaves it read and execute only.
    assert writer["posix_user"][0]["uid"] == owner["owner_uid"]
    assert reader["posix_user"][0]["uid"] != owner["owner_uid"]
    assert owner["permissions"] == "0755"

    def actions(document: str, sid: str) -> list[str]:
        for statement in _statements(plan, document):
            if _const(statement, "sid") == sid:
                return list(_const(statement, "actions"))
        raise AssertionError(f"{document} has no statement {sid}")

    assert actions("inference", "MountReadOnly") == ["elasticfilesystem:ClientMount"]
    assert "elasticfilesystem:ClientWrite" in actions("syncer", "MountReadWrite")
    assert "elasticfilesystem:ClientWrite" not in str(_statements(plan, "inference"))
    assert "elasticfilesystem:ClientWrite" in actions(
        "efs_access", "SyncerReadWriteThroughItsAccessPoint"
    )
    assert actions("efs_access", "InferenceReadOnlyThroughItsAccessPoint") == [
        "elasticfilesystem:ClientMount"
    ]


def test_efs_admits_nfs_only_from_the_lambda_security_group(plan: dict[str, Any]) -> None:
    planned = _planned(plan)
    config = _config(plan)
    ingress = [a for a in planned if a.startswith("aws_vpc_security_group_ingress_rule.")]
    assert ingress == ["aws_vpc_security_group_ingress_rule.efs_nfs_from_lambda"]
    rule = planned[ingress[0]]["values"]
    assert (rule["from_port"], rule["to_port"], rule["ip_protocol"]) == (2049, 2049, "tcp")
    assert rule.get("cidr_ipv4") is None and rule.get("cidr_ipv6") is None
    assert rule.get("prefix_list_id") is None
    expressions = config[ingress[0]]["expressions"]
    assert "aws_security_group.efs.id" in expressions["security_group_id"]["references"]
    assert (
        "aws_security_group.lambda.id" in expressions["referenced_security_group_id"]["references"]
    )
    # No inline rules on the security groups themselves.
    assert "ingress" not in config["aws_security_group.efs"]["expressions"]


def test_reserved_concurrency_caps_both_functions(plan: dict[str, Any]) -> None:
    planned = _planned(plan)
    assert planned["aws_lambda_function.inference"]["values"]["reserved_concurrent_executions"] == 2
    assert planned["aws_lambda_function.syncer"]["values"]["reserved_concurrent_executions"] == 1


def test_functions_mount_efs_through_their_access_points(plan: dict[str, Any]) -> None:
    config = _config(plan)
    for name in ("inference", "syncer"):
        fsc = config[f"aws_lambda_function.{name}"]["expressions"]["file_system_config"][0]
        assert f"aws_efs_access_point.{name}.arn" in fsc["arn"]["references"]
        assert (
            _planned(plan)[f"aws_lambda_function.{name}"]["values"]["file_system_config"][0][
                "local_mount_path"
            ]
            == "/mnt/ml"
        )


def test_no_nat_gateway_and_no_internet_path(plan: dict[str, Any]) -> None:
    types = {r["type"] for r in _planned(plan).values()}
    assert not types & {"aws_nat_gateway", "aws_internet_gateway", "aws_eip"}
    assert "aws_vpc_endpoint" in types
    subnets = [r["values"] for r in _planned(plan).values() if r["type"] == "aws_subnet"]
    assert len(subnets) == 2
    assert len({s["availability_zone"] for s in subnets}) == 2
    assert not any(s["map_public_ip_on_launch"] for s in subnets)


def test_api_routes_stage_throttling_and_cors(plan: dict[str, Any]) -> None:
    planned = _planned(plan)
    routes = sorted(
        r["values"]["route_key"] for r in planned.values() if r["type"] == "aws_apigatewayv2_route"
    )
    assert routes == ["GET /health", "POST /predict", "POST /warmup"]
    integration = planned["aws_apigatewayv2_integration.inference_live"]["values"]
    assert integration["payload_format_version"] == "2.0"
    uri = _config(plan)["aws_apigatewayv2_integration.inference_live"]["expressions"][
        "integration_uri"
    ]
    assert "aws_lambda_alias.inference_live.invoke_arn" in uri["references"]
    stage = planned["aws_apigatewayv2_stage.default"]["values"]
    settings = stage["default_route_settings"][0]
    assert settings["throttling_rate_limit"] > 0 and settings["throttling_burst_limit"] > 0
    assert stage["access_log_settings"]
    cors = _config(plan)["aws_apigatewayv2_api.http"]["expressions"]["cors_configuration"][0]
    assert "*" not in str(cors.get("allow_origins", {}).get("constant_value", ""))


def test_buckets_are_private_encrypted_and_versioned(plan: dict[str, Any]) -> None:
    planned = _planned(plan)
    for bucket in ("artifacts", "frontend"):
        block = planned[f"aws_s3_bucket_public_access_block.{bucket}"]["values"]
        assert all(
            block[k]
            for k in (
                "block_public_acls",
                "block_public_policy",
                "ignore_public_acls",
                "restrict_public_buckets",
            )
        )
        assert f"aws_s3_bucket_server_side_encryption_configuration.{bucket}" in planned
    versioning = planned["aws_s3_bucket_versioning.artifacts"]["values"]
    assert versioning["versioning_configuration"][0]["status"] == "Enabled"


def test_every_log_group_has_retention(plan: dict[str, Any]) -> None:
    groups = [
        r["values"] for r in _planned(plan).values() if r["type"] == "aws_cloudwatch_log_group"
    ]
    assert len(groups) == 3
    assert all(g["retention_in_days"] == 14 for g in groups)


def test_no_wildcard_action_in_any_role_policy(plan: dict[str, Any]) -> None:
    for document in ("inference", "syncer", "vpc_networking"):
        for statement in _statements(plan, document):
            for action in _const(statement, "actions"):
                assert action != "*" and not action.endswith(":*"), (document, action)
