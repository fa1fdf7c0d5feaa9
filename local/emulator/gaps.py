"""Gap fills for moto: what Terraform and this stack need that moto 5.2 lacks.

Each gap is a small patch on moto's own response/model classes, applied in the
server process before it starts (``register_all``). Each returns an undo, so a
test can show the behaviour with and without it. ``EMULATOR_DISABLE_GAPS``
(comma-separated names) leaves chosen gaps unfilled, for the same reason.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

Undo = Callable[[], None]


@dataclass(frozen=True)
class Gap:
    """One missing or wrong behaviour of moto, and its fill."""

    name: str
    symptom: str
    apply: Callable[[], Undo]


_MISSING = object()


def _patch(owner: Any, attr: str, value: Any) -> Undo:
    """Set owner.attr = value; the undo restores the original (or removes it)."""
    original = (
        owner.__dict__.get(attr, _MISSING)
        if isinstance(owner, type)
        else getattr(owner, attr, _MISSING)
    )
    setattr(owner, attr, value)

    def undo() -> None:
        if original is _MISSING:
            delattr(owner, attr)
        else:
            setattr(owner, attr, original)

    return undo


def _chain(undos: list[Undo]) -> Undo:
    def undo() -> None:
        for step in reversed(undos):
            step()

    return undo


# --- EFS -------------------------------------------------------------------


def _efs_delete_file_system_policy() -> Undo:
    from moto.efs.models import EFSBackend
    from moto.efs.responses import EFSResponse

    def backend_delete(self: EFSBackend, file_system_id: str) -> None:
        self.file_systems_by_id[file_system_id].file_system_policy = None

    def delete_file_system_policy(self: EFSResponse) -> tuple[str, dict[str, Any]]:
        file_system_id = self._get_param("FileSystemId")
        self.efs_backend.delete_file_system_policy(file_system_id)  # type: ignore[attr-defined]
        return "{}", {"Content-Type": "application/json"}

    return _chain(
        [
            _patch(EFSBackend, "delete_file_system_policy", backend_delete),
            _patch(EFSResponse, "delete_file_system_policy", delete_file_system_policy),
        ]
    )


def _efs_put_backup_policy() -> Undo:
    from moto.efs.models import EFSBackend
    from moto.efs.responses import EFSResponse

    def put_backup_policy(self: EFSResponse) -> tuple[str, dict[str, Any]]:
        file_system_id = self._get_param("FileSystemId")
        status = (self._get_param("BackupPolicy") or {}).get("Status", "DISABLED")
        file_system = self.efs_backend.file_systems_by_id[file_system_id]
        file_system._backup = status == "ENABLED"
        setattr(file_system, "_backup_status", status)  # noqa: B010 - moto model has no slot
        return json.dumps({"BackupPolicy": {"Status": status}}), {
            "Content-Type": "application/json"
        }

    original_describe = EFSBackend.describe_backup_policy

    def describe_backup_policy(self: EFSBackend, file_system_id: str) -> dict[str, str]:
        status = getattr(self.file_systems_by_id[file_system_id], "_backup_status", None)
        if status is not None:
            return {"Status": status}
        return original_describe(self, file_system_id)

    return _chain(
        [
            _patch(EFSResponse, "put_backup_policy", put_backup_policy),
            _patch(EFSBackend, "describe_backup_policy", describe_backup_policy),
        ]
    )


# --- Lambda ----------------------------------------------------------------


def _lambda_file_system_configs() -> Undo:
    from moto.awslambda.models import LambdaFunction

    original_init = LambdaFunction.__init__
    original_get = LambdaFunction.get_configuration
    original_update = LambdaFunction.update_configuration

    def __init__(self: LambdaFunction, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        spec = kwargs.get("spec", args[1] if len(args) > 1 else {})
        setattr(self, "file_system_configs", list(spec.get("FileSystemConfigs") or []))  # noqa: B010

    def get_configuration(self: LambdaFunction, *args: Any, **kwargs: Any) -> dict[str, Any]:
        config = original_get(self, *args, **kwargs)
        configs = getattr(self, "file_system_configs", [])
        if configs:
            config["FileSystemConfigs"] = configs
        return config

    def update_configuration(self: LambdaFunction, updates: dict[str, Any]) -> dict[str, Any]:
        if "FileSystemConfigs" in updates:
            setattr(self, "file_system_configs", list(updates["FileSystemConfigs"] or []))  # noqa: B010
        if "EphemeralStorage" in updates:
            self.ephemeral_storage = updates["EphemeralStorage"]["Size"]
        return original_update(self, updates)

    return _chain(
        [
            _patch(LambdaFunction, "__init__", __init__),
            _patch(LambdaFunction, "get_configuration", get_configuration),
            _patch(LambdaFunction, "update_configuration", update_configuration),
        ]
    )


# How long after an alias is created a byte-identical CreateAlias counts as a re-send.
_ALIAS_RESEND_WINDOW_S = 60.0


def _lambda_create_alias_resent() -> Undo:
    import time

    from moto.awslambda.exceptions import ConflictException
    from moto.awslambda.models import LambdaBackend

    original = LambdaBackend.create_alias

    def create_alias(
        self: LambdaBackend,
        name: str,
        function_name: str,
        function_version: str,
        description: str,
        routing_config: str,
    ) -> Any:
        try:
            alias = original(
                self, name, function_name, function_version, description, routing_config
            )
        except ConflictException:
            existing = self.get_alias(name, function_name)
            created = getattr(existing, "_gap_created_at", None)
            resent = (
                created is not None
                and time.monotonic() - created < _ALIAS_RESEND_WINDOW_S
                and (existing.function_version, existing.description, existing.routing_config)
                == (function_version, description, routing_config)
            )
            if not resent:
                raise
            return existing
        setattr(alias, "_gap_created_at", time.monotonic())  # noqa: B010
        return alias

    return _patch(LambdaBackend, "create_alias", create_alias)


# --- IAM -------------------------------------------------------------------


def _iam_managed_policies() -> Undo:
    previous = os.environ.get("MOTO_IAM_LOAD_MANAGED_POLICIES")
    os.environ["MOTO_IAM_LOAD_MANAGED_POLICIES"] = "true"

    def undo() -> None:
        if previous is None:
            os.environ.pop("MOTO_IAM_LOAD_MANAGED_POLICIES", None)
        else:
            os.environ["MOTO_IAM_LOAD_MANAGED_POLICIES"] = previous

    return undo


def _policy_condition_not_met_is_neutral() -> Undo:
    from moto.iam.access_control import IAMPolicyStatement, PermissionResult
    from moto.iam.policy_conditions import CONDITION_OPERATIONS

    original = IAMPolicyStatement.is_action_permitted

    def condition_holds(conditions: dict[str, Any], incoming: dict[str, str] | None) -> bool:
        values = {key.lower(): value for key, value in (incoming or {}).items()}
        for operator, expectations in conditions.items():
            check = CONDITION_OPERATIONS.get(operator)
            for key, expected in expectations.items():
                actual = values.get(key.lower())
                # A missing key or an operator moto cannot evaluate means the
                # condition is not known to hold, so the statement does not apply.
                if check is None or actual is None or not check(expected, actual):
                    return False
        return True

    def is_action_permitted(
        self: IAMPolicyStatement,
        action: str,
        resource: str = "*",
        principal: str | None = None,
        incoming_condition_values: dict[str, str] | None = None,
    ) -> PermissionResult:
        # In IAM a statement whose condition does not hold does not apply. moto
        # skips operators it does not know (Bool) and turns a failed condition
        # into an explicit deny, so a TLS-only Deny in a bucket policy forbids
        # every request to the bucket.
        conditions = self._statement.get("Condition")
        if conditions and not condition_holds(conditions, incoming_condition_values):
            return PermissionResult.NEUTRAL
        return original(self, action, resource, principal, incoming_condition_values)

    return _patch(IAMPolicyStatement, "is_action_permitted", is_action_permitted)


# --- EC2 -------------------------------------------------------------------


def _ec2_rule_descriptions() -> Undo:
    from moto.ec2.models.security_groups import SecurityGroupRule

    original_init = SecurityGroupRule.__init__

    def __init__(self: SecurityGroupRule, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        prefix_list = kwargs.get("prefix_list_id") or (args[7] if len(args) > 7 else None)
        setattr(self, "_prefix_list_description", (prefix_list or {}).get("Description"))  # noqa: B010

    def description(self: SecurityGroupRule) -> str | None:
        # moto keeps only the CIDR range's description; a rule that references a
        # group or a prefix list carries its description there.
        return (
            self.ip_range.get("Description")
            or self.source_group.get("Description")
            or getattr(self, "_prefix_list_description", None)
        )

    return _chain(
        [
            _patch(SecurityGroupRule, "__init__", __init__),
            _patch(SecurityGroupRule, "description", property(description)),
        ]
    )


# --- CloudFront ------------------------------------------------------------


def _cloudfront_origin_access_control() -> Undo:
    from moto.cloudfront.models import Origin

    original_init = Origin.__init__

    def __init__(self: Origin, origin: dict[str, Any]) -> None:
        original_init(self, origin)
        setattr(self, "origin_access_control_id", origin.get("OriginAccessControlId") or "")  # noqa: B010

    return _patch(Origin, "__init__", __init__)


def _cloudfront_default_certificate() -> Undo:
    from moto.cloudfront.models import ViewerCertificate

    original_init = ViewerCertificate.__init__

    def __init__(self: ViewerCertificate, config: dict[str, Any]) -> None:
        original_init(self, config)
        # CloudFront's default certificate has no SNI method; AWS omits it.
        self.ssl_support_method = config.get("SSLSupportMethod")

    return _patch(ViewerCertificate, "__init__", __init__)


# --- API Gateway v2 --------------------------------------------------------


def _apigatewayv2_update_stage() -> Undo:
    from urllib.parse import unquote

    from moto.apigatewayv2.responses import ApiGatewayV2Response

    fields = {
        "accessLogSettings": "access_log_settings",
        "autoDeploy": "auto_deploy",
        "clientCertificateId": "client_certificate_id",
        "defaultRouteSettings": "default_route_settings",
        "description": "description",
        "routeSettings": "route_settings",
        "stageVariables": "stage_variables",
    }

    def update_stage(self: ApiGatewayV2Response) -> tuple[int, dict[str, Any], str]:
        from datetime import datetime

        parts = self.path.split("/")
        api_id, stage_name = parts[-3], unquote(parts[-1])
        stage = self.apigatewayv2_backend.get_stage(api_id, stage_name)
        for key, value in json.loads(self.body or "{}").items():
            if key in fields:
                setattr(stage, fields[key], value)
        stage.updated = datetime.now()
        return 200, {}, json.dumps(stage.to_json())

    return _patch(ApiGatewayV2Response, "update_stage", update_stage)


# --- S3 --------------------------------------------------------------------


def _s3_delete_marker_dispose() -> Undo:
    from moto.s3.models import FakeDeleteMarker

    def dispose(self: FakeDeleteMarker, garbage: bool = False) -> None:
        # A delete marker holds no data buffer; nothing to release.
        return None

    return _patch(FakeDeleteMarker, "dispose", dispose)


GAPS: tuple[Gap, ...] = (
    Gap(
        "efs_delete_file_system_policy",
        "DeleteFileSystemPolicy is not implemented: terraform destroy retries for many minutes",
        _efs_delete_file_system_policy,
    ),
    Gap(
        "efs_put_backup_policy",
        "PutBackupPolicy is not implemented: aws_efs_backup_policy cannot be created",
        _efs_put_backup_policy,
    ),
    Gap(
        "lambda_file_system_configs",
        "FileSystemConfigs is not echoed by GetFunction: a perpetual diff on file_system_config",
        _lambda_file_system_configs,
    ),
    Gap(
        "lambda_create_alias_resent",
        "a CreateAlias the provider sends again, after the emulator's HTTP server lost its first "
        "answer under load, answers 409: terraform apply fails (seen once, in CI, 2026-12-02)",
        _lambda_create_alias_resent,
    ),
    Gap(
        "iam_managed_policies",
        "AWS managed policies are not loaded: attaching one fails with NoSuchEntity",
        _iam_managed_policies,
    ),
    Gap(
        "policy_condition_not_met_is_neutral",
        "a bucket-policy statement whose condition does not hold denies: objects answer 403",
        _policy_condition_not_met_is_neutral,
    ),
    Gap(
        "ec2_rule_descriptions",
        "a group- or prefix-list-referencing rule loses its description: a perpetual diff",
        _ec2_rule_descriptions,
    ),
    Gap(
        "cloudfront_origin_access_control",
        "an origin's OriginAccessControlId is not echoed: a perpetual diff",
        _cloudfront_origin_access_control,
    ),
    Gap(
        "cloudfront_default_certificate",
        "the default certificate comes back with SSLSupportMethod sni-only: a perpetual diff",
        _cloudfront_default_certificate,
    ),
    Gap(
        "s3_delete_marker_dispose",
        "deleting a key with a delete marker once versioning is suspended answers 500: "
        "terraform destroy of a used artifacts bucket retries for ever",
        _s3_delete_marker_dispose,
    ),
    Gap(
        "apigatewayv2_update_stage",
        "UpdateStage is not implemented: changing throttling or logging fails",
        _apigatewayv2_update_stage,
    ),
)


def disabled_from_env() -> set[str]:
    """Gap names listed in EMULATOR_DISABLE_GAPS."""
    raw = os.environ.get("EMULATOR_DISABLE_GAPS", "")
    return {name.strip() for name in raw.split(",") if name.strip()}


def register_all(disabled: set[str] | None = None) -> Undo:
    """Apply every gap fill not disabled; return one undo for all of them."""
    skip = disabled_from_env() if disabled is None else disabled
    unknown = skip - {gap.name for gap in GAPS}
    if unknown:
        raise ValueError(f"unknown gap names: {sorted(unknown)}")
    return _chain([gap.apply() for gap in GAPS if gap.name not in skip])


@contextmanager
def filled(*names: str) -> Iterator[None]:
    """Apply the named gap fills for the duration of a with-block (for tests)."""
    by_name = {gap.name: gap for gap in GAPS}
    undo = _chain([by_name[name].apply() for name in names])
    try:
        yield
    finally:
        undo()
