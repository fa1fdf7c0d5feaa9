"""The benchmark's arithmetic, its report, and the naive baseline it measures against."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import report
from bench.images import event, payloads
from bench.measure import Floors, percentile

REPO_ROOT = Path(__file__).resolve().parents[2]


def _handler(total: float, warm_12mp: float) -> dict[str, Any]:
    cold = {
        "process_start": 20.0,
        "stamp_check": 5.0,
        "imports": 1000.0,
        "model_load": 50.0,
        "first_inference": total - 1075.0,
        "total": total,
    }
    warm = {
        name: {"p50": p50, "p95": p50 * 1.1, "samples": 3, "status": 200}
        for name, p50 in (("png_224px", 100.0), ("jpeg_1mp", 110.0), ("jpeg_12mp", warm_12mp))
    }
    return {
        "cold": cold,
        "warm": warm,
        "throughput_rps": {"c1": 8.0, "c2": 9.5},
        "peak_rss_mb": 900.0,
    }


def _results() -> dict[str, Any]:
    floors = {
        "process_start": 20.0,
        "import_torch": 1000.0,
        "first_forward": 150.0,
        "forward": 100.0,
        "best_settings": {"memory_format": "channels_last", "threads": 2},
        "cold": 1170.0,
    }
    return {
        "date": "2026-11-25",
        "machine": {"cpu": "test cpu", "cores": 2},
        "settings": {"memory_mb": 2048, "repeats": 3},
        "models": {
            "resnet152": {
                "ours": _handler(1400.0, 125.0),
                "naive": _handler(3000.0, 400.0),
                "floors": floors,
            },
            "digits": {
                "ours": _handler(1200.0, 20.0),
                "naive": _handler(2600.0, 80.0),
                "floors": {**floors, "forward": 0.5},
            },
        },
        "release_bytes": {
            "first_release": 2_000_000_000,
            "model_only": {"digits": 1_000_000, "resnet152": 220_000_000},
        },
    }


def _by(targets: list[dict[str, Any]], name: str, model: str) -> dict[str, Any]:
    return next(t for t in targets if t["target"] == name and t["model"] == model)


def test_targets_are_the_ratios_the_issue_states() -> None:
    targets = report.targets(_results())
    cold = _by(targets, "cold start / naive", "resnet152")
    assert cold["value"] == pytest.approx(1400 / 3000, abs=1e-3) and cold["met"]
    floor = _by(targets, "cold start / floor", "resnet152")
    assert floor["value"] == pytest.approx(1400 / 1170, abs=1e-3) and floor["met"]
    warm = _by(targets, "warm 12 MP JPEG / bare forward", "resnet152")
    assert warm["value"] == pytest.approx(1.25) and warm["met"] and warm["judged"]
    # The digits net's 0.5 ms forward pass is not what a 12 MP decode is judged against.
    assert not _by(targets, "warm 12 MP JPEG / bare forward", "digits")["judged"]
    share = _by(targets, "model-only release bytes / first release", "digits")
    assert share["value"] == pytest.approx(0.0005, abs=1e-4) and share["met"]


def test_a_slow_cold_start_misses_its_target() -> None:
    results = _results()
    results["models"]["resnet152"]["ours"]["cold"]["total"] = 1600.0
    targets = report.targets(results)
    assert not _by(targets, "cold start / naive", "resnet152")["met"]  # 1600/3000 > 0.5
    assert not _by(targets, "cold start / floor", "resnet152")["met"]  # 1600/1170 > 1.3


def test_table_and_chart_are_written(tmp_path: Path) -> None:
    results = _results()
    results["targets"] = report.targets(results)
    text = report.table(results)
    assert "| resnet152 | ours |" in text and "**1400 ms**" in text
    assert "MISSED" not in text
    missed = copy.deepcopy(results)
    missed["models"]["digits"]["ours"]["cold"]["total"] = 5000.0
    missed["targets"] = report.targets(missed)
    assert "MISSED" in report.table(missed)
    chart = tmp_path / "chart.png"
    report.chart(results, chart)
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and chart.stat().st_size > 10_000


def test_percentile_interpolates_and_refuses_nothing() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 50) == 3.0
    assert percentile([10.0, 20.0], 95) == pytest.approx(19.5)
    with pytest.raises(ValueError):
        percentile([], 50)
    assert Floors(10.0, 1000.0, 150.0, 100.0).cold == 1160.0


def test_payloads_are_the_sizes_the_figures_name() -> None:
    import io

    from PIL import Image

    sizes = {p.name: Image.open(io.BytesIO(p.data)).size for p in payloads()}
    assert sizes == {"png_224px": (224, 224), "jpeg_1mp": (1155, 866), "jpeg_12mp": (4000, 3000)}


def test_the_naive_baseline_really_loads_a_pickled_module_and_predicts(tmp_path: Path) -> None:
    # The baseline must be a working handler, or beating it means nothing.
    import joblib

    from lambda_src.models.networks import CompactResNet

    joblib.dump(CompactResNet(widths=(8,), blocks=(1,)).eval(), tmp_path / "naive.joblib")
    png = payloads()[0]
    script = (
        "import json, sys\n"
        "import naive_handler\n"
        "print(json.dumps(naive_handler.handle(json.loads(sys.stdin.read()), None)))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(event(png)),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT / "bench",
        env={
            "PYTHONPATH": str(REPO_ROOT),
            "MODEL_PATH": str(tmp_path / "naive.joblib"),
            "MODEL_INPUT": "digits",
            "LIB_PATH": str(tmp_path / "no-lib"),
            "PATH": "/usr/bin:/bin",
        },
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout.strip().splitlines()[-1])
    body = json.loads(answer["body"])
    assert answer["statusCode"] == 200 and len(body["predictions"]) == 5
    assert set(body["timing_ms"]) == {"imports", "model_load"}
