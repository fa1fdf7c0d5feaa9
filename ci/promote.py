"""Pipeline step 6: point the inference function's `live` alias at a published release.

    python -m ci.promote --release build/release/release.json
    python -m ci.promote --rollback

Promote = full stamp check on the syncer, then RELEASE_ID in the function's configuration,
a new published version, and the alias moved to it. The alias description remembers the
version it replaced, so a rollback is one alias move. Terraform ignores both values.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import WaiterError

from ci import paths, stack, syncer_client
from ci.aws import client
from ci.deploy_lock import DeployLockBusy, deploy_lock
from ci.package_release import PackagedRelease

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RELEASE = paths.build_dir() / "release" / "release.json"
_PREVIOUS = re.compile(r"previous version (\d+)")
# Seconds between polls for a published version to become Active (botocore's default; a
# module setting so tests can poll without waiting).
PUBLISH_WAIT_DELAY_S = 5.0


class PromoteRefused(RuntimeError):
    """The release failed its check, or there is nothing to roll back to."""


@dataclass(frozen=True)
class LiveState:
    """Where the alias points and what that version serves."""

    version: str
    release_id: str
    previous_version: str | None


def _release_of(lam: Any, function: str, version: str) -> str:
    config = lam.get_function_configuration(FunctionName=function, Qualifier=version)
    return str(((config.get("Environment") or {}).get("Variables") or {}).get("RELEASE_ID", "none"))


def live_state(names: stack.Stack) -> LiveState:
    """The live alias's version, its release, and the version it replaced."""
    lam = client("lambda")
    alias = lam.get_alias(FunctionName=names.inference_function, Name=names.live_alias)
    version = str(alias["FunctionVersion"])
    match = _PREVIOUS.search(alias.get("Description") or "")
    return LiveState(
        version=version,
        release_id=_release_of(lam, names.inference_function, version),
        previous_version=match.group(1) if match else None,
    )


def release_of_version(names: stack.Stack, version: str) -> str:
    """RELEASE_ID of one published version."""
    return _release_of(client("lambda"), names.inference_function, version)


def _same_code(lam: Any, names: stack.Stack, version: str) -> bool:
    """True when the version runs the code Terraform last deployed ($LATEST)."""
    latest = lam.get_function_configuration(FunctionName=names.inference_function)
    serving = lam.get_function_configuration(
        FunctionName=names.inference_function, Qualifier=version
    )
    return bool(latest["CodeSha256"] == serving["CodeSha256"])


def publish_active_version(
    lam: Any, function: str, description: str, delay_s: float | None = None
) -> str:
    """Publish $LATEST as a new version and return it once Lambda reports it Active.

    A new version can start Pending while Lambda prepares it (this function is in a VPC
    and mounts EFS); an alias moved to it before it is Active routes live traffic to a
    version that cannot serve yet. A version that ends Failed (or is not Active in time)
    raises PromoteRefused, and the alias stays where it was.
    """
    version = str(lam.publish_version(FunctionName=function, Description=description)["Version"])
    try:
        lam.get_waiter("published_version_active").wait(
            FunctionName=function,
            Qualifier=version,
            WaiterConfig={"Delay": PUBLISH_WAIT_DELAY_S if delay_s is None else delay_s},
        )
    except WaiterError as exc:
        raise PromoteRefused(
            f"version {version} of {function} did not become Active: {exc}"
        ) from exc
    return version


def _move_alias(names: stack.Stack, version: str, release_id: str, previous: str) -> None:
    client("lambda").update_alias(
        FunctionName=names.inference_function,
        Name=names.live_alias,
        FunctionVersion=version,
        Description=f"release {release_id}; previous version {previous}",
    )


def promote(names: stack.Stack, release_id: str) -> LiveState:
    """Check the release on EFS, publish a version that serves it, move `live` to it."""
    before = live_state(names)
    lam = client("lambda")
    if before.release_id == release_id and _same_code(lam, names, before.version):
        return before
    verdict = syncer_client.call(
        names.syncer_function, {"action": "check", "release_id": release_id}
    )
    if not verdict.ok:
        raise PromoteRefused(
            f"release {release_id} failed the stamp check on EFS: {verdict.code}: {verdict.message}"
        )
    config = lam.get_function_configuration(FunctionName=names.inference_function)
    variables = dict((config.get("Environment") or {}).get("Variables") or {})
    variables["RELEASE_ID"] = release_id
    lam.update_function_configuration(
        FunctionName=names.inference_function, Environment={"Variables": variables}
    )
    lam.get_waiter("function_updated_v2").wait(FunctionName=names.inference_function)
    version = publish_active_version(lam, names.inference_function, f"release {release_id}")
    _move_alias(names, version, release_id, before.version)
    return LiveState(version, release_id, before.version)


def rollback(names: stack.Stack) -> LiveState:
    """Move `live` back to the version it replaced, in one step."""
    current = live_state(names)
    if current.previous_version is None:
        raise PromoteRefused("live has no previous version to return to")
    release_id = release_of_version(names, current.previous_version)
    _move_alias(names, current.previous_version, release_id, current.version)
    return LiveState(current.previous_version, release_id, current.version)


def main(argv: list[str] | None = None) -> int:
    """CLI of the promote step (and of `make rollback`)."""
    parser = argparse.ArgumentParser(description=__doc__)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--release", type=Path, default=DEFAULT_RELEASE)
    group.add_argument("--release-id")
    group.add_argument("--rollback", action="store_true")
    parser.add_argument("--lock-wait", type=float, default=0.0)
    args = parser.parse_args(argv)
    names = stack.load()
    try:
        with deploy_lock(names.artifacts_bucket, wait_s=args.lock_wait):
            if args.rollback:
                state = rollback(names)
                print(f"rolled back: live is version {state.version} ({state.release_id})")
                return 0
            release_id = args.release_id or PackagedRelease.load(args.release).release_id
            state = promote(names, release_id)
    except (PromoteRefused, DeployLockBusy) as exc:
        print(f"promote: {exc}", file=sys.stderr)
        return 1
    print(
        f"live is version {state.version} ({state.release_id}); "
        f"previous version {state.previous_version}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
