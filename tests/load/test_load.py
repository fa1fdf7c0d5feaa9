"""`make load`: the load module against the test endpoint, its report code, its URL guard."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from typing import Any

import pytest
import requests

import load
from load import MemorySample, Sample
from load.__main__ import main
from tests.conftest import REPO_ROOT, Deployed, Endpoint

MAX_GROWTH_MB = 50.0


@pytest.mark.emulator
@pytest.mark.terraform
def test_a_short_load_run_against_the_endpoint_keeps_its_invariants(
    endpoint: Endpoint, aws_env: Deployed
) -> None:
    from ci.aws import client

    function = aws_env.outputs["inference_function_name"]
    reserved = client("lambda").get_function_concurrency(FunctionName=function)[
        "ReservedConcurrentExecutions"
    ]
    clients = 10
    assert clients > reserved
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "load",
            "--url",
            endpoint.url,
            "--clients",
            str(clients),
            "--seconds",
            "5",
            "--warmup-seconds",
            "5",
            "--sample-interval",
            "0.2",
            "--max-growth-mb",
            str(MAX_GROWTH_MB),
            "--json",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    report: dict[str, Any] = json.loads(proc.stdout)
    assert proc.returncode == 0 and report["ok"] is True, report["problems"]
    run = report["run"]
    assert run["error_count"] == 0 and report["warmup"]["error_count"] == 0, run["errors"]
    assert run["served"] > 0 and run["throttled"] > 0, run
    assert run["requests"] == run["served"] + run["throttled"]
    assert run["latency_ms"]["p50"] <= run["latency_ms"]["p95"] <= run["latency_ms"]["p99"]
    assert run["label_matches"] >= 0.9 * run["served"], "answers under load are wrong"
    environments = report["environments"]
    assert 1 <= environments["used"] <= reserved, environments
    assert environments["peak"] <= reserved
    memory = report["memory"]
    # One sample every 0.2 s would be 25, but each is a request to the busy endpoint, so how
    # many fit in 5 s is up to the scheduler. The judgement needs both ends of the run
    # (growth_mb below) and the periodic sampling at least once in between.
    assert memory["samples"] >= 3, memory
    assert memory["growth_mb"] is not None and memory["growth_mb"] < MAX_GROWTH_MB, memory
    assert 0 < memory["max_rss_mb"] < 2048  # the function's memory size


@pytest.mark.parametrize("q", [1, 25, 50, 90, 95, 99])
def test_percentile_matches_the_inclusive_quantiles(q: int) -> None:
    data = [float(x * x % 97) for x in range(1, 58)]
    expected = statistics.quantiles(data, n=100, method="inclusive")[q - 1]
    assert load.percentile(data, q) == pytest.approx(expected)


def test_percentile_edges() -> None:
    assert load.percentile([7.0], 99) == 7.0
    assert load.percentile([3.0, 1.0, 2.0], 0) == 1.0
    assert load.percentile([3.0, 1.0, 2.0], 100) == 3.0
    assert load.percentile([10.0, 20.0], 50) == 15.0
    with pytest.raises(ValueError):
        load.percentile([], 50)
    with pytest.raises(ValueError):
        load.percentile([1.0], 101)


def test_phase_report_counts_statuses_and_times_only_the_200s() -> None:
    samples = [
        Sample(0.1, "200", 100.0, cold_start=True, label_matched=True),
        Sample(0.2, "200", 300.0, label_matched=False),
        Sample(0.3, "429", 1.0),
        Sample(0.4, "429", 2.0),
        Sample(0.5, "502", 5000.0),
        Sample(0.6, "transport:ConnectionError", 3.0),
    ]
    report = load.phase_report(samples, seconds=2.0)
    assert (report.requests, report.served, report.throttled) == (6, 2, 2)
    assert report.errors == {"502": 1, "transport:ConnectionError": 1}
    assert report.error_count == 2
    assert report.latency_ms["p50"] == 200.0 and report.latency_ms["max"] == 300.0
    assert (report.cold_starts, report.label_matches, report.served_per_second) == (1, 1, 1.0)
    assert load.phase_report([], 1.0).latency_ms == {}


def test_memory_report_compares_each_environments_peaks_at_both_ends() -> None:
    samples = []
    for tick in range(101):  # a 10 s run sampled every 0.1 s
        at = tick / 10
        rss = {
            1: 300.0,  # steady
            2: min(400.0, 100.0 + 300.0 * at),  # cold-starts during the first window
            3: 300.0 + 8.0 * at,  # leaks 80 MB over the run
        }
        if 3.0 <= at <= 6.0:
            rss[4] = 900.0  # lived only in the middle: its peak counts, not its growth
        samples.append(MemorySample(at, rss))
    report = load.memory_report(samples, seconds=10.0)
    assert report.growth_by_environment == {"1": 0.0, "2": 0.0, "3": 72.0}
    assert report.growth_mb == 72.0 and report.max_rss_mb == 900.0
    assert report.first_window_mb == 400.0 and report.last_window_mb == 400.0
    ok_phase = load.phase_report([Sample(0.1, "200", 10.0)], 1.0)
    problems = load.judge(ok_phase, ok_phase, report, max_growth_mb=50.0)
    assert len(problems) == 1 and "grew by 72.0 MB" in problems[0]
    assert load.judge(ok_phase, ok_phase, report, max_growth_mb=100.0) == []


def test_judge_fails_on_errors_nothing_served_or_unmeasured_memory() -> None:
    flat = load.memory_report([MemorySample(0.0, {1: 100.0}), MemorySample(1.0, {1: 100.0})], 1.0)
    errors = load.phase_report([Sample(0.1, "200", 1.0), Sample(0.2, "504", 1.0)], 1.0)
    throttled = load.phase_report([Sample(0.1, "429", 1.0)], 1.0)
    assert "error(s) other than 429" in load.judge(errors, errors, flat, 50.0)[0]
    assert load.judge(errors, throttled, flat, 50.0)[-1] == "run: no request was served"
    unmeasured = load.memory_report([], 1.0)
    assert "could not be measured" in load.judge(throttled, errors, unmeasured, 50.0)[-1]


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com:8080",
        "http://localhost:8080",
        "http://10.0.0.8:8080",
        "http://0.0.0.0:8080",
        "https://127.0.0.1:8080",
        "http://127.0.0.1:8080/predict",
        "http://user@127.0.0.1:8080",
        "127.0.0.1:8080",
    ],
)
def test_a_url_other_than_a_loopback_endpoint_is_refused_before_any_request(
    url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("a request was sent")

    monkeypatch.setattr(requests.Session, "request", no_network)
    with pytest.raises(load.RefusedTarget):
        load.check_url(url)
    with pytest.raises(load.RefusedTarget):
        load.run(load.Config(url=url, seconds=1))
    assert main(["--url", url, "--seconds", "1"]) == 2
    assert "refused" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
        ("http://127.0.0.2:9", "http://127.0.0.2:9"),
        ("http://[::1]:8080", "http://[::1]:8080"),
    ],
)
def test_loopback_urls_are_accepted(url: str, base: str) -> None:
    assert load.check_url(url) == base


def test_the_digits_sent_are_the_ones_the_model_tests_draw() -> None:
    from tests.models.conftest import hand_drawn

    assert [load.digit_png(d) for d in range(10)] == [hand_drawn(d) for d in range(10)]
