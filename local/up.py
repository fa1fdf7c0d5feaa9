"""`make up`: the whole stack on this machine, one named and timed step after the other.

    python -m local.up [--model digits] [--port 8080] [--tf-arg -var=...]...

emulator -> terraform -> the pipeline (build-lib, build-model, release-check, package,
publish, promote, smoke, prune; skipped when live already serves these inputs) ->
endpoint, then the URL. Every step prints when it starts and ends with its time and the
time since `make up` began (ci/stages.py), so a slow first run says where it is.

A second `make up` while the stack is up does as little as it can: the emulator answers,
Terraform's inputs (the .tf files, the code zips' hashes, web/, the variables) and its
state are what the last apply here left, live serves this lib/ and model, and the
endpoint answers.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from ci.stages import Stages

REPO_ROOT = Path(__file__).resolve().parents[1]
TERRAFORM_DIR = REPO_ROOT / "terraform"
WEB_DIR = REPO_ROOT / "web"
DEFAULT_STATE_DIR = REPO_ROOT / ".state" / "emulator"
APPLIED = "applied.json"


def terraform_inputs_key(tf_args: Sequence[str], emulator_pid: int, state_file: Path) -> str:
    """What decides the result of `terraform apply` against this emulator.

    The emulator process (its resources die with it), the configuration, the variables
    (the code zips' hashes among them), the page Terraform uploads, and the state as the
    last apply here left it (an apply or destroy by hand in between changes it).
    """
    digest = hashlib.sha256(json.dumps([list(tf_args), emulator_pid]).encode())
    files = sorted(TERRAFORM_DIR.glob("*.tf")) + sorted(TERRAFORM_DIR.glob("*.tfvars*"))
    files += sorted(p for p in WEB_DIR.rglob("*") if p.is_file() and p.name != "config.js")
    for path in [*files, state_file]:
        digest.update(str(path.relative_to(REPO_ROOT)).encode())
        digest.update(path.read_bytes() if path.is_file() else b"<absent>")
    return digest.hexdigest()


def apply_terraform(
    tf_args: Sequence[str], emulator_pid: int, state_dir: Path, stages: Stages
) -> bool:
    """`terraform apply` unless the inputs are those of the last apply here; True if applied."""
    state_file = Path(os.environ.get("TF_STATE_FILE") or state_dir / "terraform.tfstate")
    record = state_dir / APPLIED
    key = terraform_inputs_key(tf_args, emulator_pid, state_file)
    try:
        if json.loads(record.read_text()).get("key") == key:
            stages.say("terraform: inputs and state as the last apply left them; not applied")
            return False
    except (OSError, ValueError):
        pass
    proc = subprocess.run(
        [
            "terraform",
            f"-chdir={TERRAFORM_DIR}",
            "apply",
            "-input=false",
            "-auto-approve",
            "-no-color",
            *tf_args,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"terraform apply failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    summary = [line for line in proc.stdout.splitlines() if line.startswith("Apply complete")]
    stages.say(f"terraform: {summary[-1] if summary else 'applied'}")
    record.write_text(
        json.dumps({"key": terraform_inputs_key(tf_args, emulator_pid, state_file)}) + "\n"
    )
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """Bring the stack up; 0 with the URL printed, 1 with the failing step named."""
    from ci import pipeline

    parser = argparse.ArgumentParser(prog="python -m local.up", description=__doc__)
    parser.add_argument("--port", type=int, default=8080, help="the local endpoint's port")
    parser.add_argument("--emulator-port", type=int, default=4566)
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    parser.add_argument("--model", default=pipeline.DEFAULT_MODEL)
    parser.add_argument("--lib-requirements", type=Path, default=None)
    parser.add_argument("--extra-index-url", action="append", default=[])
    parser.add_argument("--keep", type=int, default=3)
    parser.add_argument(
        "--tf-arg",
        action="append",
        default=None,
        help="passed to terraform apply (default: $UP_TF_ARGS, split like a shell would)",
    )
    parser.add_argument("--idle-timeout", type=float, default=300.0)
    parser.add_argument(
        "--until",
        choices=["terraform", "endpoint"],
        default="endpoint",
        help="stop after this step (make pipeline: terraform, then its own pipeline run)",
    )
    args = parser.parse_args(argv)

    tf_args = (
        args.tf_arg if args.tf_arg is not None else shlex.split(os.environ.get("UP_TF_ARGS", ""))
    )
    stages = Stages("up:")
    try:
        with stages.stage("emulator"):
            from local.emulator import process

            emulator = process.start(args.emulator_port, args.state_dir)
            stages.say(f"emulator: {emulator.endpoint} (pid {emulator.pid})")
        with stages.stage("terraform"):
            apply_terraform(tf_args, emulator.pid, args.state_dir, stages)
        if args.until == "terraform":
            return 0
        options = pipeline.Options(
            model=args.model,
            lib_requirements=args.lib_requirements,
            with_checks=False,
            keep=args.keep,
            extra_index_urls=tuple(args.extra_index_url),
            skip_if_current=True,
        )
        pipeline.run(options, stages)
        with stages.stage("endpoint"):
            from local.dataplane.__main__ import up as endpoint_up

            if endpoint_up(args.port, args.idle_timeout) != 0:
                raise RuntimeError("the local endpoint did not start")
    except Exception as exc:
        stages.say(f"FAILED: {type(exc).__name__}: {exc}")
        return 1
    url = f"http://127.0.0.1:{args.port}"
    stages.say(f"up in {stages.elapsed():.0f} s")
    print(
        f"\n  open {url}\n"
        f"  curl --data-binary @docs/seven.png -H 'content-type: image/png' {url}/predict\n"
        f"  make down   (stops the endpoint and the emulator)\n",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
