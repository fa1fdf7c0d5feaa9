"""A local execution environment: one long-lived runner process serving one event at a time."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from local.dataplane import limits
from local.dataplane.functions import FunctionSpec, code_dir

RUNNER = Path(__file__).with_name("runner.py")


class EnvironmentDied(RuntimeError):
    """The runner process exited or stopped speaking the protocol."""


class OutOfMemory(EnvironmentDied):
    """The environment went over its memory size and the kernel killed it, as Lambda does."""


class InvocationTimeout(RuntimeError):
    """The function ran longer than its timeout; the environment was killed."""


@dataclass(frozen=True)
class Invocation:
    """The outcome of one invocation, with the figures a REPORT line needs."""

    payload: Any
    error: dict[str, str] | None
    duration_ms: float
    init_ms: float | None  # set on the invocation that cold-started the environment
    max_rss_mb: float


class ExecutionEnvironment:
    """A runner process for one function version, started on demand."""

    def __init__(
        self,
        spec: FunctionSpec,
        log: IO[str] | None = None,
        base_env: dict[str, str] | None = None,
        zip_dir: Path | None = None,
    ) -> None:
        self.spec = spec
        code = code_dir(spec) if zip_dir is None else code_dir(spec, zip_dir)
        env = spec.process_environment(base_env if base_env is not None else _base_env())
        env["PYTHONPATH"] = str(code)
        env["PYTHONUNBUFFERED"] = "1"
        # Lambda's memory cap and CPU share for this environment (None where cgroups are
        # not available: see limits.support()).
        self.limits = limits.for_environment(f"{spec.name}-{spec.version}", spec.memory_mb)
        started = time.perf_counter()
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-u", str(RUNNER), spec.handler],
                cwd=code,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log if log is not None else subprocess.DEVNULL,
                text=True,
                start_new_session=True,
                preexec_fn=self.limits.join if self.limits is not None else None,
            )
        except BaseException:
            if self.limits is not None:
                self.limits.remove()
            raise
        ready = self._read_line(timeout=max(10.0, float(spec.timeout_s)) + 60)
        if ready.get("type") != "ready":
            self.kill()
            error = ready.get("error", {})
            raise EnvironmentDied(f"init failed: {error.get('type')}: {error.get('message')}")
        self.init_ms: float | None = float(ready["init_ms"])
        self.process_start_ms = (time.perf_counter() - started) * 1000 - float(ready["init_ms"])
        self.last_used = time.monotonic()
        self.invocations = 0

    @property
    def pid(self) -> int:
        """The runner's process id."""
        return self._proc.pid

    def alive(self) -> bool:
        """True while the runner process runs."""
        return self._proc.poll() is None

    def invoke(self, event: Any, request_id: str | None = None) -> Invocation:
        """Send one event and wait for its result, at most the function's timeout."""
        if not self.alive():
            raise EnvironmentDied("the environment has exited")
        assert self._proc.stdin is not None
        try:
            deadline_ms = (time.time() + float(self.spec.timeout_s)) * 1000
            request = {
                "event": event,
                "deadline_ms": deadline_ms,
                "request_id": request_id or str(uuid.uuid4()),
            }
            self._proc.stdin.write(json.dumps(request) + "\n")
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            self.kill()
            raise EnvironmentDied(f"the environment stopped reading: {exc}") from exc
        reply = self._read_line(timeout=float(self.spec.timeout_s))
        init_ms, self.init_ms = self.init_ms, None
        self.invocations += 1
        self.last_used = time.monotonic()
        return Invocation(
            payload=reply.get("payload"),
            error=reply.get("error"),
            duration_ms=float(reply.get("duration_ms", 0.0)),
            init_ms=init_ms,
            max_rss_mb=float(reply.get("max_rss_mb", 0.0)),
        )

    def _read_line(self, timeout: float) -> dict[str, Any]:
        assert self._proc.stdout is not None
        box: list[str] = []
        reader = threading.Thread(target=lambda: box.append(self._proc.stdout.readline()))  # type: ignore[union-attr]
        reader.daemon = True
        reader.start()
        reader.join(timeout)
        if reader.is_alive():
            self.kill()
            raise InvocationTimeout(f"no answer within {timeout:.0f} s")
        if not box or not box[0]:
            code = self._proc.wait(timeout=5)
            if self.limits is not None and self.limits.oom_killed():
                self._release_limits()
                raise OutOfMemory(
                    f"{limits.OUT_OF_MEMORY}: the environment went over its "
                    f"{self.spec.memory_mb} MB and was killed (status {code})"
                )
            self._release_limits()
            raise EnvironmentDied(f"the environment exited with status {code}")
        try:
            return dict(json.loads(box[0]))
        except json.JSONDecodeError as exc:
            self.kill()
            raise EnvironmentDied(f"the environment broke the protocol: {exc}") from exc

    def stop(self) -> None:
        """Close stdin so the runner exits; kill it if it does not."""
        if self._proc.stdin is not None and not self._proc.stdin.closed:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()
        self._release_limits()

    def kill(self) -> None:
        """Kill the runner and its children at once."""
        if self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait(timeout=5)
        self._release_limits()

    def _release_limits(self) -> None:
        # A cgroup can be removed once its processes are gone; children of the runner that
        # outlive it (none of ours do) would keep it, and then it is left empty-handed.
        if self.limits is not None and self._proc.poll() is not None:
            self.limits.remove()


def _base_env() -> dict[str, str]:
    """What a function process inherits: AWS endpoint and credentials, PATH; no project path."""
    keep = (
        "PATH",
        "HOME",
        "LANG",
        "TMPDIR",
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_EC2_METADATA_DISABLED",
        "AWS_CA_BUNDLE",
    )
    return {k: v for k, v in os.environ.items() if k in keep}


def invoke_once(spec: FunctionSpec, event: Any, log: IO[str] | None = None) -> Invocation:
    """Cold-start an environment, invoke it once, stop it (what the pipeline needs)."""
    environment = ExecutionEnvironment(spec, log=log)
    try:
        return environment.invoke(event)
    finally:
        environment.stop()
