"""The deployed stack as the pipeline steps see it: Terraform's outputs.

Read from build/tf-outputs.json when a job was handed it (CircleCI workspace, or
`make tf-outputs`), otherwise from `terraform output -json` in terraform/.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ci import paths, terraform_cli

REPO_ROOT = Path(__file__).resolve().parents[1]


def outputs_file() -> Path:
    """build/tf-outputs.json (under $BUILD_DIR when set)."""
    return paths.build_dir() / "tf-outputs.json"


class StackNotDeployed(RuntimeError):
    """Terraform has no outputs: the stack has not been applied."""


@dataclass(frozen=True)
class Stack:
    """The names the pipeline needs."""

    artifacts_bucket: str
    inference_function: str
    syncer_function: str
    api_endpoint: str
    live_alias: str = "live"
    # none, jwt or iam (terraform's var.api_authorizer): what a call to api_endpoint needs.
    api_authorizer: str = "none"


def _terraform_output() -> str:
    """`terraform output -json` of terraform/ (with the emulator's state file when set)."""
    state = os.environ.get("TF_STATE_FILE")
    proc = subprocess.run(
        [
            "terraform",
            f"-chdir={REPO_ROOT / 'terraform'}",
            "output",
            "-json",
            *([f"-state={state}"] if state else []),
        ],
        env=terraform_cli.terraform_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise StackNotDeployed(f"terraform output failed: {proc.stderr.strip()}")
    return proc.stdout


def _values(text: str) -> dict[str, object]:
    data = json.loads(text or "{}")
    if not data:
        raise StackNotDeployed("Terraform has no outputs; run `make tf-apply` first")
    return {k: (v["value"] if isinstance(v, dict) and "value" in v else v) for k, v in data.items()}


def _raw_outputs(path: Path | None) -> dict[str, object]:
    source = path or outputs_file()
    return _values(source.read_text() if source.exists() else _terraform_output())


def outputs(path: Path | None = None) -> dict[str, object]:
    """Every Terraform output, by name."""
    return _raw_outputs(path)


def load(path: Path | None = None) -> Stack:
    """The stack's names from Terraform's outputs."""
    out = _raw_outputs(path)
    try:
        return Stack(
            artifacts_bucket=str(out["artifacts_bucket"]),
            inference_function=str(out["inference_function_name"]),
            syncer_function=str(out["syncer_function_name"]),
            api_endpoint=str(out["api_endpoint"]),
            # An outputs file saved before this output existed lacks it; "none" keeps the
            # smoke step for such a stack what it was.
            api_authorizer=str(out.get("api_authorizer") or "none"),
        )
    except KeyError as exc:
        raise StackNotDeployed(f"Terraform output {exc} is missing") from exc


def write_outputs(path: Path | None = None) -> Path:
    """Save `terraform output -json` for jobs that have no Terraform state."""
    path = path or outputs_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = _values(_terraform_output())
    path.write_text(json.dumps(raw, indent=2) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    """Write build/tf-outputs.json."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    print(write_outputs(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
