"""Paths of the release tree on EFS, and the small helpers every other module shares.

The Lambda functions mount EFS at ``$EFS_MOUNT_PATH`` (``<root>`` below). The tree is::

    <root>/
      releases/<release_id>/          one directory per release, renamed into place complete
        STAMP.json                    what the release is (schema: efs_layout/stamp.schema.json)
        .verified                     sha256 hex of the STAMP.json bytes; written after a full
                                      hash check, so readers may trust hashes and only stat
        lib/...                       Python dependencies (torch, torchvision, joblib, pillow,
                                      numpy), put on sys.path by add_lib_to_path()
        model/...                     model.joblib and anything else the model needs
      store/sha256/<ab>/<hex>         content-addressed store: every distinct file once, named
                                      by its sha256 (<ab> = first two hex digits). Release files
                                      are hard links into it, so a model-only release shares
                                      lib/ with the previous one instead of copying it. A store
                                      file whose link count is 1 belongs to no release.
      tmp/<random>/                   staging on the same file system, so that rename() into
                                      releases/ and store/ is atomic
      locks/<name>.lock               O_EXCL lock files (see efs_layout.lock)

Rules the rest of the package relies on:

* A directory under ``releases/`` appears only by ``rename()`` from ``tmp/`` after it was
  fully written and hash-checked, so a reader never sees a partial release.
* A release is immutable: the same id is never rewritten with different content.
* Files are read-only (0444) and directories 0755, so the inference function, which reads
  EFS as another user, cannot change them.
* Nothing in this package imports from a release's ``lib/``: the handlers import it at cold
  start before they know whether ``lib/`` suits the running interpreter.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

from efs_layout.errors import InvalidReleaseId

ENV_MOUNT_PATH = "EFS_MOUNT_PATH"

RELEASES_DIR = "releases"
STORE_DIR = "store"
STORE_ALGORITHM = "sha256"
TMP_DIR = "tmp"
LOCKS_DIR = "locks"

STAMP_FILE = "STAMP.json"
VERIFIED_MARKER = ".verified"
LIB_DIR = "lib"
MODEL_DIR = "model"

# Same rule as the stamp schema's release_id (efs_layout.stamp.RELEASE_ID_PATTERN); repeated
# here as a full match because a release id becomes a directory name.
_RELEASE_ID_RE = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{7,40}|[A-Za-z0-9._-]{1,64}")

FILE_MODE = 0o444
DIR_MODE = 0o755

PathLike = str | os.PathLike[str]


def is_valid_release_id(release_id: str) -> bool:
    """Whether ``release_id`` is acceptable as a release id (and so as a directory name)."""
    return _RELEASE_ID_RE.fullmatch(release_id) is not None and release_id not in {".", ".."}


def validate_release_id(release_id: str) -> str:
    """Return ``release_id`` unchanged, or raise InvalidReleaseId."""
    if not isinstance(release_id, str) or not is_valid_release_id(release_id):
        raise InvalidReleaseId(f"not a valid release id: {release_id!r}")
    return release_id


def root_from_env(environ: Mapping[str, str] | None = None) -> Path:
    """The EFS root named by ``$EFS_MOUNT_PATH``; raises KeyError if it is unset or empty."""
    env = os.environ if environ is None else environ
    value = env.get(ENV_MOUNT_PATH, "")
    if not value:
        raise KeyError(f"{ENV_MOUNT_PATH} is not set")
    return Path(value)


def releases_path(root: PathLike) -> Path:
    """``<root>/releases``."""
    return Path(root) / RELEASES_DIR


def release_path(root: PathLike, release_id: str) -> Path:
    """``<root>/releases/<release_id>``; raises InvalidReleaseId for an unsafe id."""
    return releases_path(root) / validate_release_id(release_id)


def store_root(root: PathLike) -> Path:
    """``<root>/store/sha256``."""
    return Path(root) / STORE_DIR / STORE_ALGORITHM


def store_path(root: PathLike, sha256: str) -> Path:
    """Where the store keeps the file whose content has this sha256 (lowercase hex)."""
    return store_root(root) / sha256[:2] / sha256


def tmp_path(root: PathLike) -> Path:
    """``<root>/tmp``, the staging area."""
    return Path(root) / TMP_DIR


def locks_path(root: PathLike) -> Path:
    """``<root>/locks``."""
    return Path(root) / LOCKS_DIR


def ensure_tree(root: PathLike) -> None:
    """Create the top-level directories if they do not exist yet (writers only)."""
    for path in (releases_path(root), store_root(root), tmp_path(root), locks_path(root)):
        make_dirs(path)


@functools.cache
def _mkdir_keeps_mode() -> bool:
    """Whether mkdir(DIR_MODE) already gives DIR_MODE, so no chmod (an EFS round trip) follows.

    Asked on the first mkdir, not at import: the inference function imports this module
    on its cold-start path and never makes a directory. os.umask can only be read by
    setting it; writers ask from their main thread before any worker thread runs.
    """
    current = os.umask(0o022)
    os.umask(current)
    return DIR_MODE & ~current == DIR_MODE


def make_dir(path: Path) -> None:
    """mkdir with mode 0755 regardless of the umask; the parent must exist."""
    path.mkdir(mode=DIR_MODE)
    if not _mkdir_keeps_mode():
        os.chmod(path, DIR_MODE)


def make_dirs(path: Path) -> None:
    """mkdir -p with mode 0755 regardless of the umask, so other users can read the tree."""
    missing: list[Path] = []
    current = path
    while not current.is_dir():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=DIR_MODE)
        except FileExistsError:
            if not directory.is_dir():
                raise
            continue
        if not _mkdir_keeps_mode():
            os.chmod(directory, DIR_MODE)


def fsync_dir(path: Path) -> None:
    """Flush a directory entry change (rename, link) to stable storage, where supported."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        # Some file systems refuse fsync on a directory; the rename is still atomic there.
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def list_releases(root: PathLike) -> list[str]:
    """Ids of the releases under ``<root>/releases``, sorted (the normal ids sort by time).

    Entries that are not directories or whose names are not valid release ids are skipped.
    """
    try:
        entries = list(os.scandir(releases_path(root)))
    except FileNotFoundError:
        return []
    return sorted(
        e.name for e in entries if is_valid_release_id(e.name) and e.is_dir(follow_symlinks=False)
    )


def add_lib_to_path(root: PathLike, release_id: str) -> Path:
    """Put ``releases/<release_id>/lib`` first on ``sys.path`` and return it.

    Call this only after check_release() returned ok for the same release: from then on
    imports of torch, numpy etc. resolve inside the release.
    """
    import importlib

    lib = release_path(root, release_id) / LIB_DIR
    entry = str(lib)
    while entry in sys.path:
        sys.path.remove(entry)
    sys.path.insert(0, entry)
    # The path finder caches directory listings; a new sys.path entry must be seen at once.
    importlib.invalidate_caches()
    return lib
