"""`make pipeline`: steps 1-8 in order, as CircleCI runs them, against whatever AWS_ENDPOINT_URL
names (the embedded emulator by default).

    python -m ci.pipeline [--model digits] [--with-tests] [--lib-requirements FILE]

Steps 4-8 run under the deploy lock, so two pipelines never interleave. Killing the
pipeline at any step leaves `live` on the old release (live moves only in step 6, by one
alias update); running it again completes the deploy.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ci import build_lib, build_model, package_release, paths, promote, prune, publish, smoke, stack
from ci.aws import client
from ci.deploy_lock import DeployLockBusy, deploy_lock

REPO_ROOT = Path(__file__).resolve().parents[1]
BUILD = paths.build_dir()


@dataclass
class Report:
    """What one pipeline run did, step by step."""

    steps: dict[str, float] = field(default_factory=dict)
    release_id: str = ""
    live_version: str = ""
    previous_version: str | None = None
    moved_bytes: int = 0
    release_bytes: int = 0
    pruned: list[str] = field(default_factory=list)


def _timed(report: Report, name: str) -> float:
    print(f"pipeline: {name} started", flush=True)
    started = time.perf_counter()
    report.steps[name] = -started
    return started


def _done(report: Report, name: str) -> None:
    report.steps[name] = round(time.perf_counter() + report.steps[name], 2)
    print(f"pipeline: {name} done in {report.steps[name]:.1f} s", flush=True)


@dataclass(frozen=True)
class TargetRuntime:
    """What lib/ must be built for: the deployed inference function's runtime and machine."""

    python_version: str
    architecture: str


def target_runtime(names: stack.Stack) -> TargetRuntime:
    """Read runtime and architecture from the function, so lib/ and code cannot drift apart."""
    config = client("lambda").get_function_configuration(FunctionName=names.inference_function)
    runtime = str(config["Runtime"])
    if not runtime.startswith("python"):
        raise RuntimeError(f"{names.inference_function} runs {runtime}, not Python")
    return TargetRuntime(
        runtime.removeprefix("python"), (config.get("Architectures") or ["x86_64"])[0]
    )


def model_cache_key(model: str, seed: int) -> str:
    """What decides the model's bytes: its name, seed and the code that builds it."""
    digest = hashlib.sha256(f"{model}:{seed}".encode())
    sources = sorted((REPO_ROOT / "lambda_src" / "models").glob("*.py"))
    for source in [*sources, REPO_ROOT / "ci" / "build_model.py"]:
        digest.update(source.read_bytes())
    return digest.hexdigest()


def build_model_cached(model: str, out: Path, seed: int) -> bool:
    """Build the model unless out/ already holds the one these inputs give; True if built."""
    key = model_cache_key(model, seed)
    marker = out / "cache-key"
    if (out / "model.joblib").exists() and marker.exists() and marker.read_text() == key:
        print(f"pipeline: model {model} (seed {seed}) is up to date in {out}")
        return False
    build_model.build(model, out, seed=seed)
    marker.write_text(key)
    return True


def run(
    model: str,
    lib_requirements: Path,
    with_checks: bool,
    with_tests: bool,
    keep: int,
    lock_wait: float,
    extra_index_urls: tuple[str, ...] = (),
    seed: int = 0,
    allow_missing: bool = False,
    skip_if_current: bool = False,
) -> Report:
    """Run every step; raise on the first failure (smoke rolls back before raising)."""
    report = Report()
    if with_checks:
        from ci import check

        _timed(report, "test")
        argv = [] if with_tests else ["--no-tests"]
        if check.main(argv) != 0:
            raise RuntimeError("step 1 (test) failed")
        _done(report, "test")
    names = stack.load()
    runtime = target_runtime(names)
    _timed(report, "build-lib")
    build_lib.build_lib(
        lib_requirements,
        BUILD / "lib",
        python_version=runtime.python_version,
        architecture=runtime.architecture,
        extra_index_urls=extra_index_urls,
        allow_missing=allow_missing,
    )
    _done(report, "build-lib")
    _timed(report, "build-model")
    build_model_cached(model, BUILD / "model", seed)
    _done(report, "build-model")
    content_key = hashlib.sha256(
        (BUILD / "lib.json").read_bytes() + (BUILD / "model" / "cache-key").read_bytes()
    ).hexdigest()
    if skip_if_current:
        current = _current_release(names, content_key)
        if current is not None:
            print(f"pipeline: live release {current} already holds this lib/ and model; skipped")
            report.release_id = current
            return report
    with deploy_lock(names.artifacts_bucket, wait_s=lock_wait):
        _timed(report, "package")
        packaged = package_release.package(BUILD / "lib", BUILD / "model", BUILD / "release")
        report.release_id = packaged.release_id
        _done(report, "package")
        _timed(report, "publish")
        published = publish.publish(packaged, names, BUILD / "release")
        report.moved_bytes, report.release_bytes = published.uploaded_bytes, published.release_bytes
        _done(report, "publish")
        _timed(report, "promote")
        state = promote.promote(names, packaged.release_id)
        report.live_version, report.previous_version = state.version, state.previous_version
        _done(report, "promote")
        _timed(report, "smoke")
        try:
            smoke.smoke(names, None, packaged.release_id)
        except Exception as exc:
            rolled = promote.rollback(names)
            raise RuntimeError(
                f"step 7 (smoke) failed, live rolled back to version {rolled.version}: {exc}"
            ) from exc
        _done(report, "smoke")
        _timed(report, "prune")
        report.pruned = prune.prune(names, keep)
        _done(report, "prune")
    last_deploy_file().write_text(json.dumps({"release_id": report.release_id, "key": content_key}))
    return report


def last_deploy_file() -> Path:
    """Where the last successful deploy from this build directory is recorded."""
    return BUILD / "last-deploy.json"


def _current_release(names: stack.Stack, content_key: str) -> str | None:
    """The live release if the last deploy from here shipped exactly these inputs."""
    try:
        last = json.loads(last_deploy_file().read_text())
    except (OSError, ValueError):
        return None
    if last.get("key") != content_key:
        return None
    state = promote.live_state(names)
    if state.release_id != last.get("release_id"):
        return None
    # New function code reaches live only through a promote (a new version).
    lam = client("lambda")
    latest = lam.get_function_configuration(FunctionName=names.inference_function)
    serving = lam.get_function_configuration(
        FunctionName=names.inference_function, Qualifier=state.version
    )
    return state.release_id if latest["CodeSha256"] == serving["CodeSha256"] else None


def main(argv: list[str] | None = None) -> int:
    """CLI of the whole pipeline."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="digits", choices=build_model.MODELS)
    parser.add_argument(
        "--lib-requirements", type=Path, default=REPO_ROOT / "requirements" / "lambda.txt"
    )
    parser.add_argument("--extra-index-url", action="append", default=[])
    parser.add_argument("--skip-checks", action="store_true", help="skip step 1 entirely")
    parser.add_argument("--with-tests", action="store_true", help="step 1 runs pytest too")
    parser.add_argument("--keep", type=int, default=3)
    parser.add_argument("--lock-wait", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0, help="the model's training seed")
    parser.add_argument(
        "--skip-if-current",
        action="store_true",
        help="do nothing when live already serves this lib/ and model (make up)",
    )
    parser.add_argument(
        "--allow-missing-packages",
        action="store_true",
        help="let lib/ lack torch/torchvision (small test releases)",
    )
    args = parser.parse_args(argv)
    try:
        report = run(
            args.model,
            args.lib_requirements,
            not args.skip_checks,
            args.with_tests,
            args.keep,
            args.lock_wait,
            tuple(args.extra_index_url),
            args.seed,
            args.allow_missing_packages,
            args.skip_if_current,
        )
    except DeployLockBusy as exc:
        print(f"pipeline: {exc}", file=sys.stderr)
        return 3
    except Exception as exc:
        print(f"pipeline: FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    (BUILD / "pipeline-report.json").write_text(json.dumps(report.__dict__, indent=2) + "\n")
    fraction = report.moved_bytes / max(1, report.release_bytes)
    print(
        f"pipeline: release {report.release_id} is live (version {report.live_version}, "
        f"previous {report.previous_version}); moved {report.moved_bytes} of "
        f"{report.release_bytes} bytes ({fraction:.1%}); pruned {len(report.pruned)}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
