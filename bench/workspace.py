"""What the benchmark runs on: lib/, models, releases on a folder standing for EFS, code zips.

Everything is built with the pipeline's own steps (ci.build_lib, ci.build_model,
ci.package_release, efs_layout.unpack_bundle), so the bytes a model-only release
moves are the bytes the pipeline would move. The first, full release is cached in
build/bench between runs: bundling 5 GB of lib/ takes minutes and does not change.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ci import package_functions
from ci.package_release import PackagedRelease, git_commit, package
from efs_layout import new_release_id, store_has, unpack_bundle
from efs_layout.layout import releases_path

REPO_ROOT = Path(__file__).resolve().parents[1]
NAIVE_SOURCE = Path(__file__).with_name("naive_handler.py")
MODELS = ("resnet152", "digits")
ONNX_REQUIREMENTS = REPO_ROOT / "requirements" / "lambda-onnx.txt"
# The tutorial's lib/: torch + torchvision as `pip install` gives them (CUDA builds on x86_64).
NAIVE_REQUIREMENTS = REPO_ROOT / "requirements" / "bench-naive.txt"


@dataclass(frozen=True)
class Workspace:
    """Paths and release ids the measurements use."""

    root: Path  # build/bench
    efs: Path  # stands for the EFS access point's root
    lib: Path
    code_zips: Path  # the inference zip and the naive zip, found by CodeSha256
    inference_sha256: str
    naive_sha256: str
    releases: dict[str, str]  # model -> release id served by this stack (torch)
    onnx_releases: dict[str, str]  # model -> release id of its ONNX Runtime export
    naive_models: dict[str, Path]  # model -> whole pickled nn.Module on "EFS"
    naive_lib: Path  # the tutorial's lib/ on "EFS"
    first_release_bytes: int  # the full bundle of the first release
    model_only_bytes: dict[str, int]  # model -> delta bundle of a model-only release
    lib_bytes: dict[str, int]  # "torch" | "onnx" | "naive" -> size of that lib/
    lib_files: dict[str, int]


def _run(args: list[str]) -> None:
    print("bench: $ " + " ".join(args), flush=True)
    subprocess.run(args, cwd=REPO_ROOT, check=True)


def _b64sha256(path: Path) -> str:
    return base64.b64encode(hashlib.sha256(path.read_bytes()).digest()).decode()


def build_lib(
    lib: Path, requirements: Path, extra_index_url: str | None, allow_missing: bool = False
) -> dict[str, object]:
    """lib/ exactly as the pipeline builds it (a no-op when build_lib's cache is current)."""
    args = [sys.executable, "-m", "ci.build_lib", "--out", str(lib)]
    args += ["--requirements", str(requirements)]
    if allow_missing:
        args.append("--allow-missing")
    if extra_index_url:
        args += ["--extra-index-url", extra_index_url]
    _run(args)
    report: dict[str, object] = json.loads(lib.with_name(lib.name + ".json").read_text())
    return report


def build_model(model: str, out: Path, seed: int) -> Path:
    """One model directory (model.joblib + metadata.json), rebuilt only if missing."""
    if not (out / "metadata.json").is_file():
        _run(
            [
                sys.executable,
                "-m",
                "ci.build_model",
                "--model",
                model,
                "--out",
                str(out),
                "--seed",
                str(seed),
            ]
        )
    return out


def naive_model(model_dir: Path, target: Path) -> Path:
    """The tutorial's model file: the whole torch module pickled with joblib."""
    if target.is_file():
        return target
    import joblib

    predictor = joblib.load(model_dir / "model.joblib")
    module = predictor.network()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    joblib.dump(module, tmp)
    tmp.rename(target)
    return target


def _naive_zip(out_dir: Path) -> Path:
    # The naive handler needs the digits network's class to unpickle it.
    target = out_dir / "naive.zip"
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.write(NAIVE_SOURCE, "naive_handler.py")
        for path in sorted((REPO_ROOT / "lambda_src").rglob("*.py")):
            zf.write(path, path.relative_to(REPO_ROOT).as_posix())
    return target


def _publish(efs: Path, packaged: PackagedRelease) -> None:
    unpack_bundle(efs, packaged.bundle, packaged.sha256, expected_release_id=packaged.release_id)


def prepare(
    root: Path,
    lib: Path,
    requirements: Path,
    extra_index_url: str | None = None,
) -> Workspace:
    """Build (or reuse) everything the measurements need under root."""
    root.mkdir(parents=True, exist_ok=True)
    efs = root / "efs"
    libs = {"torch": lib, "onnx": root / "lib-onnx", "naive": root / "lib-naive"}
    reports = {
        "torch": build_lib(lib, requirements, extra_index_url),
        "onnx": build_lib(libs["onnx"], ONNX_REQUIREMENTS, None),
        "naive": build_lib(libs["naive"], NAIVE_REQUIREMENTS, None),
    }
    models = {}
    for m in MODELS:
        models[f"{m}-v1"] = build_model(m, root / "models" / m / "v1", seed=0)
        models[f"{m}-v2"] = build_model(m, root / "models" / m / "v2", seed=1)
        models[f"{m}-onnx"] = build_model(f"{m}-onnx", root / "models" / f"{m}-onnx", seed=0)
    key = "+".join(str(reports[k]["cache_key"]) for k in ("torch", "onnx", "naive"))

    cache_file = root / "releases.json"
    cached = json.loads(cache_file.read_text()) if cache_file.is_file() else {}
    if cached.get("lib_cache_key") != key or not releases_path(efs).is_dir():
        # A fresh store: the first release carries everything, as a first deploy does;
        # each later one carries only what the store lacks, as the pipeline's do.
        shutil.rmtree(efs, ignore_errors=True)
        efs.mkdir(parents=True)
        order = [
            ("digits-v1", "torch"),
            ("resnet152-v1", "torch"),
            ("digits-v2", "torch"),
            ("resnet152-v2", "torch"),
            ("digits-onnx", "onnx"),
            ("resnet152-onnx", "onnx"),
        ]
        commit = git_commit()
        start = datetime.now(UTC)
        ids = {
            name: new_release_id(commit, start + timedelta(seconds=index))
            for index, (name, _) in enumerate(order)
        }

        def present(hashes: list[str]) -> set[str]:
            return store_has(efs, hashes)

        bundles = root / "bundles"
        sizes: dict[str, int] = {}
        for index, (name, flavour) in enumerate(order):
            packaged = package(
                libs[flavour],
                models[name],
                bundles / name,
                delta=index > 0,
                present=present,
                release_id=ids[name],
            )
            _publish(efs, packaged)
            sizes[name] = packaged.bundle_bytes
        shutil.rmtree(bundles)
        cached = {"lib_cache_key": key, "ids": ids, "bundle_bytes": sizes}
        cache_file.write_text(json.dumps(cached, indent=2) + "\n")

    naive = {m: naive_model(models[f"{m}-v1"], efs / "naive" / f"{m}.joblib") for m in MODELS}
    naive_lib = efs / "naive" / "lib"
    if not naive_lib.is_dir():
        # Hard links: the 5.6 GB tree is on "EFS" without a second copy on disk.
        shutil.copytree(libs["naive"], naive_lib, copy_function=os.link)
    code_zips = root / "code"
    code_zips.mkdir(exist_ok=True)
    inference = package_functions.build_zip("inference", out_dir=code_zips)
    naive_zip = _naive_zip(code_zips)
    return Workspace(
        root=root,
        efs=efs,
        lib=lib,
        code_zips=code_zips,
        inference_sha256=inference.sha256_b64,
        naive_sha256=_b64sha256(naive_zip),
        releases={m: cached["ids"][f"{m}-v1"] for m in MODELS},
        onnx_releases={m: cached["ids"][f"{m}-onnx"] for m in MODELS},
        naive_models=naive,
        naive_lib=naive_lib,
        first_release_bytes=int(cached["bundle_bytes"]["digits-v1"]),
        # v1 -> v2 of the same model is the model-only change
        model_only_bytes={m: int(cached["bundle_bytes"][f"{m}-v2"]) for m in MODELS},
        lib_bytes={k: int(str(r["bytes"])) for k, r in reports.items()},
        lib_files={k: int(str(r["files"])) for k, r in reports.items()},
    )
