"""How many file-system operations the syncer's unpack costs per file.

On EFS each is a network round trip (writes 2.7 ms or more), and a 10,000-file lib/ must
publish well inside Lambda's 15 minutes; `make bench-syncer` turns these counts into that
estimate. Counts, not timings: they are the same on every machine.
"""

from __future__ import annotations

from pathlib import Path

from bench.syncer_ops import Counts, counting, stamp_fields
from efs_layout import build_manifest, build_stamp, make_bundle, unpack_bundle

FILES = 600
DIRECTORIES = 30


def _source(base: Path) -> Path:
    for i in range(FILES):
        path = base / "lib" / f"pkg{i % DIRECTORIES:02d}" / f"m{i}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"" if i % 20 == 0 else f"VALUE = {i}\n".encode() * (i % 50 + 1))
    (base / "model").mkdir()
    (base / "model" / "model.joblib").write_bytes(b"m" * 4096)
    return base


def test_unpack_operations_per_file(tmp_path: Path) -> None:
    source = _source(tmp_path / "src")
    stamp = build_stamp("20260101T000000Z-0000001", build_manifest(source), stamp_fields())
    bundle = make_bundle(source, stamp, tmp_path / "r.tar.gz")
    root = tmp_path / "efs"
    root.mkdir()
    counts = Counts()
    with counting(counts):
        unpack_bundle(root, bundle.path, bundle.sha256)
    ops = counts.by_stage
    files = FILES + 1
    # The store is asked once per distinct content (in parallel), nothing per member.
    assert ops["stream"]["read"] <= files + 5
    # Each new content: created, made read-only; renamed to its hash name on commit. Each
    # of the 256 hash-name directories is looked up (and made) once, not once per file.
    assert ops["stream"]["write"] + ops["commit"]["write"] <= 3 * files + 2 * 256
    assert ops["commit"]["read"] <= 2 * 256 + 5
    # Linking: one link per file and one mkdir per directory, nothing asked.
    assert ops["link"]["read"] == 0
    assert ops["link"]["write"] <= files + 2 * (DIRECTORIES + 2) + 5
