"""check_release(): may the running interpreter use this release? Imported at cold start.

Only the standard library is imported here, and nothing from the release's lib/: the
verdict decides whether lib/ may be put on sys.path at all.
"""

from __future__ import annotations

import hashlib
import os
import platform
import stat
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TypeVar

from efs_layout.layout import (
    STAMP_FILE,
    VERIFIED_MARKER,
    PathLike,
    is_valid_release_id,
    releases_path,
)
from efs_layout.stamp import ManifestEntry, Stamp, StampError, StampErrorKind, parse_stamp

CHUNK_SIZE = 1024 * 1024
# STAMP.json of a 10,000-file release is ~1.5 MB; anything far larger is not a stamp.
MAX_STAMP_BYTES = 64 * 1024 * 1024
# On EFS every stat and read is a network round trip; a few threads hide the latency.
# Below this many files the thread pool costs more than it saves.
_PARALLEL_THRESHOLD = 64
# Threads for per-file work on EFS (stats, writes, links): NFS keeps many requests in
# flight on one mount, so 16 hide most of each round trip's latency.
IO_WORKERS = 16

_MACHINE_ALIASES = {"arm64": "aarch64", "amd64": "x86_64", "x64": "x86_64"}

T = TypeVar("T")
R = TypeVar("R")


class VerdictCode(StrEnum):
    """Outcome of check_release(), in the order the checks run."""

    OK = "ok"
    MISSING = "missing"  # no releases/<id> directory
    INCOMPLETE = "incomplete"  # STAMP.json missing, unparseable or partial; or a file missing
    SCHEMA_UNKNOWN = "schema_unknown"  # STAMP.json of a schema_version this code cannot read
    ABI_MISMATCH = "abi_mismatch"  # lib/ was built for another Python ABI
    PLATFORM_MISMATCH = "platform_mismatch"  # lib/ was built for another OS or machine
    MANIFEST_MISMATCH = "manifest_mismatch"  # a file differs from the manifest


@dataclass(frozen=True)
class Verdict:
    """Result of check_release(); ``stamp`` is set whenever STAMP.json could be parsed."""

    ok: bool
    code: VerdictCode
    message: str
    stamp: Stamp | None = None


@dataclass(frozen=True)
class Interpreter:
    """The Python a release must suit: ABI tag, version, OS and machine."""

    abi_tag: str  # e.g. "cp311"
    version: str  # e.g. "3.11"
    machine: str  # "x86_64" or "aarch64"
    os: str = "linux"

    @classmethod
    def current(cls) -> Interpreter:
        """The running interpreter."""
        impl = sys.implementation.name
        prefix = "cp" if impl == "cpython" else impl[:2]
        major, minor = sys.version_info[:2]
        return cls(
            abi_tag=f"{prefix}{major}{minor}",
            version=f"{major}.{minor}",
            machine=normalise_machine(platform.machine()),
            os="linux" if sys.platform.startswith("linux") else sys.platform,
        )


def normalise_machine(machine: str) -> str:
    """Map the names platform.machine() uses on various systems to the stamp's names."""
    lowered = machine.lower()
    return _MACHINE_ALIASES.get(lowered, lowered)


def sha256_file(path: PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks so memory stays flat for large files."""
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of bytes (the ``.verified`` marker holds this of the STAMP.json bytes)."""
    return hashlib.sha256(data).hexdigest()


def parallel_map(fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """``[fn(x) for x in items]``, on a thread pool when there are many items.

    stat() and hashlib release the GIL, so threads overlap the EFS round trips.
    """
    if len(items) < _PARALLEL_THRESHOLD:
        return [fn(item) for item in items]
    from concurrent.futures import ThreadPoolExecutor

    # One task per worker, not per item: a future per file cost ~20 us each (200 ms for a
    # 10,000-file lib/), ten times the stat itself on a local disk.
    size = -(-len(items) // IO_WORKERS)
    chunks = [items[i : i + size] for i in range(0, len(items), size)]
    with ThreadPoolExecutor(max_workers=len(chunks)) as pool:
        return [r for part in pool.map(lambda chunk: [fn(x) for x in chunk], chunks) for r in part]


def check_release(
    root: PathLike,
    release_id: str,
    *,
    full: bool = False,
    interpreter: Interpreter | None = None,
) -> Verdict:
    """Decide whether ``releases/<release_id>`` is complete, intact and suits ``interpreter``.

    Checks run in this order and the first failure is returned: directory exists
    (missing), STAMP.json readable and valid (incomplete), schema_version known
    (schema_unknown), ABI (abi_mismatch), OS and machine (platform_mismatch), stamp names
    this release (manifest_mismatch), manifest.

    Manifest, fast path (default): stat every listed file (a missing one means
    incomplete, a wrong size or a non-regular file manifest_mismatch); if ``.verified``
    holds the sha256 of the STAMP.json bytes, hashes are trusted and nothing is read.
    Otherwise, or with ``full=True``, every file is hashed and files not in the manifest
    are reported too. Never raises for a bad release and never imports from lib/.
    """
    if not is_valid_release_id(release_id):
        return Verdict(False, VerdictCode.MISSING, f"{release_id!r} is not a valid release id")
    runtime = interpreter if interpreter is not None else Interpreter.current()
    return check_directory(
        releases_path(root) / release_id, release_id, full=full, interpreter=runtime
    )


def check_directory(
    release_dir: Path,
    release_id: str,
    *,
    full: bool,
    interpreter: Interpreter | None,
    structure_only: bool = False,
) -> Verdict:
    """check_release() on any directory; ``interpreter=None`` skips the ABI/platform checks.

    The writers use it on a staged release, which is built for the Lambda runtime rather
    than for the machine running the pipeline. ``structure_only`` (for a writer that
    verified every file's content as it wrote it) checks sizes and that no file outside
    the manifest is there, and hashes nothing.
    """
    try:
        if not stat.S_ISDIR(os.stat(release_dir).st_mode):
            return _fail(VerdictCode.MISSING, f"{release_dir} is not a directory")
    except FileNotFoundError:
        return _fail(VerdictCode.MISSING, f"release {release_id} does not exist ({release_dir})")
    except OSError as exc:
        return _fail(VerdictCode.MISSING, f"cannot stat {release_dir}: {exc}")

    try:
        raw = _read_limited(release_dir / STAMP_FILE, MAX_STAMP_BYTES)
    except FileNotFoundError:
        return _fail(VerdictCode.INCOMPLETE, f"release {release_id} has no {STAMP_FILE}")
    except OSError as exc:
        return _fail(VerdictCode.INCOMPLETE, f"cannot read {STAMP_FILE}: {exc}")
    if raw is None:
        return _fail(VerdictCode.INCOMPLETE, f"{STAMP_FILE} is larger than {MAX_STAMP_BYTES}")

    parsed = parse_stamp(raw)
    if isinstance(parsed, StampError):
        if parsed.kind is StampErrorKind.SCHEMA_UNKNOWN:
            return _fail(VerdictCode.SCHEMA_UNKNOWN, parsed.message)
        return _fail(VerdictCode.INCOMPLETE, parsed.message)
    stamp = parsed

    if interpreter is not None:
        if stamp.python.abi_tag != interpreter.abi_tag:
            return _fail(
                VerdictCode.ABI_MISMATCH,
                f"lib/ is built for {stamp.python.abi_tag} (Python {stamp.python.version}), "
                f"this interpreter is {interpreter.abi_tag}",
                stamp,
            )
        if stamp.platform.os != interpreter.os or stamp.platform.machine != interpreter.machine:
            return _fail(
                VerdictCode.PLATFORM_MISMATCH,
                f"lib/ is built for {stamp.platform.os}/{stamp.platform.machine}, "
                f"this is {interpreter.os}/{interpreter.machine}",
                stamp,
            )

    # A stamp copied or renamed from another release describes other files.
    if stamp.release_id != release_id:
        return _fail(
            VerdictCode.MANIFEST_MISMATCH,
            f"{STAMP_FILE} is for release {stamp.release_id}, not {release_id}",
            stamp,
        )
    prefix = os.fspath(release_dir) + os.sep
    problem = _check_sizes(prefix, stamp.manifest)
    if problem is not None:
        return _fail(problem[0], problem[1], stamp)

    if not full and _marker_matches(release_dir, raw):
        return Verdict(
            True, VerdictCode.OK, f"release {release_id} ok (sizes; hashes trusted)", stamp
        )
    if structure_only:
        problem = _check_no_extra_files(release_dir, stamp.manifest)
        if problem is not None:
            return _fail(problem[0], problem[1], stamp)
        return Verdict(
            True, VerdictCode.OK, f"release {release_id} ok (sizes; verified on write)", stamp
        )

    problem = _check_hashes(prefix, stamp.manifest)
    if problem is None:
        problem = _check_no_extra_files(release_dir, stamp.manifest)
    if problem is not None:
        return _fail(problem[0], problem[1], stamp)
    return Verdict(True, VerdictCode.OK, f"release {release_id} ok (all files hashed)", stamp)


def _fail(code: VerdictCode, message: str, stamp: Stamp | None = None) -> Verdict:
    return Verdict(False, code, message, stamp)


def _read_limited(path: Path, limit: int) -> bytes | None:
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    return None if len(data) > limit else data


def _marker_matches(release_dir: Path, stamp_bytes: bytes) -> bool:
    try:
        marker = (release_dir / VERIFIED_MARKER).read_bytes()[:256].decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return False
    return marker == sha256_bytes(stamp_bytes)


_Problem = tuple[VerdictCode, str]


def _check_sizes(prefix: str, manifest: Sequence[ManifestEntry]) -> _Problem | None:
    def probe(entry: ManifestEntry) -> str | None:
        try:
            st = os.lstat(prefix + entry.path)
        except (FileNotFoundError, NotADirectoryError):
            return "missing"
        except OSError as exc:
            return f"unreadable ({exc.strerror})"
        if not stat.S_ISREG(st.st_mode):
            return "not a regular file"
        if st.st_size != entry.size:
            return f"size {st.st_size}, manifest says {entry.size}"
        return None

    results = parallel_map(probe, manifest)
    # A missing file means a partial release, which outranks a wrong one.
    for entry, result in zip(manifest, results, strict=True):
        if result == "missing":
            return VerdictCode.INCOMPLETE, f"{entry.path} is missing (partial release)"
    for entry, result in zip(manifest, results, strict=True):
        if result is not None:
            return VerdictCode.MANIFEST_MISMATCH, f"{entry.path}: {result}"
    return None


def _check_hashes(prefix: str, manifest: Sequence[ManifestEntry]) -> _Problem | None:
    def probe(entry: ManifestEntry) -> str | None:
        try:
            actual = sha256_file(prefix + entry.path)
        except FileNotFoundError:
            return "missing"
        except OSError as exc:
            return f"unreadable ({exc.strerror})"
        return None if actual == entry.sha256 else f"sha256 {actual}, manifest says {entry.sha256}"

    results = parallel_map(probe, manifest)
    for entry, result in zip(manifest, results, strict=True):
        if result == "missing":
            return VerdictCode.INCOMPLETE, f"{entry.path} is missing (partial release)"
        if result is not None:
            return VerdictCode.MANIFEST_MISMATCH, f"{entry.path}: {result}"
    return None


def _check_no_extra_files(release_dir: Path, manifest: Iterable[ManifestEntry]) -> _Problem | None:
    allowed = {entry.path for entry in manifest} | {STAMP_FILE, VERIFIED_MARKER}
    extra: list[str] = []
    stack: list[tuple[str, str]] = [(os.fspath(release_dir), "")]
    while stack:
        directory, rel = stack.pop()
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    name = f"{rel}{entry.name}"
                    if entry.is_dir(follow_symlinks=False):
                        stack.append((entry.path, name + "/"))
                    elif name not in allowed:
                        extra.append(name)
        except OSError as exc:
            return VerdictCode.MANIFEST_MISMATCH, f"cannot list {rel or '.'}: {exc.strerror}"
    if extra:
        return VerdictCode.MANIFEST_MISMATCH, f"{min(extra)} is not in the manifest"
    return None
