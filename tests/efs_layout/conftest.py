"""Fixtures shared by the efs_layout tests: an EFS root, stamp fields and source trees."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from efs_layout import (
    Interpreter,
    ModelInfo,
    Packages,
    PlatformInfo,
    PythonInfo,
    StampFields,
)

# Large enough that the model is far below 5% of a release, small enough to stay fast.
LIB_FILES: dict[str, bytes] = {
    "lib/torch/__init__.py": b"raise ImportError('efs_layout must never import torch')\n",
    "lib/torch/_C.so": bytes(range(256)) * 4096,  # 1 MiB
    "lib/numpy/__init__.py": b"raise ImportError('efs_layout must never import numpy')\n",
    "lib/numpy/core/_multiarray.so": bytes(reversed(range(256))) * 2048,  # 512 KiB
    "lib/PIL/__init__.py": b"raise ImportError('efs_layout must never import PIL')\n",
    "lib/joblib/__init__.py": b"__version__ = '1.4.2'\n",
    "lib/empty.txt": b"",
}
MODEL_FILE = "model/model.joblib"


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The EFS mount point, as the handlers would find it through $EFS_MOUNT_PATH."""
    efs = tmp_path / "efs"
    efs.mkdir()
    monkeypatch.setenv("EFS_MOUNT_PATH", str(efs))
    return efs


@pytest.fixture
def interpreter() -> Interpreter:
    """The Lambda runtime the test releases are built for."""
    return Interpreter(abi_tag="cp311", version="3.11", machine="x86_64", os="linux")


def make_fields(
    *,
    abi_tag: str = "cp311",
    machine: str = "x86_64",
    model_file: str = MODEL_FILE,
) -> StampFields:
    """Stamp fields for a test release."""
    return StampFields(
        git_commit="3f2a9c1d0e4b5a6978877665544332211000ffee",
        python=PythonInfo(abi_tag=abi_tag, version=f"3.{abi_tag[3:]}"),
        platform=PlatformInfo(machine=machine, manylinux=f"manylinux_2_28_{machine}"),
        packages=Packages(
            joblib="1.4.2",
            pillow="10.3.0",
            numpy="1.26.4",
            extra={"torch": "2.3.1+cpu", "scikit-learn": "1.5.0"},
        ),
        model=ModelInfo(
            framework="torch",
            name="tiny-cnn",
            file=model_file,
            metadata={
                "labels": ["cat", "dog"],
                "input_size": [224, 224],
                "normalisation": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
                "accuracy": 0.91,
            },
        ),
        created_at="2024-05-01T12:00:00Z",
    )


@pytest.fixture
def fields() -> StampFields:
    """Default stamp fields (cp311, x86_64)."""
    return make_fields()


@pytest.fixture
def lib_files() -> dict[str, bytes]:
    """The lib/ files every test source tree holds."""
    return dict(LIB_FILES)


SourceFactory = Callable[..., Path]


@pytest.fixture
def make_source(tmp_path: Path) -> SourceFactory:
    """Factory: write a source tree (lib/ + model/) under tmp_path/src/<name>."""

    def factory(
        name: str = "a",
        *,
        model: bytes = b"model-one " * 1000,
        lib: Mapping[str, bytes] = LIB_FILES,
        extra: Mapping[str, bytes] | None = None,
    ) -> Path:
        base = tmp_path / "src" / name
        files = {**lib, MODEL_FILE: model, **(extra or {})}
        for rel, data in files.items():
            path = base / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        return base

    return factory
