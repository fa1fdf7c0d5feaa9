"""Where the pipeline keeps its outputs; BUILD_DIR moves them (tests use a temporary one)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def build_dir() -> Path:
    """build/ of the repository, or $BUILD_DIR."""
    return Path(os.environ.get("BUILD_DIR") or REPO_ROOT / "build")


def lambda_zip_dir() -> Path:
    """Where `make package` writes the function zips."""
    return build_dir() / "lambda"


def efs_root() -> Path:
    """The folder standing for EFS file systems on this machine ($LOCAL_EFS_ROOT)."""
    return Path(os.environ.get("LOCAL_EFS_ROOT") or REPO_ROOT / ".state" / "efs")
