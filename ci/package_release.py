"""Pipeline step 4: package lib/ and the model into a release bundle with its STAMP.json.

    python -m ci.package_release --lib build/lib --model build/model --out build/release

Release id = UTC time + short git sha. When the syncer can be asked (the stack is
deployed), files already in the EFS store are left out of the bundle: a release that
changes only the model carries only the model. It says which happened ("delta: asked the
syncer, ..." or "full bundle: could not ask the syncer (...)"); ``--require-delta`` makes
not being able to ask an error, for a job that has the credentials and must not ship a
full bundle by accident (CircleCI's build job).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ci import paths
from efs_layout import (
    ModelInfo,
    Packages,
    PlatformInfo,
    PythonInfo,
    StampFields,
    make_bundle,
    new_release_id,
)
from efs_layout.model_manifest import MANIFEST_FILE, read_manifest
from efs_layout.release import build_manifest
from efs_layout.stamp import build_stamp

REPO_ROOT = Path(__file__).resolve().parents[1]
RELEASE_JSON = "release.json"


@dataclass(frozen=True)
class PackagedRelease:
    """What the later steps need to know about a packaged release."""

    release_id: str
    bundle: str
    sha256: str
    bundle_bytes: int
    release_bytes: int
    files: int
    files_omitted: int
    bytes_omitted: int
    model_name: str
    labels: list[str]
    git_commit: str

    @classmethod
    def load(cls, path: Path) -> PackagedRelease:
        """Read release.json."""
        return cls(**json.loads(path.read_text()))


def git_commit() -> str:
    """The commit being released (CircleCI's, or the work tree's)."""
    env = os.environ.get("CIRCLE_SHA1")
    if env:
        return env
    proc = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    return proc.stdout.strip() if proc.returncode == 0 else "0000000"


def stamp_fields(
    lib_report: dict[str, Any],
    model_meta: dict[str, Any],
    commit: str,
    model_file: str = "model.joblib",
) -> StampFields:
    """Stamp fields from build-lib's report and build-model's metadata."""
    packages = dict(lib_report["packages"])
    extra = dict(packages.pop("extra", {}) or {})
    return StampFields(
        git_commit=commit,
        python=PythonInfo(**lib_report["python"]),
        platform=PlatformInfo(**lib_report["platform"]),
        packages=Packages(
            joblib=str(packages["joblib"]),
            pillow=str(packages["pillow"]),
            numpy=str(packages["numpy"]),
            extra={str(k): str(v) for k, v in extra.items()},
        ),
        model=ModelInfo(
            framework=str(model_meta.get("framework", "unknown")),
            name=str(model_meta.get("name", "model")),
            file=f"model/{model_file}",
            metadata={
                k: v
                for k, v in model_meta.items()
                if k not in ("artifact_sha256", "artifact_bytes")
            },
        ),
    )


def _link_tree(src: Path, dst: Path) -> None:
    """Mirror src into dst with hard links (copies across file systems): no GBs copied."""
    for path in sorted(src.rglob("*")):
        target = dst / path.relative_to(src)
        if path.is_dir() and not path.is_symlink():
            target.mkdir(parents=True, exist_ok=True)
        elif path.is_file() and not path.is_symlink():
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(path, target)
            except OSError:
                shutil.copy2(path, target)


def _link_model(model_dir: Path, dst: Path) -> str:
    """Put build-model's output in the release's model/; return the model file's name.

    A model directory's output holds model.json, the model file and code/, all shipped
    under the stamp; metadata.json and the cache key are the pipeline's, not the release's.
    Without model.json (a bare build: model.joblib + metadata.json) only model.joblib goes.
    """
    dst.mkdir(parents=True)
    manifest_file = model_dir / MANIFEST_FILE
    if not manifest_file.is_file():
        os.link(model_dir / "model.joblib", dst / "model.joblib")
        return "model.joblib"
    manifest = read_manifest(manifest_file)
    _link_tree(model_dir, dst)
    for own in ("metadata.json", "cache-key"):
        (dst / own).unlink(missing_ok=True)
    return manifest.file


class DeltaUnavailable(RuntimeError):
    """The syncer could not be asked which files the EFS store holds."""


def present_on_efs(hashes: list[str]) -> set[str]:
    """Which hashes the EFS store already holds, asked of the deployed syncer.

    Raises DeltaUnavailable, with the reason, when it cannot be asked: no stack outputs,
    no credentials, no syncer, or a syncer that refused.
    """
    try:
        from ci import stack, syncer_client

        names = stack.load()
        answer = syncer_client.call(names.syncer_function, {"action": "have", "sha256": hashes})
    except Exception as exc:  # whatever stops the question, the bundle must say so
        raise DeltaUnavailable(f"{type(exc).__name__}: {exc}") from exc
    if not answer.ok:
        raise DeltaUnavailable(
            f"the syncer answered {answer.status} ({answer.code}): {answer.message}"
        )
    return set(answer.details.get("present", []))


def _log(message: str) -> None:
    print(f"package: {message}", file=sys.stderr, flush=True)


def package(
    lib: Path,
    model_dir: Path,
    out: Path,
    delta: bool = True,
    *,
    present: Callable[[list[str]], set[str]] = present_on_efs,
    release_id: str | None = None,
    require_delta: bool = False,
    log: Callable[[str], None] = _log,
) -> PackagedRelease:
    """Assemble the release tree, write the bundle and release.json, return the summary.

    With ``delta``, files whose hashes ``present`` reports (by default: the deployed
    syncer's store) are left out of the bundle. When ``present`` raises DeltaUnavailable
    the bundle carries every file, or, with ``require_delta``, the DeltaUnavailable is
    raised. ``log`` gets one line saying which of the two happened.
    """
    if require_delta and not delta:
        raise ValueError("require_delta needs delta")
    lib_report = json.loads(lib.with_name(lib.name + ".json").read_text())
    model_meta = json.loads((model_dir / "metadata.json").read_text())
    commit = git_commit()
    release_id = release_id or new_release_id(commit)
    if out.exists():
        shutil.rmtree(out)
    tree = out / "tree"
    _link_tree(lib, tree / "lib")
    model_file = _link_model(model_dir, tree / "model")
    manifest = build_manifest(tree)
    stamp = build_stamp(
        release_id, manifest, stamp_fields(lib_report, model_meta, commit, model_file)
    )
    omit: set[str] = set()
    full_because = "delta off (--full)"
    if delta:
        try:
            omit = present(sorted({e.sha256 for e in manifest}))
            full_because = ""
        except DeltaUnavailable as exc:
            if require_delta:
                raise
            full_because = f"could not ask the syncer ({exc})"
    info = make_bundle(tree, stamp, out / f"{release_id}.tar.gz", omit_sha256=omit)
    shutil.rmtree(tree)
    if full_because:
        log(f"full bundle: {full_because}")
    else:
        log(
            f"delta: asked the syncer, {info.files_omitted} of {len(manifest)} files already "
            f"on EFS, bundle carries {len(manifest) - info.files_omitted}"
        )
    packaged = PackagedRelease(
        release_id=release_id,
        bundle=str(info.path),
        sha256=info.sha256,
        bundle_bytes=info.size,
        release_bytes=sum(e.size for e in manifest),
        files=len(manifest),
        files_omitted=info.files_omitted,
        bytes_omitted=info.bytes_omitted,
        model_name=stamp.model.name,
        labels=[str(x) for x in model_meta.get("labels", [])],
        git_commit=commit,
    )
    (out / RELEASE_JSON).write_text(json.dumps(asdict(packaged), indent=2) + "\n")
    (out / "STAMP.json").write_bytes(stamp.to_bytes())
    return packaged


def main(argv: list[str] | None = None) -> int:
    """CLI of the package step."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lib", type=Path, default=paths.build_dir() / "lib")
    parser.add_argument("--model", type=Path, default=paths.build_dir() / "model")
    parser.add_argument("--out", type=Path, default=paths.build_dir() / "release")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--full", action="store_true", help="bundle every file (no delta)")
    mode.add_argument(
        "--require-delta",
        action="store_true",
        help="fail instead of bundling every file when the syncer cannot be asked",
    )
    args = parser.parse_args(argv)
    try:
        packaged = package(
            args.lib,
            args.model,
            args.out,
            delta=not args.full,
            require_delta=args.require_delta,
        )
    except DeltaUnavailable as exc:
        print(
            f"package: failed: --require-delta, and the syncer could not be asked which files "
            f"EFS holds: {exc}",
            file=sys.stderr,
        )
        return 1
    except (OSError, ValueError, KeyError) as exc:
        print(f"package: failed: {exc}", file=sys.stderr)
        return 1
    print(
        f"release {packaged.release_id}: {packaged.files} files, {packaged.release_bytes} bytes; "
        f"bundle {packaged.bundle_bytes} bytes ({packaged.files_omitted} files already on EFS "
        f"left out)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
