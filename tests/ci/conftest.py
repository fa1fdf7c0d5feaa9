"""Pipeline fixtures: one stack applied to the session's emulator, a small lib/ set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.terraform.conftest import Terraform, terraform  # noqa: F401 - fixture

REPO_ROOT = Path(__file__).resolve().parents[2]
STACK_NAME = "pipe"
# lib/ for test releases: the real step with a small dependency set (torch comes from
# the venv the local data plane runs on), so a pipeline run takes seconds, not minutes.
SMALL_LIB = "joblib==1.6.0\npillow==13.0.0\nnumpy==2.4.6\n"


@dataclass(frozen=True)
class Deployed:
    """An applied stack and the environment that points the pipeline at it."""

    env: dict[str, str]
    build_dir: Path
    requirements: Path
    outputs: dict[str, str]

    def pipeline(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """Run `python -m ci.pipeline` for the small test releases."""
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "ci.pipeline",
                "--skip-checks",
                "--allow-missing-packages",
                "--lib-requirements",
                str(self.requirements),
                *args,
            ],
            cwd=REPO_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def module(self, name: str, *args: str) -> subprocess.CompletedProcess[str]:
        """Run one ci/ step."""
        return subprocess.run(
            [sys.executable, "-m", name, *args],
            cwd=REPO_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )


@pytest.fixture(scope="session")
def deployed(terraform: Terraform) -> Iterator[Deployed]:  # noqa: F811 - fixture
    """The stack applied once (left for the emulator's teardown to discard)."""
    args = [
        "-input=false",
        "-no-color",
        *terraform.state_args(STACK_NAME),
        "-var",
        f"name={STACK_NAME}",
        "-var",
        f"lambda_runtime=python{sys.version_info[0]}.{sys.version_info[1]}",
    ]
    terraform.run("apply", "-auto-approve", *args, timeout=300)
    state = terraform.state_args(STACK_NAME)[0]
    raw = json.loads(terraform.run("output", "-json", state).stdout)
    outputs = {k: v["value"] for k, v in raw.items()}
    build_dir = terraform.work  # holds lambda/ with the zips that were deployed
    (build_dir / "tf-outputs.json").write_text(json.dumps(raw))
    requirements = build_dir / "small-lib.txt"
    requirements.write_text(SMALL_LIB)
    env = dict(terraform.env)
    env.update(
        {
            "BUILD_DIR": str(build_dir),
            "LOCAL_EFS_ROOT": str(build_dir / "efs"),
            "PYTHONPATH": str(REPO_ROOT),
        }
    )
    env.pop("TF_STATE_FILE", None)
    yield Deployed(env, build_dir, requirements, {k: str(v) for k, v in outputs.items()})


@pytest.fixture()
def aws_env(deployed: Deployed, monkeypatch: pytest.MonkeyPatch) -> Deployed:
    """This test process's boto3 and ci modules pointed at the deployed stack."""
    for key in (
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "BUILD_DIR",
        "LOCAL_EFS_ROOT",
    ):
        monkeypatch.setenv(key, deployed.env[key])
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    os.environ.pop("TF_STATE_FILE", None)
    return deployed
