"""lambda_src.models.manifest_models: the generic side of model directories, format by format."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from efs_layout.model_manifest import parse_manifest
from lambda_src.models import manifest_models
from lambda_src.models.manifest_models import load_predictor, preprocess_image


def manifest(**changes: Any) -> Any:
    doc: dict[str, Any] = {
        "schema_version": 1,
        "name": "m",
        "format": "onnx",
        "file": "model.onnx",
        "input": {"kind": "features", "features": 3, "example": [[1.0, 2.0, 3.0]]},
        "output": {"kind": "logits", "labels": ["a", "b"]},
    }
    doc.update(changes)
    return parse_manifest(doc)


def test_resize_preprocessing_converts_scales_normalises_and_lays_out() -> None:
    image = Image.new("RGB", (40, 20), (255, 0, 51))
    spec = {"kind": "resize", "size": [4, 6], "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
    nchw = preprocess_image(image, spec)
    assert nchw.shape == (1, 3, 4, 6) and nchw.dtype == np.float32
    assert np.allclose(nchw[0, :, 0, 0], [1.0, -1.0, -0.6])
    nhwc = preprocess_image(image, {**spec, "layout": "NHWC"})
    assert nhwc.shape == (1, 4, 6, 3) and np.allclose(nhwc[0, 0, 0], nchw[0, :, 0, 0])
    gray = preprocess_image(
        image, {"kind": "resize", "size": [2, 2], "mode": "L", "invert": True, "layout": "flat"}
    )
    assert gray.shape == (1, 4) and 0.0 < float(gray[0, 0]) < 1.0


def test_digit_grid_preprocessing_reads_the_digit_into_8x8() -> None:
    image = Image.new("L", (64, 64), 255)
    image.paste(0, (28, 8, 36, 56))  # a dark bar: a "1"
    grid = preprocess_image(image, {"kind": "digit-grid", "layout": "NCHW"})
    assert grid.shape == (1, 1, 8, 8) and grid.max() == pytest.approx(16.0, abs=2.0)
    assert preprocess_image(image, {"kind": "digit-grid", "layout": "flat"}).shape == (1, 64)


def _onnx_file(path: Path, weights: np.ndarray) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", weights.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", weights.shape[1]])],
        [numpy_helper.from_array(weights.astype(np.float32), "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_an_onnx_graph_answers_rows_as_ranked_labels_or_values(tmp_path: Path) -> None:
    weights = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    _onnx_file(tmp_path / "model.onnx", weights)
    ranked = load_predictor(manifest(), tmp_path).predict_rows(
        [[3.0, 0.0, 9.0], [0.0, 2.0, 0.0]], 2
    )
    assert [row[0][0] for row in ranked] == ["a", "b"]
    assert ranked[0][0][1] == pytest.approx(np.exp(3) / (np.exp(3) + 1))
    values = load_predictor(manifest(output={"kind": "values"}), tmp_path)
    assert values.predict_rows([[3.0, 0.0, 9.0]], 5) == [[3.0, 0.0]]


def test_a_torch_module_from_code_serves_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    code = tmp_path / "code"
    code.mkdir()
    (code / "tiny_net.py").write_text(
        "import torch\n\nclass Tiny(torch.nn.Module):\n"
        "    def __init__(self, width=3):\n        super().__init__()\n"
        "        self.linear = torch.nn.Linear(width, 2, bias=False)\n\n"
        "    def forward(self, x):\n        return self.linear(x)\n"
    )
    torch.save(
        {"linear.weight": torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])}, tmp_path / "model.pt"
    )
    monkeypatch.setattr("sys.path", list(sys.path))
    spec = manifest(
        format="torch",
        file="model.pt",
        code="code",
        torch={"module": "tiny_net", "class": "Tiny", "kwargs": {"width": 3}},
    )
    predictor = load_predictor(spec, tmp_path)
    assert [row[0][0] for row in predictor.predict_rows([[0.0, 5.0, 0.0]], 1)] == ["b"]
    bad = manifest(
        format="torch",
        file="model.pt",
        code="code",
        torch={"module": "tiny_net", "class": "Tiny", "kwargs": {"width": 4}},
    )
    with pytest.raises(manifest_models.ModelLoadError, match="does not load into Tiny"):
        load_predictor(bad, tmp_path)
    sys.modules.pop("tiny_net", None)


def test_a_regressor_answers_numbers(tmp_path: Path) -> None:
    import joblib
    from sklearn.linear_model import LinearRegression

    joblib.dump(LinearRegression().fit([[0.0], [1.0]], [1.0, 3.0]), tmp_path / "model.joblib")
    spec = manifest(
        format="joblib",
        file="model.joblib",
        input={"kind": "features", "features": 1, "example": [[2.0]]},
        output={"kind": "values"},
    )
    assert load_predictor(spec, tmp_path).predict_rows([[2.0]], 1) == [pytest.approx(5.0)]
