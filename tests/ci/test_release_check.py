"""The release check: the same predictions with lib/'s packages as with the dev venv's."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from ci import build_lib, release_check


def test_identical_predictions_agree() -> None:
    here = {"a": {"1": 0.7, "2": 0.3}, "b": {"1": 0.2, "2": 0.8}}
    assert release_check.compare(here, {k: dict(v) for k, v in here.items()}) == 0.0
    close = {"a": {"1": 0.70005, "2": 0.29995}, "b": {"1": 0.2, "2": 0.8}}
    assert release_check.compare(here, close) == pytest.approx(5e-5)


@pytest.mark.parametrize(
    ("there", "message"),
    [
        ({"a": {"1": 0.7002, "2": 0.2998}}, "differ by up to 2.0"),
        ({"a": {"1": 0.45, "2": 0.55}}, "top label '2' with lib/"),
        ({"a": {"1": 0.7, "3": 0.3}}, "other labels"),
        ({}, "other labels"),
    ],
)
def test_a_difference_fails_the_check(there: dict[str, dict[str, float]], message: str) -> None:
    with pytest.raises(release_check.ReleaseCheckFailed, match=message):
        release_check.compare({"a": {"1": 0.7, "2": 0.3}}, there)


def test_a_lib_without_the_framework_fails_before_anything_ships(
    tmp_path: Path, digits_model_dir: Path
) -> None:
    # A complete-looking lib (the three packages every release needs) but no torch: the
    # torch model cannot load from it, whatever the dev venv has.
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("joblib==1.6.0\npillow==13.0.0\nnumpy==2.4.6\n")
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    lib = build_lib.build_lib(requirements, tmp_path / "lib", python_version=here).lib
    assert release_check.runs_here(lib) == (True, "")
    with pytest.raises(release_check.ReleaseCheckFailed, match="torch"):
        release_check.check(lib, digits_model_dir)
    # With --allow-missing-packages the interpreter's own torch fills in (test releases).
    relaxed = release_check.check(lib, digits_model_dir, isolated=False)
    assert relaxed.ran and relaxed.max_difference == 0.0


def test_a_lib_for_another_python_is_not_checked_here(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    lib.with_name("lib.json").write_text(
        json.dumps({"python": {"version": "3.99"}, "platform": {"machine": "x86_64"}})
    )
    can_run, reason = release_check.runs_here(lib)
    assert not can_run and "3.99" in reason
    result = release_check.check(lib, tmp_path, can_run=False, reason=reason)
    assert not result.ran and result.reason == reason
