"""How long the syncer's unpack of a many-file lib/ takes on EFS, from counted operations.

    python -m bench.syncer_ops [--files 10000] [--json]      (make bench-syncer)

A local disk answers a metadata operation in microseconds, EFS in milliseconds, so timing
the unpack here says little about Lambda's 15-minute ceiling. Instead every file-system
call the unpack makes is counted, by stage (stream, commit, link, check), and priced with
EFS's latencies: writes (create, setattr, rename, link, mkdir, unlink, commit) and reads
(lookup, getattr, open, readdir). Stages whose per-file work runs on the thread pool
(efs_layout.verify.IO_WORKERS) overlap their latencies; the rest add up. The figures are
an estimate of the latency-bound time, the part that parallel requests can hide; the
bytes themselves move at EFS's throughput, given beside it.

A benchmark, not a test: it measures, it does not assert. tests/efs_layout/test_ops.py
pins the counts per file.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import efs_layout.bundle as bundle_module
import efs_layout.verify as verify_module
from efs_layout import (
    ModelInfo,
    Packages,
    PlatformInfo,
    PythonInfo,
    StampFields,
    build_manifest,
    build_stamp,
    make_bundle,
    unpack_bundle,
)

# Threads of the unpack's parallel stages; 1 for code from before they were parallel
# (PYTHONPATH at an older checkout measures that code with this script).
IO_WORKERS: int = getattr(verify_module, "IO_WORKERS", 1)

# The calls that reach the NFS server, by the kind of operation EFS bills in latency.
WRITE_CALLS = ("rename", "link", "mkdir", "unlink", "rmdir", "chmod", "fchmod", "fsync", "sync")
READ_CALLS = ("stat", "lstat", "scandir", "listdir")
# Per operation, in seconds: EFS's documented lows (Regional, "as low as") and a
# pessimistic profile for a busy file system.
PROFILES = {
    "efs-documented": {"write": 0.0027, "read": 0.00025},
    "pessimistic": {"write": 0.010, "read": 0.001},
}
# The stages whose per-file operations run on the pool (efs_layout.bundle._Ingest,
# commit_parts, link_release); "check" walks the release on one thread.
PARALLEL_STAGES = {"stream", "commit", "link"}
THROUGHPUT_BYTES_S = 100e6  # a conservative per-client EFS throughput


@dataclass
class Counts:
    """Operations counted per stage of one unpack."""

    by_stage: dict[str, Counter[str]] = field(default_factory=dict)
    _current: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str) -> None:
        """Count one operation of ``kind`` (write, read, create, open)."""
        with self._lock:
            self._current[kind] += 1

    def lap(self, stage: str) -> None:
        """Close ``stage``: what was counted since the last lap belongs to it."""
        with self._lock:
            self.by_stage[stage] = self._current
            self._current = Counter()


@contextmanager
def counting(counts: Counts) -> Iterator[None]:
    """Count the os calls of the unpack (every thread), and lap at its stages."""
    patched: dict[str, Callable[..., Any]] = {}

    def wrap(name: str, kind: Callable[..., str]) -> None:
        real = getattr(os, name)
        patched[name] = real

        def counted(*args: Any, **kwargs: Any) -> Any:
            counts.add(kind(*args, **kwargs))
            return real(*args, **kwargs)

        setattr(os, name, counted)

    for name in WRITE_CALLS:
        wrap(name, lambda *a, **k: "write")
    for name in READ_CALLS:
        wrap(name, lambda *a, **k: "read")
    # open(O_CREAT) creates a file (a write); any other open is a lookup plus open (a read).
    wrap("open", lambda path, flags, *a, **k: "write" if flags & os.O_CREAT else "read")
    real_lap = bundle_module._Stopwatch.lap

    def lap(self: Any, name: str) -> None:
        counts.lap(name)
        real_lap(self, name)

    bundle_module._Stopwatch.lap = lap  # type: ignore[method-assign]
    try:
        yield
    finally:
        bundle_module._Stopwatch.lap = real_lap  # type: ignore[method-assign]
        for name, real in patched.items():
            setattr(os, name, real)


def synthetic_lib(base: Path, files: int, seed: int = 0) -> int:
    """A lib/ shaped like torch's: many small files, 4% empty ones, a few large; its bytes."""
    rng = random.Random(seed)
    total = 0
    for i in range(files):
        package = base / "lib" / f"pkg{i % 400:03d}" / f"sub{i % 7}"
        package.mkdir(parents=True, exist_ok=True)
        if i % 25 == 0:
            data = b""  # __init__.py, py.typed, REQUESTED: one content, many paths
        elif i % 1000 == 1:
            data = rng.randbytes(8 << 20)
        else:
            data = rng.randbytes(int(rng.lognormvariate(8.5, 1.5)) % (512 << 10))
        (package / f"f{i}.py").write_bytes(data)
        total += len(data)
    model = base / "model"
    model.mkdir()
    (model / "model.joblib").write_bytes(rng.randbytes(1 << 20))
    return total


def stamp_fields() -> StampFields:
    """Stamp fields for the synthetic release (their values do not change the counts)."""
    return StampFields(
        git_commit="0" * 40,
        python=PythonInfo(abi_tag="cp312", version="3.12"),
        platform=PlatformInfo(machine="x86_64", manylinux="manylinux_2_28_x86_64"),
        packages=Packages(joblib="1", pillow="1", numpy="1"),
        model=ModelInfo(framework="onnx", name="synthetic", file="model/model.joblib"),
    )


def estimate(counts: Counts, profile: dict[str, float], workers: int) -> dict[str, float]:
    """Seconds of latency per stage under ``profile`` with ``workers`` threads."""
    seconds: dict[str, float] = {}
    for stage, ops in counts.by_stage.items():
        serial = ops["write"] * profile["write"] + ops["read"] * profile["read"]
        seconds[stage] = serial / (workers if stage in PARALLEL_STAGES else 1)
    seconds["total"] = sum(seconds.values())
    return seconds


def run(files: int) -> dict[str, Any]:
    """Unpack a synthetic ``files``-file release onto an empty store, counting operations."""
    with tempfile.TemporaryDirectory(prefix="syncer-ops-") as tmp:
        base = Path(tmp)
        source = base / "source"
        lib_bytes = synthetic_lib(source, files)
        root = base / "efs"
        root.mkdir()
        results: dict[str, Any] = {"files": files, "lib_bytes": lib_bytes, "workers": IO_WORKERS}
        stamp = build_stamp("20260101T000000Z-0000001", build_manifest(source), stamp_fields())
        bundle = make_bundle(source, stamp, base / "release.tar.gz")
        counts = Counts()
        with counting(counts):
            unpack_bundle(root, bundle.path, bundle.sha256)
        results["operations"] = {s: dict(ops) for s, ops in counts.by_stage.items()}
        results["per_file"] = {
            stage: {kind: round(n / files, 2) for kind, n in ops.items()}
            for stage, ops in counts.by_stage.items()
        }
        results["estimate_s"] = {
            name: {
                "serial": round(estimate(counts, p, 1)["total"], 1),
                f"{IO_WORKERS}_threads": round(estimate(counts, p, IO_WORKERS)["total"], 1),
            }
            for name, p in PROFILES.items()
        }
        results["bytes_at_throughput_s"] = round(lib_bytes / THROUGHPUT_BYTES_S, 1)
        return results


def main(argv: list[str] | None = None) -> int:
    """CLI: print the counts and the estimate."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    results = run(args.files)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(
        f"{args.files:,} files, {results['lib_bytes'] / 1e6:,.0f} MB, {IO_WORKERS} thread(s);"
        " operations per file:"
    )
    for stage, ops in results["per_file"].items():
        print(f"  {stage:7} " + ", ".join(f"{k} {v}" for k, v in sorted(ops.items())))
    for name, figures in results["estimate_s"].items():
        print(f"  {name}: " + ", ".join(f"{k} {v} s" for k, v in figures.items()))
    print(f"  bytes at {THROUGHPUT_BYTES_S / 1e6:.0f} MB/s: {results['bytes_at_throughput_s']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
