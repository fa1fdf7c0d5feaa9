"""One execution environment: a process that imports a handler once and serves events.

Started by the data plane with the function's environment and the deployed code on
PYTHONPATH. Speaks one JSON object per line: an invocation on stdin, its result on
stdout. The handler's own output goes to stderr, as Lambda sends it to CloudWatch.
Standard library only, and never imports the project: it runs the deployed zip.

Two things Lambda and EFS do that a plain process on a local folder would not:
- the handler gets a context whose get_remaining_time_in_millis() counts down to the
  invocation's deadline (the data plane sends it with each event);
- links into the folders that stand for EFS are refused past EFS's 177 links per file
  (EMLINK), so code that would break on EFS breaks here too.
"""

from __future__ import annotations

import errno
import importlib
import json
import os
import resource
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

# "You can have up to 177 hard links in a file" (EFS troubleshooting guide). The runner
# may not import the project, so this repeats efs_layout.store.EFS_MAX_LINKS.
EFS_MAX_LINKS = 177
# The host folders standing for EFS mounts, os.pathsep-separated (set by the data plane).
EFS_ROOTS_VARIABLE = "LOCAL_DATAPLANE_EFS_ROOTS"


class LambdaContext:
    """The parts of Lambda's context object that handlers use."""

    def __init__(self, request_id: str, deadline_ms: float, function_name: str, memory_mb: str):
        self.aws_request_id = request_id
        self.function_name = function_name
        self.memory_limit_in_mb = memory_mb
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds until Lambda would stop this invocation."""
        return max(0, int(self._deadline_ms - time.time() * 1000))


def enforce_link_limit(roots: Sequence[str], limit: int = EFS_MAX_LINKS) -> Callable[[], None]:
    """Make os.link refuse, with EMLINK, a link to a file under ``roots`` that has ``limit``
    links already, as EFS does; return a function that undoes it.

    Interposed on os.link (which pathlib and shutil call too) because the folders are on
    a local file system whose limit is far higher. The check and the link happen under one
    lock, so threads linking the same file cannot both slip under the limit.
    """
    real_link = os.link
    prefixes = tuple(os.path.join(os.path.abspath(r), "") for r in roots if r)
    guard = threading.Lock()

    def link(
        src: Any,
        dst: Any,
        *,
        src_dir_fd: int | None = None,
        dst_dir_fd: int | None = None,
        follow_symlinks: bool = True,
    ) -> None:
        source = os.path.abspath(os.fsdecode(src))
        with guard:
            if src_dir_fd is None and source.startswith(prefixes):
                links = os.stat(source, follow_symlinks=follow_symlinks).st_nlink
                if links >= limit:
                    raise OSError(errno.EMLINK, os.strerror(errno.EMLINK), src, None, dst)
            real_link(
                src,
                dst,
                src_dir_fd=src_dir_fd,
                dst_dir_fd=dst_dir_fd,
                follow_symlinks=follow_symlinks,
            )

    os.link = link

    def undo() -> None:
        os.link = real_link

    return undo


def _peak_rss_mb() -> float:
    # VmHWM is this address space's peak; ru_maxrss would also count the parent's memory
    # at fork time (Linux carries it across exec), so a runner forked from a large
    # process would look out of memory before it ran anything.
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main() -> int:
    """Serve invocations until stdin closes."""
    handler_path = sys.argv[1]
    module_name, _, function_name = handler_path.rpartition(".")
    efs_roots = os.environ.pop(EFS_ROOTS_VARIABLE, "")
    if efs_roots:
        enforce_link_limit(efs_roots.split(os.pathsep))
    protocol_out = os.fdopen(os.dup(1), "w", buffering=1)
    # Anything the handler prints must not corrupt the protocol stream.
    os.dup2(2, 1)
    started = time.perf_counter()
    try:
        module = importlib.import_module(module_name)
        handler = getattr(module, function_name)
    except Exception as exc:
        protocol_out.write(
            json.dumps(
                {
                    "type": "init_error",
                    "error": {"type": type(exc).__name__, "message": str(exc)},
                    "trace": traceback.format_exc(),
                }
            )
            + "\n"
        )
        return 1
    init_ms = (time.perf_counter() - started) * 1000
    protocol_out.write(json.dumps({"type": "ready", "init_ms": init_ms}) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        t0 = time.perf_counter()
        reply: dict[str, Any] = {"type": "result"}
        context = LambdaContext(
            str(request.get("request_id", "")),
            float(request.get("deadline_ms", (time.time() + 900) * 1000)),
            os.environ.get("AWS_LAMBDA_FUNCTION_NAME", ""),
            os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", ""),
        )
        try:
            reply["payload"] = handler(request["event"], context)
        except Exception as exc:  # Lambda reports an unhandled error as a function error
            reply["error"] = {"type": type(exc).__name__, "message": str(exc)}
            reply["trace"] = traceback.format_exc()
        reply["duration_ms"] = (time.perf_counter() - t0) * 1000
        reply["max_rss_mb"] = _peak_rss_mb()
        protocol_out.write(json.dumps(reply, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
