"""The measurements: cold starts, warm latency, throughput, memory, and the floors.

Functions run in the local data plane's execution environments (one runner
process each, the same code path `make up` serves), so both handlers pay for
process start, imports and model loading exactly as they would on Lambda; only
EFS's network latency is absent (files come from the local page cache).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.images import Payload, event
from local.dataplane.environment import ExecutionEnvironment
from local.dataplane.functions import FunctionSpec, Mount

MOUNT = "/mnt/ml"
MEMORY_MB = 2048  # terraform/variables.tf's default for the inference function


@dataclass(frozen=True)
class Handler:
    """One of the two handlers under test, configured for one model."""

    label: str  # "ours" | "naive"
    spec: FunctionSpec
    zip_dir: Path


def ours(
    model: str, release_id: str, code_sha256: str, efs: Path, zip_dir: Path, label: str = "ours"
) -> Handler:
    """This stack's inference function serving `release_id` (label "onnx" for an ONNX one)."""
    return Handler(
        label,
        _spec(
            f"bench-{label}-{model}",
            "lambda_src.inference.handler.handle",
            code_sha256,
            {"EFS_MOUNT_PATH": MOUNT, "RELEASE_ID": release_id},
            efs,
        ),
        zip_dir,
    )


def naive(
    model: str, lib: str, model_path: str, code_sha256: str, efs: Path, zip_dir: Path
) -> Handler:
    """The tutorial handler: lib/ and the pickled module from the same "EFS"."""
    env = {
        "LIB_PATH": lib,
        "MODEL_PATH": model_path,
        "MODEL_INPUT": "digits" if model == "digits" else "imagenet",
    }
    return Handler(
        "naive",
        _spec(f"bench-naive-{model}", "naive_handler.handle", code_sha256, env, efs),
        zip_dir,
    )


def _spec(name: str, handler: str, sha: str, env: dict[str, str], efs: Path) -> FunctionSpec:
    return FunctionSpec(
        name=name,
        version="1",
        handler=handler,
        runtime=f"python{sys.version_info[0]}.{sys.version_info[1]}",
        memory_mb=MEMORY_MB,
        timeout_s=300,
        environment=env,
        code_sha256=sha,
        reserved_concurrency=None,
        mounts=(Mount(MOUNT, efs, read_only=True),),
    )


@dataclass
class ColdStart:
    """Where one cold start to the first prediction went, in ms."""

    process_start: float
    stamp_check: float
    imports: float
    model_load: float
    first_inference: float
    total: float  # wall clock from spawning the process to the answer
    status: int


def _body(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict):
        return {}
    try:
        return dict(json.loads(payload.get("body") or "{}"))
    except (json.JSONDecodeError, TypeError):
        return {}


def cold_start(handler: Handler, first: Payload) -> tuple[ColdStart, ExecutionEnvironment]:
    """Start a fresh environment and send it one prediction; the environment stays up.

    Everything before the handler's code runs (interpreter, runner, importing the
    handler module) is process start, except that the naive handler does its imports
    and loading at module import, which its own timing fields separate out.
    """
    started = time.perf_counter()
    environment = ExecutionEnvironment(handler.spec, zip_dir=handler.zip_dir)
    invocation = environment.invoke(event(first))
    total = (time.perf_counter() - started) * 1000
    if invocation.error is not None:
        environment.kill()
        raise RuntimeError(f"{handler.spec.name} failed: {invocation.error}")
    payload = invocation.payload if isinstance(invocation.payload, dict) else {}
    timing = _body(payload).get("timing_ms", {})
    steps = {k: float(timing.get(k, 0.0)) for k in ("stamp_check", "imports", "model_load")}
    before_handler = total - invocation.duration_ms
    if handler.label == "naive":
        module_init = float(invocation.init_ms or 0.0)
        process = before_handler - module_init
        # Whatever else the module does at import (building transforms) counts as imports.
        steps["imports"] = module_init - steps["model_load"]
        first_inference = invocation.duration_ms
    else:
        process = before_handler
        first_inference = invocation.duration_ms - sum(steps.values())
    return (
        ColdStart(
            process_start=process,
            stamp_check=steps["stamp_check"],
            imports=steps["imports"],
            model_load=steps["model_load"],
            first_inference=first_inference,
            total=total,
            status=int(payload.get("statusCode", 0)),
        ),
        environment,
    )


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation; the figures are small samples."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass
class Warm:
    """Warm latency of one payload: handler duration as Lambda bills it, in ms."""

    p50: float
    p95: float
    samples: int
    status: int


def warm_latency(
    environment: ExecutionEnvironment, payload: Payload, samples: int, warmups: int = 2
) -> tuple[Warm, float]:
    """Send the payload `warmups + samples` times; return latency and the peak RSS (MB)."""
    durations: list[float] = []
    status = 0
    rss = 0.0
    for index in range(warmups + samples):
        invocation = environment.invoke(event(payload))
        status = int((invocation.payload or {}).get("statusCode", 0))
        rss = max(rss, invocation.max_rss_mb)
        if index >= warmups:
            durations.append(invocation.duration_ms)
    return (
        Warm(
            p50=statistics.median(durations),
            p95=percentile(durations, 95),
            samples=samples,
            status=status,
        ),
        rss,
    )


def throughput(environments: list[ExecutionEnvironment], payload: Payload, seconds: float) -> float:
    """Requests per second with one client per environment, each sending back to back."""
    counts = [0] * len(environments)
    deadline = time.perf_counter() + seconds
    errors: list[BaseException] = []

    def client(index: int) -> None:
        try:
            while time.perf_counter() < deadline:
                environments[index].invoke(event(payload))
                counts[index] += 1
        except BaseException as exc:  # surfaced below; a thread must not die silently
            errors.append(exc)

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(environments))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"throughput client failed: {errors[0]}")
    return sum(counts) / elapsed


@dataclass
class Floors:
    """What no handler can beat on this machine, in ms."""

    process_start: float
    import_torch: float
    first_forward: float
    forward: float  # warm, best settings
    best_settings: dict[str, Any] = field(default_factory=dict)

    @property
    def cold(self) -> float:
        """Process start + import torch + first forward: the cold-start floor."""
        return self.process_start + self.import_torch + self.first_forward


_FLOOR_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    t0 = time.perf_counter()
    sys.path.insert(0, sys.argv[1])
    import torch
    t1 = time.perf_counter()
    import joblib
    from lambda_src.models.torch_state import rebuild_network
    predictor = joblib.load(sys.argv[2], mmap_mode="r")
    network = rebuild_network(predictor.config, predictor.state)
    memory_format = getattr(torch, sys.argv[3])
    network = network.to(memory_format=memory_format)
    x = torch.zeros((1, *predictor.input_shape)).to(memory_format=memory_format)
    with torch.inference_mode():
        t2 = time.perf_counter()
        network(x)
        t3 = time.perf_counter()
        warm = []
        for _ in range(int(sys.argv[4])):
            a = time.perf_counter()
            network(x)
            warm.append(time.perf_counter() - a)
    warm.sort()
    print(json.dumps({"import_torch": (t1 - t0) * 1000, "first_forward": (t3 - t2) * 1000,
                      "forward": warm[len(warm) // 2] * 1000,
                      "threads": torch.get_num_threads()}))
    """
)


def floors(lib: Path, model_file: Path, env: dict[str, str], repeats: int = 3) -> Floors:
    """Process start, `import torch` and the bare forward pass, each in a fresh process."""
    starts = []
    for _ in range(repeats + 2):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True, env=env)
        starts.append((time.perf_counter() - t0) * 1000)
    best: dict[str, Any] | None = None
    for memory_format in ("contiguous_format", "channels_last"):
        runs = []
        for _ in range(repeats):
            proc = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    _FLOOR_SCRIPT,
                    str(lib),
                    str(model_file),
                    memory_format,
                    "15",
                ],
                check=True,
                capture_output=True,
                text=True,
                env=env,
            )
            runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        summary: dict[str, Any] = {
            key: statistics.median(float(r[key]) for r in runs)
            for key in ("import_torch", "first_forward", "forward")
        }
        summary["memory_format"] = memory_format
        summary["threads"] = runs[0]["threads"]
        if best is None or summary["forward"] < best["forward"]:
            best = summary
    assert best is not None
    return Floors(
        process_start=statistics.median(starts),
        import_torch=best["import_torch"],
        first_forward=best["first_forward"],
        forward=best["forward"],
        best_settings={"memory_format": best["memory_format"], "threads": best["threads"]},
    )
