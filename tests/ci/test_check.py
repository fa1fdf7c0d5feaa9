"""ci.check: the quality gates step. Only quick gates run here, never the whole pytest suite."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ci import check

REPO_ROOT = Path(__file__).resolve().parents[2]
needs_terraform = pytest.mark.skipif(shutil.which("terraform") is None, reason="no terraform")


def _names(gates: list[check.Gate]) -> list[str]:
    return [g.name for g in gates]


def test_all_gates_in_order_by_default() -> None:
    gates = check.build_gates(check.GATES)
    assert _names(gates) == ["ruff", "mypy", "terraform", "pytest"]
    ruff = gates[0]
    assert [c[1:] for c in ruff.commands] == [("check", "."), ("format", "--check", ".")]
    assert Path(ruff.commands[0][0]).parent == Path(sys.executable).parent


def test_pytest_args_are_split_like_a_shell() -> None:
    (gate,) = check.build_gates(["pytest"], pytest_args='-x -k "a and b"')
    assert gate.commands == ((str(Path(sys.executable).parent / "pytest"), "-x", "-k", "a and b"),)


def test_missing_venv_tool_fails_the_gate_with_a_message(tmp_path: Path) -> None:
    (gate,) = check.build_gates(["mypy"], bin_dir=tmp_path)
    assert gate.missing is not None and "make setup" in gate.missing
    outcome = check.run_gate(gate)
    assert not outcome.ok


def test_only_ruff_on_a_clean_path_passes(capsys: pytest.CaptureFixture[str]) -> None:
    assert check.main(["--only", "ruff", "--paths", "ci/check.py"]) == 0
    out = capsys.readouterr().out
    assert "ruff       PASS" in out
    assert "check: all gates passed" in out


def test_only_ruff_on_a_bad_file_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nx  =  1\n")  # unused import and unformatted
    assert check.main(["--only", "ruff", "--paths", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "ruff       FAIL" in out
    assert "ruff check (exit 1)" in out and "ruff format (exit 1)" in out
    assert "check: FAILED (ruff)" in out


@needs_terraform
def test_only_terraform_passes_on_the_repo(capsys: pytest.CaptureFixture[str]) -> None:
    assert check.main(["--only", "terraform"]) == 0
    assert "terraform  PASS" in capsys.readouterr().out


@needs_terraform
def test_only_terraform_fails_on_unformatted_hcl(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "main.tf").write_text('variable "x" {\ndefault="y"\n}\n')
    assert check.main(["--only", "terraform", "--terraform-dir", str(tmp_path)]) == 1
    assert "terraform  FAIL" in capsys.readouterr().out


def test_missing_terraform_fails_that_gate_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert check.main(["--only", "terraform"]) == 1
    out = capsys.readouterr().out
    assert "terraform  FAIL" in out
    assert "terraform is not on PATH" in out


def test_every_selected_gate_runs_after_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # terraform missing: that gate fails first
    assert check.main(["--only", "terraform", "--only", "ruff", "--paths", "ci/check.py"]) == 1
    out = capsys.readouterr().out
    assert "ruff       PASS" in out and "terraform  FAIL" in out


def test_no_tests_with_only_pytest_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exc:
        check.main(["--only", "pytest", "--no-tests"])
    assert exc.value.code == 2


def test_command_line_exit_status() -> None:
    """The module runs as `python -m ci.check` and its exit status is the verdict."""
    proc = subprocess.run(
        [sys.executable, "-m", "ci.check", "--only", "ruff", "--paths", "ci/check.py"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ruff       PASS" in proc.stdout
