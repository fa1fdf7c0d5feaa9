"""A syncer stopped mid-unpack (Lambda's timeout kills it) leaves work the next one reuses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

from efs_layout import (
    ReleaseStatus,
    StampFields,
    build_manifest,
    build_stamp,
    check_release,
    make_bundle,
    unpack_bundle,
)

SourceFactory = Callable[..., Path]
FILES = 60
REPO_ROOT = Path(__file__).resolve().parents[2]

# The killed writer: small commit batches and slow part writes, so it is stopped with some
# batches committed and the rest not yet written.
_CHILD = textwrap.dedent(
    """
    import sys, time
    import efs_layout.bundle as bundle
    bundle.COMMIT_BATCH = 5
    real_write = bundle.write_part
    def slow_write(*args, **kwargs):
        time.sleep(0.5)
        return real_write(*args, **kwargs)
    bundle.write_part = slow_write
    bundle.unpack_bundle(sys.argv[1], sys.argv[2], sys.argv[3])
    """
)


def _store_files(root: Path) -> int:
    store = root / "store" / "sha256"
    return sum(1 for p in store.rglob("*") if p.is_file()) if store.exists() else 0


def test_the_next_unpack_reuses_what_a_killed_one_committed(
    root: Path, tmp_path: Path, fields: StampFields, make_source: SourceFactory
) -> None:
    lib = {f"lib/pkg/m{i}.py": f"VALUE = {i}\n".encode() * 100 for i in range(FILES)}
    source = make_source(lib=lib)
    rid = "20240501T120000Z-3f2a9c1"
    stamp = build_stamp(rid, build_manifest(source), fields)
    bundle = make_bundle(source, stamp, tmp_path / "r.tar.gz")

    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(root), str(bundle.path), bundle.sha256],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    try:
        deadline = time.monotonic() + 30
        while _store_files(root) < 10 and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    committed = _store_files(root)
    assert 10 <= committed < FILES, committed
    assert not (root / "releases" / rid).exists()

    # The dead writer's lock is taken over at once (same machine, process gone), and only
    # what it had not committed is written again.
    result = unpack_bundle(root, bundle.path, bundle.sha256, lock_timeout=5)
    assert result.status is ReleaseStatus.CREATED
    assert result.files_written_to_store == result.files_total - committed
    assert check_release(root, rid, full=True).ok
