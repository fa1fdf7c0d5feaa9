"""Faults under a serving endpoint: an environment killed mid-request, the release directory
taken away under a warm environment, STAMP.json rewritten while warm.

The release damaged here is the session's live release on the stack's EFS folder; each test
puts it back before it returns, whatever happened.
"""

from __future__ import annotations

import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from efs_layout.layout import STAMP_FILE, release_path
from tests.conftest import Deployed, Endpoint, endpoint_process
from tests.faults.conftest import call, predict, stats
from tests.lambda_src import releases

pytestmark = [pytest.mark.emulator, pytest.mark.terraform]


def test_d_an_environment_killed_mid_request_answers_502_json_and_is_replaced(
    endpoint: Endpoint,
) -> None:
    # The endpoint is fresh, so this request cold-starts: its environment is up (and listed
    # in the stats) seconds before the answer, while lib/ is imported and the model loaded.
    with ThreadPoolExecutor(max_workers=1) as pool:
        in_flight = pool.submit(predict, endpoint.url, 4)
        deadline = time.monotonic() + 120
        while not (pids := stats(endpoint.url)["pids"]):
            assert not in_flight.done(), in_flight.result()
            assert time.monotonic() < deadline, "no environment started"
            time.sleep(0.01)
        (pid,) = pids
        assert not in_flight.done(), "the request was answered before the kill"
        os.kill(pid, signal.SIGKILL)
        status, body, headers = in_flight.result(timeout=120)

    assert status == 502, body
    assert headers["content-type"] == "application/json"
    assert body["message"].startswith("Bad Gateway: the execution environment crashed"), body
    assert pid not in stats(endpoint.url)["pids"]
    status, body, _ = predict(endpoint.url, 4)
    assert status == 200 and body["cold_start"] is True, body
    assert body["predictions"][0]["label"] == "4"
    after = stats(endpoint.url)
    assert after["environments"] == 1 and after["started_environments"] == 2
    assert pid not in after["pids"]


@pytest.mark.parametrize(
    "warmed_by",
    [
        "predict",
        "warmup",
    ],
)
def test_e_a_release_renamed_away_under_a_warm_environment_keeps_being_served(
    endpoint: Endpoint, stack_efs: Path, warmed_by: str
) -> None:
    if warmed_by == "predict":
        status, body, _ = predict(endpoint.url, 3)
    else:
        status, body, _ = call(endpoint.url + "/warmup", "POST", b"")
    assert status == 200, body
    live = body["release"]
    release = release_path(stack_efs, live)
    # Out of the access point's tree but on the same file system: a rename, nothing copied.
    away = stack_efs.parent / f".renamed-away-{live}"
    os.rename(release, away)
    try:
        status, body, _ = predict(endpoint.url, 7)
        assert status == 200, body
        assert body["release"] == live and body["cold_start"] is False
        assert body["predictions"][0]["label"] == "7"
        status, health, _ = call(endpoint.url + "/health")
        assert status == 200 and health["loaded"] is True
        assert health["release"] == live and health["release_on_disk"] is False
    finally:
        os.rename(away, release)
    status, health, _ = call(endpoint.url + "/health")
    assert health["release_on_disk"] is True
    assert stats(endpoint.url)["started_environments"] == 1


def test_f_a_stamp_of_another_abi_written_while_warm_is_refused_only_by_a_cold_environment(
    deployed: Deployed, endpoint: Endpoint, stack_efs: Path, tmp_path: Path
) -> None:
    status, body, _ = predict(endpoint.url, 3)
    assert status == 200, body
    live = body["release"]
    stamp_file = release_path(stack_efs, live) / STAMP_FILE
    original = stamp_file.read_bytes()
    other = json.loads(original)
    other["python"] = {"abi_tag": "cp39", "version": "3.9"}
    releases.make_writable(stamp_file)
    try:
        stamp_file.write_bytes(json.dumps(other, indent=2).encode())
        status, body, _ = predict(endpoint.url, 5)
        assert status == 200 and body["release"] == live and body["cold_start"] is False, body
        with endpoint_process(deployed, tmp_path / "cold-endpoint") as cold:
            status, body, _ = predict(cold.url, 5)
            assert status == 503, body
            assert body["error"]["code"] == "release_abi_mismatch", body
            assert "cp39" in body["error"]["message"]
            status, health, _ = call(cold.url + "/health")
            assert health["loaded"] is False and health["verdict"] == "abi_mismatch"
            # Refusing is an answer, not a crash: the cold environment is still there.
            assert stats(cold.url)["environments"] == 1
        status, body, _ = predict(endpoint.url, 5)
        assert status == 200 and body["release"] == live, body
    finally:
        stamp_file.write_bytes(original)
        os.chmod(stamp_file, 0o444)
