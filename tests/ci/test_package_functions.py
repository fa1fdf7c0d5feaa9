"""The Lambda code zips: reproducible, complete, and handed to Terraform with their hashes."""

from __future__ import annotations

import base64
import hashlib
import json
import zipfile
from pathlib import Path

from ci import package_functions


def test_zips_are_reproducible_and_hold_handler_and_layout(tmp_path: Path) -> None:
    first = package_functions.build_zip("inference", out_dir=tmp_path / "a")
    second = package_functions.build_zip("inference", out_dir=tmp_path / "b")
    assert first.path.read_bytes() == second.path.read_bytes()
    assert first.sha256_b64 == second.sha256_b64
    expected = base64.b64encode(hashlib.sha256(first.path.read_bytes()).digest()).decode()
    assert first.sha256_b64 == expected
    names = zipfile.ZipFile(first.path).namelist()
    assert "lambda_src/inference/handler.py" in names
    assert "efs_layout/__init__.py" in names
    assert not any("syncer" in n for n in names)
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)


def test_syncer_zip_holds_only_the_syncer(tmp_path: Path) -> None:
    names = zipfile.ZipFile(package_functions.build_zip("syncer", out_dir=tmp_path).path).namelist()
    assert "lambda_src/syncer/handler.py" in names
    assert not any(n.startswith("lambda_src/inference/") for n in names)


def test_a_source_change_changes_the_hash(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "lambda_src" / "syncer").mkdir(parents=True)
    (src / "efs_layout").mkdir()
    (src / "lambda_src" / "__init__.py").write_text("")
    (src / "efs_layout" / "__init__.py").write_text("")
    handler = src / "lambda_src" / "syncer" / "handler.py"
    handler.write_text("X = 1\n")
    before = package_functions.build_zip("syncer", root=src, out_dir=tmp_path / "o1")
    handler.write_text("X = 2\n")
    after = package_functions.build_zip("syncer", root=src, out_dir=tmp_path / "o2")
    assert before.sha256_b64 != after.sha256_b64


def test_tfvars_name_every_package(tmp_path: Path) -> None:
    packages = [
        package_functions.build_zip(name, out_dir=tmp_path)
        for name in package_functions.FUNCTION_SOURCES
    ]
    out = tmp_path / "vars.json"
    package_functions.write_tfvars(packages, out)
    values = json.loads(out.read_text())
    assert set(values) == {"inference_package", "syncer_package"}
    for value in values.values():
        assert Path(value["path"]).is_file()
        assert len(value["sha256"]) == 44
