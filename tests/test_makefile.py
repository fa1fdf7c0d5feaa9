"""What the Makefile hands the pipeline, read from `make -n` (nothing is run)."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def _dry_run(*args: str) -> list[str]:
    """The command lines make would run for ``args``, without running them."""
    proc = subprocess.run(
        ["make", "-n", "--no-print-directory", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    # A recipe line continued with a backslash is one command.
    return proc.stdout.replace("\\\n", " ").splitlines()


def _lines_running(module: str, lines: list[str]) -> list[str]:
    found = [line for line in lines if f"-m {module} " in line + " "]
    assert found, f"make would not run {module}"
    return found


def test_lib_for_aws_comes_from_pytorchs_cpu_index() -> None:
    # From PyPI alone, torch is the CUDA build with gigabytes of nvidia-* wheels.
    lines = _dry_run("pipeline", "build-lib", "TARGET=aws")
    for module in ("ci.pipeline", "ci.build_lib"):
        for line in _lines_running(module, lines):
            assert f"--extra-index-url {CPU_INDEX}" in line, line


def test_the_emulator_keeps_the_machines_own_index() -> None:
    lines = _dry_run("pipeline", "TARGET=emulator")
    assert all(CPU_INDEX not in line for line in _lines_running("ci.pipeline", lines))


def test_an_index_given_by_the_user_wins() -> None:
    mirror = "https://mirror.example.com/simple"
    lines = _dry_run("pipeline", "TARGET=aws", f"LIB_EXTRA_INDEX_URL={mirror}")
    for line in _lines_running("ci.pipeline", lines):
        assert f"--extra-index-url {mirror}" in line and CPU_INDEX not in line, line
