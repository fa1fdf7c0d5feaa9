"""Talk to the syncer function: the only writer of releases on EFS."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ci import invoke


@dataclass(frozen=True)
class SyncerAnswer:
    """The syncer's outcome, as returned by lambda_src.syncer."""

    status: str
    code: str
    message: str
    details: dict[str, Any]

    @property
    def ok(self) -> bool:
        """True for a success of any kind."""
        return self.status in ("created", "already_present", "ok", "deleted")


def call(function: str, payload: dict[str, Any], busy_retries: int = 10) -> SyncerAnswer:
    """Invoke the syncer; retry while it reports its EFS lock busy."""
    for attempt in range(busy_retries + 1):
        raw = invoke.invoke(function, payload)
        answer = SyncerAnswer(
            status=str(raw.get("status")),
            code=str(raw.get("code")),
            message=str(raw.get("message")),
            details=dict(raw.get("details") or {}),
        )
        if answer.status != "busy" or attempt == busy_retries:
            return answer
        time.sleep(min(2.0 * (attempt + 1), 10.0))
    raise AssertionError("unreachable")
