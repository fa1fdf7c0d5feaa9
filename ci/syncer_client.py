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


class SyncerTimedOut(invoke.InvokeTimedOut):
    """The syncer gave no answer within its timeout; it may still be running."""


def call(function: str, payload: dict[str, Any], busy_retries: int = 10) -> SyncerAnswer:
    """Invoke the syncer; retry while it is busy (EFS lock held, or invoke throttled).

    A throttled invoke means another syncer holds the function's one concurrent slot, the
    same situation as a busy lock, so it gets the same bounded backoff; the last throttle
    is raised as InvokeThrottled. A timeout raises SyncerTimedOut at once: the syncer may
    still be working, and a retry would start a second one behind it.
    """
    for attempt in range(busy_retries + 1):
        last = attempt == busy_retries
        try:
            raw = invoke.invoke(function, payload)
        except invoke.InvokeThrottled:
            if last:
                raise
            time.sleep(_backoff(attempt))
            continue
        except invoke.InvokeTimedOut as exc:
            raise SyncerTimedOut(
                f"the syncer ({function}) did not answer within its timeout and may still be "
                f"running; not retried, since that would start a second syncer. Check its "
                f"logs, then re-run: {exc}"
            ) from exc
        answer = SyncerAnswer(
            status=str(raw.get("status")),
            code=str(raw.get("code")),
            message=str(raw.get("message")),
            details=dict(raw.get("details") or {}),
        )
        if answer.status != "busy" or last:
            return answer
        time.sleep(_backoff(attempt))
    raise AssertionError("unreachable")


def _backoff(attempt: int) -> float:
    """Seconds to wait before attempt + 1: linear, capped."""
    return min(2.0 * (attempt + 1), 10.0)
