"""Formatting, validation and checkov of terraform/, and the rules every variable follows."""

from __future__ import annotations

import json
import os
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest

from tests.terraform.conftest import REPO_ROOT, TF_DIR, Terraform

pytestmark = pytest.mark.terraform

# `make setup` installs checkov into a venv of its own (requirements/checkov.txt): its pinned
# dependencies clash with requirements/dev.txt.
CHECKOV = REPO_ROOT / ".venv-checkov" / "bin" / "checkov"
# Offline: no platform mapping download, no PyPI update check, no external modules.
CHECKOV_ARGS = (
    "--framework",
    "terraform",
    "--skip-download",
    "--download-external-modules",
    "false",
    "--compact",
    "-o",
    "json",
)
CHECKOV_ENV = {"BC_SKIP_MAPPING": "TRUE", "CKV_SKIP_PACKAGE_UPDATE_CHECK": "TRUE"}


def test_fmt_check() -> None:
    proc = subprocess.run(
        ["terraform", "fmt", "-check", "-recursive", str(TF_DIR)], capture_output=True, text=True
    )
    assert proc.returncode == 0, f"unformatted files:\n{proc.stdout}"


def test_validate(terraform: Terraform) -> None:
    proc = terraform.run("validate", "-no-color")
    assert "The configuration is valid" in proc.stdout


def test_one_file_per_concern() -> None:
    names = {p.name for p in TF_DIR.glob("*.tf")}
    assert {
        "network.tf",
        "storage.tf",
        "functions.tf",
        "api.tf",
        "frontend.tf",
        "iam.tf",
        "variables.tf",
        "outputs.tf",
        "versions.tf",
    } <= names


def test_every_variable_has_a_description_and_a_type() -> None:
    text = (TF_DIR / "variables.tf").read_text()
    blocks = re.findall(r'variable "([^"]+)" \{(.*?)\n\}', text, flags=re.S)
    assert len(blocks) >= 10
    for name, body in blocks:
        assert re.search(r"^\s+description\s+=", body, flags=re.M), name
        assert re.search(r"^\s+type\s+=", body, flags=re.M), name


def test_only_the_aws_provider_is_required() -> None:
    text = (TF_DIR / "versions.tf").read_text()
    assert re.findall(r'source\s+=\s+"([^"]+)"', text) == ["hashicorp/aws"]
    for tf_file in TF_DIR.glob("*.tf"):
        body = tf_file.read_text()
        # No emulator branches: the same files go to AWS.
        for marker in ("4566", "endpoints {", "skip_credentials_validation", "s3_use_path_style"):
            assert marker not in body, f"{tf_file.name} mentions {marker}"


BAD_VARIABLES = [
    ("inference_memory_mb=64", "inference_memory_mb must be a whole number between 128"),
    ("inference_memory_mb=20000", "inference_memory_mb must be a whole number between 128"),
    ("lambda_runtime=python2.7", "lambda_runtime must be python3.12 or python3.13"),
    # python3.11 runs on Amazon Linux 2 at AWS; only the local stack (local_emulator) has it.
    ("lambda_runtime=python3.11", "python3.11 is accepted only with local_emulator = true"),
    ("lambda_architecture=sparc", "lambda_architecture must be x86_64 or arm64"),
    ("inference_reserved_concurrency=0", "inference_reserved_concurrency must be"),
    ("syncer_reserved_concurrency=2", "syncer_reserved_concurrency must be null or 1"),
    ("log_retention_days=13", "log_retention_days must be one of"),
    ("efs_mount_path=/efs", "efs_mount_path must be a single directory under /mnt/"),
    ('extra_cors_origins=["*"]', "Each extra CORS origin"),
    ("api_authorizer=cognito", "api_authorizer must be none, jwt or iam"),
    ("jwt_issuer=http://issuer.example.com", "jwt_issuer must be an https:// URL"),
    ('jwt_audience=[""]', "jwt_audience entries must not be empty"),
    # jwt without an issuer and an audience is refused by the authorizer's precondition.
    ("api_authorizer=jwt", 'api_authorizer = "jwt" needs jwt_issuer and at least one'),
    (
        'circleci_oidc={org_id="my-org",project_id="my-project"}',
        "circleci_oidc needs org_id and project_id as CircleCI UUIDs",
    ),
]


# Refused by a resource's precondition, which Terraform checks only once every variable is
# valid: these need a plan of their own.
PRECONDITIONS = {"api_authorizer=jwt"}


def plan_groups(variables: list[str]) -> list[list[str]]:
    """The bad values in as few plans as possible: Terraform reports every failing variable
    validation of a plan at once, so values of different variables can share one."""
    groups: list[list[str]] = []
    for var in variables:
        name = var.split("=", 1)[0]
        shared = next(
            (
                group
                for group in groups
                if var not in PRECONDITIONS
                and not set(group) & PRECONDITIONS
                and all(other.split("=", 1)[0] != name for other in group)
            ),
            None,
        )
        if shared is None:
            groups.append([var])
        else:
            shared.append(var)
    return groups


def test_plan_groups_never_share_a_variable_or_a_precondition() -> None:
    groups = plan_groups([var for var, _message in BAD_VARIABLES])
    assert sorted(v for group in groups for v in group) == sorted(v for v, _ in BAD_VARIABLES)
    for group in groups:
        names = [var.split("=", 1)[0] for var in group]
        assert len(names) == len(set(names)), group
        assert len(group) == 1 or not set(group) & PRECONDITIONS, group
    assert len(groups) < len(BAD_VARIABLES) / 3


@pytest.fixture(scope="module")
def bad_variable_plans(terraform: Terraform) -> dict[str, subprocess.CompletedProcess[str]]:
    """`terraform plan` with the bad values, a few plans side by side.

    Each plan spends most of its 4-5 s starting the provider and waiting on it, so the
    values share plans (plan_groups) and the plans run at the same time.
    """

    def plan(numbered: tuple[int, list[str]]) -> subprocess.CompletedProcess[str]:
        number, group = numbered  # a state file each: plans on one file wait for its lock
        return terraform.run(
            "plan",
            "-input=false",
            "-no-color",
            *terraform.state_args(f"invalid-{number}"),
            *[arg for var in group for arg in ("-var", var)],
            check=False,
            timeout=180,
        )

    groups = plan_groups([var for var, _message in BAD_VARIABLES])
    with ThreadPoolExecutor(max_workers=4) as pool:
        procs = list(pool.map(plan, enumerate(groups)))
    return {var: proc for group, proc in zip(groups, procs, strict=True) for var in group}


@pytest.mark.parametrize(("var", "message"), BAD_VARIABLES)
def test_bad_variables_are_refused(
    bad_variable_plans: dict[str, subprocess.CompletedProcess[str]], var: str, message: str
) -> None:
    proc = bad_variable_plans[var]
    assert proc.returncode != 0
    assert message in " ".join((proc.stderr + proc.stdout).split())


def test_local_emulator_is_refused_outside_the_emulators_account(terraform: Terraform) -> None:
    """python3.11 through local_emulator plans in the emulator's account, and in no other."""
    env = terraform.env
    sts = boto3.client(
        "sts",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    # The emulator switches account for credentials of a role assumed in another one.
    other = sts.assume_role(
        RoleArn="arn:aws:iam::210987654321:role/deploy", RoleSessionName="local-emulator-test"
    )["Credentials"]
    elsewhere = Terraform(
        env={
            **env,
            "AWS_ACCESS_KEY_ID": other["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": other["SecretAccessKey"],
            "AWS_SESSION_TOKEN": other["SessionToken"],
        },
        var_file=terraform.var_file,
        work=terraform.work,
    )
    flags = ("-var", "lambda_runtime=python3.11", "-var", "local_emulator=true")

    def plan(numbered: tuple[int, Terraform]) -> subprocess.CompletedProcess[str]:
        number, tf = numbered
        return tf.run(
            "plan",
            "-input=false",
            "-no-color",
            *tf.state_args(f"local-emulator-{number}"),
            *flags,
            check=False,
            timeout=180,
        )

    with ThreadPoolExecutor(max_workers=2) as pool:
        here, there = pool.map(plan, enumerate([terraform, elsewhere]))
    assert here.returncode == 0, here.stdout + here.stderr
    assert there.returncode != 0
    said = " ".join((there.stderr + there.stdout).split())
    assert "local_emulator = true is for the local stack only" in said
    assert "account 210987654321" in said


@pytest.fixture(scope="module")
def checkov_report() -> dict[str, Any]:
    """checkov's JSON report on terraform/ (every check, inline skips honoured)."""
    if not CHECKOV.exists():
        pytest.skip(f"{CHECKOV} is absent: `make setup` installs it from requirements/checkov.txt")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BC_", "PRISMA_"))}
    env.update(CHECKOV_ENV)
    proc = subprocess.run(
        [str(CHECKOV), "-d", str(TF_DIR), *CHECKOV_ARGS],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(
            f"checkov exited {proc.returncode} without a JSON report\n{proc.stdout}\n{proc.stderr}"
        ) from None
    # One framework gives one report object (several would give a list).
    assert isinstance(report, dict) and report.get("check_type") == "terraform", report
    return report


def test_checkov_finds_no_failed_check(checkov_report: dict[str, Any]) -> None:
    summary = checkov_report["summary"]
    failed = checkov_report["results"].get("failed_checks", [])
    lines = [
        f"{c['check_id']} {c['resource']} ({c['file_path']}:{c['file_line_range'][0]}): "
        f"{c['check_name']}"
        for c in failed
    ]
    assert summary["failed"] == 0 and not failed, "\n".join(lines)
    assert summary["parsing_errors"] == 0, summary
    # It really scanned the stack (a path mix-up would pass with nothing checked).
    assert summary["resource_count"] >= 40 and summary["passed"] >= 150, summary


def test_every_checkov_skip_is_inline_with_a_reason(checkov_report: dict[str, Any]) -> None:
    skipped = checkov_report["results"].get("skipped_checks", [])
    assert skipped, "expected the documented inline skips"
    for check in skipped:
        reason = check["check_result"].get("suppress_comment") or ""
        where = f"{check['check_id']} on {check['resource']}"
        # checkov says "No comment provided" for a bare #checkov:skip=ID.
        assert len(reason) >= 40 and reason != "No comment provided", f"{where}: {reason!r}"


def test_no_checkov_skip_on_iam(checkov_report: dict[str, Any]) -> None:
    """IAM findings are fixed, never skipped: the roles stay least-privilege."""
    skipped = checkov_report["results"].get("skipped_checks", [])
    on_iam = [
        f"{c['check_id']} on {c['resource']}"
        for c in skipped
        if c["resource"].startswith(("aws_iam_", "data.aws_iam_"))
    ]
    assert on_iam == []
