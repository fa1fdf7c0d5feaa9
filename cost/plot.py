"""``python -m cost.plot --out docs/cost.png`` (``make cost-plot``): monthly cost against traffic
for this stack, every request warm and every request cold, against the always-on instances,
with the break-even points marked."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import cast

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cost.model import (
    API_TYPES,
    ARCHITECTURES,
    DEFAULT_COLD_DURATION_MS,
    DEFAULT_DURATION_MS,
    DEFAULT_EFS_GB,
    DEFAULT_EFS_READ_MB_PER_COLD_START,
    DEFAULT_MEMORY_MB,
    DEFAULT_WARMUP_CALLS,
    MAX_DURATION_MS,
    ApiType,
    Architecture,
    PriceFileError,
    Prices,
    Usage,
    always_on_costs,
    break_even,
    load_prices,
    monthly_cost,
)
from local.dataplane.reports import billed

# Log axes cannot show $0 (a month inside the free tier with no storage): draw it here instead.
FLOOR_USD = 0.01
POINTS = 241


@dataclass(frozen=True)
class Line:
    """One of this stack's cost curves and where it crosses each always-on line."""

    label: str
    usage: Usage
    break_evens: dict[str, float | None]


def stack_lines(base: Usage, cold_ms: float, warm_ms: float, prices: Prices) -> list[Line]:
    """The two bounds: every request warm (no EFS reads), or every one cold (each reads lib/
    and model from EFS); ``base`` gives everything else."""
    scenarios = [
        (f"this stack, warm ({warm_ms:g} ms)", warm_ms, 0.0),
        (
            f"this stack, cold ({cold_ms:g} ms + {base.efs_read_mb_per_cold_start:g} MB EFS read)",
            cold_ms,
            1.0,
        ),
    ]
    options = always_on_costs(prices, base.days_per_month)
    lines = []
    for label, duration, cold in scenarios:
        usage = replace(base, billed_ms=float(billed(duration)), cold_fraction=cold)
        points = {
            o.name: break_even(usage, prices, o.usd_per_month, o.name).requests_per_day
            for o in options
        }
        lines.append(Line(label, usage, points))
    return lines


def plot(
    out: Path,
    base: Usage,
    prices: Prices,
    cold_ms: float = DEFAULT_COLD_DURATION_MS,
    warm_ms: float = DEFAULT_DURATION_MS,
    min_rpd: float = 10.0,
    max_rpd: float = 1e7,
) -> list[Line]:
    """Draw the chart into ``out`` (PNG) and return the curves with their break-evens."""
    lines = stack_lines(base, cold_ms, warm_ms, prices)
    options = always_on_costs(prices, base.days_per_month)
    step = (math.log10(max_rpd) - math.log10(min_rpd)) / (POINTS - 1)
    traffic = [10 ** (math.log10(min_rpd) + i * step) for i in range(POINTS)]

    figure = Figure(figsize=(10, 6.2), dpi=110)
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    colours = {"warm": "tab:blue", "cold": "tab:red"}
    for line in lines:
        colour = colours["warm" if "warm" in line.label else "cold"]
        costs = [max(FLOOR_USD, monthly_cost(line.usage.at(r), prices).total_usd) for r in traffic]
        ax.plot(traffic, costs, color=colour, linewidth=2.2, label=line.label)
    for option, style in zip(options, ["--", ":"], strict=False):
        ax.axhline(
            option.usd_per_month,
            color="0.25",
            linestyle=style,
            linewidth=1.5,
            label=f"{option.name}, always on (${option.usd_per_month:,.0f}/month)",
        )
    for line in lines:
        colour = colours["warm" if "warm" in line.label else "cold"]
        for index, option in enumerate(options):
            rpd = line.break_evens[option.name]
            if rpd is None or not min_rpd <= rpd <= max_rpd:
                continue
            ax.plot([rpd], [option.usd_per_month], "o", color=colour, markersize=7, zorder=5)
            # Cold points sit far left of warm ones; stack the two instances' labels apart.
            ax.annotate(
                f"{rpd:,.0f}/day",
                (rpd, option.usd_per_month),
                textcoords="offset points",
                xytext=(8, -16 if index == 0 else 8),
                color=colour,
                fontsize=9,
                fontweight="bold",
                bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none"},
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(min_rpd, max_rpd)
    ax.set_xlabel("requests per day")
    ax.set_ylabel("USD per month")
    u = base
    free = "Lambda free tier on" if u.free_tier else "no free tier"
    ax.set_title(
        f"Monthly cost vs traffic: {u.memory_mb} MB {u.architecture}, {u.api} API,"
        f" {u.warmup_calls:g} warm-up call per request, EFS {u.efs_gb:g} GB, {free}\n"
        f"{prices.region} list prices of {prices.taken_on}; points: break-even requests/day",
        fontsize=10,
    )
    ax.grid(True, which="major", alpha=0.35)
    ax.grid(True, which="minor", alpha=0.12)
    ax.legend(loc="upper left", fontsize=9)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    # No software/date metadata: the same inputs give the same bytes, so the committed PNG
    # changes only when the figures do.
    figure.savefig(out, format="png", metadata={"Software": None})
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, draw, print the break-evens; 1 for a bad price file, 2 for bad args."""
    parser = argparse.ArgumentParser(prog="python -m cost.plot", description=__doc__)
    add = parser.add_argument
    add("--out", type=Path, default=Path("docs/cost.png"), help="PNG to write (%(default)s)")
    add("--cold-ms", type=float, default=DEFAULT_COLD_DURATION_MS, help="(default %(default)g)")
    add("--warm-ms", type=float, default=DEFAULT_DURATION_MS, help="(default %(default)g)")
    add("--memory-mb", type=int, default=DEFAULT_MEMORY_MB, help="(default %(default)s)")
    add("--architecture", choices=ARCHITECTURES, default="x86_64")
    add("--api", choices=API_TYPES, default="http")
    add("--efs-gb", type=float, default=DEFAULT_EFS_GB, help="(default %(default)g)")
    add(
        "--efs-read-mb-per-cold-start",
        type=float,
        default=DEFAULT_EFS_READ_MB_PER_COLD_START,
        help="EFS read by each cold start (default %(default)g)",
    )
    add("--warmup-calls", type=float, default=DEFAULT_WARMUP_CALLS, help="(default %(default)g)")
    add("--no-free-tier", dest="free_tier", action="store_false")
    add("--min-requests-per-day", type=float, default=10.0, help="(default %(default)g)")
    add("--max-requests-per-day", type=float, default=1e7, help="(default %(default)g)")
    add("--prices", type=Path, default=None, help="price file (default cost/prices.json)")
    args = parser.parse_args(argv)
    for name in ("cold_ms", "warm_ms"):
        if not 0 < getattr(args, name) <= MAX_DURATION_MS:
            flag = "--" + name.replace("_", "-")
            parser.error(f"{flag} must be above 0 and at most {MAX_DURATION_MS}")
    if not 0 < args.min_requests_per_day < args.max_requests_per_day:
        parser.error("need 0 < --min-requests-per-day < --max-requests-per-day")
    try:
        base = Usage(
            memory_mb=args.memory_mb,
            architecture=cast(Architecture, args.architecture),
            api=cast(ApiType, args.api),
            efs_gb=args.efs_gb,
            efs_read_mb_per_cold_start=args.efs_read_mb_per_cold_start,
            warmup_calls=args.warmup_calls,
            free_tier=args.free_tier,
        )
    except ValueError as exc:
        parser.error(str(exc))
    try:
        prices = load_prices(args.prices) if args.prices else load_prices()
    except PriceFileError as exc:
        print(f"cost.plot: {exc}", file=sys.stderr)
        return 1
    lines = plot(
        args.out,
        base,
        prices,
        cold_ms=args.cold_ms,
        warm_ms=args.warm_ms,
        min_rpd=args.min_requests_per_day,
        max_rpd=args.max_requests_per_day,
    )
    print(f"wrote {args.out}")
    for line in lines:
        for name, rpd in line.break_evens.items():
            at = "never (below 1e9/day)" if rpd is None else f"{rpd:,.0f} requests/day"
            print(f"  {line.label} vs {name}: break-even {at}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
