"""Models exported to ONNX answer like their torch originals, and serve without torch."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest
from PIL import Image

from ci.build_model import build
from lambda_src.models import onnx_runtime
from lambda_src.models.protocol import validate_predictor
from tests.models.conftest import BuiltModel, black_on_white, hand_drawn

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def exported(digits_model: BuiltModel) -> onnx_runtime.OnnxPredictor:
    return onnx_runtime.export(digits_model.predictor)


def test_the_export_is_servable_and_records_where_it_came_from(
    exported: onnx_runtime.OnnxPredictor,
) -> None:
    assert validate_predictor(exported) == []
    assert exported.metadata["framework"] == "onnxruntime"
    assert exported.metadata["exported_from"] == "torch"
    assert exported.metadata["parity_max_abs_diff"] <= onnx_runtime.PARITY_TOLERANCE
    assert exported.preprocessor.state == {}  # the weights are in the graph, not twice


def test_onnx_runtime_gives_torchs_answers(
    digits_model: BuiltModel, exported: onnx_runtime.OnnxPredictor
) -> None:
    for digit in range(10):
        for render in (hand_drawn, black_on_white):
            image = Image.open(io.BytesIO(render(digit)))
            expected = digits_model.predictor.predict_proba(image)
            actual = exported.predict_proba(image)
            assert np.abs(actual - expected).max() < 1e-4
            assert exported.predict_image(image, 3)[0][0] == str(int(np.argmax(expected)))


def test_a_network_that_disagrees_is_refused(
    digits_model: BuiltModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = onnx_runtime.OnnxPredictor.predict_batch

    def skewed(self: onnx_runtime.OnnxPredictor, batch: np.ndarray) -> np.ndarray:
        out = real(self, batch)
        return np.roll(out, 1, axis=1)

    monkeypatch.setattr(onnx_runtime.OnnxPredictor, "predict_batch", skewed)
    with pytest.raises(ValueError, match="disagree"):
        onnx_runtime.export(digits_model.predictor)


def test_built_file_loads_and_predicts_without_importing_torch(tmp_path: Path) -> None:
    build("digits-onnx", tmp_path, epochs=2)
    png = tmp_path / "seven.png"
    png.write_bytes(hand_drawn(7))
    code = (
        "import sys, joblib\n"
        "from PIL import Image\n"
        f"p = joblib.load({str(tmp_path / 'model.joblib')!r}, mmap_mode='r')\n"
        "p.prepare()\n"
        f"top = p.predict_image(Image.open({str(png)!r}), 3)\n"
        "print(len(top), 'torch' in sys.modules, 'torchvision' in sys.modules)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
        env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["3", "False", "False"]
    assert joblib.load(tmp_path / "model.joblib").metadata["framework"] == "onnxruntime"
