"""Serve a torch predictor's network with ONNX Runtime instead of torch.

`import torch` is about a second of every cold start and torch is 5 GB of lib/ on
EFS (storage billed monthly, and read at every cold start). ONNX Runtime imports
in about 0.1 s from about 150 MB. The network is exported at build time; the
predictor keeps the source predictor's preprocessing and labels (numpy and Pillow
only), and the ONNX graph as a uint8 array so joblib can memory-map it.

Unpickling an `OnnxPredictor` imports neither torch nor onnxruntime; the session
is created on first use (`prepare`).
"""

from __future__ import annotations

import copy
import os
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from .torch_state import TorchStatePredictor, ViewAveragingPredictor

if TYPE_CHECKING:
    from PIL import Image

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
OPSET = 17
# Probabilities from ONNX Runtime and torch may differ by float rounding only.
PARITY_TOLERANCE = 1e-4


def _threads() -> int:
    # Lambda gives one vCPU per 1769 MB; the process sees exactly its share.
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class OnnxPredictor(ViewAveragingPredictor):
    """A `protocol.ImagePredictor` whose network runs in ONNX Runtime."""

    def __init__(self, source: TorchStatePredictor, graph: bytes, parity: float) -> None:
        preprocessor = copy.copy(source)
        preprocessor.state = {}  # the weights live in the graph now
        preprocessor._network = None
        self.preprocessor = preprocessor
        self.input_shape = source.input_shape
        self.labels = list(source.labels)
        self.graph = np.frombuffer(graph, dtype=np.uint8).copy()
        self.metadata = {
            **source.metadata,
            "framework": "onnxruntime",
            "exported_from": source.metadata.get("framework", "torch"),
            "onnx_opset": OPSET,
            "onnx_bytes": len(graph),
            "parity_max_abs_diff": parity,
        }
        self._session: Any = None

    def __getstate__(self) -> dict[str, Any]:
        """Pickle everything but the session."""
        state = self.__dict__.copy()
        state["_session"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore from a pickle; the session is created when first needed."""
        self.__dict__.update(state)
        self._session = None

    def session(self) -> Any:
        """The ONNX Runtime session, created on first use."""
        if self._session is None:
            import onnxruntime

            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = _threads()
            options.inter_op_num_threads = 1
            options.log_severity_level = 3  # warnings about unused initialisers are noise here
            self._session = onnxruntime.InferenceSession(
                self.graph.tobytes(), options, providers=["CPUExecutionProvider"]
            )
        return self._session

    def prepare(self) -> None:
        """Create the session now (no inference), so loading is timed apart from inference."""
        self.session()

    def preprocess(self, image: Image.Image) -> npt.NDArray[np.float32]:
        """The source predictor's network inputs for `image`, shaped (views, *input_shape)."""
        batch: npt.NDArray[np.float32] = self.preprocessor.preprocess(image)
        return batch

    def predict_batch(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        """Class probabilities (N, len(labels)) for preprocessed inputs (N, *input_shape)."""
        logits = self.session().run(
            [OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)}
        )[0]
        return softmax(np.asarray(logits, dtype=np.float64))


def softmax(logits: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Row-wise softmax, stable for large logits."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return np.asarray(exp / exp.sum(axis=1, keepdims=True), dtype=np.float64)


def export(source: TorchStatePredictor, seed: int = 0) -> OnnxPredictor:
    """Export `source`'s network to ONNX and check ONNX Runtime agrees with torch.

    Build time only: needs torch, onnx and onnxruntime. Raises ValueError if the
    two runtimes' probabilities differ by more than `PARITY_TOLERANCE`.
    """
    import torch

    network = source.network()
    example = torch.zeros((1, *source.input_shape))
    workdir = tempfile.TemporaryDirectory(prefix="onnx-export-")
    graph_path = Path(workdir.name) / "model.onnx"
    # The TorchScript exporter: the newer torch.export one needs onnxscript, and a
    # ResNet has no control flow that would need it. It warns that it is legacy.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            network,
            (example,),
            graph_path,
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=OPSET,
        )
    generator = np.random.default_rng(seed)
    probe = generator.standard_normal((3, *source.input_shape)).astype(np.float32)
    expected = source.predict_batch(probe)
    with workdir:
        graph = graph_path.read_bytes()
    predictor = OnnxPredictor(source, graph, parity=0.0)
    actual = predictor.predict_batch(probe)
    parity = float(np.abs(actual - expected).max())
    if parity > PARITY_TOLERANCE:
        raise ValueError(f"ONNX Runtime and torch disagree by {parity:.2e} (> {PARITY_TOLERANCE})")
    predictor.metadata["parity_max_abs_diff"] = parity
    predictor._session = None
    return predictor
