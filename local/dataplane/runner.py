"""One execution environment: a process that imports a handler once and serves events.

Started by the data plane with the function's environment and the deployed code on
PYTHONPATH. Speaks one JSON object per line: an invocation on stdin, its result on
stdout. The handler's own output goes to stderr, as Lambda sends it to CloudWatch.
Standard library only, and never imports the project: it runs the deployed zip.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import sys
import time
import traceback
from typing import Any


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
        try:
            reply["payload"] = handler(request["event"], None)
        except Exception as exc:  # Lambda reports an unhandled error as a function error
            reply["error"] = {"type": type(exc).__name__, "message": str(exc)}
            reply["trace"] = traceback.format_exc()
        reply["duration_ms"] = (time.perf_counter() - t0) * 1000
        reply["max_rss_mb"] = _peak_rss_mb()
        protocol_out.write(json.dumps(reply, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
