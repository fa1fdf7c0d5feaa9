"""Pipeline step: a model directory -> build/model, ready to package (the build-model step).

    python -m ci.model_dir --model examples/tabular-sklearn --out build/model
    python -m ci.model_dir --model digits-onnx --out build/model    # models/digits-onnx

A model directory (docs/model-directory.md) holds model.json, the model file (or a build
command that makes it), optional code/ and an optional requirements file. This step
validates the manifest against efs_layout/model.schema.json, runs the build command when
there is one (cached by what decides its output), and writes out/: model.json, the model
file, code/, and metadata.json (what the stamp records about the model). Every failure is
a ModelDirError whose message says what to fix; nothing is half-written into out/.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from efs_layout.model_manifest import (
    MANIFEST_FILE,
    SCHEMA_FILE,
    ManifestError,
    ModelManifest,
    parse_manifest,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
BUILTIN_DIR = REPO_ROOT / "models"
METADATA_FILE = "metadata.json"
CACHE_KEY_FILE = "cache-key"
# lib/'s base requirement set for each value of the manifest's "lib".
LIB_SETS = {
    "sklearn": REPO_ROOT / "requirements" / "lambda-sklearn.txt",
    "onnx": REPO_ROOT / "requirements" / "lambda-onnx.txt",
    "torch": REPO_ROOT / "requirements" / "lambda.txt",
}
# The stamp's framework (what the runtime imports before loading) for each base set.
FRAMEWORKS = {"sklearn": "sklearn", "onnx": "onnxruntime", "torch": "torch"}
_BUILD_TIMEOUT_S = 3600


class ModelDirError(ValueError):
    """A model directory that cannot be built or served, with what to fix."""


@dataclass(frozen=True)
class ModelDir:
    """A validated model directory."""

    path: Path
    manifest: ModelManifest

    @property
    def builtin(self) -> bool:
        """Whether it is one of the repository's models/ (named without a path)."""
        return self.path.parent.resolve() == BUILTIN_DIR.resolve()


def builtin_names() -> list[str]:
    """The model directories under models/, by name."""
    return sorted(p.parent.name for p in BUILTIN_DIR.glob(f"*/{MANIFEST_FILE}"))


def resolve(model: str | Path) -> Path:
    """The directory ``model`` names: a path, or the name of a directory under models/."""
    text = str(model)
    if "/" not in text and (BUILTIN_DIR / text / MANIFEST_FILE).is_file():
        return BUILTIN_DIR / text
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = (Path.cwd() / path).resolve()
    if not (path / MANIFEST_FILE).is_file():
        names = ", ".join(builtin_names())
        raise ModelDirError(
            f"{model}: not a model directory (no {MANIFEST_FILE}); give a directory path "
            f"or one of {names}"
        )
    return path


def schema_errors(obj: object) -> list[str]:
    """Every way ``obj`` breaks model.schema.json, as 'where: what' lines (jsonschema)."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))
    errors = []
    for error in sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(part) for part in error.absolute_path) or "(top level)"
        errors.append(f"{where}: {error.message}")
    return errors


def load(model: str | Path) -> ModelDir:
    """Find and validate a model directory; ModelDirError says every problem at once."""
    path = resolve(model)
    manifest_file = path / MANIFEST_FILE
    try:
        obj = json.loads(manifest_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ModelDirError(f"{manifest_file}: not valid JSON: {exc}") from exc
    problems = schema_errors(obj)
    if problems:
        raise ModelDirError(
            f"{manifest_file} does not follow efs_layout/model.schema.json "
            f"(docs/model-directory.md):\n  " + "\n  ".join(problems)
        )
    try:
        manifest = parse_manifest(obj)
    except ManifestError as exc:
        raise ModelDirError(f"{manifest_file}: {exc}") from exc
    missing = []
    if manifest.build is None and not (path / manifest.file).is_file():
        missing.append(f"the model file {manifest.file} (and there is no build command)")
    if manifest.code and not (path / manifest.code).is_dir():
        missing.append(f"the code directory {manifest.code}/")
    if manifest.requirements and not (path / manifest.requirements).is_file():
        missing.append(f"the requirements file {manifest.requirements}")
    if missing:
        raise ModelDirError(f"{path} lacks {'; '.join(missing)}")
    example = manifest.input.example
    if manifest.input.kind == "features" and any(
        len(row) != manifest.input.features for row in example
    ):
        raise ModelDirError(
            f"{manifest_file}: input.example rows must have {manifest.input.features} numbers"
        )
    return ModelDir(path, manifest)


def _hash_tree(digest: Any, root: Path, skip: Iterable[Path] = ()) -> None:
    skipped = {p.resolve() for p in skip}
    paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    for path in paths:
        if path.resolve() in skipped or "__pycache__" in path.parts:
            continue
        digest.update(str(path.relative_to(root.parent)).encode() + b"\0")
        digest.update(path.read_bytes())


def cache_key(model_dir: ModelDir, seed: int) -> str:
    """What decides build-model's output: the directory's files and the build's inputs.

    The model file counts too, unless a build command makes it (then an old output left
    in the directory must not change the key).
    """
    digest = hashlib.sha256(f"{model_dir.manifest.name}:{seed}".encode())
    built = model_dir.manifest.build is not None
    skip = [model_dir.path / model_dir.manifest.file] if built else []
    _hash_tree(digest, model_dir.path, skip=skip)
    for entry in (model_dir.manifest.build or {}).get("inputs", []):
        target = REPO_ROOT / entry
        if target.exists():
            _hash_tree(digest, target)
    return digest.hexdigest()


def lib_requirements(model_dir: ModelDir, out_dir: Path) -> Path:
    """lib/'s requirement file: the base set, plus the directory's own requirements if any."""
    base = LIB_SETS[model_dir.manifest.lib]
    if not model_dir.manifest.requirements:
        return base
    extra = (model_dir.path / model_dir.manifest.requirements).read_text()
    combined = out_dir / f"lib-requirements-{model_dir.manifest.name}.txt"
    combined.parent.mkdir(parents=True, exist_ok=True)
    combined.write_text(
        f"# {base.relative_to(REPO_ROOT)} + {model_dir.path / model_dir.manifest.requirements}\n"
        + base.read_text()
        + "\n"
        + extra
    )
    return combined


def _run_build(model_dir: ModelDir, out: Path, seed: int) -> None:
    build = model_dir.manifest.build or {}
    fields = {
        "python": sys.executable,
        "out": str(out),
        "seed": str(seed),
        "dir": str(model_dir.path),
    }
    # Only these four placeholders are replaced (not str.format): an argument may hold
    # other braces, such as JSON for the user's own script.
    command = []
    for part in build["command"]:
        for name, value in fields.items():
            part = part.replace("{" + name + "}", value)
        command.append(part)
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    try:
        proc = subprocess.run(
            command,
            cwd=REPO_ROOT,
            env=env,
            timeout=_BUILD_TIMEOUT_S,
            check=False,
            capture_output=True,
            text=True,
            errors="replace",
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ModelDirError(f"{model_dir.manifest.name}: the build command failed: {exc}") from exc
    if proc.returncode != 0:
        tail = "\n    ".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
        raise ModelDirError(
            f"{model_dir.manifest.name}: the build command {' '.join(command)} exited "
            f"{proc.returncode}:\n    {tail}"
        )
    if not (out / model_dir.manifest.file).is_file():
        raise ModelDirError(
            f"{model_dir.manifest.name}: the build command wrote no {model_dir.manifest.file}"
        )


def metadata_for(model_dir: ModelDir, built: dict[str, Any] | None) -> dict[str, Any]:
    """What the stamp records about the model: the build's own metadata, the manifest's facts."""
    manifest = model_dir.manifest
    metadata = dict(built or {})
    metadata.setdefault("framework", FRAMEWORKS[manifest.lib])
    metadata.setdefault("labels", list(manifest.labels))
    metadata.setdefault("trained", "unknown")
    metadata["name"] = manifest.name
    metadata["format"] = manifest.format
    metadata["input"] = manifest.input.public()
    metadata["source"] = "models/" + model_dir.path.name if model_dir.builtin else "model directory"
    return metadata


def _copy(src: Path, dst: Path) -> None:
    if src.is_dir():
        shutil.copytree(
            src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"), dirs_exist_ok=True
        )
    else:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)


def build(
    model: str | Path,
    out: Path,
    seed: int = 0,
    *,
    log: Callable[[str], None] = print,
) -> ModelDir:
    """Validate ``model``, build it if it has a build command (cached), fill ``out``.

    Built models are kept in out's sibling model-cache/<key>/, so going back to a model
    built before costs a copy by hard links, not a training.
    """
    model_dir = load(model)
    manifest = model_dir.manifest
    key = cache_key(model_dir, seed)
    marker = out / CACHE_KEY_FILE
    if (out / manifest.file).exists() and marker.is_file() and marker.read_text() == key:
        log(f"model {manifest.name} (seed {seed}) is up to date in {out}")
        return model_dir
    staging = out.with_name(out.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    built_meta: dict[str, Any] | None = None
    if manifest.build is not None:
        cached = out.parent / "model-cache" / key[:32]
        if not (cached / CACHE_KEY_FILE).is_file():
            started = time.perf_counter()
            partial = cached.with_name(cached.name + ".tmp")
            shutil.rmtree(partial, ignore_errors=True)
            _run_build(model_dir, partial, seed)
            (partial / CACHE_KEY_FILE).write_text(key)  # last: a complete entry has it
            shutil.rmtree(cached, ignore_errors=True)
            partial.rename(cached)
            log(f"model {manifest.name} built in {time.perf_counter() - started:.1f} s")
        else:
            log(f"model {manifest.name} (seed {seed}) built before; taken from {cached}")
        _copy(cached / manifest.file, staging / manifest.file)
        if (cached / METADATA_FILE).is_file():
            built_meta = json.loads((cached / METADATA_FILE).read_text())
    else:
        # A copy, not a link: a retraining that rewrites the user's file in place must not
        # change build/model behind the pipeline's back.
        shutil.copy2(model_dir.path / manifest.file, staging / manifest.file)
    shutil.copy2(model_dir.path / MANIFEST_FILE, staging / MANIFEST_FILE)
    if manifest.code:
        _copy(model_dir.path / manifest.code, staging / manifest.code)
    metadata = metadata_for(model_dir, built_meta)
    (staging / METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
    (staging / CACHE_KEY_FILE).write_text(key)
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    return model_dir


def main(argv: list[str] | None = None) -> int:
    """CLI of the build-model step for a model directory."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="a model directory, or a name in models/")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        model_dir = build(args.model, args.out, args.seed)
    except ModelDirError as exc:
        print(f"build-model: {exc}", file=sys.stderr)
        return 1
    print(f"build-model: {model_dir.manifest.name} ({model_dir.manifest.format}) in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
