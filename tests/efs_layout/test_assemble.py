"""assemble_release(), the store, delete_release() and the small path helpers."""

from __future__ import annotations

import dataclasses
import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from efs_layout import (
    Interpreter,
    ModelInfo,
    ReleaseConflict,
    ReleaseContentError,
    ReleaseStatus,
    StampFields,
    add_lib_to_path,
    assemble_release,
    check_release,
    collect_garbage,
    delete_release,
    list_releases,
    release_path,
    root_from_env,
    store_path,
)
from efs_layout import release as release_module
from efs_layout import store as store_module
from efs_layout.verify import sha256_bytes

SourceFactory = Callable[..., Path]


def _store_files(root: Path) -> set[str]:
    base = root / "store" / "sha256"
    return {p.name for p in base.rglob("*") if p.is_file()} if base.exists() else set()


def test_assemble_creates_a_verified_release(
    root: Path, fields: StampFields, make_source: SourceFactory, interpreter: Interpreter
) -> None:
    result = assemble_release(root, "r1", make_source(), fields)
    assert result.status is ReleaseStatus.CREATED
    assert result.path == root / "releases" / "r1"
    assert result.files_total == len(result.stamp.manifest) == 8
    assert result.bytes_total == sum(e.size for e in result.stamp.manifest)
    assert result.bytes_written_to_store == result.bytes_total  # empty store: all new
    stamp_bytes = (result.path / "STAMP.json").read_bytes()
    assert stamp_bytes == result.stamp.to_bytes()
    assert (result.path / ".verified").read_text().strip() == sha256_bytes(stamp_bytes)
    assert check_release(root, "r1", full=True, interpreter=interpreter).ok
    assert list(os.scandir(root / "tmp")) == []  # staging cleaned up
    assert not (root / "locks" / "releases.lock").exists()  # lock released


def test_files_are_read_only_links_into_the_store(
    root: Path, fields: StampFields, make_source: SourceFactory
) -> None:
    result = assemble_release(root, "r1", make_source(), fields)
    for entry in result.stamp.manifest:
        st = os.stat(result.path / entry.path)
        assert st.st_ino == os.stat(store_path(root, entry.sha256)).st_ino
        assert stat.S_IMODE(st.st_mode) == 0o444
    assert stat.S_IMODE(os.stat(result.path / "lib").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(result.path).st_mode) == 0o755


def test_file_map_source(root: Path, fields: StampFields, tmp_path: Path) -> None:
    model = tmp_path / "anywhere.bin"
    model.write_bytes(b"weights")
    lib = tmp_path / "x.py"
    lib.write_bytes(b"x = 1\n")
    result = assemble_release(
        root, "mapped", {"model/model.joblib": model, "lib/x.py": str(lib)}, fields
    )
    assert (result.path / "model/model.joblib").read_bytes() == b"weights"
    assert [e.path for e in result.stamp.manifest] == ["lib/x.py", "model/model.joblib"]


def test_crash_mid_assembly_leaves_nothing_and_a_rerun_succeeds(
    root: Path,
    fields: StampFields,
    make_source: SourceFactory,
    interpreter: Interpreter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = make_source()
    real_link = store_module.link_from_store
    calls = 0

    def crash_on_fourth(*args: object, **kwargs: object) -> None:
        nonlocal calls
        calls += 1
        if calls == 4:
            raise OSError("simulated crash (EFS went away)")
        real_link(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(release_module, "link_from_store", crash_on_fourth)
    with pytest.raises(OSError, match="simulated crash"):
        assemble_release(root, "r1", source, fields)
    assert not os.path.lexists(root / "releases" / "r1")
    assert list_releases(root) == []
    assert check_release(root, "r1").code.value == "missing"
    assert list(os.scandir(root / "tmp")) == []
    assert not (root / "locks" / "releases.lock").exists()
    assert _store_files(root) == set()  # what the failed attempt stored is gone again

    monkeypatch.setattr(release_module, "link_from_store", real_link)
    result = assemble_release(root, "r1", source, fields)
    assert result.status is ReleaseStatus.CREATED
    assert result.bytes_written_to_store == result.bytes_total
    assert check_release(root, "r1", full=True, interpreter=interpreter).ok


def test_failed_attempt_keeps_store_files_other_releases_use(
    root: Path, fields: StampFields, make_source: SourceFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    assemble_release(root, "r1", make_source("a"), fields)
    before = _store_files(root)

    def crash(*args: object, **kwargs: object) -> None:
        raise OSError("simulated crash")

    monkeypatch.setattr(release_module, "publish", crash)
    with pytest.raises(OSError, match="simulated crash"):
        assemble_release(root, "r2", make_source("b", model=b"new model"), fields)
    assert _store_files(root) == before
    assert list_releases(root) == ["r1"]


def test_crash_just_before_rename_leaves_nothing(
    root: Path, fields: StampFields, make_source: SourceFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # the Lambda being killed, not a polite exception

    monkeypatch.setattr(release_module, "_write_readonly", crash)
    with pytest.raises(KeyboardInterrupt):
        assemble_release(root, "r1", make_source(), fields)
    assert list_releases(root) == []
    assert list(os.scandir(root / "tmp")) == []


def test_reassemble_same_content_is_a_noop(
    root: Path, fields: StampFields, make_source: SourceFactory
) -> None:
    source = make_source()
    first = assemble_release(root, "r1", source, fields)
    before = (first.path / "STAMP.json").read_bytes()
    later = dataclasses.replace(fields, created_at="2030-01-01T00:00:00Z")
    again = assemble_release(root, "r1", source, later)
    assert again.status is ReleaseStatus.ALREADY_PRESENT
    assert again.bytes_written_to_store == 0
    assert again.bytes_total == first.bytes_total
    assert again.stamp == first.stamp
    assert (first.path / "STAMP.json").read_bytes() == before


def test_same_id_different_content_is_refused(
    root: Path, fields: StampFields, make_source: SourceFactory, interpreter: Interpreter
) -> None:
    first = assemble_release(root, "r1", make_source("a"), fields)
    with pytest.raises(ReleaseConflict) as info:
        assemble_release(root, "r1", make_source("b", model=b"other model"), fields)
    assert info.value.release_id == "r1"
    assert check_release(root, "r1", full=True, interpreter=interpreter).stamp == first.stamp
    assert list(os.scandir(root / "tmp")) == []


def test_model_only_release_stores_only_the_model(
    root: Path, fields: StampFields, make_source: SourceFactory, interpreter: Interpreter
) -> None:
    first = assemble_release(root, "r1", make_source("a"), fields)
    new_model = b"model-two " * 1500
    second = assemble_release(root, "r2", make_source("b", model=new_model), fields)

    assert second.bytes_written_to_store == len(new_model)
    assert second.files_written_to_store == 1
    assert second.bytes_written_to_store < 0.05 * first.bytes_total
    lib = "lib/torch/_C.so"
    a, b = os.stat(first.path / lib), os.stat(second.path / lib)
    assert a.st_ino == b.st_ino
    assert a.st_nlink == 3  # store + r1 + r2
    assert (
        os.stat(first.path / "model/model.joblib").st_ino
        != os.stat(second.path / "model/model.joblib").st_ino
    )
    assert check_release(root, "r2", full=True, interpreter=interpreter).ok


def test_delete_collects_only_unreferenced_store_files(
    root: Path, fields: StampFields, make_source: SourceFactory, interpreter: Interpreter
) -> None:
    first = assemble_release(root, "r1", make_source("a"), fields)
    second = assemble_release(root, "r2", make_source("b", model=b"second model"), fields)
    model_one = first.stamp.manifest[-1]
    assert model_one.path == "model/model.joblib"
    assert len(_store_files(root)) == 9  # 8 of r1 + the model of r2

    result = delete_release(root, "r1")
    assert result.existed
    assert result.gc.store_files_removed == 1
    assert result.gc.store_bytes_freed == model_one.size
    assert not store_path(root, model_one.sha256).exists()
    assert list_releases(root) == ["r2"]
    assert check_release(root, "r2", full=True, interpreter=interpreter).ok
    assert os.stat(second.path / "lib/torch/_C.so").st_nlink == 2

    delete_release(root, "r2")
    assert _store_files(root) == set()
    assert list_releases(root) == []
    again = delete_release(root, "r2")
    assert not again.existed and again.gc.store_files_removed == 0


def test_gc_removes_stale_staging_leftovers(
    root: Path, fields: StampFields, make_source: SourceFactory
) -> None:
    assemble_release(root, "r1", make_source(), fields)
    # What a killed writer leaves: a staging dir holding links that pin store files.
    leftover = root / "tmp" / "stage-dead"
    (leftover / "release").mkdir(parents=True)
    os.link(release_path(root, "r1") / "model/model.joblib", leftover / "release/m")
    delete_release(root, "r1", tmp_max_age=3600)
    assert leftover.exists() and len(_store_files(root)) == 1  # too young to judge
    result = collect_garbage(root, tmp_max_age=0)
    assert result.tmp_entries_removed == 1
    assert result.store_files_removed == 1
    assert _store_files(root) == set()


@pytest.mark.parametrize(
    ("extra", "message"),
    [({"notes.txt": b"x"}, "lib/ or model/"), ({"etc/x": b"x"}, "neither")],
)
def test_source_outside_lib_and_model_is_refused(
    root: Path,
    fields: StampFields,
    make_source: SourceFactory,
    extra: dict[str, bytes],
    message: str,
) -> None:
    with pytest.raises(ReleaseContentError, match=message):
        assemble_release(root, "r1", make_source(extra=extra), fields)


def test_source_symlink_is_refused(
    root: Path, fields: StampFields, make_source: SourceFactory
) -> None:
    source = make_source()
    (source / "lib/link.py").symlink_to("/etc/hostname")
    with pytest.raises(ReleaseContentError, match="symlink"):
        assemble_release(root, "r1", source, fields)


def test_model_file_must_be_in_the_release(
    root: Path, fields: StampFields, make_source: SourceFactory
) -> None:
    from efs_layout import StampInvalid

    bad = dataclasses.replace(
        fields, model=ModelInfo(framework="sklearn", name="m", file="model/absent.joblib")
    )
    with pytest.raises(StampInvalid, match=r"model/absent\.joblib"):
        assemble_release(root, "r1", make_source(), bad)
    assert list_releases(root) == []


def test_list_releases_is_sorted_and_skips_junk(
    root: Path, fields: StampFields, make_source: SourceFactory
) -> None:
    assert list_releases(root) == []
    source = make_source()
    for rid in ("20240502T000000Z-bbbbbbb", "20240501T000000Z-aaaaaaa", "simple"):
        assemble_release(root, rid, source, fields)
    (root / "releases" / "a file").write_text("x")
    (root / "releases" / "plainfile").write_text("x")
    assert list_releases(root) == [
        "20240501T000000Z-aaaaaaa",
        "20240502T000000Z-bbbbbbb",
        "simple",
    ]


def test_add_lib_to_path_puts_lib_first(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    lib = add_lib_to_path(root, "r1")
    assert lib == root / "releases" / "r1" / "lib"
    assert sys.path[0] == str(lib)
    add_lib_to_path(root, "r1")
    assert sys.path.count(str(lib)) == 1
    with pytest.raises(ValueError):
        add_lib_to_path(root, "../evil")


def test_root_from_env(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert root_from_env() == root
    monkeypatch.delenv("EFS_MOUNT_PATH")
    with pytest.raises(KeyError):
        root_from_env()
