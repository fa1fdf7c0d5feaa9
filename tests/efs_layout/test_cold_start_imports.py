"""The cold-start path imports only the standard library and nothing from a release's lib/."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import efs_layout
from efs_layout import (
    Interpreter,
    ModelInfo,
    Packages,
    PlatformInfo,
    PythonInfo,
    StampFields,
    assemble_release,
)

SourceFactory = Callable[..., Path]
PACKAGE_DIR = Path(efs_layout.__file__).parent
REPO_ROOT = PACKAGE_DIR.parent
FORBIDDEN = ("jsonschema", "torch", "torchvision", "numpy", "PIL", "joblib", "hypothesis")

_PROBE = """
import json, os, sys
import efs_layout
root = os.environ["EFS_MOUNT_PATH"]
verdict = efs_layout.check_release(root, "r1")
full = efs_layout.check_release(root, "r1", full=True)
missing = efs_layout.check_release(root, "absent")
loaded = sorted(sys.modules)
print(json.dumps({"codes": [verdict.code, full.code, missing.code], "modules": loaded}))
"""


def test_check_release_imports_no_third_party_module(
    root: Path, make_source: SourceFactory
) -> None:
    here = Interpreter.current()
    fields = StampFields(
        git_commit="abcdef0",
        python=PythonInfo(abi_tag=here.abi_tag, version=here.version),
        platform=PlatformInfo(machine=here.machine, manylinux=f"manylinux_2_28_{here.machine}"),
        packages=Packages(joblib="1", pillow="10", numpy="1", extra={"torch": "2"}),
        model=ModelInfo(framework="torch", name="m", file="model/model.joblib"),
    )
    # The release's lib/ holds torch, numpy and PIL packages that raise when imported.
    assemble_release(root, "r1", make_source(), fields)
    baseline = set(_run(["-I"], "import sys, json; print(json.dumps(sorted(sys.modules)))", root))
    # -I: site-packages visible, as on a dev machine; -S: none at all, as in the Lambda.
    for flags in (["-I"], ["-I", "-S"]):
        report = _run(flags, _PROBE, root)
        assert report["codes"] == ["ok", "ok", "missing"]
        loaded = set(report["modules"])
        assert not loaded & set(FORBIDDEN), loaded & set(FORBIDDEN)
        # The writers (tarfile, gzip, locks) stay unloaded on the inference path.
        assert not loaded & {"tarfile", "gzip", "efs_layout.bundle", "efs_layout.release"}
        new = {m.split(".")[0] for m in loaded - baseline}
        assert new - {"efs_layout"} <= set(sys.stdlib_module_names), new


def _run(flags: list[str], code: str, root: Path) -> Any:
    proc = subprocess.run(
        [
            sys.executable,
            *flags,
            "-c",
            f"import sys; sys.path.insert(0, {str(REPO_ROOT)!r})\n{code}",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={"EFS_MOUNT_PATH": str(root), "PATH": "/usr/bin:/bin"},
        cwd=root,
        timeout=60,
    )
    return json.loads(proc.stdout)


def test_package_modules_import_only_the_standard_library_at_top_level() -> None:
    allowed = set(sys.stdlib_module_names) | {"efs_layout", "__future__"}
    for module in PACKAGE_DIR.glob("*.py"):
        tree = ast.parse(module.read_text(), filename=str(module))
        for node in tree.body:
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] in allowed, f"{module.name} imports {name}"


def test_every_exported_name_resolves() -> None:
    for name in efs_layout.__all__:
        assert getattr(efs_layout, name) is not None, name
    assert sorted(efs_layout.__all__) == sorted(set(efs_layout.__all__))
