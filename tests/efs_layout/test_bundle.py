"""make_bundle() / unpack_bundle(): round trip, determinism, and hostile bundles."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from efs_layout import (
    BundleChecksumMismatch,
    BundleError,
    BundleManifestMismatch,
    Interpreter,
    ReleaseConflict,
    ReleaseContentError,
    ReleaseStatus,
    Stamp,
    StampFields,
    UnsafeBundleMember,
    build_manifest,
    build_stamp,
    check_release,
    list_releases,
    make_bundle,
    unpack_bundle,
)

SourceFactory = Callable[..., Path]
RID = "20240501T120000Z-3f2a9c1"


def _stamp(source: Path, fields: StampFields, release_id: str = RID) -> Stamp:
    return build_stamp(release_id, build_manifest(source), fields)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _member(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info


def _write_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> str:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return _sha(path)


def _assert_nothing_published(root: Path) -> None:
    assert list_releases(root) == []
    assert list(os.scandir(root / "tmp")) == []
    assert [p for p in (root / "store").rglob("*") if p.is_file()] == []
    assert not (root / "locks" / "releases.lock").exists()


@pytest.mark.parametrize("suffix", [".tar.gz", ".tar"])
def test_round_trip(
    root: Path,
    tmp_path: Path,
    fields: StampFields,
    make_source: SourceFactory,
    interpreter: Interpreter,
    suffix: str,
) -> None:
    source = make_source()
    stamp = _stamp(source, fields)
    info = make_bundle(source, stamp, tmp_path / f"bundle{suffix}")
    assert info.sha256 == _sha(info.path)
    assert info.files == len(stamp.manifest)

    result = unpack_bundle(root, info.path, info.sha256, expected_release_id=RID)
    assert result.status is ReleaseStatus.CREATED
    assert result.stamp == stamp
    assert (result.path / "STAMP.json").read_bytes() == stamp.to_bytes()
    for entry in stamp.manifest:
        assert (result.path / entry.path).read_bytes() == (source / entry.path).read_bytes()
    assert check_release(root, RID, full=True, interpreter=interpreter).ok
    assert check_release(root, RID, interpreter=interpreter).ok
    assert list(os.scandir(root / "tmp")) == []


def test_bundle_is_deterministic(
    tmp_path: Path, fields: StampFields, make_source: SourceFactory
) -> None:
    source = make_source()
    stamp = _stamp(source, fields)
    first = make_bundle(source, stamp, tmp_path / "one.tar.gz")
    os.utime(source / "lib/torch/_C.so", (1, 1))  # mtimes must not leak into the bundle
    second = make_bundle(source, stamp, tmp_path / "two.tar.gz")
    assert first.sha256 == second.sha256
    with tarfile.open(first.path) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names[0] == "STAMP.json"
    assert names[1:] == sorted(names[1:])
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and m.isreg() for m in members)


def test_unpack_twice_is_a_noop_and_other_content_is_refused(
    root: Path, tmp_path: Path, fields: StampFields, make_source: SourceFactory
) -> None:
    source = make_source("a")
    info = make_bundle(source, _stamp(source, fields), tmp_path / "a.tar.gz")
    unpack_bundle(root, info.path, info.sha256)
    again = unpack_bundle(root, info.path, info.sha256)
    assert again.status is ReleaseStatus.ALREADY_PRESENT
    assert again.bytes_written_to_store == 0

    other = make_source("b", model=b"different")
    other_info = make_bundle(other, _stamp(other, fields), tmp_path / "b.tar.gz")
    with pytest.raises(ReleaseConflict):
        unpack_bundle(root, other_info.path, other_info.sha256)
    assert list_releases(root) == [RID]


def test_model_only_bundle_writes_only_the_model(
    root: Path, tmp_path: Path, fields: StampFields, make_source: SourceFactory
) -> None:
    first_src = make_source("a")
    first = make_bundle(first_src, _stamp(first_src, fields, "r1"), tmp_path / "1.tar.gz")
    r1 = unpack_bundle(root, first.path, first.sha256)
    model = b"retrained " * 900
    second_src = make_source("b", model=model)
    second = make_bundle(second_src, _stamp(second_src, fields, "r2"), tmp_path / "2.tar.gz")
    r2 = unpack_bundle(root, second.path, second.sha256)
    assert r2.bytes_written_to_store == len(model)
    assert r2.bytes_written_to_store < 0.05 * r1.bytes_total
    assert (
        os.stat(r1.path / "lib/torch/_C.so").st_ino == os.stat(r2.path / "lib/torch/_C.so").st_ino
    )


def test_wrong_sha256_is_rejected_and_leaves_nothing(
    root: Path, tmp_path: Path, fields: StampFields, make_source: SourceFactory
) -> None:
    # The bundle is unpacked as it streams in, so its files were written to parts before
    # the checksum could be known: none of them may reach the store or a release.
    source = make_source()
    info = make_bundle(source, _stamp(source, fields), tmp_path / "b.tar.gz")
    with pytest.raises(BundleChecksumMismatch):
        unpack_bundle(root, info.path, "0" * 64)
    _assert_nothing_published(root)
    with pytest.raises(BundleChecksumMismatch):
        unpack_bundle(root, info.path, "not-a-sha")
    _assert_nothing_published(root)


def test_a_byte_flipped_in_transit_is_a_checksum_mismatch(
    root: Path, tmp_path: Path, fields: StampFields, make_source: SourceFactory
) -> None:
    # Damage breaks the gzip stream long before the end; the syncer must still say it
    # was the transfer (checksum), not hand back the decompressor's complaint.
    source = make_source()
    info = make_bundle(source, _stamp(source, fields), tmp_path / "b.tar.gz")
    damaged = bytearray(info.path.read_bytes())
    damaged[len(damaged) // 3] ^= 0x40
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(bytes(damaged))
    with pytest.raises(BundleChecksumMismatch):
        unpack_bundle(root, bad, info.sha256)
    _assert_nothing_published(root)
    assert unpack_bundle(root, info.path, info.sha256).status is ReleaseStatus.CREATED


def test_unexpected_release_id_is_rejected(
    root: Path, tmp_path: Path, fields: StampFields, make_source: SourceFactory
) -> None:
    source = make_source()
    info = make_bundle(source, _stamp(source, fields), tmp_path / "b.tar.gz")
    with pytest.raises(BundleError, match="expected other"):
        unpack_bundle(root, info.path, info.sha256, expected_release_id="other")
    _assert_nothing_published(root)


def test_make_bundle_refuses_source_that_differs_from_stamp(
    tmp_path: Path, fields: StampFields, make_source: SourceFactory
) -> None:
    source = make_source()
    stamp = _stamp(source, fields)
    model = source / "model/model.joblib"
    data = bytearray(model.read_bytes())
    data[0] ^= 0xFF
    model.write_bytes(bytes(data))
    out = tmp_path / "b.tar.gz"
    with pytest.raises(ReleaseContentError, match=r"model/model\.joblib"):
        make_bundle(source, stamp, out)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_truncated_bundle_is_rejected(
    root: Path, tmp_path: Path, fields: StampFields, make_source: SourceFactory
) -> None:
    source = make_source()
    info = make_bundle(source, _stamp(source, fields), tmp_path / "b.tar.gz")
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(info.path.read_bytes()[: info.size // 2])
    with pytest.raises(BundleError):
        unpack_bundle(root, cut, _sha(cut))
    _assert_nothing_published(root)
    garbage = tmp_path / "garbage.tar.gz"
    garbage.write_bytes(b"definitely not a tar" * 100)
    with pytest.raises(BundleError):
        unpack_bundle(root, garbage, _sha(garbage))


# -- hostile bundles ------------------------------------------------------------------


@pytest.fixture
def valid_parts(
    fields: StampFields, make_source: SourceFactory
) -> tuple[Stamp, list[tuple[tarfile.TarInfo, bytes]]]:
    """A valid stamp and its members, for building tampered bundles by hand."""
    source = make_source()
    stamp = _stamp(source, fields)
    stamp_bytes = stamp.to_bytes()
    members = [(_member("STAMP.json", stamp_bytes), stamp_bytes)]
    for entry in stamp.manifest:
        data = (source / entry.path).read_bytes()
        members.append((_member(entry.path, data), data))
    return stamp, members


def _hostile_cases(outside: Path) -> dict[str, tuple[list[tarfile.TarInfo], str]]:
    symlink = _member("lib/escape", kind=tarfile.SYMTYPE)
    symlink.linkname = "../../../../outside"
    hardlink = _member("lib/hard", kind=tarfile.LNKTYPE)
    hardlink.linkname = "/etc/passwd"
    abs_name = str(outside / "absolute-evil")
    return {
        "absolute path": ([_member(abs_name, b"evil")], "absolute"),
        "dot-dot": ([_member("../evil", b"evil")], "'..'"),
        "nested dot-dot": ([_member("lib/../../../evil", b"evil")], "'..'"),
        "symlink escaping": ([symlink], "link"),
        "hard link": ([hardlink], "link"),
        "char device": ([_member("lib/dev", kind=tarfile.CHRTYPE)], "device"),
        "fifo": ([_member("lib/fifo", kind=tarfile.FIFOTYPE)], "device"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "absolute path",
        "dot-dot",
        "nested dot-dot",
        "symlink escaping",
        "hard link",
        "char device",
        "fifo",
    ],
)
@pytest.mark.parametrize("position", ["first", "after stamp", "last"])
def test_hostile_members_are_rejected(
    root: Path,
    tmp_path: Path,
    valid_parts: tuple[Stamp, list[tuple[tarfile.TarInfo, bytes]]],
    case: str,
    position: str,
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    infos, reason = _hostile_cases(outside)[case]
    _, members = valid_parts
    hostile = [(info, b"evil" if info.isreg() else b"") for info in infos]
    index = {"first": 0, "after stamp": 1, "last": len(members)}[position]
    tampered = members[:index] + hostile + members[index:]
    bundle = tmp_path / "hostile.tar.gz"
    sha = _write_tar(bundle, tampered)

    with pytest.raises(UnsafeBundleMember, match=reason):
        unpack_bundle(root, bundle, sha)
    _assert_nothing_published(root)
    assert list(outside.iterdir()) == []
    assert not (tmp_path / "evil").exists()
    assert not (root.parent / "evil").exists()
    assert {p.name for p in tmp_path.iterdir()} <= {"outside", "hostile.tar.gz", "efs", "src"}


def _tamper(
    members: list[tuple[tarfile.TarInfo, bytes]], how: str
) -> list[tuple[tarfile.TarInfo, bytes]]:
    out = list(members)
    if how == "unlisted file":
        out.append((_member("lib/sitecustomize.py", b"import os"), b"import os"))
    elif how == "missing file":
        out.pop()
    elif how == "duplicate file":
        out.append(out[-1])
    elif how == "same size, other bytes":
        info, data = out[-1]
        out[-1] = (info, bytes([data[0] ^ 1]) + data[1:])
    elif how == "other size":
        info, data = out[-1]
        out[-1] = (_member(info.name, data + b"!"), data + b"!")
    return out


@pytest.mark.parametrize(
    "how",
    ["unlisted file", "missing file", "duplicate file", "same size, other bytes", "other size"],
)
def test_bundle_that_disagrees_with_its_stamp_is_rejected(
    root: Path,
    tmp_path: Path,
    valid_parts: tuple[Stamp, list[tuple[tarfile.TarInfo, bytes]]],
    how: str,
) -> None:
    _, members = valid_parts
    bundle = tmp_path / "tampered.tar.gz"
    sha = _write_tar(bundle, _tamper(members, how))
    with pytest.raises(BundleManifestMismatch):
        unpack_bundle(root, bundle, sha)
    _assert_nothing_published(root)
    if how == "same size, other bytes":
        tampered = hashlib.sha256(_tamper(members, how)[-1][1]).hexdigest()
        assert not any(p.name == tampered for p in (root / "store").rglob("*"))


def test_stamp_must_come_first(
    root: Path, tmp_path: Path, valid_parts: tuple[Stamp, list[tuple[tarfile.TarInfo, bytes]]]
) -> None:
    _, members = valid_parts
    bundle = tmp_path / "late-stamp.tar.gz"
    sha = _write_tar(bundle, members[1:] + members[:1])
    with pytest.raises(BundleError, match="first"):
        unpack_bundle(root, bundle, sha)
    _assert_nothing_published(root)


def test_invalid_stamp_in_bundle_is_rejected(
    root: Path,
    tmp_path: Path,
    valid_parts: tuple[Stamp, list[tuple[tarfile.TarInfo, bytes]]],
    fields: StampFields,
) -> None:
    stamp, members = valid_parts
    bad = stamp.to_json().replace('"schema_version": 1', '"schema_version": 99').encode()
    bundle = tmp_path / "future.tar.gz"
    sha = _write_tar(bundle, [(_member("STAMP.json", bad), bad), *members[1:]])
    with pytest.raises(BundleError, match="schema_version"):
        unpack_bundle(root, bundle, sha)
    _assert_nothing_published(root)
    assert dataclasses.is_dataclass(stamp)


def test_the_bundle_is_read_once_and_no_file_is_hashed_twice(
    root: Path,
    tmp_path: Path,
    fields: StampFields,
    make_source: SourceFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from efs_layout import bundle, verify

    source = make_source()
    info = make_bundle(source, _stamp(source, fields), tmp_path / "b.tar.gz")

    class Counting(io.RawIOBase):
        def __init__(self, inner: io.BufferedReader) -> None:
            self.inner, self.bytes, self.calls = inner, 0, 0

        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            data = self.inner.read(size)
            self.bytes += len(data)
            return data

    def no_rehash(*_: object) -> object:
        raise AssertionError("a published file was hashed again after it was written")

    # Each file is hashed while it is written; the release check after that counts sizes.
    monkeypatch.setattr(verify, "sha256_file", no_rehash)
    with info.path.open("rb") as raw:
        counting = Counting(raw)
        result = bundle.unpack_bundle_stream(root, counting, info.sha256)  # type: ignore[arg-type]
    assert result.status is ReleaseStatus.CREATED
    assert counting.bytes == info.size
    assert set(result.timings) == {"stream", "commit", "link", "check"}
    # The full check (promote) still hashes every file and agrees.
    monkeypatch.undo()
    assert check_release(root, result.release_id, full=True, interpreter=None).ok


def test_a_bundle_of_many_gzip_blocks_is_deterministic_and_unpacks(
    root: Path, tmp_path: Path, fields: StampFields, make_source: SourceFactory
) -> None:
    from efs_layout import bundle

    # Over two blocks of tar, so the blocks are compressed in parallel as separate members.
    rng = np.random.default_rng(7)
    big = rng.integers(0, 4, size=2 * bundle._ParallelGzipWriter.BLOCK + 12345, dtype=np.uint8)
    source = make_source(extra={"lib/big/_blob.so": big.tobytes()})
    stamp = _stamp(source, fields)
    first = make_bundle(source, stamp, tmp_path / "one.tar.gz")
    second = make_bundle(source, stamp, tmp_path / "two.tar.gz")
    assert first.path.read_bytes() == second.path.read_bytes() and first.sha256 == second.sha256
    data = first.path.read_bytes()
    assert data.count(b"\x1f\x8b\x08") >= 3  # three gzip members at least
    assert first.sha256 == hashlib.sha256(data).hexdigest()
    result = unpack_bundle(root, first.path, first.sha256)
    assert (result.path / "lib/big/_blob.so").read_bytes() == big.tobytes()
