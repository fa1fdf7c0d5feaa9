"""Writing and deleting releases: assemble_release(), delete_release(), build_manifest().

Every writer stages in ``<root>/tmp/<random>/release``, fills it with hard links into the
store, writes STAMP.json, hash-checks the whole staged directory, writes ``.verified`` and
only then renames it to ``releases/<id>``. All of it runs under release_lock().
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from efs_layout.errors import ReleaseConflict, ReleaseContentError, VerificationFailed
from efs_layout.layout import (
    DIR_MODE,
    FILE_MODE,
    LIB_DIR,
    MODEL_DIR,
    STAMP_FILE,
    VERIFIED_MARKER,
    PathLike,
    ensure_tree,
    fsync_dir,
    release_path,
    releases_path,
    store_path,
    tmp_path,
    validate_release_id,
)
from efs_layout.lock import DEFAULT_TIMEOUT, release_lock
from efs_layout.stamp import ManifestEntry, Stamp, StampError, StampFields, build_stamp, parse_stamp
from efs_layout.store import (
    DEFAULT_TMP_MAX_AGE,
    GcResult,
    collect_garbage_locked,
    ingest_file,
    link_from_store,
    sync_filesystem,
)
from efs_layout.verify import check_directory, parallel_map, sha256_bytes, sha256_file

# A source directory may hold these at its top (e.g. an unpacked release); they are not
# content and are never copied.
_SKIPPED_TOP_LEVEL = frozenset({STAMP_FILE, VERIFIED_MARKER})

Source = PathLike | Mapping[str, PathLike]


class ReleaseStatus(StrEnum):
    """What a writer did."""

    CREATED = "created"
    ALREADY_PRESENT = "already_present"  # same id, same manifest: nothing written


@dataclass(frozen=True)
class ReleaseResult:
    """Outcome of assemble_release() or unpack_bundle().

    ``bytes_written_to_store`` counts only content that was new to the store, so a
    model-only release reports about the size of its model; ``bytes_total`` is the size
    of every file in the release.
    """

    status: ReleaseStatus
    release_id: str
    path: Path
    stamp: Stamp
    bytes_total: int
    bytes_written_to_store: int
    files_total: int
    files_written_to_store: int
    # Seconds per stage of the write (e.g. stream, commit, link, check), where measured.
    timings: Mapping[str, float] = field(default_factory=dict, hash=False)
    # Files copied instead of linked: their store file had the file system's link limit.
    private_copies: int = 0


@dataclass(frozen=True)
class DeleteResult:
    """Outcome of delete_release()."""

    release_id: str
    existed: bool
    gc: GcResult


def source_files(source: Source) -> dict[str, Path]:
    """Map release-relative path -> file for a source directory or an explicit file map.

    A directory must hold only lib/ and model/ trees (plus an optional STAMP.json and
    .verified at the top, which are ignored); symlinks and special files are refused
    because a release is made of regular files only.
    """
    if isinstance(source, Mapping):
        files: dict[str, Path] = {}
        for rel, path in source.items():
            files[str(rel)] = Path(path)
        return files
    base = Path(source)
    if not base.is_dir():
        raise ReleaseContentError(f"{base} is not a directory")
    files = {}
    stack: list[tuple[str, str]] = [(os.fspath(base), "")]
    while stack:
        directory, rel = stack.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                name = f"{rel}{entry.name}"
                if not rel and entry.name in _SKIPPED_TOP_LEVEL:
                    continue
                if entry.is_symlink():
                    raise ReleaseContentError(f"{name} is a symlink; releases hold regular files")
                if entry.is_dir():
                    if not rel and entry.name not in (LIB_DIR, MODEL_DIR):
                        raise ReleaseContentError(f"{name}/ is neither {LIB_DIR}/ nor {MODEL_DIR}/")
                    stack.append((entry.path, name + "/"))
                elif entry.is_file():
                    if not rel:
                        raise ReleaseContentError(f"{name}: files must be under lib/ or model/")
                    files[name] = Path(entry.path)
                else:
                    raise ReleaseContentError(f"{name} is not a regular file")
    return files


def build_manifest(source: Source) -> tuple[ManifestEntry, ...]:
    """Size and sha256 of every file of ``source`` (see source_files()), sorted by path."""
    files = source_files(source)
    paths = sorted(files)

    def entry(rel: str) -> ManifestEntry:
        path = files[rel]
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise ReleaseContentError(f"{rel}: {path} is not a regular file")
        return ManifestEntry(path=rel, size=st.st_size, sha256=sha256_file(path))

    return tuple(parallel_map(entry, paths))


@dataclass
class Staging:
    """A staging area: the release being built, temp files, and the store files it added."""

    release_dir: Path
    incoming: Path
    stored: list[Path] = field(default_factory=list)


@contextmanager
def staging(root: PathLike) -> Iterator[Staging]:
    """A fresh ``<root>/tmp/<random>`` holding ``release/`` and ``incoming/``; removed on exit.

    Whatever happens inside, the directory is gone afterwards: either ``release/`` was
    renamed into place, or the attempt failed and nothing of it stays visible. On failure
    the store files this attempt added are removed again unless something else links
    them, so a rejected bundle leaves the store as it found it.
    """
    base = tmp_path(root) / f"stage-{secrets.token_hex(8)}"
    base.mkdir(mode=DIR_MODE)
    area = Staging(release_dir=base / "release", incoming=base / "incoming")
    area.release_dir.mkdir(mode=DIR_MODE)
    os.chmod(area.release_dir, DIR_MODE)  # mkdir's mode is filtered by the umask
    area.incoming.mkdir(mode=0o700)
    try:
        yield area
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        _drop_unlinked(area.stored)
        raise
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _drop_unlinked(paths: list[Path]) -> None:
    for path in paths:
        try:
            if os.lstat(path).st_nlink == 1:
                os.unlink(path)
        except OSError:
            continue  # best effort: the garbage collector catches what is left


def existing_release(root: PathLike, stamp: Stamp) -> ReleaseResult | None:
    """None if ``releases/<id>`` is free; an already_present result if it holds the same
    manifest; ReleaseConflict otherwise (a release is never overwritten)."""
    target = release_path(root, stamp.release_id)
    if not os.path.lexists(target):
        return None
    try:
        raw = (target / STAMP_FILE).read_bytes()
    except OSError as exc:
        raise ReleaseConflict(
            stamp.release_id, f"{target} exists but its {STAMP_FILE} is unreadable: {exc}"
        ) from exc
    current = parse_stamp(raw)
    if isinstance(current, StampError):
        raise ReleaseConflict(
            stamp.release_id, f"{target} exists with an invalid {STAMP_FILE}: {current.message}"
        )
    if current.manifest_key() != stamp.manifest_key():
        raise ReleaseConflict(
            stamp.release_id,
            f"release {stamp.release_id} already exists with different content; "
            "releases are immutable, use a new id",
        )
    return ReleaseResult(
        status=ReleaseStatus.ALREADY_PRESENT,
        release_id=stamp.release_id,
        path=target,
        stamp=current,
        bytes_total=sum(e.size for e in current.manifest),
        bytes_written_to_store=0,
        files_total=len(current.manifest),
        files_written_to_store=0,
    )


def _write_readonly(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)


def publish(
    root: PathLike,
    staged: Path,
    stamp: Stamp,
    stamp_bytes: bytes,
    *,
    bytes_written: int,
    files_written: int,
    contents_verified: bool = False,
) -> ReleaseResult:
    """Write STAMP.json into the staged release, check it, mark it verified and rename it
    to ``releases/<id>``. The caller holds the lock and has linked every file.

    The check hashes every file, unless ``contents_verified``: the caller hashed each new
    file against the manifest as it wrote it and took the rest from the store, whose
    names are verified content. Then sizes and the absence of other files are checked,
    and no file is read a second time.
    """
    _write_readonly(staged / STAMP_FILE, stamp_bytes)
    verdict = check_directory(
        staged,
        stamp.release_id,
        full=not contents_verified,
        interpreter=None,
        structure_only=contents_verified,
    )
    if not verdict.ok:
        raise VerificationFailed(verdict)
    _write_readonly(staged / VERIFIED_MARKER, (sha256_bytes(stamp_bytes) + "\n").encode())
    fsync_dir(staged)
    target = release_path(root, stamp.release_id)
    # rename() would replace an empty directory, so check explicitly; the lock keeps
    # anyone from creating it between this check and the rename.
    if os.path.lexists(target):
        raise ReleaseConflict(stamp.release_id, f"{target} appeared while staging")
    os.rename(staged, target)
    fsync_dir(releases_path(root))
    return ReleaseResult(
        status=ReleaseStatus.CREATED,
        release_id=stamp.release_id,
        path=target,
        stamp=stamp,
        bytes_total=sum(e.size for e in stamp.manifest),
        bytes_written_to_store=bytes_written,
        files_total=len(stamp.manifest),
        files_written_to_store=files_written,
    )


def assemble_release(
    root: PathLike,
    release_id: str,
    source: Source,
    fields: StampFields,
    *,
    lock_timeout: float = DEFAULT_TIMEOUT,
) -> ReleaseResult:
    """Create ``releases/<release_id>`` atomically from a directory or a file map.

    ``source`` is a directory holding lib/ and model/, or a mapping from release-relative
    path (``lib/...``, ``model/...``) to a file. Files already in the store are not
    written again. If the release exists with the same manifest this is a no-op
    (already_present); with a different manifest it raises ReleaseConflict. Takes
    release_lock() itself, so do not call it while holding that lock.
    """
    validate_release_id(release_id)
    files = source_files(source)
    stamp = build_stamp(release_id, build_manifest(files), fields)
    ensure_tree(root)
    with release_lock(root, timeout=lock_timeout):
        present = existing_release(root, stamp)
        if present is not None:
            return present
        with staging(root) as area:
            written = 0
            files_written = 0
            at_limit: set[str] = set()  # store files with EFS's 177 links already
            copies = 0
            for entry in stamp.manifest:
                source_file = files[entry.path]
                if ingest_file(root, source_file, entry, area.incoming, ReleaseContentError):
                    area.stored.append(store_path(root, entry.sha256))
                    written += entry.size
                    files_written += 1
                if link_from_store(root, entry, area.release_dir, at_limit=at_limit):
                    copies += 1
            if copies:
                sync_filesystem(area.release_dir)
            return publish(
                root,
                area.release_dir,
                stamp,
                stamp.to_bytes(),
                bytes_written=written,
                files_written=files_written,
            )


def delete_release(
    root: PathLike,
    release_id: str,
    *,
    lock_timeout: float = DEFAULT_TIMEOUT,
    tmp_max_age: float = DEFAULT_TMP_MAX_AGE,
) -> DeleteResult:
    """Remove ``releases/<release_id>`` and then every store file nothing links to any more.

    The directory is first renamed into tmp/, so readers see the release either whole or
    gone. Store files shared with other releases stay. Deleting a missing release only
    collects garbage. Takes release_lock() itself.
    """
    target = release_path(root, release_id)
    ensure_tree(root)
    with release_lock(root, timeout=lock_timeout):
        existed = os.path.lexists(target)
        if existed:
            trash = tmp_path(root) / f"delete-{secrets.token_hex(8)}"
            os.rename(target, trash)
            fsync_dir(releases_path(root))
            shutil.rmtree(trash)
        gc = collect_garbage_locked(root, tmp_max_age=tmp_max_age)
    return DeleteResult(release_id=release_id, existed=existed, gc=gc)
