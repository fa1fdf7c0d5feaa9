"""The cost model against figures worked out by hand from cost/prices.json (2026-11-25,
us-east-1). Each expected value is written as the arithmetic a reviewer can check."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from cost.model import (
    BREAK_EVEN_CEILING,
    DAYS_PER_MONTH,
    PRICES_PATH,
    PriceFileError,
    Usage,
    always_on_costs,
    break_even,
    estimate,
    load_prices,
    monthly_cost,
    summarize_reports,
    tiered_usd,
)
from local.dataplane.reports import Report

PRICES = load_prices()

# Per-unit list prices, spelled out as in the spec.
X86 = (0.0000166667, 0.0000150000, 0.0000133334)  # per GB-s: first 6B, next 9B, over 15B
ARM = (0.0000133334, 0.0000120001, 0.0000106667)
PER_REQUEST = 0.20 / 1e6
HTTP = 1.00 / 1e6
EC2_MONTH = 0.34 * 730  # = 248.20
SAGEMAKER_MONTH = 0.408 * 730  # = 297.84


def bare(**changes: Any) -> Usage:
    """1 GB, one 100 ms request a day, no API, no warm-ups, no storage, free tier off: each test
    turns on only what it checks."""
    base = Usage(
        requests_per_day=1,
        billed_ms=100,
        memory_mb=1024,
        api="none",
        warmup_calls=0,
        cold_fraction=0,
        efs_gb=0,
        s3_gb=0,
        free_tier=False,
        days_per_month=30,
    )
    return replace(base, **changes)


def test_the_price_file_holds_the_specified_prices() -> None:
    assert PRICES.taken_on == "2026-11-25"
    assert PRICES.region == "us-east-1"
    assert PRICES.lambda_usd_per_request == pytest.approx(PER_REQUEST)
    x86 = PRICES.lambda_gb_second_tiers["x86_64"]
    assert [t.up_to for t in x86] == [6e9, 15e9, None]
    assert [t.usd_per_unit for t in x86] == pytest.approx(X86)
    assert [t.usd_per_unit for t in PRICES.lambda_gb_second_tiers["arm64"]] == pytest.approx(ARM)
    assert (PRICES.free_requests_per_month, PRICES.free_gb_seconds_per_month) == (1e6, 4e5)
    assert [t.up_to for t in PRICES.rest_tiers] == [333e6, 1e9, 20e9, None]
    assert PRICES.efs_usd_per_gb_month == {"standard": 0.30, "one-zone": 0.16}
    assert [a.usd_per_hour for a in PRICES.always_on] == [0.34, 0.408]
    note = json.loads(PRICES_PATH.read_text())["note"]
    assert "list prices" in note


def test_days_per_month_default_is_730_hours() -> None:
    assert abs(DAYS_PER_MONTH - 30.4167) < 1e-4
    assert [c.usd_per_month for c in always_on_costs(PRICES)] == pytest.approx(
        [EC2_MONTH, SAGEMAKER_MONTH]
    )


def test_free_tier_off_bills_every_request_and_gb_second() -> None:
    # 10,000 req/day * 30.4167 days = 304,166.7 requests; x 0.1 s x 1 GB = 30,416.67 GB-s
    usage = bare(requests_per_day=10_000, days_per_month=DAYS_PER_MONTH)
    cost = monthly_cost(usage, PRICES)
    requests = 10_000 * 730 / 24
    assert cost.requests_per_month == pytest.approx(304_166.67, abs=0.01)
    assert cost.gb_seconds_per_month == pytest.approx(30_416.667, abs=0.001)
    assert cost.lambda_requests_usd == pytest.approx(requests * PER_REQUEST)  # $0.0608
    assert cost.lambda_compute_usd == pytest.approx(requests * 0.1 * X86[0])  # $0.5069
    assert cost.total_usd == pytest.approx(0.060833 + 0.506945, abs=1e-6)


def test_free_tier_on_covers_small_traffic_entirely() -> None:
    # 304,167 requests < 1M free; 30,417 GB-s < 400,000 free
    cost = monthly_cost(bare(requests_per_day=10_000, free_tier=True), PRICES)
    assert cost.lambda_requests_usd == 0
    assert cost.lambda_compute_usd == 0


def test_free_tier_on_comes_off_first() -> None:
    # 100,000 req/day * 30 days = 3,000,000 requests -> 2,000,000 billed * $0.20/M = $0.40
    # 3,000,000 * 0.2 s * 2 GB = 1,200,000 GB-s -> 800,000 billed * $0.0000166667 = $13.33336
    usage = bare(requests_per_day=100_000, billed_ms=200, memory_mb=2048, free_tier=True)
    cost = monthly_cost(usage, PRICES)
    assert cost.lambda_requests_usd == pytest.approx(2_000_000 * PER_REQUEST)
    assert cost.lambda_compute_usd == pytest.approx(800_000 * X86[0])
    off = monthly_cost(replace(usage, free_tier=False), PRICES)
    assert off.lambda_requests_usd == pytest.approx(3_000_000 * PER_REQUEST)
    assert off.lambda_compute_usd == pytest.approx(1_200_000 * X86[0])


def test_gb_second_tiers_cross_6_and_15_billion() -> None:
    # 10 GB x 1 s = 10 GB-s a request; 30M req/day * 30 days = 900M requests = 9e9 GB-s:
    # 6e9 at the first price, 3e9 at the second
    usage = bare(requests_per_day=30_000_000, billed_ms=1000, memory_mb=10240)
    cost = monthly_cost(usage, PRICES)
    assert cost.gb_seconds_per_month == pytest.approx(9e9)
    assert cost.lambda_compute_usd == pytest.approx(6e9 * X86[0] + 3e9 * X86[1])  # $145,000.20
    # 60M req/day -> 1.8e10 GB-s: 6e9 + 9e9 + 3e9 over 15 billion
    cost = monthly_cost(usage.at(60_000_000), PRICES)
    assert cost.lambda_compute_usd == pytest.approx(6e9 * X86[0] + 9e9 * X86[1] + 3e9 * X86[2])
    assert cost.lambda_compute_usd == pytest.approx(275_000.40)
    # With the free tier the 400,000 free GB-s come off the top before the tiers.
    cost = monthly_cost(replace(usage, free_tier=True), PRICES)
    assert cost.lambda_compute_usd == pytest.approx(6e9 * X86[0] + (3e9 - 400_000) * X86[1])


def test_arm64_uses_its_own_cheaper_tiers() -> None:
    usage = bare(requests_per_day=60_000_000, billed_ms=1000, memory_mb=10240)
    arm = monthly_cost(replace(usage, architecture="arm64"), PRICES)
    # 6e9 * 0.0000133334 + 9e9 * 0.0000120001 + 3e9 * 0.0000106667 = $220,001.40
    assert arm.lambda_compute_usd == pytest.approx(6e9 * ARM[0] + 9e9 * ARM[1] + 3e9 * ARM[2])
    assert arm.lambda_compute_usd == pytest.approx(220_001.40)
    # Below the first tier boundary arm64 is 0.0000133334 / 0.0000166667 = 80 % of x86_64.
    small = bare(requests_per_day=1000)
    ratio = (
        monthly_cost(replace(small, architecture="arm64"), PRICES).lambda_compute_usd
        / monthly_cost(small, PRICES).lambda_compute_usd
    )
    assert ratio == pytest.approx(0.8, abs=1e-5)


@pytest.mark.parametrize(
    ("request_kb", "slices"), [(1, 1), (512, 1), (513, 2), (600, 2), (1024, 2), (1025, 3)]
)
def test_http_api_meters_512_kb_slices(request_kb: float, slices: int) -> None:
    # 10,000 req/day * 30 days = 300,000 requests, each ceil(kb / 512) metered requests
    usage = bare(requests_per_day=10_000, api="http", request_kb=request_kb)
    cost = monthly_cost(usage, PRICES)
    assert cost.api_requests_per_month == 300_000 * slices
    assert cost.api_usd == pytest.approx(300_000 * slices * HTTP)  # 600 KB: 600,000 * $1/M


def test_http_api_second_tier_above_300_million() -> None:
    # 20M req/day * 30 days = 600M: 300M * $1.00/M + 300M * $0.90/M = $570
    cost = monthly_cost(bare(requests_per_day=20_000_000, api="http"), PRICES)
    assert cost.api_usd == pytest.approx(300 * 1.00 + 300 * 0.90)


def test_rest_api_tiers() -> None:
    # 50M req/day * 30 days = 1.5B: 333M * 3.50 + 667M * 2.80 + 500M * 2.38 = $4,223.10
    usage = bare(requests_per_day=50_000_000, api="rest", request_kb=600)
    cost = monthly_cost(usage, PRICES)
    assert cost.api_requests_per_month == 1.5e9  # REST is not metered by size
    assert cost.api_usd == pytest.approx(333 * 3.50 + 667 * 2.80 + 500 * 2.38)
    assert cost.api_usd == pytest.approx(4_223.10)
    # 1B req/day * 30 days = 30B: ... + 19,000M * 2.38 + 10,000M * 1.51 = $63,353.10
    cost = monthly_cost(usage.at(1_000_000_000), PRICES)
    assert cost.api_usd == pytest.approx(333 * 3.50 + 667 * 2.80 + 19_000 * 2.38 + 10_000 * 1.51)


def test_api_none_costs_nothing() -> None:
    cost = monthly_cost(bare(requests_per_day=1_000_000, api="none"), PRICES)
    assert (cost.api_requests_per_month, cost.api_usd) == (0, 0)


def test_warmup_calls_are_lambda_and_api_requests_of_their_own_duration() -> None:
    # 1,000 req/day * 30 days = 30,000 requests + 2 warm-ups each = 60,000: 90,000 invocations
    # GB-s: (30,000 * 0.330 s + 60,000 * 0.005 s) * 2 GB = (9,900 + 300) * 2 = 20,400
    usage = bare(
        requests_per_day=1000,
        billed_ms=330,
        memory_mb=2048,
        api="http",
        warmup_calls=2,
        warmup_billed_ms=5,
    )
    cost = monthly_cost(usage, PRICES)
    assert cost.invocations_per_month == 90_000
    assert cost.gb_seconds_per_month == pytest.approx(20_400)
    assert cost.lambda_requests_usd == pytest.approx(90_000 * PER_REQUEST)  # $0.018
    assert cost.lambda_compute_usd == pytest.approx(20_400 * X86[0])  # $0.34000
    assert cost.api_requests_per_month == 90_000
    assert cost.api_usd == pytest.approx(90_000 * HTTP)  # $0.09


def test_efs_storage_reads_writes_and_s3() -> None:
    # 10 GB Standard * $0.30 = $3.00; One Zone * $0.16 = $1.60
    # 1,000 req/day * 30 days = 30,000 requests, half cold = 15,000 cold starts
    # * 512 MB = 7,500 GB read * $0.03 = $225; 10 GB written * $0.06 = $0.60
    # S3 3 GB * $0.023 = $0.069
    usage = bare(
        requests_per_day=1000,
        efs_gb=10,
        cold_fraction=0.5,
        efs_read_mb_per_cold_start=512,
        efs_write_gb_per_month=10,
        s3_gb=3,
    )
    cost = monthly_cost(usage, PRICES)
    assert cost.efs_storage_usd == pytest.approx(3.00)
    assert cost.cold_starts_per_month == 15_000
    assert cost.efs_read_gb_per_month == pytest.approx(7_500)
    assert cost.efs_throughput_usd == pytest.approx(7_500 * 0.03 + 10 * 0.06)
    assert cost.efs_usd == pytest.approx(3.00 + 225 + 0.60)
    assert cost.s3_usd == pytest.approx(0.069)
    one_zone = monthly_cost(replace(usage, efs_class="one-zone"), PRICES)
    assert one_zone.efs_storage_usd == pytest.approx(1.60)


def test_defaults_break_even_by_hand() -> None:
    # Defaults: 330 ms, 3008 MB = 2.9375 GB, x86_64, HTTP API, 1 warm-up of 5 ms per request,
    # 5.6 GB EFS Standard, 3 GB S3, free tier on, 30.4167 days.
    gb = 3008 / 1024
    per_request = (
        0.330 * gb * X86[0]  # the request's compute
        + 0.005 * gb * X86[0]  # its warm-up's compute
        + 2 * PER_REQUEST  # two Lambda requests
        + 2 * HTTP  # two API requests (64 KB < 512 KB)
    )  # = $0.0000188011
    fixed = 5.6 * 0.30 + 3 * 0.023  # = $1.749
    free = 400_000 * X86[0] + 1_000_000 * PER_REQUEST  # = $6.867 (both fully used up)
    expected = (EC2_MONTH - fixed + free) / per_request / (730 / 24)  # = 442,966.8 req/day
    result = estimate(Usage(), PRICES)
    assert result.break_even.instance == "EC2 c5.2xlarge"
    assert result.break_even.always_on_usd == pytest.approx(EC2_MONTH)
    assert result.break_even.requests_per_day == pytest.approx(expected, rel=1e-6)
    assert round(expected) == 442_967
    sagemaker = result.break_evens[1]
    assert sagemaker.requests_per_day == pytest.approx(
        (SAGEMAKER_MONTH - fixed + free) / per_request / (730 / 24), rel=1e-6
    )


@pytest.mark.parametrize(
    "usage",
    [
        Usage(),
        Usage(billed_ms=4000, cold_fraction=1),
        Usage(architecture="arm64", api="rest", free_tier=False),
        Usage(billed_ms=1, memory_mb=128, api="none", efs_gb=0, s3_gb=0, warmup_calls=0),
    ],
    ids=["defaults", "cold", "arm-rest", "tiny"],
)
def test_break_even_costs_what_always_on_costs_and_cost_is_monotone(usage: Usage) -> None:
    for option in always_on_costs(PRICES, usage.days_per_month):
        result = break_even(usage, PRICES, option.usd_per_month, option.name)
        rpd = result.requests_per_day
        assert rpd is not None and rpd > 0
        at = monthly_cost(usage.at(rpd), PRICES).total_usd
        assert at == pytest.approx(option.usd_per_month, rel=1e-9)
        assert monthly_cost(usage.at(rpd * 0.999), PRICES).total_usd < option.usd_per_month
        assert monthly_cost(usage.at(rpd * 1.001), PRICES).total_usd > option.usd_per_month
    grid = [10 ** (k / 8) for k in range(0, 9 * 8 + 1)]  # 1 to 1e9 req/day
    costs = [monthly_cost(usage.at(r), PRICES).total_usd for r in grid]
    assert all(b >= a for a, b in itertools.pairwise(costs))


def test_break_even_across_the_gb_second_tier_and_free_tier() -> None:
    # 10 GB x 1 s per request; $200,000/month lies past the 6e9 GB-s boundary ($100,000.20), so
    # R * 30 * 10 GB-s = 6e9 + (200,000 - 100,000.20 - requests) / 0.000015
    usage = bare(billed_ms=1000, memory_mb=10240, free_tier=True)
    result = break_even(usage, PRICES, 200_000.0, "big")
    assert result.requests_per_day is not None
    assert monthly_cost(usage.at(result.requests_per_day), PRICES).total_usd == pytest.approx(
        200_000.0, rel=1e-9
    )
    # Solve by hand: requests n = 30 R; cost = (n - 1e6) * 2e-7 + 6e9 * X86[0]
    #                                         + (10 n - 4e5 - 6e9) * X86[1]
    n = (200_000 + 1e6 * PER_REQUEST - 6e9 * X86[0] + (4e5 + 6e9) * X86[1]) / (
        PER_REQUEST + 10 * X86[1]
    )
    assert result.requests_per_day == pytest.approx(n / 30, rel=1e-9)


def test_break_even_never_and_at_zero_say_why() -> None:
    never = break_even(bare(), PRICES, 1e12, "a palace")
    assert never.requests_per_day is None
    assert f"{BREAK_EVEN_CEILING:,.0f}" in never.reason and "still cheaper" in never.reason
    # 1,000 GB on EFS Standard = $300 a month > EC2's $248.20 before any request
    zero = break_even(bare(efs_gb=1000), PRICES, EC2_MONTH, "EC2 c5.2xlarge")
    assert zero.requests_per_day == 0
    assert "storage" in zero.reason


def test_tiered_usd_on_its_own() -> None:
    tiers = PRICES.rest_tiers
    assert tiered_usd(0, tiers) == 0
    assert tiered_usd(333e6, tiers) == pytest.approx(333 * 3.50)
    assert tiered_usd(334e6, tiers) == pytest.approx(333 * 3.50 + 1 * 2.80)


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"requests_per_day": -1}, "requests_per_day must be a non-negative"),
        ({"memory_mb": 127}, "128 to 10240"),
        ({"memory_mb": 10241}, "128 to 10240"),
        ({"architecture": "sparc"}, "architecture must be one of x86_64, arm64"),
        ({"api": "graphql"}, "api must be one of"),
        ({"cold_fraction": 1.5}, "cold_fraction must be 0 to 1"),
        ({"billed_ms": 0.5}, "billed_ms must be from 1"),
        ({"request_kb": 0}, "request_kb must be above 0"),
        ({"days_per_month": 40}, "days_per_month"),
        ({"efs_gb": math.nan}, "efs_gb must be a non-negative"),
    ],
)
def test_usage_refuses_nonsense(changes: dict[str, Any], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        replace(Usage(), **changes)


def test_summarize_reports() -> None:
    reports = [
        Report("a", 2296.82, 2297, 3008, 889, init_ms=33.86),  # local: billed leaves init out
        Report("b", 0.14, 1, 3008, 889),
        Report("c", 812.40, 4270, 3008, 1530, init_ms=3456.78),  # AWS: billed includes init
        Report("d", 329.51, 330, 3008, 1402),
    ]
    summary = summarize_reports(reports, "x.log")
    assert summary.invocations == 4
    assert summary.mean_billed_ms == pytest.approx((2297 + 1 + 4270 + 330) / 4)  # 1,724.5
    assert summary.cold_fraction == 0.5
    assert summary.mean_init_ms == pytest.approx((33.86 + 3456.78) / 2)
    assert summary.mean_cold_billed_ms == pytest.approx((2297 + 4270) / 2)
    assert summary.mean_warm_billed_ms == pytest.approx((1 + 330) / 2)
    assert summary.max_memory_used_mb == 1530
    assert summary.memory_size_mb == 3008
    assert summary.cold_billed_without_init == 1
    with pytest.raises(ValueError, match="no REPORT lines"):
        summarize_reports([], "empty.log")


def test_warnings_about_memory() -> None:
    summary = summarize_reports([Report("a", 300.0, 300, 3008, 2900)], "x.log")
    close = estimate(Usage(memory_mb=3008), PRICES, summary).warnings
    assert any("96% of the 3008 MB" in w for w in close)  # 2900 / 3008 = 96.4 %
    over = estimate(Usage(memory_mb=2048), PRICES, summary).warnings
    assert any("over the 2048 MB" in w for w in over)
    assert any("measured at 3008 MB" in w for w in over)
    fine = estimate(
        Usage(memory_mb=3008), PRICES, summarize_reports([Report("a", 1, 1, 3008, 900)])
    )
    assert fine.warnings == ()


def _write_prices(tmp_path: Path, mutate: Any) -> Path:
    data = json.loads(PRICES_PATH.read_text())
    mutate(data)
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    ("mutate", "words"),
    [
        (lambda d: d["lambda"].pop("usd_per_million_requests"), "lambda.usd_per_million_requests"),
        (
            lambda d: d["lambda"]["gb_second_tiers"]["arm64"][1].update(usd="cheap"),
            "lambda.gb_second_tiers.arm64[1].usd must be a non-negative number, got 'cheap'",
        ),
        (
            lambda d: d["api_gateway"]["rest"]["tiers"][1].update(up_to=100),
            "api_gateway.rest.tiers[1].up_to must be above the previous",
        ),
        (
            lambda d: d["api_gateway"]["http"]["tiers"][-1].update(up_to=1e12),
            "of the last tier must be null",
        ),
        (lambda d: d["efs"].update(standard_usd_per_gb_month=-0.3), "efs.standard_usd_per_gb"),
        (lambda d: d.update(always_on=[]), "always_on must be a non-empty array"),
        (lambda d: d["always_on"][0].update(usd_per_hour=True), "always_on[0].usd_per_hour"),
        (lambda d: d.pop("taken_on"), "taken_on must be a non-empty string"),
        (lambda d: d.update(schema_version=2), "schema_version must be 1"),
    ],
)
def test_a_malformed_price_file_is_named_clearly(tmp_path: Path, mutate: Any, words: str) -> None:
    path = _write_prices(tmp_path, mutate)
    with pytest.raises(PriceFileError) as caught:
        load_prices(path)
    assert str(path) in str(caught.value)
    assert words in str(caught.value)


def test_a_price_file_that_is_not_json_or_missing(tmp_path: Path) -> None:
    bad = tmp_path / "prices.json"
    bad.write_text("{ not json")
    with pytest.raises(PriceFileError, match="not valid JSON"):
        load_prices(bad)
    with pytest.raises(PriceFileError, match="cannot read it"):
        load_prices(tmp_path / "missing.json")
