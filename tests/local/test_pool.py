"""Execution environments without the emulator: a tiny deployed zip run by the pool."""

from __future__ import annotations

import base64
import dataclasses
import errno
import hashlib
import io
import time
import zipfile
from pathlib import Path

import pytest

from local.dataplane import apigw
from local.dataplane.functions import FunctionSpec, Mount
from local.dataplane.pool import FunctionPool

HANDLER = """
import errno, os, time
def handle(event, context):
    if event.get("crash"):
        os._exit(3)
    if event.get("context"):
        return {"remaining_ms": context.get_remaining_time_in_millis(),
                "request_id": context.aws_request_id}
    if event.get("links"):
        efs = os.environ["EFS_MOUNT_PATH"]
        open(os.path.join(efs, "f"), "w").close()
        try:
            for i in range(event["links"]):
                os.link(os.path.join(efs, "f"), os.path.join(efs, f"l{i}"))
        except OSError as exc:
            return {"refused_at": i, "errno": exc.errno}
        return {"refused_at": None}
    time.sleep(event.get("sleep", 0))
    return {"statusCode": 200, "body": os.environ.get("EFS_MOUNT_PATH", "")}
"""


@pytest.fixture()
def spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FunctionSpec:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("fn.py", HANDLER)
    data = buf.getvalue()
    (tmp_path / "lambda").mkdir()
    (tmp_path / "lambda" / "fn.zip").write_bytes(data)
    monkeypatch.setenv("BUILD_DIR", str(tmp_path))
    return FunctionSpec(
        name="fn",
        version="1",
        handler="fn.handle",
        runtime="python3.11",
        memory_mb=1024,
        timeout_s=2,
        environment={"EFS_MOUNT_PATH": "/mnt/ml"},
        code_sha256=base64.b64encode(hashlib.sha256(data).digest()).decode(),
        reserved_concurrency=1,
        mounts=(Mount("/mnt/ml", tmp_path / "efs", read_only=True),),
    )


def test_warm_reuse_mount_mapping_and_thread_pinning(spec: FunctionSpec, tmp_path: Path) -> None:
    pool = FunctionPool(lambda: spec, tmp_path / "logs")
    try:
        first = pool.invoke({})
        second = pool.invoke({})
        assert first.kind == second.kind == "ok"
        assert first.cold_start and not second.cold_start
        assert first.payload["body"] == str(tmp_path / "efs")
        assert pool.started_environments == 1
        assert spec.vcpus() == 1
        assert spec.process_environment()["OMP_NUM_THREADS"] == "1"
    finally:
        pool.close()


def test_timeout_kills_the_environment(spec: FunctionSpec, tmp_path: Path) -> None:
    pool = FunctionPool(lambda: spec, tmp_path / "logs")
    try:
        outcome = pool.invoke({"sleep": 10})
        assert outcome.kind == "timeout"
        assert pool.environment_count == 0
        assert pool.invoke({}).kind == "ok"
    finally:
        pool.close()


def test_crash_mid_request_is_reported_and_replaced(spec: FunctionSpec, tmp_path: Path) -> None:
    pool = FunctionPool(lambda: spec, tmp_path / "logs")
    try:
        assert pool.invoke({"crash": True}).kind == "crashed"
        again = pool.invoke({})
        assert again.kind == "ok" and again.cold_start
    finally:
        pool.close()


def test_idle_environments_are_reaped(spec: FunctionSpec, tmp_path: Path) -> None:
    pool = FunctionPool(lambda: spec, tmp_path / "logs", idle_timeout_s=0.2)
    try:
        assert pool.invoke({}).kind == "ok"
        assert pool.reap() == 0 or pool.environment_count == 0
        time.sleep(0.5)
        pool.reap()
        assert pool.environment_count == 0
    finally:
        pool.close()


def test_event_follows_payload_format_two() -> None:
    request = apigw.HttpRequest(
        "POST",
        "/predict",
        "top_k=3&a=1&a=2",
        [("Content-Type", "image/png"), ("X-Multi", "1"), ("x-multi", "2"), ("Cookie", "a=1; b=2")],
        b"\x89PNG",
    )
    event = apigw.build_event(request, "POST /predict", "api123")
    assert event["version"] == "2.0" and event["routeKey"] == "POST /predict"
    assert event["rawQueryString"] == "top_k=3&a=1&a=2"
    assert event["queryStringParameters"] == {"top_k": "3", "a": "1,2"}
    assert event["headers"]["x-multi"] == "1,2"
    assert event["cookies"] == ["a=1", "b=2"]
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == b"\x89PNG"
    context = event["requestContext"]
    assert context["http"]["method"] == "POST" and context["http"]["path"] == "/predict"
    assert context["stage"] == "$default" and isinstance(context["timeEpoch"], int)
    text = apigw.build_event(
        apigw.HttpRequest("POST", "/p", "", [("content-type", "application/json")], b"{}"),
        "POST /p",
        "api",
    )
    assert text["isBase64Encoded"] is False and text["body"] == "{}"


def test_response_mapping() -> None:
    ok = apigw.map_response(
        {
            "statusCode": 201,
            "headers": {"x": "1"},
            "cookies": ["c=1"],
            "body": base64.b64encode(b"\0\1").decode(),
            "isBase64Encoded": True,
        }
    )
    assert ok.status == 201 and ok.body == b"\0\1" and ("set-cookie", "c=1") in ok.headers
    inferred = apigw.map_response({"hello": "world"})
    assert inferred.status == 200 and inferred.body == b'{"hello": "world"}'
    assert apigw.map_response({"statusCode": "oops"}).status == 500


def test_token_bucket_admits_a_burst_then_the_rate() -> None:
    bucket = apigw.TokenBucket(rate=1.0, burst=3)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]


def test_the_handler_gets_lambdas_context(spec: FunctionSpec, tmp_path: Path) -> None:
    pool = FunctionPool(lambda: spec, tmp_path / "logs")
    try:
        outcome = pool.invoke({"context": True})
        assert outcome.kind == "ok"
        assert 0 < outcome.payload["remaining_ms"] <= spec.timeout_s * 1000
        assert outcome.payload["request_id"]
    finally:
        pool.close()


def test_efs_folders_refuse_the_178th_hard_link(spec: FunctionSpec, tmp_path: Path) -> None:
    # EFS allows 177 links per file; the host file system tens of thousands.
    writable = dataclasses.replace(
        spec, mounts=(Mount("/mnt/ml", tmp_path / "efs", read_only=False),)
    )
    (tmp_path / "efs").mkdir()
    pool = FunctionPool(lambda: writable, tmp_path / "logs")
    try:
        outcome = pool.invoke({"links": 200})
        assert outcome.kind == "ok", outcome
        assert outcome.payload == {"refused_at": 176, "errno": errno.EMLINK}
        assert (tmp_path / "efs" / "f").stat().st_nlink == 177
    finally:
        pool.close()
