"""The contract a joblib file must meet to be served by the inference function.

The inference handler `joblib.load`s the release's model file and serves
whatever object comes out of it if it satisfies `ImagePredictor`:

* ``labels: list[str]`` - every class the model can answer, in output order;
* ``metadata: dict`` - JSON-serialisable facts about the model (see
  `REQUIRED_METADATA_KEYS`; ``accuracy`` when it is known);
* ``predict_image(image, top_k) -> list[tuple[str, float]]`` - the ``top_k``
  most probable ``(label, probability)`` pairs, most probable first;
* optionally ``warmup() -> None`` - build lazily created state and run one
  prediction (the build step uses it; the serving runtime's /warmup goes further
  and predicts a synthetic image end to end, so every lazy import happens).

This module imports nothing beyond the standard library, so the handler can
check a loaded object before the heavy libraries are needed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from PIL import Image

# Keys every predictor's metadata carries, so the API can describe any model.
REQUIRED_METADATA_KEYS = ("name", "framework", "input_size", "normalisation", "labels", "trained")


@runtime_checkable
class ImagePredictor(Protocol):
    """What any served model object provides. `isinstance` checks the members exist."""

    labels: list[str]
    metadata: dict[str, Any]

    def predict_image(self, image: Image.Image, top_k: int) -> list[tuple[str, float]]:
        """The top_k (label, probability) pairs for `image`, most probable first."""
        ...


@runtime_checkable
class SupportsWarmup(Protocol):
    """The optional part of the contract."""

    def warmup(self) -> None:
        """Prepare lazily built state (e.g. rebuild a network) and run one prediction."""
        ...


def warmup(predictor: object) -> bool:
    """Call `predictor.warmup()` if it has one; return whether it did."""
    if isinstance(predictor, SupportsWarmup):
        predictor.warmup()
        return True
    return False


def prepare_predictor(predictor: Any) -> Any:
    """Let a freshly unpickled predictor build its lazy state (``prepare()``), if it has any."""
    prepare = getattr(predictor, "prepare", None)
    if callable(prepare):
        prepare()
    return predictor


def validate_predictor(predictor: object) -> list[str]:
    """Problems that stop `predictor` from being served; an empty list means it is servable.

    Checks more than `isinstance` can: labels are a non-empty list of strings,
    metadata is JSON-serialisable and has the required keys.
    """
    if not isinstance(predictor, ImagePredictor):
        missing = [
            name for name in ("labels", "metadata", "predict_image") if not hasattr(predictor, name)
        ]
        return [f"missing {', '.join(missing)} (see lambda_src/models/README.md)"]
    problems: list[str] = []
    labels = predictor.labels
    if not isinstance(labels, list) or not labels:
        problems.append("labels must be a non-empty list")
    elif not all(isinstance(label, str) for label in labels):
        problems.append("labels must all be str")
    metadata = predictor.metadata
    if not isinstance(metadata, dict):
        problems.append("metadata must be a dict")
    else:
        absent = [key for key in REQUIRED_METADATA_KEYS if key not in metadata]
        if absent:
            problems.append(f"metadata lacks {', '.join(absent)}")
        try:
            json.dumps(metadata, allow_nan=False)
        except (TypeError, ValueError) as exc:
            problems.append(f"metadata is not JSON-serialisable: {exc}")
    if not callable(getattr(predictor, "predict_image", None)):
        problems.append("predict_image is not callable")
    return problems


def check_top_k(top_k: int, n_labels: int) -> int:
    """top_k as a usable count: at least 1 required, at most the number of labels."""
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
    return min(top_k, n_labels)


def rank(
    probabilities: Sequence[float], labels: Sequence[str], top_k: int
) -> list[tuple[str, float]]:
    """The top_k (label, probability) pairs, most probable first (ties keep label order)."""
    if len(probabilities) != len(labels):
        raise ValueError(f"{len(probabilities)} probabilities for {len(labels)} labels")
    count = check_top_k(top_k, len(labels))
    # A NaN would make the API response invalid JSON (and breaks sorting); count it as zero.
    values = [float(p) if math.isfinite(float(p)) else 0.0 for p in probabilities]
    order = sorted(range(len(labels)), key=lambda i: -values[i])[:count]
    return [(labels[index], values[index]) for index in order]
