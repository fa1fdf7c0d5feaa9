"""The content-addressed store ``<root>/store/sha256/<ab>/<hex>`` and its garbage collector.

A store file is written once: to a temporary file in ``<root>/tmp`` (same file system),
made durable, made read-only and renamed to its hash name, so a store file is never
partial. ingest_stream() makes each file durable with its own fsync; a writer of many
files (a bundle of 6,000) uses write_part() for each and then commit_parts(), which makes
them all durable with one syncfs(2) before any of them gets its name: the same guarantee
for one round trip instead of two fsyncs per file.
Releases hard-link to store files; a store file with a link count of 1 is referenced by
no release and no staging directory, and the collector removes it.

EFS allows at most 177 hard links to one file (EMLINK beyond). Every empty
``__init__.py`` of a lib/ has the same content, so one release alone can need more than
that: past the limit a release gets a private, hash-checked copy of the store file
instead of a link (link_release()). Copies are the files nobody shares anyway (empty or
tiny ones, mostly); they go with their release, and the collector never sees them.

On EFS every metadata operation is a network round trip (writes 2.7 ms or more), so the
many-file steps (part writes, renames, links) run on a few threads: the latency of one
operation overlaps the others instead of adding up.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import os
import re
import secrets
import shutil
import stat
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from efs_layout.errors import EfsLayoutError
from efs_layout.layout import (
    FILE_MODE,
    PathLike,
    fsync_dir,
    make_dir,
    make_dirs,
    store_path,
    store_root,
    tmp_path,
)
from efs_layout.lock import DEFAULT_TIMEOUT, release_lock
from efs_layout.stamp import ManifestEntry
from efs_layout.verify import CHUNK_SIZE, parallel_map

# A staging directory this old belongs to a writer that died (writers hold the lock, and a
# lock is taken over after 16 minutes).
DEFAULT_TMP_MAX_AGE = 3600.0

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
# store_has(): below this many hashes a thread pool costs more than it saves.
_PARALLEL_THRESHOLD = 64
_STAT_WORKERS = 16
# "You can have up to 177 hard links in a file" (EFS troubleshooting guide).
EFS_MAX_LINKS = 177


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


def _stored_size(root: PathLike, sha256: str) -> int | None:
    """Size of the regular store file named ``sha256``; None if there is none."""
    try:
        st = os.lstat(store_path(root, sha256))
    except (FileNotFoundError, NotADirectoryError):
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def store_has_entry(root: PathLike, entry: ManifestEntry) -> bool:
    """Whether the store already holds ``entry``'s content (by hash name and size)."""
    return _stored_size(root, entry.sha256) == entry.size


def store_has(
    root: PathLike, hashes: Iterable[str], *, sizes: Mapping[str, int] | None = None
) -> set[str]:
    """Which of ``hashes`` (sha256, lowercase hex) the store holds.

    A hash counts as present when ``store/sha256/<ab>/<hex>`` is a regular file, and, if
    ``sizes`` names the hash, has that size. Nothing is read or hashed: the store is only
    ever written by verified ingest, so the name is the content. Strings that are not 64
    lowercase hex digits are never present. Many hashes are stat()ed on a few threads,
    since on EFS every stat is a network round trip.

    Without the release lock the answer may go stale (the garbage collector removes store
    files no release links to); a writer that relies on it must ask again under the lock,
    as unpack_bundle() does.
    """
    wanted = [h for h in dict.fromkeys(hashes) if isinstance(h, str) and _SHA256_HEX.fullmatch(h)]
    # Paths as plain strings: building a Path per hash costs more than the stat itself.
    base = os.fspath(store_root(root))

    def present(batch: list[str]) -> list[str]:
        found = []
        for sha256 in batch:
            try:
                st = os.lstat(f"{base}/{sha256[:2]}/{sha256}")
            except (FileNotFoundError, NotADirectoryError):
                continue
            if stat.S_ISREG(st.st_mode) and (
                sizes is None or sizes.get(sha256, st.st_size) == st.st_size
            ):
                found.append(sha256)
        return found

    if len(wanted) < _PARALLEL_THRESHOLD:
        return set(present(wanted))
    from concurrent.futures import ThreadPoolExecutor

    batches = [wanted[i::_STAT_WORKERS] for i in range(_STAT_WORKERS)]
    with ThreadPoolExecutor(max_workers=_STAT_WORKERS) as pool:
        return {sha256 for found in pool.map(present, batches) for sha256 in found}


def _write_verified(
    reader: Readable,
    entry: ManifestEntry,
    incoming: Path,
    mismatch: type[EfsLayoutError],
    *,
    durable: bool,
) -> Path:
    """Copy ``reader`` to a new read-only file in ``incoming``, hashing it as it goes.

    A size or hash that differs from ``entry`` raises ``mismatch`` and leaves nothing.
    """
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
        if durable:
            os.fsync(fd)
        # Read-only before it gets its final name: every hard link shares this mode.
        os.fchmod(fd, FILE_MODE)
    except BaseException:
        os.close(fd)
        temp.unlink(missing_ok=True)
        raise
    os.close(fd)
    return temp


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
    if store_has_entry(root, entry):
        return False
    temp = _write_verified(reader, entry, incoming, mismatch, durable=True)
    target = store_path(root, entry.sha256)
    make_dirs(target.parent)
    os.rename(temp, target)
    fsync_dir(target.parent)
    return True


def write_part(
    root: PathLike,
    reader: Readable,
    entry: ManifestEntry,
    incoming: Path,
    mismatch: type[EfsLayoutError],
) -> Path:
    """Write ``reader``'s verified content to a part file in ``incoming`` for commit_parts().

    Like ingest_stream() but neither durable nor named yet: a crash leaves only a part
    file in a staging directory, which the garbage collector removes.
    """
    return _write_verified(reader, entry, incoming, mismatch, durable=False)


def sync_filesystem(path: PathLike) -> None:
    """Flush every written file and directory entry of the file system holding ``path``.

    syncfs(2) where the C library has it (Linux, Lambda included); os.sync() elsewhere.
    On EFS this is one NFS COMMIT round trip for all the files written so far.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.syncfs(fd) == 0:
                return
        os.sync()
    finally:
        os.close(fd)


def commit_parts(root: PathLike, parts: Mapping[str, Path]) -> list[Path]:
    """Give each part file (by sha256) its store name, once all are durable; return the names.

    One sync before the renames keeps the store's rule that a name is never on partial
    data; one after makes the names durable. The renames run on a few threads. A name
    that exists already is replaced: writers hold the release lock, so only a crashed
    writer's file could be there, with the same verified content, and releases that link
    it keep their inode.
    """
    if not parts:
        return []
    sync_filesystem(root)
    targets = {sha256: store_path(root, sha256) for sha256 in parts}
    for bucket in sorted({target.parent for target in targets.values()}):
        make_dirs(bucket)

    def rename(sha256: str) -> Path:
        os.rename(parts[sha256], targets[sha256])
        return targets[sha256]

    stored = parallel_map(rename, list(parts))
    sync_filesystem(root)
    return stored


def ingest_file(
    root: PathLike,
    source: Path,
    entry: ManifestEntry,
    incoming: Path,
    mismatch: type[EfsLayoutError],
) -> bool:
    """ingest_stream() for a file; the file is not even opened when the store has it."""
    if store_has_entry(root, entry):
        return False
    with open(source, "rb") as reader:
        return ingest_stream(root, reader, entry, incoming, mismatch)


def link_from_store(
    root: PathLike, entry: ManifestEntry, release_dir: Path, *, at_limit: set[str] | None = None
) -> bool:
    """Hard-link the store file of ``entry`` to ``release_dir/entry.path``.

    Where the store file has as many links as the file system allows (EMLINK: 177 on
    EFS), the target gets a private copy instead, hashed against the entry as it is
    written; True then. The copy is not synced: the caller syncs once before it
    publishes. ``at_limit`` remembers hashes found at the limit, so later entries of the
    same content skip the link that would fail.
    """
    target = release_dir / entry.path
    source = store_path(root, entry.sha256)
    if at_limit is None or entry.sha256 not in at_limit:
        try:
            _link(source, target)
            return False
        except OSError as exc:
            if exc.errno != errno.EMLINK:
                raise
        if at_limit is not None:
            at_limit.add(entry.sha256)
    make_dirs(target.parent)
    with open(source, "rb") as reader:
        temp = _write_verified(reader, entry, target.parent, EfsLayoutError, durable=False)
    os.rename(temp, target)
    return True


def _link(source: Path, target: Path) -> None:
    """os.link, creating the target's directory only when the link says it is missing
    (asking first would cost every link a round trip on EFS)."""
    try:
        os.link(source, target)
    except FileNotFoundError:
        if not os.path.lexists(source):
            raise
        make_dirs(target.parent)
        os.link(source, target)


def link_release(root: PathLike, manifest: Sequence[ManifestEntry], release_dir: Path) -> int:
    """Link every manifest file from the store into ``release_dir``; return the copies made.

    Directories first (in order, each once), then the links on a few threads. Files past the
    link limit become private copies (link_from_store()), and if there are any the file
    system is synced once, so the release is durable before it is published.
    """
    # Every directory once, parents first, with no stat to ask whether it exists: the
    # release directory is new, so none does (on EFS each question is a round trip).
    directories: set[Path] = set()
    for entry in manifest:
        parent = (release_dir / entry.path).parent
        while parent != release_dir and parent not in directories:
            directories.add(parent)
            parent = parent.parent
    for directory in sorted(directories):
        make_dir(directory)
    at_limit: set[str] = set()
    copied = parallel_map(
        lambda entry: link_from_store(root, entry, release_dir, at_limit=at_limit),
        list(manifest),
    )
    copies = sum(copied)
    if copies:
        sync_filesystem(release_dir)
    return copies


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
