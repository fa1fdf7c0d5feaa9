"""Quality gates that CI must not forgive: ruff, mypy, and the CircleCI schema."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import HeadStarts

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SCHEMA_CANDIDATES = [
    REPO_ROOT / "ci" / "schemas" / "circleciconfig.json",
    REPO_ROOT.parent / "shared" / "schemas" / "circleciconfig.json",
]


def test_ruff_is_clean() -> None:
    proc = subprocess.run(
        [str(BIN / "ruff"), "check", "."], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_format_is_clean() -> None:
    proc = subprocess.run(
        [str(BIN / "ruff"), "format", "--check", "."],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def run_mypy() -> subprocess.CompletedProcess[str]:
    """mypy as configured in pyproject.toml (strict), over the whole project."""
    return subprocess.run(
        [str(BIN / "mypy")], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600
    )


def test_mypy_is_clean(head_starts: HeadStarts) -> None:
    proc = head_starts.result("mypy", run_mypy)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_circleci_config_validates_against_the_schema() -> None:
    import jsonschema

    schema_path = next((p for p in SCHEMA_CANDIDATES if p.exists()), None)
    if schema_path is None:
        pytest.skip("no copy of the CircleCI schema on this machine")
    schema = json.loads(schema_path.read_text())
    config = yaml.safe_load((REPO_ROOT / ".circleci" / "config.yml").read_text())
    validator_cls = jsonschema.validators.validator_for(schema)
    errors = sorted(validator_cls(schema).iter_errors(config), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:10])
