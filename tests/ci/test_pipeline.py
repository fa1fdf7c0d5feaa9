"""`make pipeline` against the emulator: two runs, rollback, refusals, the lock, interruptions."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.ci.conftest import REPO_ROOT, STACK_NAME, TEST_MODEL, Deployed
from tests.conftest import stack_variables
from tests.terraform.conftest import Terraform

pytestmark = [pytest.mark.emulator, pytest.mark.terraform]


def report(deployed: Deployed) -> dict[str, Any]:
    return dict(json.loads((deployed.build_dir / "pipeline-report.json").read_text()))


def _python_json(deployed: Deployed, code: str, *args: str) -> dict[str, Any]:
    """Run code in a fresh interpreter with the stack's environment; its last line is JSON."""
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=REPO_ROOT,
        env=deployed.env,
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def live(deployed: Deployed) -> dict[str, Any]:
    """What /warmup on the live alias answers, through the local data plane."""
    return _python_json(
        deployed,
        "import json; from ci import stack, smoke; n = stack.load(); "
        "call = smoke.caller(n, None); a = call('POST', '/warmup', b'', None); "
        "print(json.dumps({'status': a.status, 'body': a.body}))",
    )


def syncer(deployed: Deployed, payload: dict[str, Any]) -> dict[str, Any]:
    return _python_json(
        deployed,
        "import json, sys; from ci import stack, syncer_client; n = stack.load(); "
        "a = syncer_client.call(n.syncer_function, json.loads(sys.argv[1])); "
        "print(json.dumps(a.__dict__))",
        json.dumps(payload),
    )


def run_ok(deployed: Deployed, *args: str) -> dict[str, Any]:
    proc = deployed.pipeline(*args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return report(deployed)


@pytest.fixture(scope="module")
def two_runs(deployed: Deployed) -> tuple[dict[str, Any], dict[str, Any]]:
    first = run_ok(deployed, "--seed", "0")
    time.sleep(1.1)  # release ids carry the time to the second
    second = run_ok(deployed, "--seed", "1")
    return first, second


def test_second_run_promotes_a_new_release_moving_under_five_percent(
    deployed: Deployed, two_runs: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    first, second = two_runs
    assert first["release_id"] != second["release_id"]
    assert first["moved_bytes"] >= 0.5 * first["release_bytes"] * 0.2  # the first carries lib/
    assert second["moved_bytes"] < 0.05 * second["release_bytes"], second
    assert second["previous_version"] == first["live_version"]
    served = live(deployed)
    assert served["status"] == 200 and served["body"]["release"] == second["release_id"]
    releases = syncer(deployed, {"action": "list"})["details"]["releases"]
    assert first["release_id"] in releases and second["release_id"] in releases


def test_rollback_returns_live_to_the_first_release(
    deployed: Deployed, two_runs: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    first, second = two_runs
    proc = deployed.module("ci.promote", "--rollback")
    assert proc.returncode == 0, proc.stderr
    assert live(deployed)["body"]["release"] == first["release_id"]
    smoke = deployed.module("ci.smoke", "--no-rollback")
    assert smoke.returncode == 0, smoke.stderr
    back = deployed.module("ci.promote", "--rollback")  # and forward again, one step each
    assert back.returncode == 0, back.stderr
    assert live(deployed)["body"]["release"] == second["release_id"]


def test_a_release_failing_the_stamp_check_is_never_promoted(
    deployed: Deployed, two_runs: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    before = live(deployed)["body"]["release"]
    release_json = deployed.build_dir / "release" / "release.json"
    release = json.loads(release_json.read_text())
    # Re-package and publish a fresh release, then damage a file of it on "EFS".
    assert (
        deployed.module(
            "ci.package_release",
            "--lib",
            str(deployed.build_dir / "lib"),
            "--model",
            str(deployed.build_dir / "model"),
            "--out",
            str(deployed.build_dir / "release"),
        ).returncode
        == 0
    )
    assert deployed.module("ci.publish").returncode == 0
    fresh = json.loads(release_json.read_text())["release_id"]
    assert fresh != release["release_id"]
    model = next((deployed.build_dir / "efs").rglob(f"releases/{fresh}/model/model.joblib"))
    data = bytearray(model.read_bytes())
    data[100] ^= 0xFF
    # Replace the file rather than edit it: it is a hard link into the store, shared
    # with the live release, which must stay intact.
    model.unlink()
    model.write_bytes(bytes(data))
    proc = deployed.module("ci.promote")
    assert proc.returncode == 1
    assert "failed the stamp check" in proc.stderr and "manifest_mismatch" in proc.stderr
    assert live(deployed)["body"]["release"] == before


def test_a_second_pipeline_waits_for_or_fails_on_the_lock(
    deployed: Deployed, aws_env: Deployed, two_runs: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    from ci.deploy_lock import deploy_lock

    bucket = deployed.outputs["artifacts_bucket"]
    with deploy_lock(bucket):
        busy = deployed.pipeline()
        assert busy.returncode == 3
        assert "deploy lock is held" in busy.stderr
        waiting = subprocess.Popen(
            [sys.executable, "-m", "ci.prune", "--keep", "3", "--lock-wait", "60"],
            cwd=REPO_ROOT,
            env=deployed.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(3)
        assert waiting.poll() is None, "the second pipeline did not wait for the lock"
    _out, err = waiting.communicate(timeout=120)
    assert waiting.returncode == 0, err


STEPS = [
    "build-lib",
    "build-model",
    "release-check",
    "package",
    "publish",
    "promote",
    "smoke",
    "prune",
]


@pytest.mark.parametrize("step", STEPS)
def test_killing_the_pipeline_at_a_step_keeps_live_serving_and_a_rerun_completes(
    deployed: Deployed, two_runs: tuple[dict[str, Any], dict[str, Any]], step: str
) -> None:
    before = live(deployed)
    assert before["status"] == 200
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ci.pipeline",
            "--skip-checks",
            "--model",
            TEST_MODEL,
            "--allow-missing-packages",
            "--lib-requirements",
            str(deployed.requirements),
        ],
        cwd=REPO_ROOT,
        env=deployed.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if re.fullmatch(rf"pipeline: \[[0-9:.]+\] {step} \.\.\.", line.strip()):
            os.killpg(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
    during = live(deployed)
    assert during["status"] == 200, during
    if STEPS.index(step) <= STEPS.index("promote"):
        assert during["body"]["release"] == before["body"]["release"]
    rerun = deployed.pipeline()
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    after = live(deployed)
    assert after["status"] == 200 and after["body"]["release"] == report(deployed)["release_id"]


def test_the_pipeline_report_names_every_step(
    deployed: Deployed, two_runs: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    assert set(report(deployed)["steps"]) == set(STEPS)
    publish = report(deployed)["publish_seconds"]
    assert {"upload", "syncer_stream", "syncer_commit", "syncer_check", "syncer_total"} <= set(
        publish
    )
    assert Path(report(deployed)["release_id"]).name


def test_terraform_does_not_fight_the_pipeline(
    deployed: Deployed, terraform: Terraform, two_runs: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    """After promotions, a plan with the same inputs has nothing to change (ignore_changes)."""
    proc = terraform.run(
        "plan",
        "-detailed-exitcode",
        "-input=false",
        "-no-color",
        *terraform.state_args(STACK_NAME),
        *stack_variables(),
        check=False,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
