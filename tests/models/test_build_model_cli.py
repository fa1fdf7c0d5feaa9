"""ci.build_model as the pipeline calls it."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ci import build_model

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_cli_writes_model_and_metadata(tmp_path, capsys) -> None:
    out = tmp_path / "out"
    assert build_model.main(["--model", "sklearn-digits", "--out", str(out), "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    assert "accuracy:" in printed
    metadata = json.loads((out / "metadata.json").read_text())
    model_bytes = (out / "model.joblib").read_bytes()
    assert metadata["artifact"]["sha256"] == hashlib.sha256(model_bytes).hexdigest()
    assert metadata["artifact"]["bytes"] == len(model_bytes)
    assert metadata["seed"] == 1
    assert not list(out.glob("*.partial"))


def test_cli_rejects_bad_arguments(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit):
        build_model.main(["--model", "nope", "--out", str(tmp_path)])
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"x")
    assert (
        build_model.main(
            ["--model", "sklearn-digits", "--out", str(tmp_path), "--weights", str(weights)]
        )
        == 1
    )
    assert "resnet152 only" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_model.main(
            ["--model", "resnet152", "--out", str(tmp_path), "--weights", str(tmp_path / "missing")]
        )
    with pytest.raises(ValueError):
        build_model.build("nope", tmp_path)


def test_runs_as_a_module(tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ci.build_model", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=60,
        check=True,
    )
    assert "--model" in done.stdout
