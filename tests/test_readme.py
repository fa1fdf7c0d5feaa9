"""The README's figures are the code's: counts it and docs/ quote are checked against their sources.

Long reference material moved from README.md to docs/; each assertion reads the file where
its figure now lives, and the links between README.md and docs/ must resolve.
"""

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
DOCS = REPO_ROOT / "docs"
RELIABILITY = (DOCS / "reliability.md").read_text()
SECURITY = (DOCS / "security.md").read_text()


def test_the_hostile_corpus_counts_are_the_corpus() -> None:
    predicted = sum(1 for case in CORPUS if case.status == 200)
    refused = sum(1 for case in CORPUS if 400 <= case.status < 500)
    assert predicted + refused == len(CORPUS), "a corpus entry expects a 5xx"
    assert f"generates {len(CORPUS)} `/predict` requests" in RELIABILITY
    assert f"{len(CORPUS)} generated inputs" in README
    assert f"{predicted} predicted, {refused} refused" in README
    assert f"{predicted} predicted, {refused} refused" in RELIABILITY


def test_the_checkov_counts_are_what_checkov_says(
    checkov_report: dict[str, Any],  # noqa: F811
) -> None:
    summary = checkov_report["summary"]
    line = (
        f"Passed checks: {summary['passed']}, Failed checks: {summary['failed']}, "
        f"Skipped checks: {summary['skipped']}"
    )
    assert line in README
    assert line in SECURITY
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


# What the lead's change in progress adds; checked like the rest as soon as it exists.
PENDING_TARGETS = frozenset({"deploy", "destroy"})
PENDING_PATHS = frozenset(
    {
        "docs/model-directory.md",
        "examples/tabular-sklearn",
        "examples/torch-digits",
        "examples/onnx-digits",
    }
)
PAGES = [REPO_ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _prose(text: str) -> str:
    """The text outside fenced code blocks."""
    return FENCE.sub("", text)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    kept = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return kept.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    headings = re.findall(r"^#{1,6} (.+)$", _prose(page.read_text()), re.MULTILINE)
    return {_slug(heading) for heading in headings}


def _links() -> list[tuple[Path, str]]:
    found = []
    for page in PAGES:
        for target in LINK.findall(_prose(page.read_text())):
            if not re.match(r"[a-z]+:", target):
                found.append((page, target))
    return found


@pytest.mark.parametrize(
    ("page", "target"),
    _links(),
    ids=lambda value: value.name if isinstance(value, Path) else str(value),
)
def test_the_links_between_readme_and_docs_resolve(page: Path, target: str) -> None:
    path_part, _, anchor = target.partition("#")
    resolved = (page.parent / path_part).resolve() if path_part else page
    relative = resolved.relative_to(REPO_ROOT).as_posix()
    if relative in PENDING_PATHS and not resolved.exists():
        pytest.skip(f"{relative}: not written yet (the model-directory change)")
    assert resolved.exists(), f"{page.name}: {target} names no file"
    if anchor:
        assert resolved.suffix == ".md", f"{page.name}: {target}: an anchor in a non-Markdown file"
        assert anchor in _anchors(resolved), f"{page.name}: {target}: no such heading"


def _make_targets_named(text: str) -> set[str]:
    inline = re.findall(r"`make ([a-z][\w-]*)", _prose(text))
    in_code = re.findall(r"^\s*(?:\$ )?make ([a-z][\w-]*)", text, re.MULTILINE)
    return set(inline) | set(in_code)


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_make_target_the_docs_name_exists(page: Path) -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    defined = set(re.findall(r"^([a-zA-Z0-9_-]+):", makefile, re.MULTILINE))
    missing = _make_targets_named(page.read_text()) - defined
    pending = missing & PENDING_TARGETS
    assert not missing - pending, f"{page.name} names make targets the Makefile lacks"
    if pending:
        pytest.skip(f"make {', '.join(sorted(pending))}: not in the Makefile yet")
