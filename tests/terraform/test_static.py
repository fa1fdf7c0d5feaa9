"""Formatting and validation of terraform/, and the rules every variable follows."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.terraform.conftest import TF_DIR, Terraform

pytestmark = pytest.mark.terraform


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


@pytest.mark.parametrize(
    ("var", "message"),
    [
        ("inference_memory_mb=64", "inference_memory_mb must be a whole number between 128"),
        ("inference_memory_mb=20000", "inference_memory_mb must be a whole number between 128"),
        ("lambda_runtime=python2.7", "lambda_runtime must be one of"),
        ("lambda_architecture=sparc", "lambda_architecture must be x86_64 or arm64"),
        ("inference_reserved_concurrency=0", "inference_reserved_concurrency must be"),
        ("log_retention_days=13", "log_retention_days must be one of"),
        ("efs_mount_path=/efs", "efs_mount_path must be a single directory under /mnt/"),
        ('extra_cors_origins=["*"]', "Each extra CORS origin"),
    ],
)
def test_bad_variables_are_refused(terraform: Terraform, var: str, message: str) -> None:
    proc = terraform.run(
        "plan",
        "-input=false",
        "-no-color",
        *terraform.state_args("invalid"),
        "-var",
        var,
        check=False,
        timeout=120,
    )
    assert proc.returncode != 0
    assert message in " ".join((proc.stderr + proc.stdout).split())
