"""The syncer: publish bundles onto EFS idempotently, refuse bad ones, report bytes moved."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from efs_layout import list_releases, make_bundle
from efs_layout.release import build_manifest
from efs_layout.stamp import build_stamp
from lambda_src.syncer import handler
from lambda_src.syncer.sync import Outcome, SyncRequest, parse_request, publish
from tests.lambda_src import releases

LIB = {
    "lib/bigdep/_core.so": os.urandom(2 * 1024 * 1024),
    "lib/bigdep/__init__.py": b"VERSION = 1\n",
}


def bundle_for(
    tmp: Path, release_id: str, model: Any, lib: dict[str, bytes] | None = None
) -> tuple[Path, str]:
    src = releases.source_tree(tmp / f"src-{release_id}", model, lib_files=lib or LIB)
    stamp = build_stamp(release_id, build_manifest(src), releases.fields())
    info = make_bundle(src, stamp, tmp / f"{release_id}.tar.gz")
    return info.path, info.sha256


def test_publish_creates_then_is_idempotent(tmp_path: Path) -> None:
    root = tmp_path / "efs"
    path, sha = bundle_for(tmp_path, "20261125T120000Z-abcdef1", {"weights": [1, 2, 3]})
    first = publish(root, path, SyncRequest("b", "k", sha))
    assert first.status == "created", first
    again = publish(root, path, SyncRequest("b", "k", sha))
    assert again.status == "already_present"
    assert list_releases(root) == ["20261125T120000Z-abcdef1"]


def test_model_only_release_moves_under_five_percent(tmp_path: Path) -> None:
    root = tmp_path / "efs"
    p1, s1 = bundle_for(tmp_path, "20261125T120000Z-abcdef1", {"weights": list(range(100))})
    p2, s2 = bundle_for(tmp_path, "20261125T130000Z-abcdef2", {"weights": list(range(101))})
    first = publish(root, p1, SyncRequest("b", "k1", s1))
    second = publish(root, p2, SyncRequest("b", "k2", s2))
    assert second.status == "created"
    moved = second.details["bytes_written_to_store"]
    assert moved < 0.05 * first.details["bytes_total"], (moved, first.details)


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        ("sha", "checksum_mismatch"),
        ("conflict", "release_conflict"),
        ("truncate", "checksum_mismatch"),
    ],
)
def test_bad_bundles_are_refused(tmp_path: Path, mutate: str, code: str) -> None:
    root = tmp_path / "efs"
    rid = "20261125T120000Z-abcdef1"
    path, sha = bundle_for(tmp_path, rid, {"w": 1})
    if mutate == "sha":
        sha = hashlib.sha256(b"something else").hexdigest()
    elif mutate == "conflict":
        assert publish(root, path, SyncRequest("b", "k", sha)).status == "created"
        (tmp_path / "other").mkdir()
        path, sha = bundle_for(tmp_path / "other", rid, {"w": 2})
    elif mutate == "truncate":
        path.write_bytes(path.read_bytes()[:1000])
    outcome = publish(root, path, SyncRequest("b", "k", sha))
    assert (outcome.status, outcome.code) == ("refused", code), outcome
    if mutate != "conflict":
        assert list_releases(root) == []


def test_corrupted_bundle_with_matching_sha_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "efs"
    path, _ = bundle_for(tmp_path, "20261125T120000Z-abcdef1", {"w": 1})
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    outcome = publish(root, path, SyncRequest("b", "k", hashlib.sha256(data).hexdigest()))
    assert outcome.status == "refused"
    assert list_releases(root) == []


@pytest.mark.parametrize(
    "event",
    [
        None,
        [],
        {"action": "explode"},
        {"bucket": "b", "key": "k"},
        {"bucket": "b", "key": "k", "sha256": "xyz"},
        {"action": "check"},
        {"action": "delete", "release_id": 3},
    ],
)
def test_malformed_requests_are_refused(event: Any) -> None:
    outcome = parse_request(event)
    assert isinstance(outcome, Outcome) and outcome.code == "bad_request"


def _syncer_environment(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    """The syncer's environment: EFS at ``root``, S3 from moto in this process."""
    monkeypatch.setenv("EFS_MOUNT_PATH", str(root))
    for key in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


def test_handler_downloads_from_s3_and_publishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "efs"
    _syncer_environment(monkeypatch, root)
    rid = "20261125T120000Z-abcdef1"
    path, sha = bundle_for(tmp_path, rid, {"w": 1})
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="artifacts")
        s3.upload_file(str(path), "artifacts", f"releases/{rid}.tar.gz")
        created = handler.handle(
            {"bucket": "artifacts", "key": f"releases/{rid}.tar.gz", "sha256": sha}, None
        )
        assert created["status"] == "created", created
        missing = handler.handle({"bucket": "artifacts", "key": "nope", "sha256": sha}, None)
        assert (missing["status"], missing["code"]) == ("refused", "download_failed")
    assert handler.handle({"action": "list"}, None)["details"]["releases"] == [rid]
    checked = handler.handle({"action": "check", "release_id": rid}, None)
    assert (checked["status"], checked["code"]) == ("ok", "ok")
    deleted = handler.handle({"action": "delete", "release_id": rid}, None)
    assert deleted["status"] == "deleted"
    assert handler.handle({"action": "list"}, None)["details"]["releases"] == []


@pytest.fixture()
def s3_client(monkeypatch: pytest.MonkeyPatch) -> Any:
    for key in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="artifacts")
        yield s3


def test_the_download_streams_in_order_from_parallel_ranged_gets(s3_client: Any) -> None:
    from lambda_src.syncer import download

    # Five parts and a tail, so ranged GETs run at once and must be put back in order.
    data = os.urandom(5 * download.PART_BYTES + 12345)
    s3_client.put_object(Bucket="artifacts", Key="big", Body=data)
    ranges: list[str] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        ranges.append(str(params.get("Range")))

    s3_client.meta.events.register("provide-client-params.s3.GetObject", record)
    stream = download.S3Stream(s3_client, "artifacts", "big")
    got = hashlib.sha256()
    n = 0
    while chunk := stream.read(1_000_003):
        got.update(chunk)
        n += len(chunk)
    stream.close()
    assert n == len(data) and got.hexdigest() == hashlib.sha256(data).hexdigest()
    assert len(ranges) == 6 and all(r.startswith("bytes=") for r in ranges)


def test_a_reader_that_gives_up_stops_the_download(s3_client: Any) -> None:
    from lambda_src.syncer import download

    s3_client.put_object(Bucket="artifacts", Key="big", Body=os.urandom(6 * download.PART_BYTES))
    stream = download.S3Stream(s3_client, "artifacts", "big")
    assert len(stream.read(1000)) == 1000
    stream.close()  # returns once the download thread has ended
    assert not stream._thread.is_alive()


def test_a_missing_object_is_a_download_failure_not_a_traceback(s3_client: Any) -> None:
    from lambda_src.syncer import download

    stream = download.S3Stream(s3_client, "artifacts", "nope")
    with pytest.raises(download.DownloadFailed, match=r"404|Not Found"):
        stream.read(10)
    stream.close()


def test_publish_reports_where_the_time_went(tmp_path: Path) -> None:
    root = tmp_path / "efs"
    path, sha = bundle_for(tmp_path, "20261125T120000Z-abcdef1", {"w": 1})
    outcome = publish(root, path, SyncRequest("b", "k", sha))
    seconds = outcome.details["seconds"]
    assert set(seconds) == {"stream", "commit", "link", "check", "total"}
    assert seconds["total"] >= sum(v for k, v in seconds.items() if k != "total")


class _Context:
    """Lambda's context, as far as the syncer reads it."""

    def __init__(self, remaining_ms: int) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def test_the_lock_carries_the_syncers_remaining_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # After a timeout the next sync takes the lock over once this lease has ended,
    # instead of after the 16-minute age rule.
    import efs_layout.bundle as bundle_module

    leases: list[float | None] = []
    real_lock = bundle_module.release_lock

    def recording_lock(*args: Any, **kwargs: Any) -> Any:
        leases.append(kwargs.get("lease"))
        return real_lock(*args, **kwargs)

    monkeypatch.setattr(bundle_module, "release_lock", recording_lock)
    root = tmp_path / "efs"
    _syncer_environment(monkeypatch, root)
    rid = "20261125T120000Z-abcdef1"
    path, sha = bundle_for(tmp_path, rid, {"w": 1})
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="artifacts")
        s3.upload_file(str(path), "artifacts", "r.tar.gz")
        event = {"bucket": "artifacts", "key": "r.tar.gz", "sha256": sha}
        assert handler.handle(event, _Context(300_000))["status"] == "created"
    assert leases == [300.0]


def test_concurrent_syncers_take_turns_without_reserved_concurrency(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Reserved concurrency is off by default (new accounts cannot reserve), so two syncs
    # can run at once; the EFS lock alone must keep them from writing at the same time.
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import efs_layout.bundle as bundle_module
    from efs_layout import check_release

    active = 0
    most = 0
    guard = threading.Lock()
    real_unpack = bundle_module._unpack_locked

    def one_writer(*args: Any, **kwargs: Any) -> Any:
        nonlocal active, most
        with guard:
            active += 1
            most = max(most, active)
        try:
            return real_unpack(*args, **kwargs)
        finally:
            with guard:
                active -= 1

    monkeypatch.setattr(bundle_module, "_unpack_locked", one_writer)
    root = tmp_path / "efs"
    rids = ["20261125T120000Z-abcdef1", "20261125T120001Z-abcdef2", "20261125T120002Z-abcdef3"]
    bundles = [bundle_for(tmp_path, rid, {"w": i}) for i, rid in enumerate(rids)]
    with ThreadPoolExecutor(max_workers=len(bundles)) as pool:
        outcomes = list(
            pool.map(lambda b: publish(root, b[0], SyncRequest("b", "k", b[1])), bundles)
        )
    assert [o.status for o in outcomes] == ["created"] * len(rids), outcomes
    assert most == 1
    assert list_releases(root) == rids
    assert all(check_release(root, rid, full=True).ok for rid in rids)
