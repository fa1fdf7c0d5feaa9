"""The local endpoint: what Terraform deployed, served through emulated API Gateway + Lambda."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from local.dataplane import reports
from tests.conftest import Endpoint
from tests.models.conftest import hand_drawn

pytestmark = [pytest.mark.emulator, pytest.mark.terraform]


def call(
    url: str, method: str = "GET", body: bytes | None = None, ctype: str | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    headers = {"content-type": ctype} if ctype else {}
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read() or b"{}"), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}"), dict(exc.headers)


def stats(endpoint: Endpoint) -> dict[str, Any]:
    status, body, _ = call(endpoint.url + "/_local/stats")
    assert status == 200
    return next(iter(body.values()))


def test_warmup_is_cold_once_then_warm_and_predict_reads_the_digit(
    endpoint: Endpoint, promoted: str
) -> None:
    status, first, _ = call(endpoint.url + "/warmup", "POST", b"")
    assert status == 200 and first["cold_start"] is True and first["release"] == promoted
    status, second, _ = call(endpoint.url + "/warmup", "POST", b"")
    assert status == 200 and second["cold_start"] is False
    status, body, headers = call(endpoint.url + "/predict", "POST", hand_drawn(3), "image/png")
    assert status == 200, body
    assert body["predictions"][0]["label"] == "3"
    assert headers["content-type"] == "application/json"
    status, health, _ = call(endpoint.url + "/health")
    assert status == 200 and health["loaded"] is True
    assert stats(endpoint)["environments"] == 1


def test_report_lines_are_written_and_parse(endpoint: Endpoint) -> None:
    call(endpoint.url + "/warmup", "POST", b"")
    call(endpoint.url + "/predict", "POST", hand_drawn(5), "image/png")
    lines = "".join(p.read_text() for p in endpoint.log_dir.glob("*.log")).splitlines()
    parsed = list(reports.parse(lines))
    assert len(parsed) >= 2
    assert parsed[0].init_ms is not None and parsed[0].init_ms > 0
    assert all(r.init_ms is None for r in parsed[1:])
    assert all(r.memory_mb == 2048 and r.billed_ms >= r.duration_ms for r in parsed)
    assert all(0 < r.max_memory_used_mb < r.memory_mb for r in parsed)


def test_twenty_concurrent_requests_with_reserved_concurrency_two(endpoint: Endpoint) -> None:
    image = hand_drawn(8)

    def one(_: int) -> int:
        return call(endpoint.url + "/predict", "POST", image, "image/png")[0]

    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(pool.map(one, range(20)))
    assert set(statuses) <= {200, 429}, statuses
    assert statuses.count(200) >= 2
    assert stats(endpoint)["peak_environments"] <= 2


def test_api_gateway_limits_and_routes(endpoint: Endpoint) -> None:
    status, body, _ = call(
        endpoint.url + "/predict", "POST", b"\0" * (11 * 1024 * 1024), "image/png"
    )
    assert status == 413 and "Too Large" in body["message"]
    status, body, _ = call(endpoint.url + "/nowhere", "POST", b"x", "image/png")
    assert status == 404
    status, body, _ = call(endpoint.url + "/predict", "POST", b"not an image", "image/png")
    assert status == 422 and body["error"]["code"] == "undecodable_image"


def test_the_page_is_served_at_the_root(endpoint: Endpoint) -> None:
    with urllib.request.urlopen(endpoint.url + "/", timeout=10) as response:
        assert response.status == 200
        assert b"<html" in response.read().lower()


def test_cors_only_for_the_allowed_origin(endpoint: Endpoint) -> None:
    allowed = urllib.request.Request(
        endpoint.url + "/health", headers={"origin": "http://127.0.0.1:8080"}
    )
    with urllib.request.urlopen(allowed, timeout=60) as response:
        assert response.headers.get("access-control-allow-origin") == "http://127.0.0.1:8080"
    other = urllib.request.Request(
        endpoint.url + "/health", headers={"origin": "https://evil.example"}
    )
    with urllib.request.urlopen(other, timeout=60) as response:
        assert response.headers.get("access-control-allow-origin") is None


def predict(endpoint: Endpoint, digit: int) -> tuple[int, dict[str, Any], dict[str, str]]:
    return call(endpoint.url + "/predict", "POST", hand_drawn(digit), "image/png")


def test_a_killed_idle_environment_is_never_served_and_is_replaced(endpoint: Endpoint) -> None:
    # The pool hands an idle environment its next request without a liveness check, and the
    # reaper drops dead idle environments once a second, so a request right after the kill
    # meets one of two orders, both correct, and the test accepts either:
    # - the request reaches the dead environment: 502 "crashed", the environment is forgotten
    #   before the answer, and the next request cold-starts a new one;
    # - the reaper dropped it first: the request itself cold-starts a new one and gets 200.
    # (A kill while a request is in flight is tests/faults/test_runtime_faults.py's test_d.)
    status, body, _ = call(endpoint.url + "/warmup", "POST", b"")
    assert status == 200 and body["cold_start"] is True, body
    (dead,) = stats(endpoint)["pids"]
    os.kill(dead, signal.SIGKILL)
    status, body, headers = predict(endpoint, 2)
    if status == 502:
        assert headers["content-type"] == "application/json"
        assert body["message"].startswith("Bad Gateway: the execution environment crashed"), body
        assert dead not in stats(endpoint)["pids"]
        status, body, _ = predict(endpoint, 2)
    assert status == 200 and body["cold_start"] is True, body
    assert body["predictions"][0]["label"] == "2"
    after = stats(endpoint)
    assert after["environments"] == 1 and after["started_environments"] == 2, after
    (replacement,) = after["pids"]
    assert replacement != dead

    # The reaper's order on its own: an environment that dies while idle leaves the pool
    # with no request at all (waited for, not slept on), and the next request is served.
    os.kill(replacement, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while replacement in stats(endpoint)["pids"]:
        assert time.monotonic() < deadline, "the dead environment was never reaped"
        time.sleep(0.05)
    status, body, _ = predict(endpoint, 5)
    assert status == 200 and body["cold_start"] is True, body
    assert body["predictions"][0]["label"] == "5"
    final = stats(endpoint)
    assert final["environments"] == 1 and final["started_environments"] == 3, final
    assert not {dead, replacement} & set(final["pids"])
