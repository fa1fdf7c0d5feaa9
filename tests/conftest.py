"""Shared fixtures: the embedded emulator (once per session, on a free port), an initialised
Terraform, and one stack applied to it for the pipeline and endpoint tests."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ci import package_functions, terraform_cli
from ci.aws import emulator_env
from local.dataplane import functions
from local.dataplane.environment import ExecutionEnvironment
from local.dataplane.functions import FunctionSpec, Mount
from local.emulator import process
from tests.terraform.conftest import Terraform

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


@pytest.fixture(scope="session")
def terraform(
    tmp_path_factory: pytest.TempPathFactory, emulator_environ: dict[str, str]
) -> Terraform:
    """An initialised Terraform pointed at the session's emulator."""
    work = tmp_path_factory.mktemp("terraform")
    packages = [
        package_functions.build_zip(name, out_dir=work / "lambda")
        for name in package_functions.FUNCTION_SOURCES
    ]
    var_file = work / "packages.tfvars.json"
    package_functions.write_tfvars(packages, var_file)
    env = terraform_cli.terraform_env(emulator_environ)
    env["TF_DATA_DIR"] = str(work / "data")
    env["TF_IN_AUTOMATION"] = "1"
    tf = Terraform(env=env, var_file=var_file, work=work)
    tf.run("init", "-input=false", "-no-color", timeout=120)
    return tf


class HeadStarts:
    """Work that mostly waits, begun when the session starts and awaited by the tests that need it.

    A `terraform apply` against the emulator spends most of its minute in the provider's own
    waits (S3 lifecycle rules, CloudFront), as it does on AWS, and mypy uses one core for
    40 s; on a 2-core machine the suite runs its CPU-bound tests meanwhile. Whoever needs a
    result calls `result`, which runs the work in place when nothing started it (a test run
    on its own), so the tests do not depend on this.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="head-start")
        self._futures: dict[str, Future[Any]] = {}

    def start(self, key: str, work: Callable[..., Any], *args: Any) -> None:
        """Begin `work(*args)` in a thread."""
        self._futures[key] = self._pool.submit(work, *args)

    def result(self, key: str, work: Callable[..., Any], *args: Any) -> Any:
        """The started work's result (its exception re-raised here), else `work(*args)` now."""
        future = self._futures.pop(key, None)
        return future.result() if future is not None else work(*args)

    def close(self) -> None:
        """Wait for work still running (it may hold the emulator), drop work not begun."""
        self._pool.shutdown(wait=True, cancel_futures=True)


LIFECYCLE_TEST = "tests/terraform/test_lifecycle.py::test_apply_replan_clean_destroy"
MYPY_TEST = "tests/test_quality.py::test_mypy_is_clean"


@pytest.fixture(scope="session", autouse=True)
def head_starts(request: pytest.FixtureRequest) -> Iterator[HeadStarts]:
    """Start the selected tests' long waits (see HeadStarts) before the first test runs."""
    starts = HeadStarts()
    items = request.session.items
    nodeids = {item.nodeid for item in items}
    needs_stack = any("deployed" in item.fixturenames for item in items)
    if MYPY_TEST in nodeids:
        from tests.test_quality import run_mypy

        starts.start("mypy", run_mypy)
    if needs_stack or LIFECYCLE_TEST in nodeids:
        terraform: Terraform = request.getfixturevalue("terraform")
        if needs_stack:
            starts.start("apply-test-stack", apply_test_stack, terraform)
        if LIFECYCLE_TEST in nodeids:
            from tests.terraform.test_lifecycle import apply_replan_destroy

            starts.start("lifecycle", apply_replan_destroy, terraform)
    try:
        yield starts
    finally:
        starts.close()


@pytest.fixture(scope="session")
def digits_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits model, built once per session by ci.build_model as the pipeline builds it.

    Training takes 15-60 s on 2 cores, so every test that serves digits shares this one
    (model.joblib, metadata.json); none may change it.
    """
    from ci.build_model import build

    out = tmp_path_factory.mktemp("digits-model")
    returned = build("digits", out)
    assert json.loads((out / "metadata.json").read_text()) == json.loads(json.dumps(returned))
    return out


STACK_NAME = "pipe"
# The test stack's releases hold the torch-format digits model (the format the small lib
# relies on the venv for), so the pipeline can reuse the session's trained model.
TEST_MODEL = "digits"
# lib/ for test releases: the real step with a small dependency set (torch comes from
# the venv the local data plane runs on), so a pipeline run takes seconds, not minutes.
SMALL_LIB = "joblib==1.6.0\npillow==13.0.0\nnumpy==2.4.6\n"


def seed_model_cache(out: Path, digits_model_dir: Path) -> None:
    """Put the models of seeds 0 and 1 where the pipeline's build-model step finds them.

    Seed 0 is the session's trained model. Seed 1, which the tests use for "a model-only
    change", is that model with its first weight array scaled by 1 + 1e-6: new bytes and
    the same predictions, without 50 s of training, since what is under test is what the
    pipeline moves and promotes, not the training.
    """
    import joblib

    from ci.build_model import MODEL_FILE
    from ci.pipeline import model_cache_dir, model_cache_key

    for seed in (0, 1):
        key = model_cache_key(TEST_MODEL, seed)
        entry = model_cache_dir(out, key)
        shutil.copytree(digits_model_dir, entry, dirs_exist_ok=True)
        if seed == 1:
            predictor = joblib.load(entry / MODEL_FILE)
            first = next(iter(predictor.state))
            predictor.state[first] = predictor.state[first] * (1 + 1e-6)
            (entry / MODEL_FILE).unlink()
            joblib.dump(predictor, entry / MODEL_FILE, compress=3)
            metadata = json.loads((entry / "metadata.json").read_text())
            metadata.update(seed=1, note="test model: seed 0's weights scaled by 1 + 1e-6")
            metadata["artifact"]["sha256"] = hashlib.sha256(
                (entry / MODEL_FILE).read_bytes()
            ).hexdigest()
            metadata["artifact"]["bytes"] = (entry / MODEL_FILE).stat().st_size
            (entry / "metadata.json").write_text(json.dumps(metadata, indent=2, sort_keys=True))
        (entry / "cache-key").write_text(key)


@dataclass(frozen=True)
class Deployed:
    """An applied stack and the environment that points the pipeline at it."""

    env: dict[str, str]
    build_dir: Path
    requirements: Path
    outputs: dict[str, str]

    def pipeline(self, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
        """Run `python -m ci.pipeline` for the small test releases.

        The timeout only guards against a hang: on a loaded 2-core machine (load average
        about 12) build-model alone took more than 600 s of wall time.
        """
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "ci.pipeline",
                "--skip-checks",
                "--model",
                TEST_MODEL,
                "--allow-missing-packages",
                "--lib-requirements",
                str(self.requirements),
                *args,
            ],
            cwd=REPO_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def module(self, name: str, *args: str) -> subprocess.CompletedProcess[str]:
        """Run one ci/ step."""
        return subprocess.run(
            [sys.executable, "-m", name, *args],
            cwd=REPO_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )


def stack_variables() -> list[str]:
    """The -var arguments of the test stack: its apply and every re-plan use these."""
    return [
        "-var",
        f"name={STACK_NAME}",
        "-var",
        f"lambda_runtime=python{sys.version_info[0]}.{sys.version_info[1]}",
        # The local data plane runs the functions on this interpreter, python3.11 included.
        "-var",
        "local_emulator=true",
        "-var",
        'extra_cors_origins=["http://127.0.0.1:8080"]',
        # Off by default (new accounts cannot reserve); the endpoint and load tests check
        # the cap, so the test stack opts in.
        "-var",
        "inference_reserved_concurrency=2",
    ]


def apply_test_stack(terraform: Terraform) -> None:
    """`terraform apply` of the test stack the pipeline and endpoint tests share."""
    args = [
        "-input=false",
        "-no-color",
        *terraform.state_args(STACK_NAME),
        *stack_variables(),
    ]
    terraform.apply(*args, timeout=300)


@pytest.fixture(scope="session")
def deployed(
    terraform: Terraform, digits_model_dir: Path, head_starts: HeadStarts
) -> Iterator[Deployed]:
    """The stack applied once (left for the emulator's teardown to discard)."""
    head_starts.result("apply-test-stack", apply_test_stack, terraform)
    state = terraform.state_args(STACK_NAME)[0]
    raw = json.loads(terraform.run("output", "-json", state).stdout)
    outputs = {k: v["value"] for k, v in raw.items()}
    build_dir = terraform.work  # holds lambda/ with the zips that were deployed
    (build_dir / "tf-outputs.json").write_text(json.dumps(raw))
    requirements = build_dir / "small-lib.txt"
    requirements.write_text(SMALL_LIB)
    seed_model_cache(build_dir / "model", digits_model_dir)
    env = dict(terraform.env)
    env.update(
        {
            "BUILD_DIR": str(build_dir),
            "LOCAL_EFS_ROOT": str(build_dir / "efs"),
            "PYTHONPATH": str(REPO_ROOT),
        }
    )
    env.pop("TF_STATE_FILE", None)
    yield Deployed(env, build_dir, requirements, {k: str(v) for k, v in outputs.items()})


@pytest.fixture()
def aws_env(deployed: Deployed, monkeypatch: pytest.MonkeyPatch) -> Deployed:
    """This test process's boto3 and ci modules pointed at the deployed stack."""
    for key in (
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "BUILD_DIR",
        "LOCAL_EFS_ROOT",
    ):
        monkeypatch.setenv(key, deployed.env[key])
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    os.environ.pop("TF_STATE_FILE", None)
    return deployed


@pytest.fixture(scope="session")
def promoted(deployed: Deployed) -> str:
    """A release is live on the test stack (a pipeline run, skipped when already current)."""
    proc = deployed.pipeline("--skip-if-current")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return str(json.loads((deployed.build_dir / "last-deploy.json").read_text())["release_id"])


@contextlib.contextmanager
def inference_environment(
    work: Path,
    efs: Path,
    release_id: str,
    name: str,
    memory_mb: int = 2048,
    timeout_s: int = 120,
) -> Iterator[tuple[ExecutionEnvironment, FunctionSpec]]:
    """One real execution environment of the inference zip, serving `release_id` from `efs`.

    The runner is the local data plane's, the zip the one `make package` builds (unpacked
    under `work`, not the shared .state/code cache), the release mounted read-only at
    /mnt/ml as the inference access point mounts it.
    """
    package = package_functions.build_zip("inference", out_dir=work / "lambda")
    spec = FunctionSpec(
        name=name,
        version="1",
        handler="lambda_src.inference.handler.handle",
        runtime=f"python{sys.version_info[0]}.{sys.version_info[1]}",
        memory_mb=memory_mb,
        timeout_s=timeout_s,
        environment={"EFS_MOUNT_PATH": "/mnt/ml", "RELEASE_ID": release_id},
        code_sha256=package.sha256_b64,
        reserved_concurrency=1,
        mounts=(Mount("/mnt/ml", efs, read_only=True),),
    )
    with pytest.MonkeyPatch.context() as patch, (work / "function.log").open("w") as log:
        patch.setattr(functions, "CODE_CACHE", work / "code")
        environment = ExecutionEnvironment(spec, log=log, zip_dir=work / "lambda")
        try:
            yield environment, spec
        finally:
            environment.stop()


@dataclass(frozen=True)
class Endpoint:
    """A local endpoint process serving the test stack's API."""

    url: str
    log_dir: Path


def _free_port() -> int:
    return process.free_port()


@contextlib.contextmanager
def endpoint_process(
    deployed: Deployed, state_dir: Path, extra_env: dict[str, str] | None = None
) -> Iterator[Endpoint]:
    """A local endpoint process for the stack (a fresh pool: its first request is cold).

    ``extra_env`` can point it at another EFS folder (LOCAL_EFS_ROOT).
    """
    port = _free_port()
    env = dict(deployed.env, ENDPOINT_STATE_DIR=str(state_dir), **(extra_env or {}))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "local.dataplane",
            "serve",
            "--port",
            str(port),
            "--api-id",
            deployed.outputs["api_id"],
            "--idle-timeout",
            "30",
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "/_local/stats", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("the local endpoint did not start") from None
                time.sleep(0.2)
        yield Endpoint(url, state_dir / "logs")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture()
def endpoint(deployed: Deployed, promoted: str, tmp_path: Path) -> Iterator[Endpoint]:
    """A fresh local endpoint (so its first request is a cold start), stopped afterwards."""
    with endpoint_process(deployed, tmp_path / "endpoint") as started:
        yield started
