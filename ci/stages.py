"""Named stages, each timed by one helper: what `make up` and `make pipeline` print.

    stages = Stages("pipeline")
    with stages.stage("build-lib"):
        ...
    stages.seconds  # {"build-lib": 51.9, ...}

Each stage prints a line when it starts and one when it ends, with its own duration and
the time since the first stage began, so a long run says where it is and where its time
went. A stage that raises is recorded as failed and the exception goes on.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO


class Stages:
    """A sequence of named, timed stages of one run."""

    def __init__(
        self,
        prefix: str,
        out: TextIO | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.prefix = prefix
        self.seconds: dict[str, float] = {}
        self._out = out
        self._clock = clock
        self._started = clock()

    def elapsed(self) -> float:
        """Seconds since this run began."""
        return self._clock() - self._started

    def say(self, message: str) -> None:
        """Print one line of this run, stamped with the elapsed time."""
        total = self.elapsed()
        stamp = f"{int(total // 60)}:{total % 60:04.1f}"
        print(f"{self.prefix} [{stamp}] {message}", file=self._out or sys.stdout, flush=True)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the body as stage ``name``; its seconds land in ``self.seconds``."""
        self.say(f"{name} ...")
        began = self._clock()
        try:
            yield
        except BaseException:
            self.seconds[name] = round(self._clock() - began, 2)
            self.say(f"{name} FAILED after {self.seconds[name]:.1f} s")
            raise
        self.seconds[name] = round(self._clock() - began, 2)
        self.say(f"{name} done in {self.seconds[name]:.1f} s")
