"""``python -m load``: load-test the local endpoint (`make load`; `make up` first).

    python -m load --url http://127.0.0.1:8080 --clients 50 --seconds 60 [--json]

Exit status: 0 when nothing but 429 went wrong and no environment's memory grew by the
threshold or more, 1 otherwise, 2 for a refused URL or bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys

import requests

from load import DEFAULT_MAX_GROWTH_MB, DEFAULT_URL, Config, RefusedTarget, check_url, render, run


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not > 0")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not > 0")
    return value


def main(argv: list[str] | None = None) -> int:
    """CLI of the load test."""
    parser = argparse.ArgumentParser(prog="python -m load", description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL, help="the local endpoint (loopback only)")
    parser.add_argument("--clients", type=_positive_int, default=50, help="concurrent clients")
    parser.add_argument("--seconds", type=_positive_float, default=60.0, help="measured run")
    parser.add_argument(
        "--warmup-seconds",
        type=float,
        default=10.0,
        help="load before the measured run, so environments are up (reported apart)",
    )
    parser.add_argument("--sample-interval", type=_positive_float, default=0.5)
    parser.add_argument("--timeout", type=_positive_float, default=60.0, help="per request")
    parser.add_argument(
        "--max-growth-mb",
        type=float,
        default=DEFAULT_MAX_GROWTH_MB,
        help="fail when an environment's RSS grows by this much over the run",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    try:
        url = check_url(args.url)
    except RefusedTarget as exc:
        print(f"load: refused: {exc}", file=sys.stderr)
        return 2
    config = Config(
        url=url,
        clients=args.clients,
        seconds=args.seconds,
        warmup_seconds=max(0.0, args.warmup_seconds),
        sample_interval=args.sample_interval,
        request_timeout=args.timeout,
        max_growth_mb=args.max_growth_mb,
    )
    try:
        report = run(config)
    except requests.RequestException as exc:
        print(
            f"load: the endpoint at {url} does not answer ({exc}); `make up` starts it",
            file=sys.stderr,
        )
        return 1
    print(json.dumps(report.to_dict(), indent=2) if args.json else render(report))
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
