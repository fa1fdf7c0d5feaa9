"""The README's figures are the code's: counts it quotes are checked against their sources."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from bench import report
from tests.lambda_src.hostile_corpus import CORPUS
from tests.terraform.test_static import checkov_report  # noqa: F401 (the fixture)

REPO_ROOT = Path(__file__).resolve().parents[1]
README = (REPO_ROOT / "README.md").read_text()


def test_the_hostile_corpus_counts_are_the_corpus() -> None:
    predicted = sum(1 for case in CORPUS if case.status == 200)
    refused = sum(1 for case in CORPUS if 400 <= case.status < 500)
    assert predicted + refused == len(CORPUS), "a corpus entry expects a 5xx"
    assert f"generates {len(CORPUS)} `/predict` requests" in README
    assert f"{len(CORPUS)} generated inputs" in README
    assert f"{predicted} predicted, {refused} refused" in README


def test_the_checkov_counts_are_what_checkov_says(
    checkov_report: dict[str, Any],  # noqa: F811
) -> None:
    summary = checkov_report["summary"]
    line = (
        f"Passed checks: {summary['passed']}, Failed checks: {summary['failed']}, "
        f"Skipped checks: {summary['skipped']}"
    )
    assert line in README
    assert (
        f"{summary['passed']} passed, {summary['failed']} failed, {summary['skipped']} skipped"
        in README
    )


def test_the_quoted_benchmark_is_a_result_on_record() -> None:
    quoted = re.search(r"!\[Benchmark\]\(bench/results/(\d{4}-\d{2}-\d{2})\.png\)", README)
    assert quoted, "README embeds no benchmark chart"
    results = REPO_ROOT / "bench" / "results" / f"{quoted.group(1)}.json"
    assert results.is_file() and results.with_suffix(".png").is_file()
    data = json.loads(results.read_text())
    for model, figures in data["models"].items():
        for label, name in (("ours", "ours (torch)"), ("onnx", "onnx"), ("naive", "naive")):
            total = figures[label]["cold"]["total"]
            assert f"| {model} | {name} |" in README
            assert f"**{total:.0f} ms** |" in README, (model, label)
    # The ratios README states are the ones this run's figures give.
    targets = {(t["target"], t["model"]): t["value"] for t in report.targets(data)}
    assert f"{targets[('cold start / naive', 'resnet152')]:.2f}" in README
    assert f"{targets[('cold start / naive', 'resnet152 (onnx)')]:.2f}" in README
    assert f"{targets[('cold start / floor', 'resnet152')]:.2f}" in README


@pytest.mark.parametrize("target", ["cost", "cost-plot", "bench", "load", "lint"])
def test_the_targets_the_readme_names_exist(target: str) -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert re.search(rf"^{re.escape(target)}:.*## ", makefile, re.MULTILINE)
    assert f"make {target}" in README
