"""Lambda REPORT lines: written by the local data plane, read back by the cost tool.

The format is CloudWatch's, so the same parser reads real Lambda logs:
REPORT RequestId: <id>\tDuration: 12.34 ms\tBilled Duration: 13 ms\tMemory Size: 2048 MB\t
Max Memory Used: 301 MB\tInit Duration: 1234.56 ms
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Report:
    """One invocation's REPORT figures."""

    request_id: str
    duration_ms: float
    billed_ms: int
    memory_mb: int
    max_memory_used_mb: int
    init_ms: float | None = None
    # Set when the environment died in the invocation, e.g. "Runtime.OutOfMemory".
    error_type: str | None = None

    def line(self) -> str:
        """The REPORT line, as Lambda writes it."""
        parts = [
            f"REPORT RequestId: {self.request_id}",
            f"Duration: {self.duration_ms:.2f} ms",
            f"Billed Duration: {self.billed_ms} ms",
            f"Memory Size: {self.memory_mb} MB",
            f"Max Memory Used: {self.max_memory_used_mb} MB",
        ]
        if self.init_ms is not None:
            parts.append(f"Init Duration: {self.init_ms:.2f} ms")
        if self.error_type is not None:
            parts += ["Status: error", f"Error Type: {self.error_type}"]
        return "\t".join(parts)


def billed(duration_ms: float) -> int:
    """Lambda bills per 1 ms, rounded up."""
    return max(1, math.ceil(duration_ms))


_REPORT = re.compile(
    r"REPORT RequestId:\s*(?P<id>\S+)\s+Duration:\s*(?P<d>[\d.]+) ms\s+"
    r"Billed Duration:\s*(?P<b>\d+) ms\s+Memory Size:\s*(?P<m>\d+) MB\s+"
    r"Max Memory Used:\s*(?P<u>\d+) MB(?:\s+Init Duration:\s*(?P<i>[\d.]+) ms)?"
)


def parse(lines: Iterable[str]) -> Iterator[Report]:
    """Every REPORT line in a log (local file, or CloudWatch export/`aws logs tail` output)."""
    for line in lines:
        match = _REPORT.search(line)
        if match is None:
            continue
        yield Report(
            request_id=match["id"],
            duration_ms=float(match["d"]),
            billed_ms=int(match["b"]),
            memory_mb=int(match["m"]),
            max_memory_used_mb=int(match["u"]),
            init_ms=float(match["i"]) if match["i"] else None,
        )
