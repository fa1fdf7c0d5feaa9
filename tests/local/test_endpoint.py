"""The local endpoint: what Terraform deployed, served through emulated API Gateway + Lambda."""

from __future__ import annotations

import json
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


def test_a_crashed_environment_answers_502_and_is_replaced(endpoint: Endpoint) -> None:
    import os
    import signal
    import time

    status, _, _ = call(endpoint.url + "/warmup", "POST", b"")
    assert status == 200
    (pid,) = stats(endpoint)["pids"]
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)
    status, body, _ = call(endpoint.url + "/predict", "POST", hand_drawn(2), "image/png")
    assert status == 502 and "crashed" in body["message"]
    status, body, _ = call(endpoint.url + "/predict", "POST", hand_drawn(2), "image/png")
    assert status == 200 and body["cold_start"] is True
    assert pid not in stats(endpoint)["pids"]
