"""What matters in the stack, pinned on the JSON of a real plan against the emulator."""

from __future__ import annotations

import re
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


def _statement(plan: dict[str, Any], document: str, sid: str) -> dict[str, Any]:
    for statement in _statements(plan, document):
        if _const(statement, "sid") == sid:
            return statement
    raise AssertionError(f"{document} has no statement {sid}")


def _refs(block: dict[str, Any], key: str) -> list[str]:
    return list(block.get(key, {}).get("references", []))


def test_efs_policy_denies_non_tls_access(plan: dict[str, Any]) -> None:
    deny = _statement(plan, "efs_access", "DenyWithoutTLS")
    assert _const(deny, "effect") == "Deny"
    (condition,) = deny["condition"]
    assert _const(condition, "test") == "Bool"
    assert _const(condition, "variable") == "aws:SecureTransport"
    assert _const(condition, "values") == ["false"]
    assert _const(deny, "actions") == ["*"]
    assert _const(deny["principals"][0], "identifiers") == ["*"]
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
        return list(_const(_statement(plan, document, sid), "actions"))

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


def test_no_reserved_concurrency_by_default(plan: dict[str, Any]) -> None:
    # A reservation must leave 100 unreserved executions, and new accounts have a quota
    # of about 10: a default reservation would fail the first apply there. -1 is the
    # provider's "unreserved".
    planned = _planned(plan)
    for name in ("inference", "syncer"):
        values = planned[f"aws_lambda_function.{name}"]["values"]
        assert values["reserved_concurrent_executions"] == -1, name


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


# --- IAM -------------------------------------------------------------------------------

ROLE_DOCUMENTS = ("inference", "syncer", "vpc_networking")
# EC2 Describe calls have no resource-level permissions: the only actions allowed on "*".
ACTIONS_WITHOUT_RESOURCE_ARNS = {"ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets"}


def test_only_actions_without_resource_arns_are_on_star(plan: dict[str, Any]) -> None:
    for document in (*ROLE_DOCUMENTS, "circleci_assume"):
        for statement in _statements(plan, document):
            actions = set(_const(statement, "actions"))
            assert not any("*" in a for a in actions), (document, actions)
            resources = _const(statement, "resources")
            if resources is None:
                continue  # built from references to our own resources
            if any(r == "*" or r.endswith(":*") for r in resources):
                assert actions <= ACTIONS_WITHOUT_RESOURCE_ARNS, (document, actions)


def test_roles_get_only_their_inline_policy(plan: dict[str, Any]) -> None:
    config = _config(plan)
    for role in ("inference", "syncer"):
        policy = config[f"aws_iam_role_policy.{role}"]["expressions"]
        assert f"aws_iam_role.{role}.id" in _refs(policy, "role")
        assert f"data.aws_iam_policy_document.{role}.json" in _refs(policy, "policy")
        document = config[f"data.aws_iam_policy_document.{role}"]["expressions"]
        assert "data.aws_iam_policy_document.vpc_networking.json" in _refs(
            document, "source_policy_documents"
        )
    # No managed policies on the function roles (the one attachment is the opt-in CI role's).
    attachments = [a for a in config if a.startswith("aws_iam_role_policy_attachment.")]
    assert attachments == ["aws_iam_role_policy_attachment.circleci_deploy"]
    assert not any(a.startswith("aws_iam_role_policy_attachment.") for a in _planned(plan))


def test_eni_management_is_scoped_to_our_network(plan: dict[str, Any]) -> None:
    create = _statement(plan, "vpc_networking", "CreateInterfacesInOurSubnets")
    assert _const(create, "actions") == ["ec2:CreateNetworkInterface"]
    refs = _refs(create, "resources")
    assert "aws_subnet.private" in refs
    assert "aws_security_group.lambda.arn" in refs
    assert "local.network_interfaces_arn" in refs
    manage = _statement(plan, "vpc_networking", "ManageTheInterfaces")
    assert _refs(manage, "resources") == ["local.network_interfaces_arn"]
    describe = _statement(plan, "vpc_networking", "DescribeTheVpc")
    assert _const(describe, "resources") == ["*"]
    assert set(_const(describe, "actions")) == ACTIONS_WITHOUT_RESOURCE_ARNS


def test_inference_role_mounts_read_only_through_its_access_point(plan: dict[str, Any]) -> None:
    efs = [
        s
        for s in _statements(plan, "inference")
        if any(a.startswith("elasticfilesystem:") for a in _const(s, "actions"))
    ]
    assert len(efs) == 1
    assert _const(efs[0], "actions") == ["elasticfilesystem:ClientMount"]
    assert "aws_efs_file_system.models.arn" in _refs(efs[0], "resources")
    (condition,) = efs[0]["condition"]
    assert _const(condition, "test") == "StringEquals"
    assert _const(condition, "variable") == "elasticfilesystem:AccessPointArn"
    assert "aws_efs_access_point.inference.arn" in _refs(condition, "values")
    assert "aws_efs_access_point.syncer.arn" not in _refs(condition, "values")
    for document in ROLE_DOCUMENTS:
        assert "ClientRootAccess" not in str(_statements(plan, document)), document


def test_syncer_reads_only_the_artifacts_bucket(plan: dict[str, Any]) -> None:
    s3 = [
        s
        for s in _statements(plan, "syncer")
        if any(a.startswith("s3:") for a in _const(s, "actions"))
    ]
    assert s3, "the syncer reads bundles from S3"
    for statement in s3:
        assert set(_const(statement, "actions")) <= {
            "s3:GetObject",
            "s3:GetObjectVersion",
            "s3:ListBucket",
        }
        assert _const(statement, "resources") is None
        refs = _refs(statement, "resources")
        assert refs and all(r.startswith("aws_s3_bucket.artifacts") for r in refs), refs
    mount = _statement(plan, "syncer", "MountReadWrite")
    (condition,) = mount["condition"]
    assert "aws_efs_access_point.syncer.arn" in _refs(condition, "values")
    assert "aws_efs_access_point.inference.arn" not in _refs(condition, "values")


def test_no_long_lived_credentials_or_secret_inputs(plan: dict[str, Any]) -> None:
    types = {r["type"] for r in plan["configuration"]["root_module"]["resources"]}
    assert not types & {
        "aws_iam_user",
        "aws_iam_access_key",
        "aws_iam_user_login_profile",
        "aws_secretsmanager_secret_version",
        "aws_ssm_parameter",
    }
    for name in plan["configuration"]["root_module"].get("variables", {}):
        assert not re.search(r"secret|password|access_key|token", name), name
    for name in ("inference", "syncer"):
        env = _planned(plan)[f"aws_lambda_function.{name}"]["values"]["environment"][0]
        for key in env["variables"]:
            assert not re.search(r"SECRET|PASSWORD|TOKEN|KEY", key), (name, key)


# --- EFS -------------------------------------------------------------------------------


def test_efs_policy_allows_mounts_only_through_the_access_points(plan: dict[str, Any]) -> None:
    bypass = _statement(plan, "efs_access", "DenyMountsThatBypassTheAccessPoints")
    assert _const(bypass, "effect") == "Deny"
    assert _const(bypass["principals"][0], "identifiers") == ["*"]
    assert set(_const(bypass, "actions")) == {
        "elasticfilesystem:ClientMount",
        "elasticfilesystem:ClientWrite",
    }
    (condition,) = bypass["condition"]
    # StringNotEquals also holds when the key is absent, i.e. a mount without an access point.
    assert _const(condition, "test") == "StringNotEquals"
    assert _const(condition, "variable") == "elasticfilesystem:AccessPointArn"
    refs = _refs(condition, "values")
    assert "aws_efs_access_point.inference.arn" in refs
    assert "aws_efs_access_point.syncer.arn" in refs

    writes = _statement(plan, "efs_access", "DenyWritesExceptThroughTheSyncerAccessPoint")
    assert _const(writes, "effect") == "Deny"
    assert _const(writes["principals"][0], "identifiers") == ["*"]
    assert _const(writes, "actions") == ["elasticfilesystem:ClientWrite"]
    (condition,) = writes["condition"]
    assert _const(condition, "test") == "StringNotEquals"
    assert _const(condition, "variable") == "elasticfilesystem:AccessPointArn"
    refs = _refs(condition, "values")
    assert "aws_efs_access_point.syncer.arn" in refs
    assert "aws_efs_access_point.inference.arn" not in refs

    root = _statement(plan, "efs_access", "DenyRootAccess")
    assert _const(root, "effect") == "Deny"
    assert _const(root, "actions") == ["elasticfilesystem:ClientRootAccess"]
    assert "condition" not in root
    allows = [s for s in _statements(plan, "efs_access") if _const(s, "effect") != "Deny"]
    assert allows and "ClientRootAccess" not in str(allows)


def test_access_points_pin_non_root_users(plan: dict[str, Any]) -> None:
    planned = _planned(plan)
    for name in ("inference", "syncer"):
        user = planned[f"aws_efs_access_point.{name}"]["values"]["posix_user"][0]
        assert user["uid"] != 0 and user["gid"] != 0, (name, user)


# --- API -------------------------------------------------------------------------------


def _routes(plan: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        r["values"]["route_key"]: r["values"]
        for r in _planned(plan).values()
        if r["type"] == "aws_apigatewayv2_route"
    }


def _cors(plan: dict[str, Any]) -> dict[str, Any]:
    return dict(_planned(plan)["aws_apigatewayv2_api.http"]["values"]["cors_configuration"][0])


def test_stage_throttle_is_pinned(plan: dict[str, Any]) -> None:
    stage = _planned(plan)["aws_apigatewayv2_stage.default"]["values"]
    settings = stage["default_route_settings"][0]
    assert (settings["throttling_rate_limit"], settings["throttling_burst_limit"]) == (10, 20)
    assert not stage.get("route_settings"), "a route setting could lift the stage throttle"


def test_cors_admits_only_the_front_end_and_named_origins(plan: dict[str, Any]) -> None:
    cors = _config(plan)["aws_apigatewayv2_api.http"]["expressions"]["cors_configuration"][0]
    # local.cors_origins: the CloudFront domain plus var.extra_cors_origins (no wildcards,
    # validated), so the API answers no other page's browser.
    assert _refs(cors, "allow_origins") == ["local.cors_origins"]
    values = _cors(plan)
    assert values["allow_credentials"] in (None, False)
    assert sorted(values["allow_methods"]) == ["GET", "OPTIONS", "POST"]
    assert values["allow_headers"] == ["content-type"]


def test_no_authorizer_by_default(plan: dict[str, Any]) -> None:
    assert {v["authorization_type"] for v in _routes(plan).values()} == {"NONE"}
    assert not [a for a in _planned(plan) if a.startswith("aws_apigatewayv2_authorizer.")]


JWT_ISSUER = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Example"
CIRCLECI_ORG = "0b6c2f1e-1111-4a2b-8c3d-123456789abc"
CIRCLECI_PROJECT = "9f8e7d6c-2222-4b3a-9c8d-abcdef012345"
CIRCLECI_POLICY = "arn:aws:iam::123456789012:policy/mlserve-deploy"


@pytest.fixture(scope="module")
def jwt_plan(terraform: Terraform) -> dict[str, Any]:
    return plan_json(
        terraform,
        "pins-jwt",
        "-var",
        "api_authorizer=jwt",
        "-var",
        f"jwt_issuer={JWT_ISSUER}",
        "-var",
        'jwt_audience=["web-client"]',
    )


@pytest.fixture(scope="module")
def iam_plan(terraform: Terraform) -> dict[str, Any]:
    """api_authorizer=iam, with the opt-in CircleCI OIDC role on as well (one plan for both)."""
    circleci = (
        f'{{org_id="{CIRCLECI_ORG}",project_id="{CIRCLECI_PROJECT}",'
        f'policy_arns=["{CIRCLECI_POLICY}"]}}'
    )
    return plan_json(
        terraform, "pins-iam", "-var", "api_authorizer=iam", "-var", f"circleci_oidc={circleci}"
    )


def test_jwt_authorizer_guards_every_route(jwt_plan: dict[str, Any]) -> None:
    (authorizer,) = [
        r["values"]
        for r in _planned(jwt_plan).values()
        if r["type"] == "aws_apigatewayv2_authorizer"
    ]
    assert authorizer["authorizer_type"] == "JWT"
    assert authorizer["identity_sources"] == ["$request.header.Authorization"]
    jwt = authorizer["jwt_configuration"][0]
    assert (jwt["issuer"], jwt["audience"]) == (JWT_ISSUER, ["web-client"])
    routes = _routes(jwt_plan)
    assert sorted(routes) == ["GET /health", "POST /predict", "POST /warmup"]
    assert {v["authorization_type"] for v in routes.values()} == {"JWT"}
    route = _config(jwt_plan)["aws_apigatewayv2_route.inference"]["expressions"]
    assert "aws_apigatewayv2_authorizer.jwt" in _refs(route, "authorizer_id")
    # The browser must be allowed to send the bearer token (CORS preflight).
    assert sorted(_cors(jwt_plan)["allow_headers"]) == ["authorization", "content-type"]


def test_iam_authorizer_guards_every_route(iam_plan: dict[str, Any]) -> None:
    routes = _routes(iam_plan)
    assert sorted(routes) == ["GET /health", "POST /predict", "POST /warmup"]
    assert {v["authorization_type"] for v in routes.values()} == {"AWS_IAM"}
    assert all(not v.get("authorizer_id") for v in routes.values())
    assert not [a for a in _planned(iam_plan) if a.startswith("aws_apigatewayv2_authorizer.")]
    headers = set(_cors(iam_plan)["allow_headers"])
    assert {"authorization", "x-amz-date", "x-amz-security-token"} <= headers


# --- CI credentials --------------------------------------------------------------------


def test_the_deploy_role_may_call_an_iam_api_for_the_smoke_step(
    plan: dict[str, Any], iam_plan: dict[str, Any]
) -> None:
    # ci/smoke.py signs its calls with the job's credentials when api_authorizer is iam.
    assert 'aws_iam_role_policy.circleci_smoke["this"]' in _planned(iam_plan)
    assert not [a for a in _planned(plan) if "circleci_smoke" in a]
    (statement,) = _statements(iam_plan, "circleci_smoke")
    assert _const(statement, "actions") == ["execute-api:Invoke"]
    assert _refs(statement, "resources") == [
        "aws_apigatewayv2_api.http.execution_arn",
        "aws_apigatewayv2_api.http",
    ]


def test_circleci_oidc_is_opt_in(plan: dict[str, Any]) -> None:
    planned = _planned(plan)
    assert not [
        a
        for a in planned
        if "circleci" in a or planned[a]["type"] == "aws_iam_openid_connect_provider"
    ]


def test_circleci_role_trusts_only_this_project_on_one_branch(iam_plan: dict[str, Any]) -> None:
    planned = _planned(iam_plan)
    provider = planned['aws_iam_openid_connect_provider.circleci["this"]']["values"]
    assert provider["url"] == f"https://oidc.circleci.com/org/{CIRCLECI_ORG}"
    assert provider["client_id_list"] == [CIRCLECI_ORG]
    role = planned['aws_iam_role.circleci_deploy["this"]']["values"]
    assert role["max_session_duration"] == 3600
    attachment = planned[f'aws_iam_role_policy_attachment.circleci_deploy["{CIRCLECI_POLICY}"]']
    assert attachment["values"]["policy_arn"] == CIRCLECI_POLICY
    (statement,) = _statements(iam_plan, "circleci_assume")
    assert _const(statement, "actions") == ["sts:AssumeRoleWithWebIdentity"]
    assert _const(statement["principals"][0], "type") == "Federated"
    conditions = {_const(c, "test"): c for c in statement["condition"]}
    assert set(conditions) == {"StringEquals", "StringLike"}
    # The sub pattern names the org, the project and the branch; only the user and the
    # repository URL are wildcards.
    sub = _refs(conditions["StringLike"], "values")
    assert {"each.value.org_id", "each.value.project_id", "each.value.branch"} <= set(sub)
