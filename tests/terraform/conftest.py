"""Terraform helpers; the session's `terraform` fixture is in tests/conftest.py."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
TF_DIR = REPO_ROOT / "terraform"


@dataclass(frozen=True)
class Terraform:
    """Runs terraform on terraform/ with its own data dir, var file and state files."""

    env: dict[str, str]
    var_file: Path
    work: Path

    def run(
        self, *args: str, timeout: float = 300, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """terraform -chdir=terraform <args>, output captured.

        A timeout fails with the output's last lines, which name the resources terraform
        was still creating or destroying (the one fact needed to tell a slow machine from
        a provider wait that regressed).
        """
        try:
            proc = subprocess.run(
                ["terraform", f"-chdir={TF_DIR}", *args],
                env=self.env,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else ""
            tail = "\n".join(out.splitlines()[-25:])
            raise AssertionError(
                f"terraform {args[0]} did not finish within {timeout:.0f} s; last output:\n{tail}"
            ) from None
        if check and proc.returncode != 0:
            raise AssertionError(
                f"terraform {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def apply(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """`terraform apply -auto-approve <args>`, again if CloudFront refused a caller reference.

        The AWS provider makes a distribution's CallerReference from the time to the second
        and a per-process counter, so two applies that create a distribution in the same
        second, as the session's concurrent ones (the test stack and the lifecycle stack,
        one emulated account) can, collide: DistributionAlreadyExists. AWS refuses the same
        way in one account. The second apply makes a new reference; nothing else retries.
        """
        first = self.run("apply", "-auto-approve", *args, timeout=timeout, check=False)
        if first.returncode == 0:
            return first
        if "DistributionAlreadyExists" in first.stdout + first.stderr:
            return self.run("apply", "-auto-approve", *args, timeout=timeout)
        raise AssertionError(
            f"terraform apply {' '.join(args)} exited {first.returncode}\n"
            f"{first.stdout}\n{first.stderr}"
        )

    def state_args(self, name: str) -> list[str]:
        """Flags that keep this test's state and inputs apart from a developer's."""
        return [f"-state={self.work / (name + '.tfstate')}", f"-var-file={self.var_file}"]


def plan_json(tf: Terraform, name: str, *extra: str) -> dict[str, object]:
    """Plan into a file and return `terraform show -json` of it."""
    plan_file = tf.work / f"{name}.tfplan"
    tf.run("plan", "-input=false", "-no-color", *tf.state_args(name), *extra, f"-out={plan_file}")
    shown = tf.run("show", "-json", "-no-color", str(plan_file))
    return dict(json.loads(shown.stdout))
