"""The content-addressed store ``<root>/store/sha256/<ab>/<hex>`` and its garbage collector.

A store file is written once: to a temporary file in ``<root>/tmp`` (same file system),
fsynced, made read-only and renamed to its hash name, so a store file is never partial.
Releases hard-link to store files; a store file with a link count of 1 is referenced by
no release and no staging directory, and the collector removes it.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from efs_layout.errors import EfsLayoutError
from efs_layout.layout import (
    FILE_MODE,
    PathLike,
    fsync_dir,
    make_dirs,
    store_path,
    store_root,
    tmp_path,
)
from efs_layout.lock import DEFAULT_TIMEOUT, release_lock
from efs_layout.stamp import ManifestEntry
from efs_layout.verify import CHUNK_SIZE

# A staging directory this old belongs to a writer that died (writers hold the lock, and a
# lock is taken over after 16 minutes).
DEFAULT_TMP_MAX_AGE = 3600.0


class Readable(Protocol):
    """Anything with a binary ``read(size)``: a file, a tar member."""

    def read(self, size: int = ..., /) -> bytes:
        """Up to ``size`` bytes; empty at the end."""
        ...


@dataclass(frozen=True)
class GcResult:
    """What collect_garbage() removed."""

    store_files_removed: int
    store_bytes_freed: int
    tmp_entries_removed: int


def store_has(root: PathLike, entry: ManifestEntry) -> bool:
    """Whether the store already holds ``entry``'s content (by hash name and size)."""
    try:
        st = os.lstat(store_path(root, entry.sha256))
    except FileNotFoundError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_size == entry.size


def ingest_stream(
    root: PathLike,
    reader: Readable,
    entry: ManifestEntry,
    incoming: Path,
    mismatch: type[EfsLayoutError],
) -> bool:
    """Store ``reader``'s content as ``entry``; return False if the store already had it.

    The content is hashed while it is copied, and a size or hash that differs from the
    entry raises ``mismatch`` before anything reaches the store. ``incoming`` is a
    directory on the same file system for the temporary file.
    """
    if store_has(root, entry):
        return False
    temp = incoming / f"{entry.sha256[:16]}.{secrets.token_hex(6)}.part"
    digest = hashlib.sha256()
    size = 0
    fd = os.open(temp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        with os.fdopen(fd, "wb", closefd=False) as out:
            while chunk := reader.read(CHUNK_SIZE):
                digest.update(chunk)
                size += len(chunk)
                if size > entry.size:
                    break
                out.write(chunk)
        if size != entry.size or digest.hexdigest() != entry.sha256:
            raise mismatch(f"{entry.path}: content differs from the manifest (size or sha256)")
        os.fsync(fd)
        # Read-only before it gets its final name: every hard link shares this mode.
        os.fchmod(fd, FILE_MODE)
    except BaseException:
        os.close(fd)
        temp.unlink(missing_ok=True)
        raise
    os.close(fd)
    target = store_path(root, entry.sha256)
    make_dirs(target.parent)
    os.rename(temp, target)
    fsync_dir(target.parent)
    return True


def ingest_file(
    root: PathLike,
    source: Path,
    entry: ManifestEntry,
    incoming: Path,
    mismatch: type[EfsLayoutError],
) -> bool:
    """ingest_stream() for a file; the file is not even opened when the store has it."""
    if store_has(root, entry):
        return False
    with open(source, "rb") as reader:
        return ingest_stream(root, reader, entry, incoming, mismatch)


def link_from_store(root: PathLike, entry: ManifestEntry, release_dir: Path) -> None:
    """Hard-link the store file of ``entry`` to ``release_dir/entry.path``."""
    target = release_dir / entry.path
    make_dirs(target.parent)
    os.link(store_path(root, entry.sha256), target)


def collect_garbage(
    root: PathLike,
    *,
    tmp_max_age: float = DEFAULT_TMP_MAX_AGE,
    lock_timeout: float = DEFAULT_TIMEOUT,
) -> GcResult:
    """Take the release lock, then run collect_garbage_locked()."""
    with release_lock(root, timeout=lock_timeout):
        return collect_garbage_locked(root, tmp_max_age=tmp_max_age)


def collect_garbage_locked(root: PathLike, *, tmp_max_age: float = DEFAULT_TMP_MAX_AGE) -> GcResult:
    """Remove staging leftovers older than ``tmp_max_age`` seconds, then every store file
    that nothing links to (st_nlink == 1).

    The caller must hold release_lock(): between ingest and hard link a store file has a
    link count of 1 too, and only the lock keeps the collector away from it.
    """
    tmp_removed = 0
    now = time.time()
    try:
        leftovers = list(os.scandir(tmp_path(root)))
    except FileNotFoundError:
        leftovers = []
    for item in leftovers:
        try:
            age = now - item.stat(follow_symlinks=False).st_mtime
        except FileNotFoundError:
            continue
        if age < tmp_max_age:
            continue
        if item.is_dir(follow_symlinks=False):
            shutil.rmtree(item.path, ignore_errors=True)
        else:
            Path(item.path).unlink(missing_ok=True)
        tmp_removed += 1

    removed = 0
    freed = 0
    try:
        buckets = [b for b in os.scandir(store_root(root)) if b.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        buckets = []
    for bucket in buckets:
        with os.scandir(bucket.path) as files:
            for item in files:
                try:
                    st = item.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
                    os.unlink(item.path)
                    removed += 1
                    freed += st.st_size
    return GcResult(
        store_files_removed=removed, store_bytes_freed=freed, tmp_entries_removed=tmp_removed
    )
