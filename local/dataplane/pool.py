"""Execution environments of one function: reuse warm ones, start new ones up to the reserved
concurrency, throttle beyond it, reap idle ones, replace crashed ones."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from local.dataplane.environment import (
    EnvironmentDied,
    ExecutionEnvironment,
    InvocationTimeout,
    OutOfMemory,
)
from local.dataplane.functions import FunctionSpec
from local.dataplane.limits import OUT_OF_MEMORY
from local.dataplane.reports import Report, billed


@dataclass(frozen=True)
class Outcome:
    """How an invocation ended, for the endpoint to map to HTTP."""

    kind: str  # ok | function_error | throttled | crashed | timeout | init_failed
    payload: Any = None
    message: str = ""
    cold_start: bool = False
    environment_pid: int | None = None


class FunctionPool:
    """All execution environments of one function (any version)."""

    def __init__(
        self,
        resolve: Callable[[], FunctionSpec],
        log_dir: Path,
        idle_timeout_s: float = 300.0,
        default_concurrency: int = 10,
    ) -> None:
        self._resolve = resolve
        self._lock = threading.Lock()
        self._idle: dict[str, list[ExecutionEnvironment]] = {}  # by version
        self._busy = 0
        self._environments: set[ExecutionEnvironment] = set()
        self.idle_timeout_s = idle_timeout_s
        self.default_concurrency = default_concurrency
        self.peak_environments = 0
        self.started_environments = 0
        log_dir.mkdir(parents=True, exist_ok=True)
        self._log_dir = log_dir
        self._log: IO[str] | None = None
        self._report_lock = threading.Lock()

    def _function_log(self, spec: FunctionSpec) -> IO[str]:
        if self._log is None:
            self._log = (self._log_dir / f"{spec.name}.log").open("a", buffering=1)
        return self._log

    @property
    def environment_count(self) -> int:
        """Environments alive now."""
        with self._lock:
            return len(self._environments)

    def pids(self) -> list[int]:
        """Process ids of the environments alive now."""
        with self._lock:
            return sorted(e.pid for e in self._environments)

    def invoke(self, event: Any) -> Outcome:
        """Run one event on a warm environment, a new one, or refuse it (throttled)."""
        spec = self._resolve()
        cap = spec.reserved_concurrency or self.default_concurrency
        with self._lock:
            if self._busy >= cap:
                return Outcome("throttled", message=f"reserved concurrency {cap} reached")
            self._busy += 1
            idle = self._idle.setdefault(spec.version, [])
            environment = idle.pop() if idle else None
        try:
            return self._run(spec, environment, event)
        finally:
            with self._lock:
                self._busy -= 1

    def _run(
        self, spec: FunctionSpec, environment: ExecutionEnvironment | None, event: Any
    ) -> Outcome:
        log = self._function_log(spec)
        if environment is None:
            try:
                environment = ExecutionEnvironment(spec, log=log)
            except EnvironmentDied as exc:
                return Outcome("init_failed", message=str(exc))
            with self._lock:
                self._environments.add(environment)
                self.started_environments += 1
                self.peak_environments = max(self.peak_environments, len(self._environments))
        request_id = str(uuid.uuid4())
        cold = environment.init_ms is not None
        log.write(f"START RequestId: {request_id} Version: {spec.version}\n")
        invoked = time.perf_counter()
        try:
            result = environment.invoke(event, request_id)
        except InvocationTimeout:
            self._forget(environment)
            log.write(f"{request_id} Task timed out after {spec.timeout_s:.2f} seconds\n")
            return Outcome(
                "timeout",
                message=f"the function timed out after {spec.timeout_s} s",
                cold_start=cold,
            )
        except OutOfMemory as exc:
            self._forget(environment)
            # What Lambda logs for an environment killed over its memory size.
            duration_ms = (time.perf_counter() - invoked) * 1000
            report = Report(
                request_id=request_id,
                duration_ms=duration_ms,
                billed_ms=billed(duration_ms),
                memory_mb=spec.memory_mb,
                max_memory_used_mb=spec.memory_mb,
                error_type=OUT_OF_MEMORY,
            )
            with self._report_lock:
                log.write(
                    f"{request_id} Error: Runtime exited with error: signal: killed\n"
                    f"{OUT_OF_MEMORY}\nEND RequestId: {request_id}\n{report.line()}\n"
                )
            return Outcome("crashed", message=str(exc), cold_start=cold)
        except EnvironmentDied as exc:
            self._forget(environment)
            log.write(f"{request_id} Runtime exited: {exc}\n")
            return Outcome(
                "crashed", message=f"the execution environment crashed: {exc}", cold_start=cold
            )
        report = Report(
            request_id=request_id,
            duration_ms=result.duration_ms,
            billed_ms=billed(result.duration_ms),
            memory_mb=spec.memory_mb,
            max_memory_used_mb=round(result.max_rss_mb),
            init_ms=result.init_ms,
        )
        with self._report_lock:
            log.write(f"END RequestId: {request_id}\n{report.line()}\n")
        if result.max_rss_mb > spec.memory_mb:
            # Lambda kills an environment that exceeds its memory size.
            self._forget(environment)
            return Outcome("crashed", message="the function ran out of memory", cold_start=cold)
        with self._lock:
            self._idle.setdefault(spec.version, []).append(environment)
        if result.error is not None:
            return Outcome("function_error", result.error, result.error.get("message", ""), cold)
        return Outcome("ok", result.payload, cold_start=cold, environment_pid=environment.pid)

    def _forget(self, environment: ExecutionEnvironment) -> None:
        environment.kill()
        with self._lock:
            self._environments.discard(environment)
            for idle in self._idle.values():
                if environment in idle:
                    idle.remove(environment)

    def reap(self) -> int:
        """Stop environments idle longer than the idle timeout, and dead ones; return how many."""
        now = time.monotonic()
        doomed: list[ExecutionEnvironment] = []
        with self._lock:
            for version, idle in self._idle.items():
                keep: list[ExecutionEnvironment] = []
                for environment in idle:
                    stale = now - environment.last_used > self.idle_timeout_s
                    (doomed if stale or not environment.alive() else keep).append(environment)
                self._idle[version] = keep
            for environment in doomed:
                self._environments.discard(environment)
        for environment in doomed:
            environment.stop()
        return len(doomed)

    def close(self) -> None:
        """Stop every environment."""
        with self._lock:
            environments = list(self._environments)
            self._environments.clear()
            self._idle.clear()
        for environment in environments:
            environment.kill()
        if self._log is not None:
            self._log.close()
