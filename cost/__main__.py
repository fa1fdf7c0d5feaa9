"""``python -m cost`` (``make cost ARGS='…'``): this stack's monthly cost at a given traffic, the
always-on alternatives, and the traffic at which the cheaper of them wins."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import cast

from cost.model import (
    API_TYPES,
    ARCHITECTURES,
    DAYS_PER_MONTH,
    DEFAULT_DURATION_MS,
    DEFAULT_EFS_GB,
    DEFAULT_EFS_READ_MB_PER_COLD_START,
    DEFAULT_MEMORY_MB,
    DEFAULT_REQUEST_KB,
    DEFAULT_REQUESTS_PER_DAY,
    DEFAULT_S3_GB,
    DEFAULT_WARMUP_CALLS,
    DEFAULT_WARMUP_DURATION_MS,
    EFS_CLASSES,
    MAX_DURATION_MS,
    PRICES_PATH,
    ApiType,
    Architecture,
    EfsClass,
    Estimate,
    LogSummary,
    PriceFileError,
    Usage,
    estimate,
    load_prices,
    summarize_reports,
)
from local.dataplane.reports import billed, parse

EPILOG = """\
REPORT logs (--log): every line with "REPORT RequestId: … Billed Duration: … Max Memory Used: …"
counts, in the local data plane's format or CloudWatch's (timestamps and stream names before
REPORT are fine). Where to get one:
  local:  .state/endpoint/logs/<function>.log, e.g. .state/endpoint/logs/mlserve-inference.log,
          written by the local endpoint (`make up`) for every invocation
  AWS:    aws logs tail /aws/lambda/mlserve-inference --since 7d --filter-pattern REPORT \\
            > report.log
  stdin:  --log -
With --log, every invocation in the log is a request: its mean Billed Duration prices each one
(the log already holds the /warmup calls it saw, so --warmup-calls defaults to 0), its share of
lines with an Init Duration is the cold fraction, and its Memory Size is the default memory.
Billed Duration is used as printed: on AWS it includes the INIT phase since 2025-08-01.

Exit status: 0, 1 for an unusable price file, 2 for bad arguments.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cost",
        description=(
            "Monthly cost of API Gateway -> Lambda -> EFS at a given traffic, against an"
            " always-on instance, with the break-even traffic. Prices: cost/prices.json."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add(
        "--requests-per-day",
        type=float,
        default=DEFAULT_REQUESTS_PER_DAY,
        help="real requests (predictions) a day (default %(default)g)",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--duration-ms",
        type=float,
        help=f"duration of one request, billed rounded up to 1 ms (default {DEFAULT_DURATION_MS:g},"
        " a warm /predict measured here; a cold one took about 4000)",
    )
    source.add_argument(
        "--log",
        metavar="PATH",
        help="a REPORT log (local or CloudWatch, '-' for stdin) to take durations, cold starts"
        " and memory from instead (see below)",
    )
    add(
        "--memory-mb",
        type=int,
        help=f"Lambda memory size, 128-10240 (default {DEFAULT_MEMORY_MB}, or the log's)",
    )
    add("--architecture", choices=ARCHITECTURES, default="x86_64", help="(default %(default)s)")
    add(
        "--api",
        choices=API_TYPES,
        default="http",
        help="API Gateway type in front: http (this stack), rest, or none (default %(default)s)",
    )
    add(
        "--request-kb",
        type=float,
        default=DEFAULT_REQUEST_KB,
        help="request size; HTTP APIs meter each 512 KB as one request (default %(default)g)",
    )
    add(
        "--warmup-calls",
        type=float,
        help="warm-up invocations (/warmup, when the page opens) per real request; each is a"
        f" Lambda and an API request (default {DEFAULT_WARMUP_CALLS:g}, 0 with --log)",
    )
    add(
        "--warmup-duration-ms",
        type=float,
        default=DEFAULT_WARMUP_DURATION_MS,
        help="duration of a warm-up call on a warm environment (default %(default)g)",
    )
    add(
        "--cold-fraction",
        type=float,
        help="share of requests that start a new execution environment, each reading"
        " --efs-read-mb-per-cold-start from EFS (default 0, or the log's)",
    )
    add(
        "--efs-read-mb-per-cold-start",
        type=float,
        default=DEFAULT_EFS_READ_MB_PER_COLD_START,
        help="lib/ and model read from EFS by a cold start, at elastic-throughput read prices"
        " (default %(default)g: torch+torchvision imports measured here)",
    )
    add(
        "--efs-gb",
        type=float,
        default=DEFAULT_EFS_GB,
        help="GB stored on EFS (default %(default)g: the real lib/ + model)",
    )
    add("--efs-class", choices=EFS_CLASSES, default="standard", help="(default %(default)s)")
    add(
        "--efs-write-gb-per-month",
        type=float,
        default=0.0,
        help="GB the syncer writes to EFS a month when publishing releases (default 0)",
    )
    add(
        "--s3-gb",
        type=float,
        default=DEFAULT_S3_GB,
        help="GB of release bundles in S3 (default %(default)g: one full bundle)",
    )
    add(
        "--no-free-tier",
        dest="free_tier",
        action="store_false",
        help="leave out Lambda's always-free 1M requests and 400,000 GB-s a month",
    )
    add(
        "--days-per-month",
        type=float,
        default=DAYS_PER_MONTH,
        help="days in the month priced, for traffic and instance hours (default 730 h / 24 ="
        " %(default).4f)",
    )
    add("--prices", type=Path, default=PRICES_PATH, help="price file (default cost/prices.json)")
    add("--json", action="store_true", help="print JSON instead of a table")
    return parser


def read_log(path: str) -> LogSummary:
    """Summarize the REPORT lines of a log file ('-': stdin). OSError or ValueError if unusable."""
    if path == "-":
        return summarize_reports(parse(sys.stdin), "stdin")
    with open(path, encoding="utf-8", errors="replace") as lines:
        return summarize_reports(parse(lines), path)


def build(
    args: argparse.Namespace, parser: argparse.ArgumentParser
) -> tuple[Usage, LogSummary | None]:
    """Turn parsed arguments into the model's input; parser.error (exit 2) on anything wrong."""
    log: LogSummary | None = None
    if args.log is not None:
        if args.cold_fraction is not None:
            parser.error("--cold-fraction: not with --log, which gives the cold fraction")
        try:
            log = read_log(args.log)
        except FileNotFoundError:
            parser.error(f"--log {args.log}: no such file")
        except OSError as exc:
            parser.error(f"--log {args.log}: cannot read it ({exc.strerror})")
        except ValueError:
            parser.error(
                f"--log {args.log}: no REPORT lines in it (see the help for where logs are)"
            )
    for name in ("duration_ms", "warmup_duration_ms"):
        value = getattr(args, name)
        if value is not None and not 0 < value <= MAX_DURATION_MS:
            flag = "--" + name.replace("_", "-")
            parser.error(f"{flag} must be above 0 and at most {MAX_DURATION_MS}, got {value:g}")
    if log is not None:
        billed_ms = log.mean_billed_ms
        memory_mb = args.memory_mb if args.memory_mb is not None else log.memory_size_mb
        warmup_calls = args.warmup_calls if args.warmup_calls is not None else 0.0
        cold_fraction = log.cold_fraction
    else:
        duration = args.duration_ms if args.duration_ms is not None else DEFAULT_DURATION_MS
        billed_ms = float(billed(duration))
        memory_mb = args.memory_mb if args.memory_mb is not None else DEFAULT_MEMORY_MB
        warmup_calls = args.warmup_calls if args.warmup_calls is not None else DEFAULT_WARMUP_CALLS
        cold_fraction = args.cold_fraction if args.cold_fraction is not None else 0.0
    try:
        usage = Usage(
            requests_per_day=args.requests_per_day,
            billed_ms=billed_ms,
            memory_mb=memory_mb,
            architecture=cast(Architecture, args.architecture),
            api=cast(ApiType, args.api),
            request_kb=args.request_kb,
            warmup_calls=warmup_calls,
            warmup_billed_ms=float(billed(args.warmup_duration_ms)),
            cold_fraction=cold_fraction,
            efs_read_mb_per_cold_start=args.efs_read_mb_per_cold_start,
            efs_gb=args.efs_gb,
            efs_class=cast(EfsClass, args.efs_class),
            efs_write_gb_per_month=args.efs_write_gb_per_month,
            s3_gb=args.s3_gb,
            free_tier=args.free_tier,
            days_per_month=args.days_per_month,
        )
    except ValueError as exc:
        # The model names its fields; the user typed flags.
        message = str(exc)
        for field in (
            "requests_per_day",
            "memory_mb",
            "request_kb",
            "warmup_calls",
            "cold_fraction",
            "efs_read_mb_per_cold_start",
            "efs_gb",
            "efs_write_gb_per_month",
            "s3_gb",
            "days_per_month",
        ):
            if message.startswith(field + " "):
                message = "--" + field.replace("_", "-") + message[len(field) :]
        parser.error(message)
    return usage, log


def _usd(value: float) -> str:
    if 0 < value < 0.005:
        return "<0.01"
    return f"{value:,.2f}"


def _count(value: float) -> str:
    if value == 0:
        return "0"
    return f"{value:,.0f}" if value >= 10 else f"{value:,.2f}"


def render(result: Estimate) -> str:
    """The estimate as a plain-text table."""
    u, c, p = result.usage, result.cost, result.prices
    free = "Lambda free tier on" if u.free_tier else "no free tier"
    api_name = {"http": "API Gateway HTTP API", "rest": "API Gateway REST API", "none": "no API"}
    lines = [
        f"Monthly cost at {p.region} list prices of {p.taken_on} ({u.days_per_month:.4g} days,"
        f" {free})",
        "",
    ]
    if result.log is not None:
        log = result.log
        lines += [
            f"log         {log.source}: {log.invocations:,} invocations",
            f"            billed ms: mean {log.mean_billed_ms:,.1f}, p50 {log.p50_billed_ms:,.0f},"
            f" p95 {log.p95_billed_ms:,.0f}, max {log.max_billed_ms:,}",
            f"            cold {log.cold_fraction:.1%}"
            + (f" (mean init {log.mean_init_ms:,.0f} ms)" if log.mean_init_ms is not None else "")
            + f", max memory used {log.max_memory_used_mb:,} MB of {log.memory_size_mb:,} MB",
        ]
    lines += [
        f"requests    {u.requests_per_day:,.6g}/day x {u.days_per_month:.4g} days ="
        f" {_count(c.requests_per_month)}/month, {u.billed_ms:,.6g} ms billed each,"
        f" {u.memory_mb} MB {u.architecture}",
        f"warm-ups    {u.warmup_calls:g} per request at {u.warmup_billed_ms:g} ms ="
        f" {_count(c.invocations_per_month - c.requests_per_month)}/month"
        f" ({_count(c.invocations_per_month)} invocations in all)",
        f"cold starts {u.cold_fraction:.1%} of requests = {_count(c.cold_starts_per_month)}/month,"
        f" each reading {u.efs_read_mb_per_cold_start:g} MB from EFS",
        f"concurrency {c.mean_concurrency:.3g} on average",
        "",
        f"{'item':<30}{'usage':>24}{'USD/month':>12}",
        f"{'Lambda requests':<30}{_count(c.invocations_per_month) + ' req':>24}"
        f"{_usd(c.lambda_requests_usd):>12}",
        f"{'Lambda compute':<30}{_count(c.gb_seconds_per_month) + ' GB-s':>24}"
        f"{_usd(c.lambda_compute_usd):>12}",
        f"{api_name[u.api]:<30}{_count(c.api_requests_per_month) + ' req':>24}"
        f"{_usd(c.api_usd):>12}",
        f"{'EFS storage (' + u.efs_class + ')':<30}{f'{u.efs_gb:g} GB':>24}"
        f"{_usd(c.efs_storage_usd):>12}",
        f"{'EFS reads + writes':<30}"
        f"{f'{c.efs_read_gb_per_month:,.1f} + {u.efs_write_gb_per_month:g} GB':>24}"
        f"{_usd(c.efs_throughput_usd):>12}",
        f"{'S3 Standard':<30}{f'{u.s3_gb:g} GB':>24}{_usd(c.s3_usd):>12}",
        f"{'total':<30}{'':>24}{_usd(c.total_usd):>12}",
        "",
        f"{'always on, instance hours':<30}{'USD/h':>24}{'USD/month':>12}"
        f"{'break-even req/day':>20}",
    ]
    for option, be in zip(result.always_on, result.break_evens, strict=True):
        at = "never" if be.requests_per_day is None else f"{be.requests_per_day:,.0f}"
        lines.append(
            f"{option.name:<30}{option.usd_per_hour:>24g}{_usd(option.usd_per_month):>12}{at:>20}"
        )
    lines += ["", f"break-even: {result.break_even.reason}"]
    lines += [f"warning: {w}" for w in result.warnings]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, estimate, print; the exit status (see the help's epilog)."""
    parser = _parser()
    args = parser.parse_args(argv)
    usage, log = build(args, parser)
    try:
        prices = load_prices(args.prices)
    except PriceFileError as exc:
        print(f"cost: {exc}", file=sys.stderr)
        return 1
    result = estimate(usage, prices, log)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
