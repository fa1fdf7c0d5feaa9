"""Serve a model directory's model as its manifest (model.json) describes it.

Generic by design: this module knows the three formats (joblib, onnx, torch), the two
input kinds (image, features) and the three output kinds, never a particular model. The
model's own code (pickled classes, the torch network) ships inside the release, in
model/code/, under the same stamp as the weights, so code and weights cannot drift and
the function zip stays the same for every model.

Imported only after the stamp check passed and lib/ is on sys.path: numpy is imported at
module level, the framework (scikit-learn via joblib, onnxruntime, torch) when the model
is loaded.
"""

from __future__ import annotations

import importlib
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from efs_layout.model_manifest import ModelManifest

from .protocol import prepare_predictor, rank

if TYPE_CHECKING:
    from PIL import Image

Array = npt.NDArray[Any]
# A row's answer: ranked (label, score) pairs for a classifier, numbers for a regressor.
RowAnswer = list[tuple[str, float]] | float | list[float]


class ModelLoadError(RuntimeError):
    """The model file or its code could not be loaded as the manifest says."""


def preprocess_image(image: Image.Image, spec: Mapping[str, Any]) -> Array:
    """The model's input array for one image, with a leading batch axis of 1."""
    from PIL import Image as PILImage

    from . import preprocessing

    layout = str(spec.get("layout", "NCHW"))
    if spec.get("kind") == "digit-grid":
        values = preprocessing.digit_grid(image, float(spec.get("scale", 16.0)))[None, :, :]
    else:
        mode = str(spec.get("mode", "RGB"))
        height, width = (int(v) for v in spec["size"])
        converted = (
            preprocessing.load_rgb(image) if mode == "RGB" else preprocessing.load_grayscale(image)
        )
        resized = converted.resize((width, height), PILImage.Resampling.BILINEAR)
        pixels: Array = np.asarray(resized, dtype=np.float32)
        if spec.get("invert", False):
            pixels = 255.0 - pixels
        pixels = pixels * np.float32(spec.get("scale", 1.0 / 255.0))
        hwc: Array = pixels[:, :, None] if pixels.ndim == 2 else pixels
        if "mean" in spec:
            hwc = hwc - np.asarray(spec["mean"], dtype=np.float32)
        if "std" in spec:
            hwc = hwc / np.asarray(spec["std"], dtype=np.float32)
        values = np.ascontiguousarray(hwc.transpose(2, 0, 1))  # C, H, W
    if layout == "flat":
        return values.reshape(1, -1).astype(np.float32)
    if layout == "NHWC":
        return np.ascontiguousarray(values.transpose(1, 2, 0)[None]).astype(np.float32)
    return values[None].astype(np.float32)


def _softmax(logits: Array) -> Array:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return np.asarray(exp / exp.sum(axis=1, keepdims=True))


class ManifestPredictor:
    """A loaded model plus its manifest: predicts images or rows of features."""

    def __init__(self, manifest: ModelManifest, labels: Sequence[str]) -> None:
        self.manifest = manifest
        self.labels = list(labels)
        self.metadata: dict[str, Any] = {
            "name": manifest.name,
            "framework": manifest.format,
            "input": manifest.input.public(),
            "output": manifest.output_kind,
            "labels": self.labels,
        }

    # What a concrete format implements: the raw output (rows x outputs) for a batch.
    def _forward(self, batch: Array) -> Array:
        raise NotImplementedError

    def _answers(self, outputs: Array, top_k: int) -> list[RowAnswer]:
        outputs = np.asarray(outputs, dtype=np.float64)
        if outputs.ndim == 1:
            outputs = outputs[:, None]
        outputs = outputs.reshape(outputs.shape[0], -1)
        kind = self.manifest.output_kind
        if kind == "values":
            return [
                [float(v) if math.isfinite(v) else 0.0 for v in row]
                if row.size > 1
                else (float(row[0]) if math.isfinite(row[0]) else 0.0)
                for row in outputs
            ]
        probabilities = _softmax(outputs) if kind == "logits" else outputs
        if probabilities.shape[1] != len(self.labels):
            raise ModelLoadError(
                f"the model gives {probabilities.shape[1]} outputs for {len(self.labels)} labels"
            )
        return [rank(row.tolist(), self.labels, top_k) for row in probabilities]

    def predict_rows(self, rows: Sequence[Sequence[float]], top_k: int) -> list[RowAnswer]:
        """One answer per row of features."""
        batch = np.asarray(rows, dtype=np.float32)
        return self._answers(self._forward(batch), top_k)

    def predict_image(self, image: Image.Image, top_k: int) -> list[tuple[str, float]]:
        """The top_k (label, score) pairs for one image (classifiers only)."""
        spec = self.manifest.input.preprocessing
        if spec is None:
            raise ModelLoadError("the manifest gives no image preprocessing")
        answer = self._answers(self._forward(preprocess_image(image, spec)), top_k)[0]
        if not isinstance(answer, list) or (answer and not isinstance(answer[0], tuple)):
            raise ModelLoadError("an image model must be a classifier (output labels)")
        return answer  # type: ignore[return-value]

    def rehearse(self) -> None:
        """One prediction of the manifest's example (features) so every lazy import happens."""
        if self.manifest.input.kind == "features":
            example = self.manifest.input.example
            self.predict_rows(example or [[0.0] * (self.manifest.input.features or 1)], 1)


class EstimatorPredictor(ManifestPredictor):
    """A joblib-loaded scikit-learn estimator or pipeline (predict_proba, or predict)."""

    def __init__(self, manifest: ModelManifest, estimator: Any) -> None:
        labels = list(manifest.labels)
        if not labels and manifest.output_kind != "values":
            classes = getattr(estimator, "classes_", None)
            if classes is None:
                raise ModelLoadError("output.labels is absent and the estimator has no classes_")
            labels = [str(c) for c in classes]
        super().__init__(manifest, labels)
        self.estimator = estimator
        proba = manifest.output_kind != "values"
        if proba and not callable(getattr(estimator, "predict_proba", None)):
            raise ModelLoadError("the estimator has no predict_proba; use output.kind values")
        if not proba and not callable(getattr(estimator, "predict", None)):
            raise ModelLoadError("the estimator has no predict")

    def _forward(self, batch: Array) -> Array:
        flat = batch.reshape(batch.shape[0], -1).astype(np.float64)
        if self.manifest.output_kind == "values":
            return np.asarray(self.estimator.predict(flat))
        return np.asarray(self.estimator.predict_proba(flat))


class OnnxModelPredictor(ManifestPredictor):
    """An ONNX graph run by ONNX Runtime: first input in, first output out."""

    def __init__(self, manifest: ModelManifest, model_file: Path) -> None:
        import onnxruntime

        from .onnx_runtime import _threads

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = _threads()
        options.inter_op_num_threads = 1
        try:
            self.session = onnxruntime.InferenceSession(
                str(model_file), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelLoadError(f"ONNX Runtime cannot load {model_file.name}: {exc}") from exc
        self.input_name = self.session.get_inputs()[0].name
        super().__init__(manifest, manifest.labels)

    def _forward(self, batch: Array) -> Array:
        return np.asarray(self.session.run(None, {self.input_name: batch})[0])


class TorchModulePredictor(ManifestPredictor):
    """A state_dict loaded into the nn.Module class the manifest names (from model/code/)."""

    def __init__(self, manifest: ModelManifest, model_file: Path) -> None:
        import torch

        from .onnx_runtime import _threads

        torch.set_num_threads(_threads())
        spec = manifest.torch
        try:
            module = importlib.import_module(str(spec["module"]))
            cls = getattr(module, str(spec["class"]))
        except (ImportError, AttributeError) as exc:
            raise ModelLoadError(
                f"torch.module {spec['module']}.{spec['class']} cannot be imported: {exc}"
            ) from exc
        try:
            network = cls(**dict(spec.get("kwargs") or {}))
            # weights_only: a state_dict holds tensors only, so nothing is unpickled that
            # could run code; mmap: the weights are paged in, not copied.
            state = torch.load(model_file, map_location="cpu", weights_only=True, mmap=True)
            network.load_state_dict(state, strict=True)
        except Exception as exc:  # a user's constructor or a mismatched state_dict
            raise ModelLoadError(
                f"the state_dict does not load into {cls.__name__}: {exc}"
            ) from exc
        self.network = network.eval()
        self._torch = torch
        super().__init__(manifest, manifest.labels)

    def _forward(self, batch: Array) -> Array:
        with self._torch.inference_mode():
            output = self.network(self._torch.from_numpy(np.ascontiguousarray(batch)))
        return np.asarray(output.detach().cpu().numpy())


def put_code_on_path(model_dir: Path, manifest: ModelManifest) -> Path | None:
    """Put the release's model code after lib/ on sys.path (once) and return it."""
    if not manifest.code:
        return None
    code = model_dir / manifest.code
    entry = str(code)
    if entry not in sys.path:
        # After lib/ (at 0): the model's code must not shadow the packages it was checked with.
        sys.path.insert(1 if sys.path else 0, entry)
        importlib.invalidate_caches()
    return code


def load_joblib(model_file: Path, *, prepare: bool = True) -> Any:
    """joblib.load as the runtime does it: memory-mapped, then ``prepare()`` when asked.

    Weights stored uncompressed are memory-mapped: loading costs page faults on first touch
    instead of a copy, and environments share the pages. (joblib ignores mmap_mode for
    compressed files such as the small digits model, and says so; harmless.)
    """
    import warnings

    import joblib

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*mmap_mode.*compressed file.*")
        loaded = joblib.load(model_file, mmap_mode="r")
    return prepare_predictor(loaded) if prepare else loaded


def load_predictor(manifest: ModelManifest, model_dir: Path) -> Any:
    """The servable object for a model directory (or a release's model/), loaded.

    A joblib file holding an object with ``predict_image`` (the built-in models, see
    protocol.py) is served as it is; anything else is wrapped by its format's adapter.
    """
    put_code_on_path(model_dir, manifest)
    model_file = model_dir / manifest.file
    if manifest.format == "onnx":
        return OnnxModelPredictor(manifest, model_file)
    if manifest.format == "torch":
        return TorchModulePredictor(manifest, model_file)
    try:
        loaded = load_joblib(model_file, prepare=False)
    except (ImportError, AttributeError) as exc:
        raise ModelLoadError(
            f"{manifest.file} names code that is not in lib/ or the model's code/: {exc}"
        ) from exc
    if callable(getattr(loaded, "predict_image", None)) and manifest.input.kind == "image":
        return prepare_predictor(loaded)
    return EstimatorPredictor(manifest, loaded)
