"""``python -m cost`` and ``python -m cost.plot``: arguments, REPORT logs, JSON, errors, the PNG."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cost import plot
from cost.__main__ import main

REPO_ROOT = Path(__file__).resolve().parents[2]
X86_FIRST = 0.0000166667  # per GB-s
PER_REQUEST = 0.20 / 1e6

# Three lines as the local data plane writes them (with its START/END lines), three as
# `aws logs tail` prints CloudWatch's (timestamp, stream, then the message with its trailing tab).
LOG = (
    "START RequestId: 5b66 Version: 3\n"
    "END RequestId: 5b66\n"
    "REPORT RequestId: 5b66\tDuration: 2296.82 ms\tBilled Duration: 2297 ms\t"
    "Memory Size: 3008 MB\tMax Memory Used: 889 MB\tInit Duration: 33.86 ms\n"
    "REPORT RequestId: 1e22\tDuration: 0.14 ms\tBilled Duration: 1 ms\t"
    "Memory Size: 3008 MB\tMax Memory Used: 889 MB\n"
    "REPORT RequestId: 731f\tDuration: 333.33 ms\tBilled Duration: 334 ms\t"
    "Memory Size: 3008 MB\tMax Memory Used: 914 MB\n"
    "2026-11-25T10:00:01.123000+00:00 2026/11/25/[7]0a1b2c INIT_START Runtime Version: "
    "python:3.12.v80\n"
    "2026-11-25T10:00:05.456000+00:00 2026/11/25/[7]0a1b2c REPORT RequestId: "
    "9f8e7d6c-0000-4000-8000-000000000001\tDuration: 812.40 ms\tBilled Duration: 4270 ms\t"
    "Memory Size: 3008 MB\tMax Memory Used: 1530 MB\tInit Duration: 3456.78 ms\t\n"
    "2026-11-25T10:00:09.000000+00:00 2026/11/25/[7]0a1b2c REPORT RequestId: "
    "9f8e7d6c-0000-4000-8000-000000000002\tDuration: 329.51 ms\tBilled Duration: 330 ms\t"
    "Memory Size: 3008 MB\tMax Memory Used: 1402 MB\t\n"
    "2026-11-25T10:00:10.000000+00:00 2026/11/25/[7]0a1b2c REPORT RequestId: "
    "9f8e7d6c-0000-4000-8000-000000000003\tDuration: 4.20 ms\tBilled Duration: 5 ms\t"
    "Memory Size: 3008 MB\tMax Memory Used: 1402 MB\t\n"
)
# Billed: 2297 + 1 + 334 + 4270 + 330 + 5 = 7,237 ms over 6 invocations = 1,206.1667 ms mean;
# 2 of 6 have an Init Duration: cold fraction 1/3; Max Memory Used at most 1,530 MB.
LOG_MEAN_BILLED_MS = 7237 / 6


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    assert main([*args, "--json"]) == 0
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    return data


def error_of(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run with bad arguments: argparse's exit status 2 and its message."""
    with pytest.raises(SystemExit) as caught:
        main(list(args))
    assert caught.value.code == 2
    return capsys.readouterr().err


@pytest.fixture
def log_file(tmp_path: Path) -> Path:
    path = tmp_path / "report.log"
    path.write_text(LOG)
    return path


def test_json_has_the_headline_keys(capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(capsys)
    for key in (
        "lambda_requests_usd",
        "lambda_compute_usd",
        "api_usd",
        "efs_usd",
        "s3_usd",
        "total_usd",
        "always_on_usd",
        "break_even_requests_per_day",
        "break_even_reason",
        "always_on",
        "usage",
        "inputs",
        "prices",
        "warnings",
    ):
        assert key in data, key
    # Defaults: 1,000 req/day inside the free tier; EFS 5.6 GB * $0.30 + S3 3 GB * $0.023;
    # HTTP API 1,000 * 30.4167 days * 2 (request + warm-up) = 60,833 requests * $1/M
    assert data["lambda_requests_usd"] == 0
    assert data["lambda_compute_usd"] == 0
    assert data["api_usd"] == pytest.approx(60_833.33 / 1e6, abs=1e-6)
    assert data["efs_usd"] == pytest.approx(1.68)
    assert data["total_usd"] == pytest.approx(0.0608333 + 1.68 + 0.069, abs=1e-6)
    assert data["always_on_usd"] == pytest.approx(0.34 * 730)
    assert data["always_on_instance"] == "EC2 c5.2xlarge"
    assert round(data["break_even_requests_per_day"]) == 442_967  # see test_model
    assert [o["usd_per_month"] for o in data["always_on"]] == pytest.approx([248.2, 297.84])
    assert data["inputs"]["memory_mb"] == 3008 and data["inputs"]["billed_ms"] == 330
    assert data["prices"] == {
        "taken_on": "2026-11-25",
        "region": "us-east-1",
        "file": str(REPO_ROOT / "cost" / "prices.json"),
    }
    assert data["log"] is None


def test_flags_reach_the_model(capsys: pytest.CaptureFixture[str]) -> None:
    # 10,000 req/day * 30 days = 300,000 requests of 330.2 -> 331 ms billed (1 ms rounding up)
    # at 1 GB arm64, no free tier, no warm-ups, REST: 300,000 * 0.331 = 99,300 GB-s
    data = run_json(
        capsys,
        "--requests-per-day=10000",
        "--duration-ms=330.2",
        "--memory-mb=1024",
        "--architecture=arm64",
        "--api=rest",
        "--warmup-calls=0",
        "--no-free-tier",
        "--days-per-month=30",
        "--efs-gb=2",
        "--efs-class=one-zone",
        "--s3-gb=0",
    )
    assert data["usage"]["gb_seconds_per_month"] == pytest.approx(99_300)
    assert data["lambda_compute_usd"] == pytest.approx(99_300 * 0.0000133334)
    assert data["lambda_requests_usd"] == pytest.approx(300_000 * PER_REQUEST)
    assert data["api_usd"] == pytest.approx(300_000 * 3.50 / 1e6)
    assert data["efs_usd"] == pytest.approx(2 * 0.16)
    assert data["always_on_usd"] == pytest.approx(0.34 * 30 * 24)


def test_http_metering_from_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    # 600 KB = 2 slices of 512 KB: 1,000 req/day * 30 days * 2 = 60,000, plus 30,000 warm-ups
    data = run_json(capsys, "--request-kb=600", "--days-per-month=30")
    assert data["usage"]["api_requests_per_month"] == 90_000
    assert data["api_usd"] == pytest.approx(0.09)


def test_report_log_gives_duration_cold_fraction_and_memory(
    capsys: pytest.CaptureFixture[str], log_file: Path
) -> None:
    # 6,000 req/day * 30 days = 180,000 invocations (the log's mix: no extra warm-ups)
    # GB-s: 180,000 * 1.2061667 s * 2.9375 GB (the log's 3008 MB) = 637,760.6
    # cold: 180,000 / 3 = 60,000 cold starts * 400 MB / 1024 = 23,437.5 GB * $0.03 = $703.125
    data = run_json(
        capsys,
        f"--log={log_file}",
        "--requests-per-day=6000",
        "--days-per-month=30",
        "--no-free-tier",
        "--api=none",
        "--efs-gb=0",
        "--s3-gb=0",
    )
    log = data["log"]
    assert log["invocations"] == 6
    assert log["mean_billed_ms"] == pytest.approx(LOG_MEAN_BILLED_MS)  # 1,206.1667
    assert log["cold_fraction"] == pytest.approx(1 / 3)
    assert log["cold_invocations"] == 2
    assert log["max_memory_used_mb"] == 1530
    assert log["memory_size_mb"] == 3008
    assert log["cold_billed_without_init"] == 1  # the local line
    assert data["inputs"]["memory_mb"] == 3008
    assert data["inputs"]["warmup_calls"] == 0
    gb_seconds = 180_000 * LOG_MEAN_BILLED_MS / 1000 * 3008 / 1024
    assert gb_seconds == pytest.approx(637_760.6, abs=0.1)
    assert data["usage"]["gb_seconds_per_month"] == pytest.approx(gb_seconds)
    assert data["lambda_compute_usd"] == pytest.approx(gb_seconds * X86_FIRST)  # $10.63
    assert data["lambda_requests_usd"] == pytest.approx(180_000 * PER_REQUEST)  # $0.036
    assert data["usage"]["cold_starts_per_month"] == pytest.approx(60_000)
    assert data["efs_usd"] == pytest.approx(703.125)
    assert data["total_usd"] == pytest.approx(gb_seconds * X86_FIRST + 0.036 + 703.125)
    assert any("Init Duration" in w for w in data["warnings"])


def test_report_log_memory_warning(capsys: pytest.CaptureFixture[str], log_file: Path) -> None:
    # 1,530 MB used of 1,600 MB configured = 96 %
    assert main([f"--log={log_file}", "--memory-mb=1600"]) == 0
    out = capsys.readouterr().out
    assert "warning: Max Memory Used 1530 MB is 96% of the 1600 MB configured" in out
    assert "measured at 3008 MB" in out
    assert "6 invocations" in out and "cold 33.3%" in out


def test_report_log_from_stdin(log_file: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "cost", "--log", "-", "--json"],
        input=LOG,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["log"]["source"] == "stdin"


def test_text_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "us-east-1 list prices of 2026-11-25" in out
    assert "EC2 c5.2xlarge" in out and "SageMaker ml.c5.2xlarge" in out
    assert "break-even: above 442,967 requests/day EC2 c5.2xlarge ($248.20/month)" in out
    assert "total" in out and "1.81" in out  # 0.06 API + 1.68 EFS + 0.07 S3


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--requests-per-day=-5"], "--requests-per-day must be a non-negative number"),
        (["--architecture=sparc"], "invalid choice: 'sparc'"),
        (["--api=soap"], "invalid choice: 'soap'"),
        (["--memory-mb=64"], "--memory-mb must be a whole number of MB from 128 to 10240"),
        (["--memory-mb=10241"], "128 to 10240"),
        (["--memory-mb=big"], "invalid int value"),
        (["--duration-ms=0"], "--duration-ms must be above 0"),
        (["--duration-ms=1000000"], "at most 900000"),
        (["--cold-fraction=2"], "--cold-fraction must be 0 to 1"),
        (["--days-per-month=0"], "--days-per-month must be above 0"),
        (["--log=/nonexistent/report.log"], "--log /nonexistent/report.log: no such file"),
        (["--log=x.log", "--duration-ms=300"], "not allowed with argument"),
    ],
)
def test_bad_input_is_an_argparse_error(
    capsys: pytest.CaptureFixture[str], args: list[str], words: str
) -> None:
    err = error_of(capsys, *args)
    assert "error:" in err and words in err
    assert "Traceback" not in err


def test_log_without_report_lines_and_cold_fraction_with_log(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, log_file: Path
) -> None:
    empty = tmp_path / "empty.log"
    empty.write_text("START RequestId: 1\nEND RequestId: 1\n")
    assert "no REPORT lines" in error_of(capsys, f"--log={empty}")
    assert "not with --log" in error_of(capsys, f"--log={log_file}", "--cold-fraction=0.1")


def test_bad_input_in_a_fresh_process_has_no_traceback() -> None:
    for args in (["--requests-per-day", "-5"], ["--memory-mb", "20000"], ["--log", "nope.log"]):
        proc = subprocess.run(
            [sys.executable, "-m", "cost", *args],
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            timeout=60,
        )
        assert proc.returncode == 2, args
        assert "error:" in proc.stderr and "Traceback" not in proc.stderr


def test_malformed_price_file_exits_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "prices.json"
    bad.write_text('{"schema_version": 1, "lambda": []}')
    assert main([f"--prices={bad}"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"cost: price file {bad}: lambda must be an object")


def test_make_cost_passes_args() -> None:
    proc = subprocess.run(
        ["make", "--no-print-directory", "-s", "cost", "ARGS=--requests-per-day 2000 --json"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["inputs"]["requests_per_day"] == 2000


def test_plot_writes_a_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "charts" / "cost.png"
    assert plot.main(["--out", str(out)]) == 0
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 30_000
    printed = capsys.readouterr().out
    assert "warm (330 ms) vs EC2 c5.2xlarge: break-even 442,967 requests/day" in printed
    assert "cold (4000 ms + 400 MB EFS read)" in printed


def test_plot_break_evens_follow_the_arguments() -> None:
    from cost.model import Usage, load_prices

    lines = plot.stack_lines(
        Usage(efs_read_mb_per_cold_start=0), cold_ms=4000, warm_ms=330, prices=load_prices()
    )
    warm, cold = (line.break_evens["EC2 c5.2xlarge"] for line in lines)
    assert warm is not None and cold is not None
    # Compute only, the cold line breaks even 4000 / 330 times sooner, give or take the
    # per-request and free-tier terms.
    assert 8 < warm / cold < 12.5


def test_plot_rejects_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        plot.main(["--memory-mb", "50"])
    assert caught.value.code == 2
    assert "128 to 10240" in capsys.readouterr().err
