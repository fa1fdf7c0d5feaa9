"""Releases on a file system that allows 177 hard links per file, as EFS does.

A lib/ holds hundreds of files with the same content (every empty ``__init__.py``,
``py.typed``, ``REQUESTED``); linking each to one store file ran past EFS's limit on the
first or second release. The limit is enforced here the way the local data plane
enforces it for the functions (local.dataplane.runner.enforce_link_limit).
"""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from efs_layout import (
    Interpreter,
    ReleaseStatus,
    StampFields,
    assemble_release,
    build_manifest,
    build_stamp,
    check_release,
    delete_release,
    list_releases,
    make_bundle,
    store_path,
    unpack_bundle,
)
from efs_layout.store import EFS_MAX_LINKS
from local.dataplane.runner import EFS_MAX_LINKS as RUNNER_MAX_LINKS
from local.dataplane.runner import enforce_link_limit

SourceFactory = Callable[..., Path]
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
# More empty files than one store file may have links: one release alone passes the limit.
EMPTY_FILES = {f"lib/pkg{i:03d}/__init__.py": b"" for i in range(300)}
LIB = {**EMPTY_FILES, "lib/pkg000/core.py": b"VALUE = 1\n", "lib/big.bin": os.urandom(200_000)}


@pytest.fixture
def efs_limit(root: Path) -> Iterator[None]:
    """os.link refuses a 178th link to a file under ``root`` while the test runs."""
    undo = enforce_link_limit([str(root)])
    try:
        yield
    finally:
        undo()


def _release(
    root: Path, tmp_path: Path, make_source: SourceFactory, fields: StampFields, rid: str
) -> ReleaseStatus:
    source = make_source(rid, lib=LIB, model=rid.encode() * 100)
    stamp = build_stamp(rid, build_manifest(source), fields)
    bundle = make_bundle(source, stamp, tmp_path / f"{rid}.tar.gz")
    return unpack_bundle(root, bundle.path, bundle.sha256).status


def _max_links(root: Path) -> int:
    return max(p.stat().st_nlink for p in root.rglob("*") if p.is_file())


def test_the_stand_in_refuses_the_178th_link_as_efs_does(root: Path, efs_limit: None) -> None:
    assert RUNNER_MAX_LINKS == EFS_MAX_LINKS == 177
    first = root / "f"
    first.write_bytes(b"")
    for i in range(EFS_MAX_LINKS - 1):
        os.link(first, root / f"link{i}")
    assert first.stat().st_nlink == EFS_MAX_LINKS
    with pytest.raises(OSError) as refused:
        os.link(first, root / "one-too-many")
    assert refused.value.errno == errno.EMLINK
    outside = root.parent / "not-efs"
    outside.mkdir()
    (outside / "f").write_bytes(b"")
    for i in range(EFS_MAX_LINKS):  # outside EFS the host file system's own limit holds
        os.link(outside / "f", outside / f"link{i}")


def test_releases_past_the_link_limit_publish_and_collect_correctly(
    root: Path,
    tmp_path: Path,
    make_source: SourceFactory,
    fields: StampFields,
    interpreter: Interpreter,
    efs_limit: None,
) -> None:
    r1, r2, r3 = "20240501T120000Z-aaaaaaa", "20240502T120000Z-bbbbbbb", "20240503T120000Z-ccccccc"
    assert _release(root, tmp_path, make_source, fields, r1) is ReleaseStatus.CREATED
    assert _release(root, tmp_path, make_source, fields, r2) is ReleaseStatus.CREATED
    assert _max_links(root) <= EFS_MAX_LINKS
    # The store file holds as many links as allowed; the rest of the empty files are copies.
    assert store_path(root, EMPTY_SHA256).stat().st_nlink == EFS_MAX_LINKS
    for rid in (r1, r2):
        assert check_release(root, rid, full=True, interpreter=interpreter).ok
        for rel in EMPTY_FILES:
            path = root / "releases" / rid / rel
            assert path.read_bytes() == b"" and oct(path.stat().st_mode & 0o777) == "0o444"

    # Deleting r1 frees links, collects nothing r2 needs, and a third release still fits.
    delete_release(root, r1)
    assert check_release(root, r2, full=True, interpreter=interpreter).ok
    assert _release(root, tmp_path, make_source, fields, r3) is ReleaseStatus.CREATED
    assert list_releases(root) == [r2, r3]
    for rid in (r2, r3):
        assert check_release(root, rid, full=True, interpreter=interpreter).ok
    delete_release(root, r2)
    delete_release(root, r3)
    assert [p for p in (root / "store").rglob("*") if p.is_file()] == []


def test_assembled_releases_past_the_link_limit(
    root: Path,
    make_source: SourceFactory,
    fields: StampFields,
    interpreter: Interpreter,
    efs_limit: None,
) -> None:
    for rid in ("20240501T120000Z-aaaaaaa", "20240502T120000Z-bbbbbbb"):
        source = make_source(rid, lib=LIB, model=rid.encode() * 100)
        assert assemble_release(root, rid, source, fields).status is ReleaseStatus.CREATED
        assert check_release(root, rid, full=True, interpreter=interpreter).ok
    assert _max_links(root) <= EFS_MAX_LINKS
