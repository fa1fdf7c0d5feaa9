"""`make pipeline`: steps 1-8 in order, as CircleCI runs them, against whatever AWS_ENDPOINT_URL
names (the embedded emulator by default).

    python -m ci.pipeline [--model digits] [--with-tests] [--lib-requirements FILE]

Each step prints when it starts and ends, with its time and the time since the run began
(ci/stages.py); publish also says how its time split between the upload and the syncer.

Steps 4-8 run under the deploy lock, so two pipelines never interleave. Killing the
pipeline at any step leaves `live` on the old release (live moves only in step 6, by one
alias update); running it again completes the deploy.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ci import (
    build_lib,
    model_dir,
    package_release,
    paths,
    promote,
    prune,
    publish,
    release_check,
    smoke,
    stack,
)
from ci.aws import client
from ci.deploy_lock import DeployLockBusy, deploy_lock
from ci.runtime import target_runtime
from ci.stages import Stages

REPO_ROOT = Path(__file__).resolve().parents[1]
BUILD = paths.build_dir()
# The model a new user gets: see the README's "Which model and format" for the figures.
DEFAULT_MODEL = "digits-onnx"


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
    # Inside publish: upload, then the syncer's stream/commit/link/check.
    publish_seconds: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Options:
    """What a pipeline run builds and how (the CLI's flags)."""

    model: str = DEFAULT_MODEL
    lib_requirements: Path | None = None  # None: the set the model's format needs
    with_checks: bool = True
    with_tests: bool = False
    keep: int = 3
    lock_wait: float = 0.0
    extra_index_urls: tuple[str, ...] = ()
    seed: int = 0
    allow_missing: bool = False
    skip_if_current: bool = False
    allow_unchecked: bool = False  # build lib/ for another Python or machine than this one

    @property
    def requirements(self) -> Path:
        """The lib/ requirement set: given, or the model directory's (base set + its own)."""
        return self.lib_requirements or model_dir.lib_requirements(
            model_dir.load(self.model), BUILD
        )


def model_cache_key(model: str, seed: int) -> str:
    """What decides the model's bytes: its directory, seed and the code that builds it."""
    return model_dir.cache_key(model_dir.load(model), seed)


MODEL_CACHE = "model-cache"


def model_cache_dir(out: Path, key: str) -> Path:
    """Where the model these inputs give is kept, next to ``out`` (build/model-cache/<key>)."""
    return out.parent / MODEL_CACHE / key[:32]


def run(options: Options, stages: Stages | None = None) -> Report:
    """Run every step; raise on the first failure (smoke rolls back before raising)."""
    stages = stages or Stages("pipeline:")
    report = Report(steps=stages.seconds)
    if options.with_checks:
        from ci import check

        with stages.stage("test"):
            if check.main([] if options.with_tests else ["--no-tests"]) != 0:
                raise RuntimeError("step 1 (test) failed")
    # A model directory that cannot be built fails here, before anything is deployed.
    model_dir.load(options.model)
    names = stack.load()
    # Missing smoke credentials fail here, before a build or a promote, not in step 7,
    # whose rollback would undo a release that may be good.
    smoke.check_credentials(names)
    runtime = target_runtime(names)
    with stages.stage("build-lib"):
        lib = build_lib.build_lib(
            options.requirements,
            BUILD / "lib",
            python_version=runtime.python_version,
            architecture=runtime.architecture,
            max_glibc=runtime.max_glibc,
            extra_index_urls=options.extra_index_urls,
            allow_missing=options.allow_missing,
            allow_unchecked=options.allow_unchecked,
            log=_quiet_log,
        )
        stages.say(
            f"lib/ {'cached' if lib.cached else f'built with {lib.installer}'}: "
            f"{lib.files:,} files, {lib.bytes / 1e6:,.0f} MB, {options.requirements.name}"
        )
    with stages.stage("build-model"):
        model_dir.build(options.model, BUILD / "model", options.seed, log=stages.say)
    content_key = hashlib.sha256(
        (BUILD / "lib.json").read_bytes() + (BUILD / "model" / "cache-key").read_bytes()
    ).hexdigest()
    if options.skip_if_current:
        current = _current_release(names, content_key)
        if current is not None:
            stages.say(f"live release {current} already holds this lib/ and model; skipped")
            report.release_id = current
            return report
    with stages.stage("release-check"):
        can_run, reason = release_check.runs_here(BUILD / "lib")
        checked = release_check.cached_check(
            BUILD / "lib",
            BUILD / "model",
            BUILD,
            can_run=can_run,
            isolated=not options.allow_missing,
            reason=reason,
        )
        if checked.ran:
            stages.say(
                f"the model predicts the same with lib/ "
                f"({', '.join(f'{k} {v}' for k, v in checked.lib_versions.items())}): "
                f"{checked.images} reference inputs, max difference {checked.max_difference:.1e}"
            )
        else:
            stages.say(f"release check not run: {checked.reason}")
    with deploy_lock(names.artifacts_bucket, wait_s=options.lock_wait):
        with stages.stage("package"):
            packaged = package_release.package(BUILD / "lib", BUILD / "model", BUILD / "release")
            report.release_id = packaged.release_id
            carried = packaged.files - packaged.files_omitted
            stages.say(
                f"bundle {packaged.bundle_bytes / 1e6:,.1f} MB: {carried:,} of "
                f"{packaged.files:,} files ({packaged.files_omitted:,} already on EFS)"
            )
        with stages.stage("publish"):
            published = publish.publish(packaged, names, BUILD / "release")
            report.moved_bytes = published.uploaded_bytes
            report.release_bytes = published.release_bytes
            report.publish_seconds = {
                "upload": published.upload_seconds,
                **{f"syncer_{k}": v for k, v in published.syncer_seconds.items()},
            }
            syncer = ", ".join(
                f"{k} {v:.1f} s" for k, v in published.syncer_seconds.items() if k != "total"
            )
            stages.say(
                f"upload {published.upload_seconds:.1f} s; syncer "
                f"{published.syncer_seconds.get('total', 0.0):.1f} s ({syncer})"
            )
        with stages.stage("promote"):
            state = promote.promote(names, packaged.release_id)
            report.live_version, report.previous_version = state.version, state.previous_version
        with stages.stage("smoke"):
            try:
                smoke.smoke(names, None, packaged.release_id)
            except Exception as exc:
                rolled = promote.rollback(names)
                raise RuntimeError(
                    f"step 7 (smoke) failed, live rolled back to version {rolled.version}: {exc}"
                ) from exc
        with stages.stage("prune"):
            report.pruned = prune.prune(names, options.keep)
    last_deploy_file().write_text(json.dumps({"release_id": report.release_id, "key": content_key}))
    return report


def _quiet_log(message: str) -> None:
    # The installer's own lines would drown the stage lines; its errors still surface.
    if not message.startswith(("  uv:", "  pip:")):
        print(f"build-lib: {message}", flush=True)


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
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="a model directory (docs/model-directory.md), or the name of one under models/ "
        f"({', '.join(model_dir.builtin_names())})",
    )
    parser.add_argument(
        "--lib-requirements",
        type=Path,
        default=None,
        help="lib/'s requirement set (default: requirements/lambda-onnx.txt for *-onnx "
        "models, requirements/lambda.txt for torch ones)",
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
        help="let lib/ lack packages the running interpreter provides (small test releases)",
    )
    parser.add_argument(
        "--allow-unchecked",
        action="store_true",
        help="build lib/ for a function whose Python or machine is not this interpreter's, "
        "without bytecode or import check (python -m ci.build_lib --help)",
    )
    args = parser.parse_args(argv)
    options = Options(
        model=args.model,
        lib_requirements=args.lib_requirements,
        with_checks=not args.skip_checks,
        with_tests=args.with_tests,
        keep=args.keep,
        lock_wait=args.lock_wait,
        extra_index_urls=tuple(args.extra_index_url),
        seed=args.seed,
        allow_missing=args.allow_missing_packages,
        skip_if_current=args.skip_if_current,
        allow_unchecked=args.allow_unchecked,
    )
    stages = Stages("pipeline:")
    try:
        report = run(options, stages)
    except DeployLockBusy as exc:
        print(f"pipeline: {exc}", file=sys.stderr)
        return 3
    except model_dir.ModelDirError as exc:
        print(f"pipeline: FAILED: the model directory: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        print(f"pipeline: FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    (BUILD / "pipeline-report.json").write_text(json.dumps(report.__dict__, indent=2) + "\n")
    fraction = report.moved_bytes / max(1, report.release_bytes)
    stages.say(
        f"release {report.release_id} is live (version {report.live_version}, "
        f"previous {report.previous_version}); moved {report.moved_bytes} of "
        f"{report.release_bytes} bytes ({fraction:.1%}); pruned {len(report.pruned)}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
