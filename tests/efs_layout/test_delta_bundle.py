"""Delta bundles: make_bundle(omit_sha256=...) leaves out what the store holds, unpack_bundle()
links it from the store (checked under the lock) or refuses the bundle; and store_has()."""

from __future__ import annotations

import hashlib
import io
import os
import random
import tarfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

import efs_layout.bundle as bundle_module
from efs_layout import (
    BundleInfo,
    BundleManifestMismatch,
    Interpreter,
    LockBusy,
    ManifestEntry,
    ReleaseContentError,
    ReleaseStatus,
    Stamp,
    StampFields,
    UnsafeBundleMember,
    build_manifest,
    build_stamp,
    check_release,
    collect_garbage,
    delete_release,
    list_releases,
    make_bundle,
    store_has,
    store_path,
    unpack_bundle,
)
from efs_layout.layout import PathLike

SourceFactory = Callable[..., Path]
R1 = "20240501T120000Z-3f2a9c1"
R2 = "20240502T120000Z-4e3b0d2"

_RNG = random.Random(20240501)
# 2 MiB of incompressible lib/, so a bundle that carries it cannot shrink by compression.
RANDOM_LIB: dict[str, bytes] = {
    "lib/torch/__init__.py": b"raise ImportError('efs_layout must never import torch')\n",
    "lib/torch/_C.so": _RNG.randbytes(1536 * 1024),
    "lib/numpy/__init__.py": b"raise ImportError('efs_layout must never import numpy')\n",
    "lib/numpy/core/_multiarray.so": _RNG.randbytes(512 * 1024),
    "lib/joblib/__init__.py": b"__version__ = '1.4.2'\n",
    "lib/empty.txt": b"",
}
MODEL_1 = _RNG.randbytes(10 * 1024)
MODEL_2 = _RNG.randbytes(10 * 1024)
LIB_BYTES = sum(len(data) for data in RANDOM_LIB.values())


def _stamp(source: Path, fields: StampFields, release_id: str) -> Stamp:
    return build_stamp(release_id, build_manifest(source), fields)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _hashes(stamp: Stamp) -> set[str]:
    return {entry.sha256 for entry in stamp.manifest}


def _store_files(root: Path) -> list[Path]:
    return [p for p in (root / "store").rglob("*") if p.is_file()]


def _assert_refused_cleanly(root: Path, release_id: str) -> None:
    assert not (root / "releases" / release_id).exists()
    assert list(os.scandir(root / "tmp")) == []
    assert not (root / "locks" / "releases.lock").exists()


@dataclass
class Delta:
    """Release 1 published from a full bundle, release 2 built as a delta against it."""

    full: BundleInfo
    stamp1: Stamp
    stamp2: Stamp
    source2: Path
    delta: BundleInfo


@pytest.fixture
def delta(root: Path, tmp_path: Path, fields: StampFields, make_source: SourceFactory) -> Delta:
    source1 = make_source("r1", lib=RANDOM_LIB, model=MODEL_1)
    stamp1 = _stamp(source1, fields, R1)
    full = make_bundle(source1, stamp1, tmp_path / "r1.tar.gz")
    assert unpack_bundle(root, full.path, full.sha256).status is ReleaseStatus.CREATED

    source2 = make_source("r2", lib=RANDOM_LIB, model=MODEL_2)
    stamp2 = _stamp(source2, fields, R2)
    omit = store_has(root, [entry.sha256 for entry in stamp2.manifest])
    info = make_bundle(source2, stamp2, tmp_path / "r2.delta.tar.gz", omit_sha256=omit)
    return Delta(full=full, stamp1=stamp1, stamp2=stamp2, source2=source2, delta=info)


# -- store_has ------------------------------------------------------------------------


def test_store_has_on_an_empty_root_is_empty(root: Path, tmp_path: Path) -> None:
    digests = [_sha(b""), _sha(MODEL_1), "0" * 64]
    assert store_has(root, digests) == set()
    assert store_has(root, []) == set()
    assert store_has(tmp_path / "no-such-root", digests) == set()
    assert not (tmp_path / "no-such-root").exists()  # a query creates nothing


def test_store_has_reports_exactly_the_stored_hashes(root: Path, delta: Delta) -> None:
    stored = _hashes(delta.stamp1)
    unknown = [_sha(str(i).encode()) for i in range(300)]  # enough to use the thread pool
    assert store_has(root, [*unknown, *stored, *stored]) == stored
    assert store_has(root, iter(sorted(stored))) == stored  # any iterable, read once
    assert _sha(MODEL_2) not in store_has(root, _hashes(delta.stamp2))

    torch = _sha(RANDOM_LIB["lib/torch/_C.so"])
    assert store_has(root, [torch], sizes={torch: len(RANDOM_LIB["lib/torch/_C.so"])}) == {torch}
    assert store_has(root, [torch], sizes={torch: 1}) == set()
    assert store_has(root, [torch], sizes={"0" * 64: 1}) == {torch}  # sizes of other hashes


def test_store_has_ignores_malformed_names_and_non_files(root: Path, delta: Delta) -> None:
    upper = "A" * 64
    bogus = root / "store" / "sha256" / "AA" / upper
    bogus.parent.mkdir()
    bogus.write_bytes(b"x")
    escape = "../../../releases"
    assert store_has(root, [upper, upper.lower(), escape, "", "ab"]) == set()

    as_dir = "d" * 64
    store_path(root, as_dir).mkdir(parents=True)
    as_link = "e" * 64
    store_path(root, as_link).parent.mkdir(parents=True)
    store_path(root, as_link).symlink_to(store_path(root, _sha(MODEL_1)))
    assert store_has(root, [as_dir, as_link, _sha(MODEL_1)]) == {_sha(MODEL_1)}


# -- make_bundle(omit_sha256=...) -------------------------------------------------------


def test_model_only_delta_moves_under_5_percent(
    root: Path, delta: Delta, interpreter: Interpreter
) -> None:
    lib_hashes = {_sha(data) for data in RANDOM_LIB.values()}
    assert store_has(root, _hashes(delta.stamp2)) == lib_hashes

    assert delta.full.size > LIB_BYTES  # random lib/ does not compress
    assert delta.delta.size < 0.05 * delta.full.size
    assert delta.delta.files == 1
    assert delta.delta.files_omitted == len(RANDOM_LIB)
    assert delta.delta.bytes_omitted == LIB_BYTES
    assert delta.full.files == len(delta.stamp1.manifest)
    assert (delta.full.files_omitted, delta.full.bytes_omitted) == (0, 0)

    with tarfile.open(delta.delta.path) as tar:
        assert tar.getnames() == ["STAMP.json", "model/model.joblib"]
        stamp_member = tar.extractfile("STAMP.json")
        assert stamp_member is not None
        assert stamp_member.read() == delta.stamp2.to_bytes()  # the full manifest
    assert len(delta.stamp2.manifest) == len(RANDOM_LIB) + 1

    result = unpack_bundle(root, delta.delta.path, delta.delta.sha256, expected_release_id=R2)
    assert result.status is ReleaseStatus.CREATED
    assert result.bytes_written_to_store == len(MODEL_2)
    assert result.files_written_to_store == 1
    assert result.bytes_total == LIB_BYTES + len(MODEL_2)
    assert result.files_total == len(delta.stamp2.manifest)
    assert (result.path / "STAMP.json").read_bytes() == delta.stamp2.to_bytes()
    assert (result.path / "model/model.joblib").read_bytes() == MODEL_2
    assert check_release(root, R2, full=True, interpreter=interpreter).ok
    assert check_release(root, R2, interpreter=interpreter).ok
    assert check_release(root, R1, full=True, interpreter=interpreter).ok
    r1 = root / "releases" / R1
    for rel in RANDOM_LIB:
        assert os.stat(result.path / rel).st_ino == os.stat(r1 / rel).st_ino, rel
        assert (
            os.stat(result.path / rel).st_ino
            == os.stat(store_path(root, _sha(RANDOM_LIB[rel]))).st_ino
        )
    assert list_releases(root) == [R1, R2]
    assert list(os.scandir(root / "tmp")) == []


def test_delta_bundle_is_deterministic(tmp_path: Path, delta: Delta) -> None:
    omit = {_sha(data) for data in RANDOM_LIB.values()}
    again = make_bundle(
        delta.source2, delta.stamp2, tmp_path / "again.tar.gz", omit_sha256=sorted(omit)
    )
    frozen = make_bundle(
        delta.source2, delta.stamp2, tmp_path / "frozen.tar.gz", omit_sha256=frozenset(omit)
    )
    assert again.sha256 == frozen.sha256 == delta.delta.sha256
    # Hashes that are not in the manifest change nothing.
    extra = make_bundle(
        delta.source2, delta.stamp2, tmp_path / "extra.tar.gz", omit_sha256=[*omit, "0" * 64]
    )
    assert extra.sha256 == delta.delta.sha256


def test_make_bundle_checks_omitted_files_without_reading_them(
    tmp_path: Path, delta: Delta
) -> None:
    omit = {_sha(data) for data in RANDOM_LIB.values()}
    with pytest.raises(TypeError):
        make_bundle(delta.source2, delta.stamp2, tmp_path / "s.tar.gz", omit_sha256="ab" * 32)
    (delta.source2 / "lib/torch/_C.so").unlink()
    out = tmp_path / "broken.tar.gz"
    with pytest.raises(ReleaseContentError, match=r"lib/torch/_C\.so"):
        make_bundle(delta.source2, delta.stamp2, out, omit_sha256=omit)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


# -- refusals -------------------------------------------------------------------------


def test_delta_into_a_fresh_root_is_refused(tmp_path: Path, delta: Delta) -> None:
    fresh = tmp_path / "fresh-efs"
    first_missing = min(RANDOM_LIB)
    with pytest.raises(
        BundleManifestMismatch,
        match=rf"{first_missing} is not in the bundle and not in the store",
    ):
        unpack_bundle(fresh, delta.delta.path, delta.delta.sha256)
    _assert_refused_cleanly(fresh, R2)
    assert list_releases(fresh) == []
    assert _store_files(fresh) == []  # the model it had stored is dropped again


def test_delta_after_its_base_was_deleted_and_collected_is_refused(
    root: Path, delta: Delta
) -> None:
    deleted = delete_release(root, R1)
    assert deleted.existed
    assert deleted.gc.store_files_removed == len(delta.stamp1.manifest)
    assert store_has(root, _hashes(delta.stamp2)) == set()
    with pytest.raises(BundleManifestMismatch, match="not in the bundle and not in the store"):
        unpack_bundle(root, delta.delta.path, delta.delta.sha256)
    _assert_refused_cleanly(root, R2)
    assert list_releases(root) == []
    assert _store_files(root) == []


def test_store_is_checked_under_the_lock(
    root: Path, delta: Delta, monkeypatch: pytest.MonkeyPatch, interpreter: Interpreter
) -> None:
    """The collector cannot run between the store check and the links."""
    calls: list[set[str]] = []

    def store_has_during_unpack(
        root_: PathLike, hashes: Iterable[str], *, sizes: Mapping[str, int] | None = None
    ) -> set[str]:
        assert (root / "locks" / "releases.lock").exists()
        with pytest.raises(LockBusy):
            collect_garbage(root, lock_timeout=0.2)
        with pytest.raises(LockBusy):
            delete_release(root, R1, lock_timeout=0.2)
        found = store_has(root_, hashes, sizes=sizes)
        calls.append(found)
        return found

    monkeypatch.setattr(bundle_module, "store_has", store_has_during_unpack)
    result = unpack_bundle(root, delta.delta.path, delta.delta.sha256)
    assert result.status is ReleaseStatus.CREATED
    assert calls == [{_sha(data) for data in RANDOM_LIB.values()}]
    monkeypatch.undo()

    # Now release 1 can go: release 2 holds its own links to the shared lib/ files.
    delete_release(root, R1)
    assert list_releases(root) == [R2]
    assert check_release(root, R2, full=True, interpreter=interpreter).ok


def test_a_bundle_asks_the_store_once_for_its_whole_manifest(
    root: Path,
    tmp_path: Path,
    fields: StampFields,
    make_source: SourceFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # On EFS every stat is a round trip: one parallel round for the manifest, not one
    # lstat per member on the thread that reads the stream, and none again for the
    # files a delta bundle leaves out.
    asked: list[set[str]] = []

    def counting(
        root_: PathLike, hashes: Iterable[str], *, sizes: Mapping[str, int] | None = None
    ) -> set[str]:
        asked.append(set(hashes))
        return store_has(root_, asked[-1], sizes=sizes)

    monkeypatch.setattr(bundle_module, "store_has", counting)
    source = make_source(lib=RANDOM_LIB, model=MODEL_1)
    stamp = _stamp(source, fields, R1)
    info = make_bundle(source, stamp, tmp_path / "full.tar.gz")
    assert unpack_bundle(root, info.path, info.sha256).status is ReleaseStatus.CREATED
    assert asked == [_hashes(stamp)]


def test_delta_for_an_already_present_release_is_a_noop(
    root: Path, tmp_path: Path, delta: Delta
) -> None:
    first = unpack_bundle(root, delta.delta.path, delta.delta.sha256)
    again = unpack_bundle(root, delta.delta.path, delta.delta.sha256)
    assert first.status is ReleaseStatus.CREATED
    assert again.status is ReleaseStatus.ALREADY_PRESENT
    assert again.bytes_written_to_store == 0
    # Release 1 as a delta that omits everything: nothing to read, already there.
    r1_source = tmp_path / "src" / "r1"
    everything = make_bundle(
        r1_source, delta.stamp1, tmp_path / "r1.delta.tar", omit_sha256=_hashes(delta.stamp1)
    )
    assert everything.files == 0
    same = unpack_bundle(root, everything.path, everything.sha256)
    assert same.status is ReleaseStatus.ALREADY_PRESENT
    assert list_releases(root) == [R1, R2]


def test_stamp_only_delta_publishes_from_the_store(
    root: Path, tmp_path: Path, delta: Delta, fields: StampFields, interpreter: Interpreter
) -> None:
    """A release whose every file is already stored: the bundle is just its STAMP.json."""
    stamp = build_stamp("r1-again", delta.stamp1.manifest, fields)
    r1_source = tmp_path / "src" / "r1"
    info = make_bundle(r1_source, stamp, tmp_path / "again.tar.gz", omit_sha256=_hashes(stamp))
    result = unpack_bundle(root, info.path, info.sha256)
    assert result.status is ReleaseStatus.CREATED
    assert (result.bytes_written_to_store, result.files_written_to_store) == (0, 0)
    assert check_release(root, "r1-again", full=True, interpreter=interpreter).ok


# -- hostile delta bundles ------------------------------------------------------------


def _member(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info


def _write_tar(path: Path, stamp_bytes: bytes, members: list[tuple[tarfile.TarInfo, bytes]]) -> str:
    with tarfile.open(path, "w:gz") as tar:
        tar.addfile(_member("STAMP.json", stamp_bytes), io.BytesIO(stamp_bytes))
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _hostile(name: str) -> list[tuple[tarfile.TarInfo, bytes]]:
    model = _member("model/model.joblib", MODEL_2)
    if name == "symlink":
        link = _member("lib/escape", kind=tarfile.SYMTYPE)
        link.linkname = "../../../../outside"
        return [(model, MODEL_2), (link, b"")]
    if name == "hard link into the store":
        link = _member("lib/torch/_C.so", kind=tarfile.LNKTYPE)
        link.linkname = "../../store/sha256/00/" + "0" * 64
        return [(link, b""), (model, MODEL_2)]
    if name == "dot-dot":
        return [(_member("../../store/evil", b"evil"), b"evil"), (model, MODEL_2)]
    raise AssertionError(name)


@pytest.mark.parametrize("name", ["symlink", "hard link into the store", "dot-dot"])
def test_hostile_members_in_a_delta_are_refused(
    root: Path, tmp_path: Path, delta: Delta, name: str
) -> None:
    before = sorted(_store_files(root))
    bundle = tmp_path / "hostile.tar.gz"
    sha = _write_tar(bundle, delta.stamp2.to_bytes(), _hostile(name))
    with pytest.raises(UnsafeBundleMember):
        unpack_bundle(root, bundle, sha)
    _assert_refused_cleanly(root, R2)
    assert sorted(_store_files(root)) == before
    assert not (root / "store" / "evil").exists()


@pytest.mark.parametrize("how", ["tampered model", "unlisted file", "model left out"])
def test_delta_that_disagrees_with_its_stamp_is_refused(
    root: Path, tmp_path: Path, delta: Delta, how: str
) -> None:
    before = sorted(_store_files(root))
    members: list[tuple[tarfile.TarInfo, bytes]]
    if how == "tampered model":
        bad = bytes([MODEL_2[0] ^ 1]) + MODEL_2[1:]
        members = [(_member("model/model.joblib", bad), bad)]
    elif how == "unlisted file":
        members = [
            (_member("model/model.joblib", MODEL_2), MODEL_2),
            (_member("lib/sitecustomize.py", b"import os"), b"import os"),
        ]
    else:
        members = []  # the new model is not in the store either
    bundle = tmp_path / "bad.tar.gz"
    sha = _write_tar(bundle, delta.stamp2.to_bytes(), members)
    with pytest.raises(BundleManifestMismatch):
        unpack_bundle(root, bundle, sha)
    _assert_refused_cleanly(root, R2)
    assert sorted(_store_files(root)) == before


def test_forged_size_for_a_stored_hash_is_refused(
    root: Path, tmp_path: Path, delta: Delta, fields: StampFields
) -> None:
    """The stamp names a stored hash with another size: the store cannot satisfy it."""
    torch = _sha(RANDOM_LIB["lib/torch/_C.so"])
    manifest = tuple(
        ManifestEntry(path=e.path, size=e.size + 1, sha256=e.sha256) if e.sha256 == torch else e
        for e in delta.stamp1.manifest
    )
    stamp = build_stamp(R2, manifest, fields)
    bundle = tmp_path / "forged.tar.gz"
    sha = _write_tar(bundle, stamp.to_bytes(), [])
    with pytest.raises(BundleManifestMismatch, match=r"lib/torch/_C\.so is not in the bundle"):
        unpack_bundle(root, bundle, sha)
    _assert_refused_cleanly(root, R2)
