"""Build test releases the way the pipeline does: a source tree, stamp fields, a bundle."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import joblib

from efs_layout import (
    Interpreter,
    ModelInfo,
    Packages,
    PlatformInfo,
    PythonInfo,
    StampFields,
)

MODEL_FILE = "model/model.joblib"
# lib/ stands in for the real dependency tree: the venv provides torch & co, and the
# sentinel modules here record it if anything imports from this lib/.
SENTINEL_SOURCE = (
    "import os, pathlib\npathlib.Path(os.environ['LIB_IMPORT_MARKER']).write_text(__name__)\n"
)


def source_tree(
    directory: Path,
    predictor: Any,
    *,
    lib_files: Mapping[str, bytes] | None = None,
    sentinels: tuple[str, ...] = ("sentinel_lib_module",),
) -> Path:
    """Write lib/ and model/model.joblib under directory; return it."""
    (directory / "model").mkdir(parents=True, exist_ok=True)
    joblib.dump(predictor, directory / MODEL_FILE)
    files = dict(lib_files or {"lib/README.txt": b"dependencies of the release\n"})
    for name in sentinels:
        files[f"lib/{name}.py"] = SENTINEL_SOURCE.encode()
    for rel, data in files.items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return directory


def fields(
    name: str = "test-model",
    framework: str = "torch",
    metadata: Mapping[str, Any] | None = None,
    interpreter: Interpreter | None = None,
) -> StampFields:
    """Stamp fields for a release built for the interpreter running the tests."""
    here = interpreter or Interpreter.current()
    import numpy
    import PIL
    import torch

    return StampFields(
        git_commit="0123456789abcdef0123456789abcdef01234567",
        python=PythonInfo(abi_tag=here.abi_tag, version=here.version),
        platform=PlatformInfo(machine=here.machine, manylinux=f"manylinux_2_28_{here.machine}"),
        packages=Packages(
            joblib=joblib.__version__,
            pillow=PIL.__version__,
            numpy=numpy.__version__,
            extra={"torch": torch.__version__},
        ),
        model=ModelInfo(
            framework=framework, name=name, file=MODEL_FILE, metadata=dict(metadata or {})
        ),
    )


def make_writable(path: Path) -> None:
    """Release files are read-only (0444); tests that corrupt one must chmod it first."""
    os.chmod(path, 0o644)
