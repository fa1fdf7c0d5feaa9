"""Pipeline step 8: delete releases beyond the newest N, never the live or the previous one.

python -m ci.prune --keep 3
"""

from __future__ import annotations

import argparse
import sys

from ci import promote, stack, syncer_client
from ci.aws import client
from ci.deploy_lock import DeployLockBusy, deploy_lock
from ci.publish import bundle_key


def plan_prune(releases: list[str], keep: int, protected: set[str]) -> list[str]:
    """The releases to delete: all but the newest `keep` (ids sort by time) and the protected."""
    newest = set(sorted(releases)[-keep:]) if keep > 0 else set()
    return [r for r in sorted(releases) if r not in newest and r not in protected]


def prune(names: stack.Stack, keep: int) -> list[str]:
    """Delete old releases on EFS (through the syncer) and their bundles; return what went."""
    listed = syncer_client.call(names.syncer_function, {"action": "list"})
    if not listed.ok:
        raise RuntimeError(f"the syncer could not list releases: {listed.message}")
    state = promote.live_state(names)
    protected = {state.release_id}
    if state.previous_version is not None:
        protected.add(promote.release_of_version(names, state.previous_version))
    doomed = plan_prune(list(listed.details.get("releases", [])), keep, protected)
    s3 = client("s3")
    for release_id in doomed:
        answer = syncer_client.call(
            names.syncer_function, {"action": "delete", "release_id": release_id}
        )
        if not answer.ok:
            raise RuntimeError(f"the syncer could not delete {release_id}: {answer.message}")
        s3.delete_object(Bucket=names.artifacts_bucket, Key=bundle_key(release_id))
    return doomed


def main(argv: list[str] | None = None) -> int:
    """CLI of the prune step."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keep", type=int, default=3)
    parser.add_argument("--lock-wait", type=float, default=0.0)
    args = parser.parse_args(argv)
    if args.keep < 1:
        print("prune: --keep must be at least 1", file=sys.stderr)
        return 2
    names = stack.load()
    try:
        with deploy_lock(names.artifacts_bucket, wait_s=args.lock_wait):
            deleted = prune(names, args.keep)
    except (DeployLockBusy, RuntimeError) as exc:
        print(f"prune: {exc}", file=sys.stderr)
        return 1
    print(f"prune: deleted {len(deleted)} release(s){': ' + ', '.join(deleted) if deleted else ''}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
