"""package-release says whether its bundle is a delta or a full one, and why (no emulator)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from ci import package_release, stack, syncer_client

LIB_REPORT = {
    "python": {"abi_tag": "cp312", "version": "3.12"},
    "platform": {"os": "linux", "machine": "x86_64", "manylinux": "manylinux_2_28_x86_64"},
    "packages": {"joblib": "1.6.0", "pillow": "13.0.0", "numpy": "2.4.6", "extra": {}},
}
LIB_FILES = {"joblib/__init__.py": b"# joblib\n", "numpy/__init__.py": b"# numpy\n"}
MODEL = b"model bytes"


@pytest.fixture()
def inputs(tmp_path: Path) -> tuple[Path, Path]:
    """A two-file lib/ with its lib.json, and a model directory."""
    lib = tmp_path / "lib"
    for name, data in LIB_FILES.items():
        (lib / name).parent.mkdir(parents=True, exist_ok=True)
        (lib / name).write_bytes(data)
    (tmp_path / "lib.json").write_text(json.dumps(LIB_REPORT))
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.joblib").write_bytes(MODEL)
    (model / "metadata.json").write_text(json.dumps({"framework": "sklearn", "name": "digits"}))
    return lib, model


def _package(inputs: tuple[Path, Path], tmp_path: Path, **kwargs: Any) -> tuple[Any, list[str]]:
    lines: list[str] = []
    packaged = package_release.package(
        *inputs,
        tmp_path / "release",
        release_id="20260101T000000Z-abcdef0",
        log=lines.append,
        **kwargs,
    )
    return packaged, lines


def test_a_delta_says_how_many_files_efs_already_holds(
    inputs: tuple[Path, Path], tmp_path: Path
) -> None:
    held = {hashlib.sha256(LIB_FILES["joblib/__init__.py"]).hexdigest()}
    packaged, lines = _package(inputs, tmp_path, present=lambda hashes: held & set(hashes))
    assert lines == ["delta: asked the syncer, 1 of 3 files already on EFS, bundle carries 2"]
    assert packaged.files == 3 and packaged.files_omitted == 1


def test_a_full_bundle_says_why_the_syncer_could_not_be_asked(
    inputs: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_stack() -> stack.Stack:
        raise stack.StackNotDeployed("Terraform output 'syncer_function_name' is missing")

    monkeypatch.setattr(stack, "load", no_stack)
    packaged, lines = _package(inputs, tmp_path)
    assert lines == [
        "full bundle: could not ask the syncer (StackNotDeployed: Terraform output "
        "'syncer_function_name' is missing)"
    ]
    assert packaged.files_omitted == 0


def test_a_refusing_syncer_is_a_full_bundle_too(
    inputs: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = stack.Stack("bucket", "inference", "syncer", "https://api.example.com")
    monkeypatch.setattr(stack, "load", lambda: names)
    refused = syncer_client.SyncerAnswer("refused", "bad_request", "have needs a list", {})
    monkeypatch.setattr(syncer_client, "call", lambda function, payload: refused)
    _packaged, lines = _package(inputs, tmp_path)
    assert lines == [
        "full bundle: could not ask the syncer (the syncer answered refused (bad_request): "
        "have needs a list)"
    ]


def test_require_delta_fails_instead_of_shipping_everything(
    inputs: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def no_credentials(function: str, payload: dict[str, Any]) -> syncer_client.SyncerAnswer:
        raise RuntimeError("Unable to locate credentials")

    names = stack.Stack("bucket", "inference", "syncer", "https://api.example.com")
    monkeypatch.setattr(stack, "load", lambda: names)
    monkeypatch.setattr(syncer_client, "call", no_credentials)
    lib, model = inputs
    out = tmp_path / "release"
    argv = ["--lib", str(lib), "--model", str(model), "--out", str(out), "--require-delta"]
    assert package_release.main(argv) == 1
    err = capsys.readouterr().err
    assert "--require-delta" in err and "Unable to locate credentials" in err
    assert not (out / package_release.RELEASE_JSON).exists()
    # Without the flag the same failure is a full bundle, and the log says so.
    assert package_release.main(argv[:-1]) == 0
    assert "full bundle: could not ask the syncer (RuntimeError: Unable to locate" in (
        capsys.readouterr().err
    )
