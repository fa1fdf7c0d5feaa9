"""The one package that knows the on-disk format of releases on EFS and their stamp.

Standard library only: the Lambda handlers import it at cold start, before any release's
lib/ is on sys.path. See layout.py (or README.md) for the tree on EFS.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from efs_layout.bundle import BundleInfo, make_bundle, unpack_bundle, unpack_bundle_stream
    from efs_layout.errors import (
        BundleChecksumMismatch,
        BundleError,
        BundleManifestMismatch,
        EfsLayoutError,
        InvalidReleaseId,
        LockBusy,
        ReleaseConflict,
        ReleaseContentError,
        StampInvalid,
        UnsafeBundleMember,
        VerificationFailed,
    )
    from efs_layout.layout import (
        ENV_MOUNT_PATH,
        add_lib_to_path,
        is_valid_release_id,
        list_releases,
        release_path,
        root_from_env,
        store_path,
    )
    from efs_layout.lock import LockInfo, release_lock
    from efs_layout.release import (
        DeleteResult,
        ReleaseResult,
        ReleaseStatus,
        assemble_release,
        build_manifest,
        delete_release,
    )
    from efs_layout.stamp import (
        SCHEMA_VERSION,
        ManifestEntry,
        ModelInfo,
        Packages,
        PlatformInfo,
        PythonInfo,
        Stamp,
        StampError,
        StampErrorKind,
        StampFields,
        build_stamp,
        new_release_id,
        parse_stamp,
    )
    from efs_layout.store import GcResult, collect_garbage, store_has
    from efs_layout.verify import (
        Interpreter,
        Verdict,
        VerdictCode,
        check_release,
        sha256_file,
    )

# Names are resolved on first use (PEP 562) so that the inference handler, which needs
# only layout and verify, does not pay at cold start for tarfile, gzip and the writers.
_EXPORTS: dict[str, str] = {
    "BundleInfo": "efs_layout.bundle",
    "make_bundle": "efs_layout.bundle",
    "unpack_bundle": "efs_layout.bundle",
    "unpack_bundle_stream": "efs_layout.bundle",
    "BundleChecksumMismatch": "efs_layout.errors",
    "BundleError": "efs_layout.errors",
    "BundleManifestMismatch": "efs_layout.errors",
    "EfsLayoutError": "efs_layout.errors",
    "InvalidReleaseId": "efs_layout.errors",
    "LockBusy": "efs_layout.errors",
    "ReleaseConflict": "efs_layout.errors",
    "ReleaseContentError": "efs_layout.errors",
    "StampInvalid": "efs_layout.errors",
    "UnsafeBundleMember": "efs_layout.errors",
    "VerificationFailed": "efs_layout.errors",
    "ENV_MOUNT_PATH": "efs_layout.layout",
    "add_lib_to_path": "efs_layout.layout",
    "is_valid_release_id": "efs_layout.layout",
    "list_releases": "efs_layout.layout",
    "release_path": "efs_layout.layout",
    "root_from_env": "efs_layout.layout",
    "store_path": "efs_layout.layout",
    "LockInfo": "efs_layout.lock",
    "release_lock": "efs_layout.lock",
    "DeleteResult": "efs_layout.release",
    "ReleaseResult": "efs_layout.release",
    "ReleaseStatus": "efs_layout.release",
    "assemble_release": "efs_layout.release",
    "build_manifest": "efs_layout.release",
    "delete_release": "efs_layout.release",
    "ManifestEntry": "efs_layout.stamp",
    "ModelInfo": "efs_layout.stamp",
    "Packages": "efs_layout.stamp",
    "PlatformInfo": "efs_layout.stamp",
    "PythonInfo": "efs_layout.stamp",
    "SCHEMA_VERSION": "efs_layout.stamp",
    "Stamp": "efs_layout.stamp",
    "StampError": "efs_layout.stamp",
    "StampErrorKind": "efs_layout.stamp",
    "StampFields": "efs_layout.stamp",
    "build_stamp": "efs_layout.stamp",
    "new_release_id": "efs_layout.stamp",
    "parse_stamp": "efs_layout.stamp",
    "GcResult": "efs_layout.store",
    "collect_garbage": "efs_layout.store",
    "store_has": "efs_layout.store",
    "Interpreter": "efs_layout.verify",
    "Verdict": "efs_layout.verify",
    "VerdictCode": "efs_layout.verify",
    "check_release": "efs_layout.verify",
    "sha256_file": "efs_layout.verify",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = [
    "ENV_MOUNT_PATH",
    "SCHEMA_VERSION",
    "BundleChecksumMismatch",
    "BundleError",
    "BundleInfo",
    "BundleManifestMismatch",
    "DeleteResult",
    "EfsLayoutError",
    "GcResult",
    "Interpreter",
    "InvalidReleaseId",
    "LockBusy",
    "LockInfo",
    "ManifestEntry",
    "ModelInfo",
    "Packages",
    "PlatformInfo",
    "PythonInfo",
    "ReleaseConflict",
    "ReleaseContentError",
    "ReleaseResult",
    "ReleaseStatus",
    "Stamp",
    "StampError",
    "StampErrorKind",
    "StampFields",
    "StampInvalid",
    "UnsafeBundleMember",
    "Verdict",
    "VerdictCode",
    "VerificationFailed",
    "add_lib_to_path",
    "assemble_release",
    "build_manifest",
    "build_stamp",
    "check_release",
    "collect_garbage",
    "delete_release",
    "is_valid_release_id",
    "list_releases",
    "make_bundle",
    "new_release_id",
    "parse_stamp",
    "release_lock",
    "release_path",
    "root_from_env",
    "sha256_file",
    "store_has",
    "store_path",
    "unpack_bundle",
    "unpack_bundle_stream",
]
