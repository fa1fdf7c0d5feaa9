"""Pipeline step 1: the quality gates, in the order CI runs them.

    python -m ci.check                                  # ruff, mypy, terraform fmt, pytest
    python -m ci.check --no-tests                       # everything but pytest
    python -m ci.check --only ruff --only terraform     # just those gates
    python -m ci.check --pytest-args "-x -k handler"    # extra pytest arguments
    python -m ci.check --only ruff --paths ci/check.py  # lint some paths instead of the repo

Gates:
  ruff       `ruff check` and `ruff format --check` (on --paths, the whole repo by default)
  mypy       `mypy` with the configuration in pyproject.toml (or on --paths)
  terraform  `terraform fmt -check -recursive` on --terraform-dir (terraform from PATH)
  pytest     `pytest` plus --pytest-args

ruff, mypy and pytest are the executables next to this Python (the venv's own);
terraform is looked up on PATH. Every selected gate runs even after one fails, a
summary line per gate is printed at the end, and the exit status is 1 when any
gate failed. Commands run from the repository root.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
GATES = ("ruff", "mypy", "terraform", "pytest")
BIN_DIR = Path(sys.executable).parent


@dataclass(frozen=True)
class Gate:
    """One gate: its commands, or why it cannot run (a missing tool fails the gate)."""

    name: str
    commands: tuple[tuple[str, ...], ...] = ()
    missing: str | None = None


@dataclass
class Outcome:
    """What running a gate gave."""

    name: str
    ok: bool
    seconds: float
    detail: str = ""


def _venv_tool(name: str, bin_dir: Path) -> Path | None:
    tool = bin_dir / name
    return tool if tool.exists() else None


def build_gates(
    selected: Sequence[str],
    *,
    paths: Sequence[str] = (),
    terraform_dir: str = "terraform",
    pytest_args: str = "",
    bin_dir: Path = BIN_DIR,
) -> list[Gate]:
    """The gates to run, in GATES order, with their command lines resolved."""
    targets = list(paths) or ["."]
    gates: list[Gate] = []
    for name in GATES:
        if name not in selected:
            continue
        if name == "terraform":
            terraform = shutil.which("terraform")
            if terraform is None:
                gates.append(
                    Gate(
                        name,
                        missing="terraform is not on PATH: install Terraform >= 1.6 "
                        "(CI installs it before `make setup`)",
                    )
                )
            else:
                gates.append(
                    Gate(name, ((terraform, "fmt", "-check", "-recursive", terraform_dir),))
                )
            continue
        tool = _venv_tool(name, bin_dir)
        if tool is None:
            gates.append(
                Gate(
                    name,
                    missing=f"{bin_dir / name} does not exist: run `make setup` "
                    "(or run this module with the venv's python)",
                )
            )
            continue
        exe = str(tool)
        if name == "ruff":
            commands: tuple[tuple[str, ...], ...] = (
                (exe, "check", *targets),
                (exe, "format", "--check", *targets),
            )
        elif name == "mypy":
            commands = ((exe, *paths),)
        else:
            commands = ((exe, *shlex.split(pytest_args)),)
        gates.append(Gate(name, commands))
    return gates


def run_gate(gate: Gate, cwd: Path = REPO_ROOT) -> Outcome:
    """Run every command of a gate (all of them, even after a failure)."""
    print(f"==> {gate.name}", flush=True)
    started = time.perf_counter()
    if gate.missing is not None:
        print(f"    {gate.missing}", flush=True)
        return Outcome(gate.name, False, 0.0, detail=gate.missing)
    failed: list[str] = []
    for command in gate.commands:
        line = shlex.join(command)
        print(f"$ {line}", flush=True)
        try:
            code = subprocess.run(command, cwd=cwd, check=False).returncode
        except OSError as exc:
            print(f"    cannot run: {exc}", flush=True)
            code = 127
        if code != 0:
            failed.append(f"{' '.join([Path(command[0]).name, *command[1:2]])} (exit {code})")
    seconds = time.perf_counter() - started
    detail = "failed: " + "; ".join(failed) if failed else ""
    return Outcome(gate.name, not failed, seconds, detail=detail)


def summary(outcomes: Sequence[Outcome]) -> str:
    """One line per gate, then the verdict."""
    lines = ["", "check summary:"]
    for o in outcomes:
        status = "PASS" if o.ok else "FAIL"
        extra = f"  {o.detail}" if o.detail else ""
        lines.append(f"  {o.name:<10} {status}  {o.seconds:6.1f}s{extra}")
    failed = [o.name for o in outcomes if not o.ok]
    lines.append(f"check: {'FAILED (' + ', '.join(failed) + ')' if failed else 'all gates passed'}")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ci.check",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=GATES,
        metavar="{" + ",".join(GATES) + "}",
        help="run only this gate (repeatable)",
    )
    parser.add_argument("--no-tests", action="store_true", help="skip the pytest gate")
    parser.add_argument(
        "--pytest-args", default="", help='extra pytest arguments, one string: "-x -k name"'
    )
    parser.add_argument(
        "--paths",
        nargs="+",
        default=[],
        metavar="PATH",
        help="what ruff and mypy check instead of the whole repository",
    )
    parser.add_argument(
        "--terraform-dir", default="terraform", help="directory for terraform fmt (terraform)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected gates; 0 when all passed, 1 when any failed."""
    parser = _parser()
    args = parser.parse_args(argv)
    selected = list(args.only) if args.only else list(GATES)
    if args.no_tests:
        selected = [g for g in selected if g != "pytest"]
    if not selected:
        parser.error("no gate left to run (--no-tests removed the only one selected)")
    gates = build_gates(
        selected,
        paths=args.paths,
        terraform_dir=args.terraform_dir,
        pytest_args=args.pytest_args,
    )
    outcomes = [run_gate(gate) for gate in gates]
    print(summary(outcomes), flush=True)
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
