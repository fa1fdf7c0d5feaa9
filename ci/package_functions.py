"""Build the two Lambda code zips and hand their paths and hashes to Terraform.

Zips are reproducible (sorted entries, fixed timestamps and modes), so an
unchanged source tree gives the same hash and Terraform sees no change.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ci import paths

REPO_ROOT = Path(__file__).resolve().parents[1]
BUILD_DIR = paths.lambda_zip_dir()
TFVARS_PATH = REPO_ROOT / "terraform" / "packages.auto.tfvars.json"

# What each function's zip holds: its handler package and the shared layout package.
FUNCTION_SOURCES: dict[str, tuple[str, ...]] = {
    # lambda_src/models holds the predictor classes that model.joblib pickles name.
    "inference": (
        "lambda_src/__init__.py",
        "lambda_src/inference",
        "lambda_src/models",
        "efs_layout",
    ),
    "syncer": ("lambda_src/__init__.py", "lambda_src/syncer", "efs_layout"),
}
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class Package:
    """A built code zip."""

    function: str
    path: Path
    sha256_b64: str


def _source_files(root: Path, entries: tuple[str, ...]) -> list[Path]:
    files: list[Path] = []
    for entry in entries:
        path = root / entry
        if path.is_file():
            files.append(path)
            continue
        files.extend(
            p
            for p in path.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix not in {".pyc", ".pyo"}
        )
    return sorted(files)


def build_zip(function: str, root: Path = REPO_ROOT, out_dir: Path = BUILD_DIR) -> Package:
    """Write out_dir/<function>.zip from the function's sources; return its path and hash."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{function}.zip"
    tmp = target.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for file in _source_files(root, FUNCTION_SOURCES[function]):
            info = zipfile.ZipInfo(file.relative_to(root).as_posix(), date_time=_FIXED_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, file.read_bytes())
    tmp.replace(target)
    digest = hashlib.sha256(target.read_bytes()).digest()
    sha = base64.b64encode(digest).decode()
    # Versions published earlier keep running code that is no longer the newest zip; the
    # local data plane finds it here by its CodeSha256.
    archive = out_dir / "by-sha" / (sha.replace("/", "_").replace("+", "-").rstrip("=") + ".zip")
    if not archive.exists():
        archive.parent.mkdir(exist_ok=True)
        shutil.copyfile(target, archive)
    return Package(function, target, sha)


def write_tfvars(packages: list[Package], path: Path = TFVARS_PATH) -> None:
    """Write the Terraform variables that name each zip and its hash."""
    values = {
        f"{p.function}_package": {"path": str(p.path), "sha256": p.sha256_b64} for p in packages
    }
    path.write_text(json.dumps(values, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Build every function zip and the tfvars file."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out-dir", type=Path, default=BUILD_DIR)
    parser.add_argument("--tfvars", type=Path, default=TFVARS_PATH)
    args = parser.parse_args(argv)
    packages = [build_zip(name, out_dir=args.out_dir) for name in FUNCTION_SOURCES]
    write_tfvars(packages, args.tfvars)
    for p in packages:
        print(f"{p.function}: {p.path} sha256={p.sha256_b64}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
