"""What lib/ is built for: a Lambda Python runtime's interpreter and the glibc of its OS.

    python -m ci.runtime [--out build/runtime.txt]

prints (and writes) the target the deployed inference function gives: its runtime,
Python, machine and glibc. CircleCI keys its lib/ cache on that file, and
``python -m ci.build_lib --from-function`` builds for the same target.

On AWS the glibc is that of the runtime's operating system (``LAMBDA_RUNTIMES``). On the
emulator the functions run on this machine's Python (local/dataplane), so lib/ is built
for that Python and this machine's glibc, capped at Amazon Linux 2023's so that the local
lib/ is the one AWS gets and anything needing more fails here first.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ci import stack


@dataclass(frozen=True)
class LambdaRuntime:
    """One of Lambda's Python runtimes: its interpreter and its operating system's glibc."""

    name: str
    python_version: str
    glibc: tuple[int, int]
    os: str


LAMBDA_RUNTIMES: Mapping[str, LambdaRuntime] = {
    r.name: r
    for r in (
        # Listed for completeness: efs_layout needs Python 3.11 (StrEnum, datetime.UTC),
        # but Amazon Linux 2's glibc cannot load manylinux_2_28 wheels such as torch's.
        LambdaRuntime("python3.11", "3.11", (2, 26), "Amazon Linux 2"),
        LambdaRuntime("python3.12", "3.12", (2, 34), "Amazon Linux 2023"),
        LambdaRuntime("python3.13", "3.13", (2, 34), "Amazon Linux 2023"),
    )
}
# The runtimes the code runs on at AWS: terraform/variables.tf lambda_runtime allows these.
AWS_RUNTIMES = ("python3.12", "python3.13")
# The local data plane's lib/ is built for no newer glibc than AWS's runtimes have.
EMULATOR_GLIBC_CAP = LAMBDA_RUNTIMES["python3.12"].glibc


@dataclass(frozen=True)
class TargetRuntime:
    """What lib/ must be built for: the deployed inference function's runtime and machine."""

    python_version: str
    architecture: str
    max_glibc: tuple[int, int]
    runtime: str  # the function's Runtime, e.g. python3.12
    emulated: bool = False  # run by the local data plane on this machine, not by Lambda

    def describe(self) -> str:
        """One line for logs and build/runtime.txt (the CircleCI lib/ cache key)."""
        glibc = f"glibc {self.max_glibc[0]}.{self.max_glibc[1]}"
        where = (
            f"local data plane, this machine's {glibc} (capped at Amazon Linux 2023's)"
            if self.emulated
            else f"{LAMBDA_RUNTIMES[self.runtime].os}, {glibc}"
        )
        return f"{self.runtime} (Python {self.python_version}, {self.architecture}; {where})"


def host_glibc() -> tuple[int, int] | None:
    """This machine's glibc version, or None where there is none (musl, macOS)."""
    try:
        found = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):
        return None
    m = re.fullmatch(r"glibc ([0-9]+)\.([0-9]+)(?:\.[0-9]+)?", found.strip())
    return (int(m.group(1)), int(m.group(2))) if m else None


def for_runtime(runtime: str, architecture: str, *, emulated: bool) -> TargetRuntime:
    """The target of a function declaring ``runtime``; ValueError if lib/ cannot serve it."""
    if not runtime.startswith("python"):
        raise ValueError(f"the function runs {runtime}, not Python")
    if emulated:
        glibc = min(host_glibc() or EMULATOR_GLIBC_CAP, EMULATOR_GLIBC_CAP)
        return TargetRuntime(runtime.removeprefix("python"), architecture, glibc, runtime, True)
    if runtime not in AWS_RUNTIMES:
        raise ValueError(
            f"the function runs {runtime}, which the code cannot run on at AWS; deploy "
            f"{' or '.join(AWS_RUNTIMES)} (terraform's lambda_runtime)"
        )
    known = LAMBDA_RUNTIMES[runtime]
    return TargetRuntime(known.python_version, architecture, known.glibc, runtime)


def target_runtime(names: stack.Stack) -> TargetRuntime:
    """Read runtime and architecture from the function, so lib/ and code cannot drift apart."""
    # Imported here: build_lib imports this module for its table and needs no boto3 for it.
    from ci.aws import client
    from ci.invoke import uses_emulator

    config = client("lambda").get_function_configuration(FunctionName=names.inference_function)
    architecture = str((config.get("Architectures") or ["x86_64"])[0])
    try:
        return for_runtime(str(config["Runtime"]), architecture, emulated=uses_emulator())
    except ValueError as exc:
        raise RuntimeError(f"{names.inference_function}: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    """Print the deployed function's target; with --out, write it to that file too."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=None, help="e.g. build/runtime.txt")
    args = parser.parse_args(argv)
    try:
        target = target_runtime(stack.load())
    except Exception as exc:  # one paragraph for the CI log, not a traceback
        print(f"runtime: cannot read the deployed function's runtime: {exc}", file=sys.stderr)
        return 1
    line = target.describe()
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(line + "\n")
    print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
