"""Serve any fitted scikit-learn classifier that has `predict_proba`, on images.

`SklearnImagePredictor` pairs the estimator with an `ImagePreprocessing` spec
that says how an uploaded image becomes the flat feature vector the estimator
was trained on. The defaults reproduce scikit-learn's digits data set (8x8,
bright ink on black, values 0..16), so a classifier fitted on
`load_digits().data` is servable as is. scikit-learn itself must be importable
where the model is loaded (add it to the Lambda's lib/).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from . import preprocessing
from .protocol import rank

if TYPE_CHECKING:
    from collections.abc import Sequence


@dataclass(frozen=True)
class ImagePreprocessing:
    """How an image becomes a feature vector.

    size: (width, height) the image is resized to, with area averaging.
    grayscale: one channel (True) or RGB (False).
    invert_if_light_background: make dark-on-light images light-on-dark (the
        border decides which is the background), as the digits data set is.
    crop_to_ink: crop to the ink's bounding box and fit it, aspect kept, to the
        grid first (grayscale only); fits the digit the way the digits data set
        does, including its stroke-thickness range.
    scale_max: feature values run from 0 to this (16 for the digits data set).
    flatten: return a 1-D vector (scikit-learn estimators want (n_samples, n_features)).
    """

    size: tuple[int, int] = (8, 8)
    grayscale: bool = True
    invert_if_light_background: bool = True
    crop_to_ink: bool = True
    scale_max: float = 16.0
    flatten: bool = True

    def features(self, image: Image.Image) -> npt.NDArray[np.float64]:
        """The feature vector (or array, if not `flatten`) for one image."""
        width, height = self.size
        if self.grayscale:
            gray = preprocessing.load_grayscale(image)
            if self.crop_to_ink:
                mask = preprocessing.ink_mask(gray, self.invert_if_light_background)
                coverage = preprocessing.DIGIT_COVERAGE if self.size == (8, 8) else None
                values: npt.NDArray[Any] = preprocessing.fit_to_grid(
                    mask, grid=(width, height), coverage=coverage
                )
            else:
                array = np.asarray(gray, dtype=np.float32) / 255.0
                if self.invert_if_light_background:
                    array = preprocessing.ink_intensity(array)
                resized = Image.fromarray(np.round(array * 255).astype(np.uint8), mode="L")
                resized = resized.resize((width, height), Image.Resampling.BOX)
                values = np.asarray(resized, dtype=np.float32) / 255.0
        else:
            rgb = preprocessing.load_rgb(image, (width, height))
            array = np.asarray(rgb, dtype=np.float32) / 255.0
            if self.invert_if_light_background and preprocessing.border_mean(
                array.mean(axis=2)
            ) > float(array.mean()):
                array = 1.0 - array
            resized = Image.fromarray(np.round(array * 255).astype(np.uint8), mode="RGB")
            values = np.asarray(resized.resize((width, height), Image.Resampling.BOX)) / 255.0
        scaled = np.asarray(values, dtype=np.float64) * self.scale_max
        return scaled.reshape(-1) if self.flatten else scaled


class SklearnImagePredictor:
    """A fitted scikit-learn classifier served on images. Satisfies `protocol.ImagePredictor`.

    Labels default to the estimator's `classes_` as strings, in `predict_proba`
    column order; pass `labels` to give them readable names (same order).
    """

    def __init__(
        self,
        estimator: Any,
        preprocessing_spec: ImagePreprocessing | None = None,
        labels: Sequence[str] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if not callable(getattr(estimator, "predict_proba", None)):
            raise TypeError(f"{type(estimator).__name__} has no predict_proba")
        classes = getattr(estimator, "classes_", None)
        if classes is None:
            raise TypeError("the estimator must be fitted (it has no classes_)")
        self.estimator = estimator
        self.preprocessing = preprocessing_spec or ImagePreprocessing()
        self.labels = [str(label) for label in (labels if labels is not None else classes)]
        if len(self.labels) != len(classes):
            raise ValueError(f"{len(self.labels)} labels for {len(classes)} classes")
        spec = self.preprocessing
        channels = 1 if spec.grayscale else 3
        defaults: dict[str, Any] = {
            "name": type(estimator).__name__,
            "framework": "scikit-learn",
            "estimator": repr(estimator),
            "input_size": [channels, spec.size[1], spec.size[0]],
            "normalisation": {"scale_max": spec.scale_max},
            "preprocessing": {
                key: list(v) if isinstance(v, tuple) else v for key, v in asdict(spec).items()
            },
            "labels": self.labels,
            "trained": True,
            "accuracy": None,
        }
        self.metadata = {**defaults, **(metadata or {})}

    def predict_proba(self, image: Image.Image) -> npt.NDArray[np.float64]:
        """Probabilities for every label, in `labels` order."""
        features = self.preprocessing.features(image).reshape(1, -1)
        probabilities: npt.NDArray[np.float64] = np.asarray(
            self.estimator.predict_proba(features), dtype=np.float64
        )[0]
        return probabilities

    def predict_image(self, image: Image.Image, top_k: int = 5) -> list[tuple[str, float]]:
        """The top_k (label, probability) pairs for `image`, most probable first."""
        return rank(self.predict_proba(image).tolist(), self.labels, top_k)

    def warmup(self) -> None:
        """Run one prediction on a blank image so lazy imports and caches are ready."""
        width, height = self.preprocessing.size
        self.predict_proba(Image.new("L", (max(width, 8), max(height, 8)), 255))
