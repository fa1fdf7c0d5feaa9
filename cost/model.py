"""The cost model: what this stack costs a month at a given traffic, what an always-on instance
costs, and the traffic at which the two meet.

Pure functions over frozen dataclasses; prices come from ``prices.json`` (``load_prices``).
Units: requests and GB-seconds per month, durations in ms, memory in MB (1 GB = 1024 MB, as
Lambda's GB-second does), storage in GB-months, money in USD.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args

from local.dataplane.reports import Report

Architecture = Literal["x86_64", "arm64"]
ApiType = Literal["http", "rest", "none"]
EfsClass = Literal["standard", "one-zone"]
ARCHITECTURES: tuple[str, ...] = get_args(Architecture)
API_TYPES: tuple[str, ...] = get_args(ApiType)
EFS_CLASSES: tuple[str, ...] = get_args(EfsClass)

PRICES_PATH = Path(__file__).with_name("prices.json")
# AWS prices a month as 730 hours.
DAYS_PER_MONTH = 730 / 24
MIN_MEMORY_MB, MAX_MEMORY_MB = 128, 10240
MAX_DURATION_MS = 900_000  # Lambda's 15-minute timeout
MAX_REQUEST_KB = 10 * 1024  # API Gateway's 10 MB payload limit
# About 11,600 requests/s: far beyond what one function behind one API sensibly serves, so a
# stack still cheaper there is "never" worse than an always-on instance.
BREAK_EVEN_CEILING = 1e9
# Max Memory Used above this share of the memory size is worth a warning: Lambda kills an
# environment that exceeds it, and the next request pays a cold start.
MEMORY_WARNING_SHARE = 0.9

# Defaults, from what was measured on this stack (README: a warm /predict about 0.33 s, a
# cold one about 4 s at 3008 MB; the real lib/ plus model is 5.6 GB; the first full release
# bundle 3 GB).
DEFAULT_REQUESTS_PER_DAY = 1000.0
DEFAULT_DURATION_MS = 330.0
DEFAULT_COLD_DURATION_MS = 4000.0
DEFAULT_MEMORY_MB = 3008
DEFAULT_REQUEST_KB = 64.0
DEFAULT_WARMUP_CALLS = 1.0
DEFAULT_WARMUP_DURATION_MS = 5.0
# Importing torch + torchvision from lib/ here left 308 MB of file-backed pages resident plus
# 55 MB read(): what a fresh environment pulls over NFS before the model is even loaded.
DEFAULT_EFS_READ_MB_PER_COLD_START = 400.0
DEFAULT_EFS_GB = 5.6
DEFAULT_S3_GB = 3.0


class PriceFileError(ValueError):
    """The price file is missing, not JSON, or does not hold the prices the model needs."""


@dataclass(frozen=True)
class Tier:
    """One volume tier: ``usd_per_unit`` for the monthly usage up to ``up_to`` (None: no limit)."""

    up_to: float | None
    usd_per_unit: float


@dataclass(frozen=True)
class AlwaysOn:
    """An always-on alternative, billed by the hour whether or not anyone calls it."""

    name: str
    what: str
    usd_per_hour: float


@dataclass(frozen=True)
class Prices:
    """Every price the model uses, from one dated, per-region file."""

    taken_on: str
    region: str
    source: str
    lambda_usd_per_request: float
    lambda_gb_second_tiers: Mapping[str, tuple[Tier, ...]]
    free_requests_per_month: float
    free_gb_seconds_per_month: float
    http_metering_kb: float
    http_tiers: tuple[Tier, ...]
    rest_tiers: tuple[Tier, ...]
    efs_usd_per_gb_month: Mapping[str, float]
    efs_read_usd_per_gb: float
    efs_write_usd_per_gb: float
    s3_usd_per_gb_month: float
    always_on: tuple[AlwaysOn, ...]


class _Reader:
    """Typed access to the parsed JSON, naming the offending key in every error."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, message: str) -> PriceFileError:
        return PriceFileError(f"price file {self.path}: {where} {message}")

    def object(self, data: Any, key: str, where: str) -> dict[str, Any]:
        value = data.get(key) if isinstance(data, dict) else None
        if not isinstance(value, dict):
            raise self.fail(f"{where}{key}", "must be an object")
        return value

    def array(self, data: dict[str, Any], key: str, where: str) -> list[Any]:
        value = data.get(key)
        if not isinstance(value, list) or not value:
            raise self.fail(f"{where}{key}", "must be a non-empty array")
        return value

    def string(self, data: dict[str, Any], key: str, where: str) -> str:
        value = data.get(key)
        if not isinstance(value, str) or not value:
            raise self.fail(f"{where}{key}", "must be a non-empty string")
        return value

    def number(self, data: Any, key: str, where: str, positive: bool = False) -> float:
        value = data.get(key) if isinstance(data, dict) else None
        # bool is an int to Python, never a price.
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
            if math.isfinite(number) and number >= 0 and not (positive and number == 0):
                return number
        kind = "a positive number" if positive else "a non-negative number"
        raise self.fail(f"{where}{key}", f"must be {kind}, got {value!r}")

    def tiers(
        self, data: dict[str, Any], key: str, where: str, per: str, scale: float
    ) -> tuple[Tier, ...]:
        tiers: list[Tier] = []
        items = self.array(data, key, where)
        for index, item in enumerate(items):
            at = f"{where}{key}[{index}]."
            last = index == len(items) - 1
            if last:
                if not isinstance(item, dict) or item.get("up_to") is not None:
                    raise self.fail(f"{at}up_to", "of the last tier must be null (no limit)")
                up_to = None
            else:
                up_to = self.number(item, "up_to", at, positive=True)
                if tiers and tiers[-1].up_to is not None and up_to <= tiers[-1].up_to:
                    raise self.fail(f"{at}up_to", "must be above the previous tier's")
            tiers.append(Tier(up_to, self.number(item, per, at) / scale))
        return tuple(tiers)


def load_prices(path: Path | str = PRICES_PATH) -> Prices:
    """Read and validate a price file (``cost/prices.json`` by default).

    Raises PriceFileError, naming the file and the key, for anything it cannot use.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise PriceFileError(f"price file {path}: cannot read it ({exc.strerror})") from exc
    except json.JSONDecodeError as exc:
        raise PriceFileError(f"price file {path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise PriceFileError(f"price file {path}: must hold a JSON object")
    r = _Reader(path)
    if data.get("schema_version") != 1:
        raise r.fail("schema_version", f"must be 1, got {data.get('schema_version')!r}")
    lam = r.object(data, "lambda", "")
    free = r.object(lam, "free_tier", "lambda.")
    gb_s = r.object(lam, "gb_second_tiers", "lambda.")
    api = r.object(data, "api_gateway", "")
    http = r.object(api, "http", "api_gateway.")
    rest = r.object(api, "rest", "api_gateway.")
    efs = r.object(data, "efs", "")
    s3 = r.object(data, "s3", "")
    always_on = []
    for index, item in enumerate(r.array(data, "always_on", "")):
        if not isinstance(item, dict):
            raise r.fail(f"always_on[{index}]", "must be an object")
        at = f"always_on[{index}]."
        always_on.append(
            AlwaysOn(
                name=r.string(item, "name", at),
                what=str(item.get("what", "")),
                usd_per_hour=r.number(item, "usd_per_hour", at, positive=True),
            )
        )
    return Prices(
        taken_on=r.string(data, "taken_on", ""),
        region=r.string(data, "region", ""),
        source=str(path),
        lambda_usd_per_request=r.number(lam, "usd_per_million_requests", "lambda.") / 1e6,
        lambda_gb_second_tiers={
            arch: r.tiers(gb_s, arch, "lambda.gb_second_tiers.", "usd", 1.0)
            for arch in ARCHITECTURES
        },
        free_requests_per_month=r.number(free, "requests_per_month", "lambda.free_tier."),
        free_gb_seconds_per_month=r.number(free, "gb_seconds_per_month", "lambda.free_tier."),
        http_metering_kb=r.number(
            http, "metering_increment_kb", "api_gateway.http.", positive=True
        ),
        http_tiers=r.tiers(http, "tiers", "api_gateway.http.", "usd_per_million", 1e6),
        rest_tiers=r.tiers(rest, "tiers", "api_gateway.rest.", "usd_per_million", 1e6),
        efs_usd_per_gb_month={
            "standard": r.number(efs, "standard_usd_per_gb_month", "efs."),
            "one-zone": r.number(efs, "one_zone_usd_per_gb_month", "efs."),
        },
        efs_read_usd_per_gb=r.number(efs, "elastic_read_usd_per_gb", "efs."),
        efs_write_usd_per_gb=r.number(efs, "elastic_write_usd_per_gb", "efs."),
        s3_usd_per_gb_month=r.number(s3, "standard_usd_per_gb_month", "s3."),
        always_on=tuple(always_on),
    )


def tiered_usd(quantity: float, tiers: Sequence[Tier]) -> float:
    """Price a monthly quantity on volume tiers: each slice at its own tier's price."""
    total = 0.0
    floor = 0.0
    for tier in tiers:
        top = quantity if tier.up_to is None else min(quantity, tier.up_to)
        if top > floor:
            total += (top - floor) * tier.usd_per_unit
        if tier.up_to is None or quantity <= tier.up_to:
            break
        floor = tier.up_to
    return total


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


@dataclass(frozen=True)
class Usage:
    """What the stack does in a month: the model's input.

    ``billed_ms`` is the mean Billed Duration of one request's invocation, already rounded up to
    Lambda's 1 ms (``billed(duration)`` for one duration, or a REPORT log's mean). Each request
    brings ``warmup_calls`` extra invocations (the page calls /warmup when it opens), each
    billed ``warmup_billed_ms`` and metered by the API as one request. ``cold_fraction`` of the
    requests start a new execution environment, which reads ``efs_read_mb_per_cold_start`` of
    lib/ and model from EFS at elastic-throughput read prices.
    """

    requests_per_day: float = DEFAULT_REQUESTS_PER_DAY
    billed_ms: float = DEFAULT_DURATION_MS
    memory_mb: int = DEFAULT_MEMORY_MB
    architecture: Architecture = "x86_64"
    api: ApiType = "http"
    request_kb: float = DEFAULT_REQUEST_KB
    warmup_calls: float = DEFAULT_WARMUP_CALLS
    warmup_billed_ms: float = DEFAULT_WARMUP_DURATION_MS
    cold_fraction: float = 0.0
    efs_read_mb_per_cold_start: float = DEFAULT_EFS_READ_MB_PER_COLD_START
    efs_gb: float = DEFAULT_EFS_GB
    efs_class: EfsClass = "standard"
    efs_write_gb_per_month: float = 0.0
    s3_gb: float = DEFAULT_S3_GB
    free_tier: bool = True
    days_per_month: float = DAYS_PER_MONTH

    def __post_init__(self) -> None:
        for name in (
            "requests_per_day",
            "billed_ms",
            "request_kb",
            "warmup_calls",
            "warmup_billed_ms",
            "cold_fraction",
            "efs_read_mb_per_cold_start",
            "efs_gb",
            "efs_write_gb_per_month",
            "s3_gb",
            "days_per_month",
        ):
            value = getattr(self, name)
            _check(
                isinstance(value, int | float) and math.isfinite(value) and value >= 0,
                f"{name} must be a non-negative number, got {value!r}",
            )
        _check(
            isinstance(self.memory_mb, int) and MIN_MEMORY_MB <= self.memory_mb <= MAX_MEMORY_MB,
            f"memory_mb must be a whole number of MB from {MIN_MEMORY_MB} to {MAX_MEMORY_MB}"
            f" (Lambda's range), got {self.memory_mb!r}",
        )
        _check(
            self.architecture in ARCHITECTURES,
            f"architecture must be one of {', '.join(ARCHITECTURES)}, got {self.architecture!r}",
        )
        _check(
            self.api in API_TYPES, f"api must be one of {', '.join(API_TYPES)}, got {self.api!r}"
        )
        _check(
            self.efs_class in EFS_CLASSES,
            f"efs_class must be one of {', '.join(EFS_CLASSES)}, got {self.efs_class!r}",
        )
        for name in ("billed_ms", "warmup_billed_ms"):
            value = getattr(self, name)
            _check(
                1 <= value <= MAX_DURATION_MS,
                f"{name} must be from 1 to {MAX_DURATION_MS} ms (Lambda bills at least 1 ms and"
                f" stops at 15 minutes), got {value!r}",
            )
        _check(
            0 < self.request_kb <= MAX_REQUEST_KB,
            f"request_kb must be above 0 and at most {MAX_REQUEST_KB} (API Gateway's 10 MB"
            f" payload limit), got {self.request_kb!r}",
        )
        _check(self.cold_fraction <= 1, f"cold_fraction must be 0 to 1, got {self.cold_fraction!r}")
        _check(
            0 < self.days_per_month <= 31,
            f"days_per_month must be above 0 and at most 31, got {self.days_per_month!r}",
        )

    def at(self, requests_per_day: float) -> Usage:
        """The same usage at another traffic."""
        return replace(self, requests_per_day=requests_per_day)


@dataclass(frozen=True)
class Breakdown:
    """One month of this stack: the usage that is billed and what each part costs."""

    requests_per_month: float
    invocations_per_month: float
    api_requests_per_month: float
    gb_seconds_per_month: float
    cold_starts_per_month: float
    efs_read_gb_per_month: float
    mean_concurrency: float
    lambda_requests_usd: float
    lambda_compute_usd: float
    api_usd: float
    efs_storage_usd: float
    efs_throughput_usd: float
    s3_usd: float

    @property
    def efs_usd(self) -> float:
        """EFS storage plus elastic throughput."""
        return self.efs_storage_usd + self.efs_throughput_usd

    @property
    def total_usd(self) -> float:
        """Everything this stack costs in the month."""
        return (
            self.lambda_requests_usd
            + self.lambda_compute_usd
            + self.api_usd
            + self.efs_usd
            + self.s3_usd
        )


def monthly_cost(usage: Usage, prices: Prices) -> Breakdown:
    """What ``usage`` costs in a month at ``prices``.

    The Lambda free allowance (requests and GB-seconds) comes off first, and the GB-second
    volume tiers apply to what is left; API Gateway's 12-month free offer is not modelled
    (see prices.json).
    """
    requests = usage.requests_per_day * usage.days_per_month
    warmups = requests * usage.warmup_calls
    invocations = requests + warmups
    memory_gb = usage.memory_mb / 1024
    gb_seconds = (requests * usage.billed_ms + warmups * usage.warmup_billed_ms) / 1000 * memory_gb
    free_requests = prices.free_requests_per_month if usage.free_tier else 0.0
    free_gb_seconds = prices.free_gb_seconds_per_month if usage.free_tier else 0.0

    if usage.api == "http":
        # Metered in 512 KB slices; a warm-up call has no body and counts once.
        slices = max(1, math.ceil(usage.request_kb / prices.http_metering_kb))
        api_requests = requests * slices + warmups
        api_usd = tiered_usd(api_requests, prices.http_tiers)
    elif usage.api == "rest":
        api_requests = invocations
        api_usd = tiered_usd(api_requests, prices.rest_tiers)
    else:
        api_requests = 0.0
        api_usd = 0.0

    cold_starts = requests * usage.cold_fraction
    efs_read_gb = cold_starts * usage.efs_read_mb_per_cold_start / 1024
    seconds = usage.days_per_month * 86_400
    return Breakdown(
        requests_per_month=requests,
        invocations_per_month=invocations,
        api_requests_per_month=api_requests,
        gb_seconds_per_month=gb_seconds,
        cold_starts_per_month=cold_starts,
        efs_read_gb_per_month=efs_read_gb,
        mean_concurrency=gb_seconds / memory_gb / seconds,
        lambda_requests_usd=max(0.0, invocations - free_requests) * prices.lambda_usd_per_request,
        lambda_compute_usd=tiered_usd(
            max(0.0, gb_seconds - free_gb_seconds),
            prices.lambda_gb_second_tiers[usage.architecture],
        ),
        api_usd=api_usd,
        efs_storage_usd=usage.efs_gb * prices.efs_usd_per_gb_month[usage.efs_class],
        efs_throughput_usd=efs_read_gb * prices.efs_read_usd_per_gb
        + usage.efs_write_gb_per_month * prices.efs_write_usd_per_gb,
        s3_usd=usage.s3_gb * prices.s3_usd_per_gb_month,
    )


@dataclass(frozen=True)
class AlwaysOnCost:
    """An always-on alternative's month."""

    name: str
    what: str
    usd_per_hour: float
    usd_per_month: float


def always_on_costs(prices: Prices, days_per_month: float = DAYS_PER_MONTH) -> list[AlwaysOnCost]:
    """Each always-on alternative for a month of ``days_per_month`` days, cheapest first."""
    hours = days_per_month * 24
    costs = [
        AlwaysOnCost(a.name, a.what, a.usd_per_hour, a.usd_per_hour * hours)
        for a in prices.always_on
    ]
    return sorted(costs, key=lambda c: c.usd_per_month)


@dataclass(frozen=True)
class BreakEven:
    """The traffic at which this stack costs as much as one always-on alternative.

    ``requests_per_day`` is None when the stack is still cheaper at ``BREAK_EVEN_CEILING``;
    ``reason`` says why in words either way.
    """

    instance: str
    always_on_usd: float
    requests_per_day: float | None
    reason: str


def break_even(
    usage: Usage,
    prices: Prices,
    always_on_usd: float,
    instance: str = "always-on",
    ceiling: float = BREAK_EVEN_CEILING,
) -> BreakEven:
    """The requests/day above which ``always_on_usd`` a month is cheaper than this stack.

    Every part of the cost grows with traffic (tiers only slow it), so the cost is monotone and
    a bisection finds where it crosses, free allowance and tiers included.
    """

    def cost(rpd: float) -> float:
        return monthly_cost(usage.at(rpd), prices).total_usd

    if cost(0.0) >= always_on_usd:
        return BreakEven(
            instance,
            always_on_usd,
            0.0,
            f"the stack's fixed storage alone costs at least {instance}'s ${always_on_usd:,.2f}",
        )
    if cost(ceiling) < always_on_usd:
        return BreakEven(
            instance,
            always_on_usd,
            None,
            f"this stack is still cheaper than {instance} at {ceiling:,.0f} requests/day",
        )
    low, high = 0.0, ceiling
    # 200 halvings of 1e9 reach float resolution long before the loop ends.
    for _ in range(200):
        middle = (low + high) / 2
        if middle in (low, high) or high - low <= high * 1e-12:
            break
        if cost(middle) < always_on_usd:
            low = middle
        else:
            high = middle
    return BreakEven(
        instance,
        always_on_usd,
        high,
        f"above {high:,.0f} requests/day {instance} (${always_on_usd:,.2f}/month) is cheaper",
    )


@dataclass(frozen=True)
class LogSummary:
    """What a REPORT log says about real invocations."""

    source: str
    invocations: int
    mean_billed_ms: float
    p50_billed_ms: float
    p95_billed_ms: float
    max_billed_ms: int
    cold_invocations: int
    mean_init_ms: float | None
    mean_cold_billed_ms: float | None
    mean_warm_billed_ms: float | None
    max_memory_used_mb: int
    memory_size_mb: int
    memory_sizes_mb: tuple[int, ...]
    # Cold lines whose Billed Duration leaves out Init Duration (the local data plane writes
    # them so; AWS has billed INIT for on-demand functions since 2025-08-01).
    cold_billed_without_init: int

    @property
    def cold_fraction(self) -> float:
        """Share of invocations that started a new execution environment (had Init Duration)."""
        return self.cold_invocations / self.invocations


def summarize_reports(reports: Iterable[Report], source: str = "") -> LogSummary:
    """Summarize REPORT lines (from ``local.dataplane.reports.parse``); ValueError if none."""
    items = list(reports)
    if not items:
        raise ValueError(f"{source or 'the log'}: no REPORT lines")
    billed_ms = sorted(r.billed_ms for r in items)
    cold = [r for r in items if r.init_ms is not None]
    warm = [r for r in items if r.init_ms is None]
    sizes = Counter(r.memory_mb for r in items)
    quantiles = statistics.quantiles(billed_ms, n=20, method="inclusive") if len(items) > 1 else []
    return LogSummary(
        source=source,
        invocations=len(items),
        mean_billed_ms=statistics.fmean(billed_ms),
        p50_billed_ms=statistics.median(billed_ms),
        p95_billed_ms=quantiles[-1] if quantiles else float(billed_ms[0]),
        max_billed_ms=billed_ms[-1],
        cold_invocations=len(cold),
        mean_init_ms=statistics.fmean(r.init_ms for r in cold if r.init_ms is not None)
        if cold
        else None,
        mean_cold_billed_ms=statistics.fmean(r.billed_ms for r in cold) if cold else None,
        mean_warm_billed_ms=statistics.fmean(r.billed_ms for r in warm) if warm else None,
        max_memory_used_mb=max(r.max_memory_used_mb for r in items),
        memory_size_mb=sizes.most_common(1)[0][0],
        memory_sizes_mb=tuple(sorted(sizes)),
        cold_billed_without_init=sum(
            1 for r in cold if r.init_ms is not None and r.billed_ms < r.duration_ms + r.init_ms - 1
        ),
    )


def warnings_for(usage: Usage, log: LogSummary | None) -> list[str]:
    """What the reader of an estimate should know about its inputs."""
    notes: list[str] = []
    if log is None:
        return notes
    share = log.max_memory_used_mb / usage.memory_mb
    if share > 1:
        notes.append(
            f"Max Memory Used {log.max_memory_used_mb} MB is over the {usage.memory_mb} MB"
            " configured: Lambda would kill those environments (out of memory)"
        )
    elif share >= MEMORY_WARNING_SHARE:
        notes.append(
            f"Max Memory Used {log.max_memory_used_mb} MB is {share:.0%} of the"
            f" {usage.memory_mb} MB configured: close to the limit, where Lambda kills the"
            " environment and the next request starts cold"
        )
    if log.memory_sizes_mb != (usage.memory_mb,):
        measured = ", ".join(f"{m} MB" for m in log.memory_sizes_mb)
        notes.append(
            f"the log was measured at {measured} but the estimate uses {usage.memory_mb} MB;"
            " Lambda's CPU scales with memory, so durations will differ"
        )
    if log.cold_billed_without_init:
        notes.append(
            f"{log.cold_billed_without_init} cold line(s) have a Billed Duration without their"
            " Init Duration (as the local data plane writes them); on AWS the INIT phase of"
            " on-demand functions is billed since 2025-08-01, so cold starts cost more there"
        )
    return notes


@dataclass(frozen=True)
class Estimate:
    """Everything ``python -m cost`` reports: this stack's month, the always-on alternatives and
    the break-even against each (the first, cheapest, being the headline)."""

    usage: Usage
    prices: Prices
    cost: Breakdown
    always_on: tuple[AlwaysOnCost, ...]
    break_evens: tuple[BreakEven, ...]
    log: LogSummary | None = None
    warnings: tuple[str, ...] = field(default=())

    @property
    def break_even(self) -> BreakEven:
        """The break-even against the cheaper always-on alternative."""
        return self.break_evens[0]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: the headline figures at the top level, details below."""
        cost = self.cost
        return {
            "lambda_requests_usd": cost.lambda_requests_usd,
            "lambda_compute_usd": cost.lambda_compute_usd,
            "api_usd": cost.api_usd,
            "efs_usd": cost.efs_usd,
            "efs_storage_usd": cost.efs_storage_usd,
            "efs_throughput_usd": cost.efs_throughput_usd,
            "s3_usd": cost.s3_usd,
            "total_usd": cost.total_usd,
            "always_on_usd": self.break_even.always_on_usd,
            "always_on_instance": self.break_even.instance,
            "break_even_requests_per_day": self.break_even.requests_per_day,
            "break_even_reason": self.break_even.reason,
            "always_on": [
                {
                    **asdict(option),
                    "break_even_requests_per_day": be.requests_per_day,
                    "break_even_reason": be.reason,
                }
                for option, be in zip(self.always_on, self.break_evens, strict=True)
            ],
            "usage": {
                "requests_per_month": cost.requests_per_month,
                "invocations_per_month": cost.invocations_per_month,
                "api_requests_per_month": cost.api_requests_per_month,
                "gb_seconds_per_month": cost.gb_seconds_per_month,
                "cold_starts_per_month": cost.cold_starts_per_month,
                "efs_read_gb_per_month": cost.efs_read_gb_per_month,
                "mean_concurrency": cost.mean_concurrency,
            },
            "inputs": asdict(self.usage),
            "log": None
            if self.log is None
            else {**asdict(self.log), "cold_fraction": self.log.cold_fraction},
            "prices": {
                "taken_on": self.prices.taken_on,
                "region": self.prices.region,
                "file": self.prices.source,
            },
            "warnings": list(self.warnings),
        }


def estimate(usage: Usage, prices: Prices, log: LogSummary | None = None) -> Estimate:
    """This stack's month, the always-on alternatives and the break-even against each."""
    options = always_on_costs(prices, usage.days_per_month)
    return Estimate(
        usage=usage,
        prices=prices,
        cost=monthly_cost(usage, prices),
        always_on=tuple(options),
        break_evens=tuple(break_even(usage, prices, o.usd_per_month, o.name) for o in options),
        log=log,
        warnings=tuple(warnings_for(usage, log)),
    )
