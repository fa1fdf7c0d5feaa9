"""`make bench`: cold start, warm latency, throughput and memory of this stack's handler against
the naive Lambda + EFS handler, for ResNet-152 and the default model, in one run.

Writes bench/results/<date>.json and bench/results/<date>.png and prints the ratios
the targets are stated in. A benchmark, not a test: it measures, it does not assert.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import measure, report, workspace
from bench.images import payloads
from efs_layout.layout import LIB_DIR, MODEL_DIR, release_path
from local.dataplane.environment import ExecutionEnvironment

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).with_name("results")


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    import torch

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(memory_gb, 1),
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "os": platform.platform(),
    }


def _median_cold(runs: list[measure.ColdStart]) -> dict[str, float]:
    fields = ("process_start", "stamp_check", "imports", "model_load", "first_inference", "total")
    return {f: round(statistics.median(getattr(r, f) for r in runs), 1) for f in fields}


def bench_model(
    model: str, ws: workspace.Workspace, repeats: int, samples: int, seconds: float
) -> dict[str, Any]:
    """Every figure for one model, both handlers."""
    release = ws.releases[model]
    naive_lib = f"{measure.MOUNT}/{ws.naive_lib.relative_to(ws.efs)}"
    handlers = [
        measure.ours(model, release, ws.inference_sha256, ws.efs, ws.code_zips),
        measure.ours(
            model, ws.onnx_releases[model], ws.inference_sha256, ws.efs, ws.code_zips, "onnx"
        ),
        measure.naive(
            model,
            naive_lib,
            f"{measure.MOUNT}/{ws.naive_models[model].relative_to(ws.efs)}",
            ws.naive_sha256,
            ws.efs,
            ws.code_zips,
        ),
    ]
    bodies = payloads()
    colds: dict[str, list[measure.ColdStart]] = {h.label: [] for h in handlers}
    kept: dict[str, list[ExecutionEnvironment]] = {h.label: [] for h in handlers}
    # Interleaved, so drift on a shared machine hits both handlers alike.
    for _ in range(repeats):
        for handler in handlers:
            cold, environment = measure.cold_start(handler, bodies[0])
            colds[handler.label].append(cold)
            kept[handler.label].append(environment)
            print(f"bench: {model} {handler.label} cold start {cold.total:.0f} ms", flush=True)
            while len(kept[handler.label]) > 2:
                kept[handler.label].pop(0).stop()
    result: dict[str, Any] = {}
    try:
        for handler in handlers:
            environments = kept[handler.label]
            warm: dict[str, Any] = {}
            peak = 0.0
            for body in bodies:
                figures, rss = measure.warm_latency(environments[-1], body, samples)
                warm[body.name] = asdict(figures)
                peak = max(peak, rss)
                print(
                    f"bench: {model} {handler.label} warm {body.name} p50 {figures.p50:.1f} ms",
                    flush=True,
                )
            rates = {
                f"c{n}": round(measure.throughput(environments[:n], bodies[0], seconds), 2)
                for n in (1, 2)
            }
            result[handler.label] = {
                "cold_runs": [asdict(c) for c in colds[handler.label]],
                "cold": _median_cold(colds[handler.label]),
                "warm": warm,
                "throughput_rps": rates,
                "peak_rss_mb": round(peak, 1),
            }
    finally:
        for environments in kept.values():
            for environment in environments:
                environment.stop()
    env = handlers[0].spec.process_environment(
        {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    )
    env["PYTHONPATH"] = str(REPO_ROOT)
    served = release_path(ws.efs, release)
    model_file = served / MODEL_DIR / "model.joblib"
    floors = measure.floors(served / LIB_DIR, model_file, env, repeats)
    result["floors"] = {**asdict(floors), "cold": round(floors.cold, 1)}
    return result


def main(argv: list[str] | None = None) -> int:
    """Prepare the workspace, measure, write the results, print the table and ratios."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", nargs="+", choices=workspace.MODELS, default=workspace.MODELS)
    parser.add_argument("--repeats", type=int, default=3, help="cold starts per handler")
    parser.add_argument("--samples", type=int, default=15, help="warm requests per payload")
    parser.add_argument("--seconds", type=float, default=8.0, help="per throughput run")
    parser.add_argument(
        "--lib",
        type=Path,
        default=REPO_ROOT / "build" / "bench" / "lib-torch",
        help="where the torch format's lib/ is built (not build/lib, which the pipeline owns)",
    )
    parser.add_argument(
        "--lib-requirements", type=Path, default=REPO_ROOT / "requirements" / "lambda.txt"
    )
    parser.add_argument("--extra-index-url", help="wheel index for lib/ (e.g. PyTorch's CPU one)")
    parser.add_argument("--workdir", type=Path, default=REPO_ROOT / "build" / "bench")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.repeats < 2 or args.samples < 1 or args.seconds <= 0:
        parser.error(
            "--repeats must be >= 2 (throughput at c=2 needs two environments), "
            "--samples >= 1, --seconds > 0"
        )

    ws = workspace.prepare(args.workdir, args.lib, args.lib_requirements, args.extra_index_url)
    started = datetime.now(UTC)
    results: dict[str, Any] = {
        "date": started.strftime("%Y-%m-%d"),
        "started_at": started.isoformat(timespec="seconds"),
        "machine": machine(),
        "settings": {
            "memory_mb": measure.MEMORY_MB,
            "repeats": args.repeats,
            "samples": args.samples,
            "throughput_seconds": args.seconds,
            "page_cache": "warm (files read from local disk's cache, not over EFS)",
        },
        "models": {
            m: bench_model(m, ws, args.repeats, args.samples, args.seconds) for m in args.models
        },
        "release_bytes": {
            "first_release": ws.first_release_bytes,
            "model_only": ws.model_only_bytes,
        },
        "lib": {"bytes": ws.lib_bytes, "files": ws.lib_files},
    }
    results["targets"] = report.targets(results)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / results["date"]
    stem.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    report.chart(results, stem.with_suffix(".png"))
    print(report.table(results))
    print(f"bench: wrote {stem.with_suffix('.json')} and {stem.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
