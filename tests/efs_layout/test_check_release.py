"""check_release(): every verdict code, each produced by a real corruption on disk."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from efs_layout import (
    Interpreter,
    PythonInfo,
    ReleaseResult,
    StampFields,
    VerdictCode,
    assemble_release,
    build_manifest,
    build_stamp,
    check_release,
    release_path,
)
from efs_layout import verify as verify_module

SourceFactory = Callable[..., Path]

RID = "20240501T120000Z-3f2a9c1"


@pytest.fixture
def release(root: Path, fields: StampFields, make_source: SourceFactory) -> ReleaseResult:
    return assemble_release(root, RID, make_source(), fields)


def _writable(path: Path) -> None:
    # Release files are read-only hard links into the store; tests corrupt them on purpose.
    os.chmod(path, 0o644)


def _rewrite_stamp(release_dir: Path, **changes: object) -> None:
    stamp_file = release_dir / "STAMP.json"
    doc = json.loads(stamp_file.read_bytes())
    doc.update(changes)
    stamp_file.unlink()
    stamp_file.write_text(json.dumps(doc))


def _forbid_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(path: object) -> str:
        raise AssertionError(f"hashed {path} on the fast path")

    monkeypatch.setattr(verify_module, "sha256_file", fail)


def test_ok_on_fast_and_full_path(
    root: Path, release: ReleaseResult, interpreter: Interpreter
) -> None:
    for full in (False, True):
        verdict = check_release(root, RID, full=full, interpreter=interpreter)
        assert verdict.ok, verdict.message
        assert verdict.code is VerdictCode.OK
        assert verdict.stamp == release.stamp


def test_missing_release_dir(root: Path, interpreter: Interpreter) -> None:
    verdict = check_release(root, "20240101T000000Z-0000000", interpreter=interpreter)
    assert not verdict.ok
    assert verdict.code is VerdictCode.MISSING
    assert verdict.stamp is None


@pytest.mark.parametrize("bad_id", ["..", "../etc", "a/b", "", "x" * 65])
def test_unsafe_release_id_is_missing_not_a_path(root: Path, bad_id: str) -> None:
    assert check_release(root, bad_id).code is VerdictCode.MISSING


def test_partial_dir_with_missing_file_is_incomplete(
    root: Path, release: ReleaseResult, interpreter: Interpreter
) -> None:
    (release.path / "lib/numpy/core/_multiarray.so").unlink()
    for full in (False, True):
        verdict = check_release(root, RID, full=full, interpreter=interpreter)
        assert verdict.code is VerdictCode.INCOMPLETE
        assert "lib/numpy/core/_multiarray.so" in verdict.message


def test_dir_without_stamp_is_incomplete(root: Path, interpreter: Interpreter) -> None:
    (root / "releases" / RID / "lib").mkdir(parents=True)
    verdict = check_release(root, RID, interpreter=interpreter)
    assert verdict.code is VerdictCode.INCOMPLETE


def test_truncated_stamp_is_incomplete(
    root: Path, release: ReleaseResult, interpreter: Interpreter
) -> None:
    stamp_file = release.path / "STAMP.json"
    data = stamp_file.read_bytes()
    _writable(stamp_file)
    stamp_file.write_bytes(data[: len(data) // 2])
    verdict = check_release(root, RID, interpreter=interpreter)
    assert verdict.code is VerdictCode.INCOMPLETE
    assert verdict.stamp is None


def test_partial_stamp_is_incomplete(
    root: Path, release: ReleaseResult, interpreter: Interpreter
) -> None:
    stamp_file = release.path / "STAMP.json"
    stamp_file.unlink()
    stamp_file.write_text(json.dumps({"schema_version": 1, "release_id": RID}))
    assert check_release(root, RID, interpreter=interpreter).code is VerdictCode.INCOMPLETE


def test_unknown_schema_version(
    root: Path, release: ReleaseResult, interpreter: Interpreter
) -> None:
    _rewrite_stamp(release.path, schema_version=2, something_new={"x": 1})
    verdict = check_release(root, RID, interpreter=interpreter)
    assert verdict.code is VerdictCode.SCHEMA_UNKNOWN
    assert "2" in verdict.message


def test_wrong_abi_tag(root: Path, release: ReleaseResult, interpreter: Interpreter) -> None:
    verdict = check_release(
        root, RID, interpreter=dataclasses.replace(interpreter, abi_tag="cp312")
    )
    assert verdict.code is VerdictCode.ABI_MISMATCH
    assert verdict.stamp == release.stamp


def test_wrong_abi_tag_in_stamp(
    root: Path, release: ReleaseResult, interpreter: Interpreter
) -> None:
    _rewrite_stamp(release.path, python={"abi_tag": "cp310", "version": "3.10"})
    verdict = check_release(root, RID, interpreter=interpreter)
    assert verdict.code is VerdictCode.ABI_MISMATCH
    assert "cp310" in verdict.message


def test_wrong_machine(root: Path, release: ReleaseResult, interpreter: Interpreter) -> None:
    arm = dataclasses.replace(interpreter, machine="aarch64")
    assert check_release(root, RID, interpreter=arm).code is VerdictCode.PLATFORM_MISMATCH
    mac = dataclasses.replace(interpreter, os="darwin")
    assert check_release(root, RID, interpreter=mac).code is VerdictCode.PLATFORM_MISMATCH


def test_abi_is_checked_before_platform(
    root: Path, release: ReleaseResult, interpreter: Interpreter
) -> None:
    both = Interpreter(abi_tag="cp312", version="3.12", machine="aarch64")
    assert check_release(root, RID, interpreter=both).code is VerdictCode.ABI_MISMATCH


def test_one_byte_changed_same_size(
    root: Path, release: ReleaseResult, interpreter: Interpreter, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = release.path / "model/model.joblib"
    data = bytearray(model.read_bytes())
    data[100] ^= 0x01
    _writable(model)
    model.write_bytes(bytes(data))

    full = check_release(root, RID, full=True, interpreter=interpreter)
    assert full.code is VerdictCode.MANIFEST_MISMATCH
    assert "model/model.joblib" in full.message

    # The marker vouches for the hashes, so the fast path only stats and says ok ...
    assert check_release(root, RID, interpreter=interpreter).ok

    # ... a stale marker (names another stamp) does not vouch ...
    marker = release.path / ".verified"
    marker.unlink()
    marker.write_text("0" * 64 + "\n")
    stale = check_release(root, RID, interpreter=interpreter)
    assert stale.code is VerdictCode.MANIFEST_MISMATCH

    # ... and without a marker the fast path hashes too.
    marker.unlink()
    fast = check_release(root, RID, interpreter=interpreter)
    assert fast.code is VerdictCode.MANIFEST_MISMATCH
    assert "model/model.joblib" in fast.message


def test_valid_marker_means_no_hashing(
    root: Path, release: ReleaseResult, interpreter: Interpreter, monkeypatch: pytest.MonkeyPatch
) -> None:
    _forbid_hashing(monkeypatch)
    verdict = check_release(root, RID, interpreter=interpreter)
    assert verdict.ok, verdict.message
    with pytest.raises(AssertionError, match="hashed"):
        check_release(root, RID, full=True, interpreter=interpreter)


def test_size_change_is_caught_by_stat_alone(
    root: Path, release: ReleaseResult, interpreter: Interpreter, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = release.path / "model/model.joblib"
    _writable(model)
    with model.open("ab") as f:
        f.write(b"!")
    _forbid_hashing(monkeypatch)
    verdict = check_release(root, RID, interpreter=interpreter)
    assert verdict.code is VerdictCode.MANIFEST_MISMATCH
    assert "model/model.joblib" in verdict.message


def test_file_replaced_by_symlink_is_a_mismatch(
    root: Path, release: ReleaseResult, interpreter: Interpreter
) -> None:
    target = release.path / "lib/joblib/__init__.py"
    target.unlink()
    target.symlink_to(release.path / "lib/torch/__init__.py")
    verdict = check_release(root, RID, interpreter=interpreter)
    assert verdict.code is VerdictCode.MANIFEST_MISMATCH


def test_unlisted_file_is_caught_by_full_check(
    root: Path, release: ReleaseResult, interpreter: Interpreter
) -> None:
    (release.path / "lib/sitecustomize.py").write_text("import os\n")
    verdict = check_release(root, RID, full=True, interpreter=interpreter)
    assert verdict.code is VerdictCode.MANIFEST_MISMATCH
    assert "lib/sitecustomize.py" in verdict.message


def test_stamp_of_another_release(
    root: Path, release: ReleaseResult, interpreter: Interpreter
) -> None:
    os.rename(release.path, release.path.with_name("other"))
    verdict = check_release(root, "other", interpreter=interpreter)
    assert verdict.code is VerdictCode.MANIFEST_MISMATCH
    assert RID in verdict.message


def test_current_interpreter_maps_machine_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("platform.machine", lambda: "arm64")
    current = Interpreter.current()
    assert current.machine == "aarch64"
    assert current.abi_tag.startswith("cp") and current.abi_tag[2:].isdigit()
    monkeypatch.setattr("platform.machine", lambda: "AMD64")
    assert Interpreter.current().machine == "x86_64"


def test_fast_path_on_10000_files_is_fast(
    root: Path, fields: StampFields, interpreter: Interpreter, monkeypatch: pytest.MonkeyPatch
) -> None:
    release_dir = release_path(root, "big")
    for i in range(10_000):
        path = release_dir / "lib" / f"pkg{i // 100:03d}" / f"mod{i % 100:02d}.py"
        if i % 100 == 0:
            path.parent.mkdir(parents=True)
        path.write_bytes(b"x = %d\n" % i)
    model = release_dir / "model/model.joblib"
    model.parent.mkdir()
    model.write_bytes(b"model")
    stamp = build_stamp("big", build_manifest(release_dir), fields)
    stamp_bytes = stamp.to_bytes()
    (release_dir / "STAMP.json").write_bytes(stamp_bytes)
    (release_dir / ".verified").write_text(verify_module.sha256_bytes(stamp_bytes) + "\n")

    _forbid_hashing(monkeypatch)
    # CPU seconds of this process, not wall time: on a loaded machine the wall clock also
    # counts the time other processes had the cores (1.5 s for 0.2 s of work at load 12).
    start = time.process_time()
    verdict = check_release(root, "big", interpreter=interpreter)
    elapsed = time.process_time() - start
    assert verdict.ok, verdict.message
    assert verdict.stamp is not None and len(verdict.stamp.manifest) == 10_001
    assert elapsed < 5.0, f"fast path took {elapsed:.2f} CPU s for 10,001 files"


def test_stamp_python_info_in_fields_reaches_verdict(
    root: Path, fields: StampFields, make_source: SourceFactory
) -> None:
    cp312 = dataclasses.replace(fields, python=PythonInfo(abi_tag="cp312", version="3.12"))
    assemble_release(root, "r312", make_source(), cp312)
    ok = Interpreter(abi_tag="cp312", version="3.12", machine="x86_64")
    assert check_release(root, "r312", interpreter=ok).ok
