"""Exceptions raised by the writers (assemble, unpack, delete, lock).

Readers do not raise for a bad release: check_release() returns a Verdict instead, and
parse_stamp() returns a StampError.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from efs_layout.stamp import StampError
    from efs_layout.verify import Verdict


class EfsLayoutError(Exception):
    """Base class of every error this package raises on purpose."""


class InvalidReleaseId(EfsLayoutError, ValueError):
    """A release id that does not match the schema (and so must not become a path)."""


class StampInvalid(EfsLayoutError, ValueError):
    """Stamp fields that do not form a valid STAMP.json."""

    def __init__(self, error: StampError) -> None:
        super().__init__(error.message)
        self.error = error


class ReleaseContentError(EfsLayoutError):
    """The files offered for a release cannot form one (symlink, path outside lib/ or model/,
    file changed while it was read, ...)."""


class ReleaseConflict(EfsLayoutError):
    """``releases/<id>`` already exists with different content; releases are never rewritten."""

    def __init__(self, release_id: str, message: str) -> None:
        super().__init__(message)
        self.release_id = release_id


class VerificationFailed(EfsLayoutError):
    """The staged release failed its full check; nothing was renamed into place."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(f"{verdict.code.value}: {verdict.message}")
        self.verdict = verdict


class BundleError(EfsLayoutError):
    """A release bundle that cannot be unpacked."""


class BundleChecksumMismatch(BundleError):
    """The bundle's sha256 is not the one the caller expected."""


class UnsafeBundleMember(BundleError):
    """A tar member that could write outside the release (absolute path, '..', link, device)."""

    def __init__(self, member: str, reason: str) -> None:
        super().__init__(f"unsafe bundle member {member!r}: {reason}")
        self.member = member
        self.reason = reason


class BundleManifestMismatch(BundleError):
    """The bundle's files differ from the manifest in the bundle's own STAMP.json."""


class LockBusy(EfsLayoutError, TimeoutError):
    """The lock stayed held by someone else until the timeout."""

    def __init__(self, path: str, holder: str) -> None:
        super().__init__(f"lock {path} is held by {holder}")
        self.path = path
        self.holder = holder
