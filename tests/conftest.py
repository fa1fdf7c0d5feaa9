"""Shared fixtures: the embedded emulator, started once per session on a free port."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ci.aws import emulator_env
from local.emulator import process

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[process.Emulator]:
    """A running emulator with every gap filled, on a free port so `make up` is never touched."""
    state_dir = tmp_path_factory.mktemp("emulator-state")
    running = process.start(port=process.free_port(), state_dir=state_dir)
    try:
        yield running
    finally:
        process.stop(state_dir)


@pytest.fixture(scope="session")
def emulator_environ(emulator: process.Emulator) -> dict[str, str]:
    """os.environ plus the variables that send boto3 and Terraform to the test emulator."""
    env = dict(os.environ)
    env.update(emulator_env(emulator.endpoint))
    return env


@pytest.fixture()
def aws_to_emulator(
    emulator_environ: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """Point this test's boto3 clients at the test emulator."""
    for key in (
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_EC2_METADATA_DISABLED",
    ):
        monkeypatch.setenv(key, emulator_environ[key])
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return emulator_environ
