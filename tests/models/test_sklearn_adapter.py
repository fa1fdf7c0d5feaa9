"""Bring your own scikit-learn model: the adapter and the shipped SVC example."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from lambda_src.models.protocol import ImagePredictor, SupportsWarmup, validate_predictor
from lambda_src.models.sklearn_adapter import ImagePreprocessing, SklearnImagePredictor


def test_example_satisfies_the_protocol(sklearn_model) -> None:
    predictor = sklearn_model.predictor
    assert isinstance(predictor, SklearnImagePredictor)
    assert isinstance(predictor, ImagePredictor)
    assert isinstance(predictor, SupportsWarmup)
    assert validate_predictor(predictor) == []
    predictor.warmup()
    meta = sklearn_model.metadata
    assert meta["framework"] == "scikit-learn"
    assert meta["labels"] == [str(d) for d in range(10)]
    assert meta["accuracy"] >= 0.97


def test_example_reads_rendered_digits(sklearn_model, rendered_digits) -> None:
    predictor = sklearn_model.predictor
    hits = 0
    for digit, data in enumerate(rendered_digits["black_on_white"]):
        ranked = predictor.predict_image(Image.open(io.BytesIO(data)), top_k=3)
        assert len(ranked) == 3
        assert [p for _, p in ranked] == sorted((p for _, p in ranked), reverse=True)
        hits += ranked[0][0] == str(digit)
    # An SVC on un-augmented 8x8 data misreads the font's 6 and 8.
    assert hits >= 7
    hand = rendered_digits["hand_drawn"][4]
    assert predictor.predict_image(Image.open(io.BytesIO(hand)), top_k=1)[0][0] == "4"


def test_custom_labels_and_plain_preprocessing() -> None:
    digits = load_digits()
    keep = digits.target < 3
    estimator = LogisticRegression(max_iter=500).fit(digits.data[keep], digits.target[keep])
    spec = ImagePreprocessing(crop_to_ink=False)
    predictor = SklearnImagePredictor(estimator, spec, labels=["zero", "one", "two"])
    assert predictor.metadata["preprocessing"]["size"] == [8, 8]
    # A data set sample drawn as an image, dark on light: inverted back and scaled to 0..16.
    sample = digits.images[1]
    image = Image.fromarray((255 - sample * (255 / 16)).astype(np.uint8), mode="L")
    features = spec.features(image)
    np.testing.assert_allclose(features, sample.reshape(-1), atol=0.2)
    assert predictor.predict_image(image, top_k=1)[0][0] == "one"


def test_rgb_preprocessing() -> None:
    spec = ImagePreprocessing(size=(4, 3), grayscale=False, scale_max=1.0, flatten=False)
    features = spec.features(Image.new("RGBA", (40, 30), (255, 0, 0, 255)))
    assert features.shape == (3, 4, 3)
    np.testing.assert_allclose(features[..., 0], 1.0)


def test_rejects_unusable_estimators() -> None:
    class NoProba:
        classes_ = np.arange(2)

    with pytest.raises(TypeError, match="predict_proba"):
        SklearnImagePredictor(NoProba())
    with pytest.raises(TypeError, match="fitted"):
        SklearnImagePredictor(LogisticRegression())
    fitted = LogisticRegression().fit(np.eye(2), [0, 1])
    with pytest.raises(ValueError, match="labels"):
        SklearnImagePredictor(fitted, labels=["only one"])
