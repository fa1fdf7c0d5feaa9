"""ResNet-152: random-init build, ImageNet labels, large photos, weights from a local file."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from lambda_src.models import resnet152
from lambda_src.models.protocol import ImagePredictor, validate_predictor


def _jpeg(image: Image.Image, quality: int = 85) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue()))


def _scene(size: tuple[int, int]) -> Image.Image:
    """A smooth synthetic 'photo' (gradients), cheap to make at 12 MP."""
    red = Image.linear_gradient("L").resize(size)
    green = Image.linear_gradient("L").rotate(90).resize(size)
    blue = Image.radial_gradient("L").resize(size)
    return Image.merge("RGB", (red, green, blue))


def _check_ranking(ranked: list[tuple[str, float]], labels: list[str], k: int) -> None:
    assert len(ranked) == k
    probabilities = [p for _, p in ranked]
    assert probabilities == sorted(probabilities, reverse=True)
    assert all(0.0 <= p <= 1.0 for p in probabilities)
    assert all(label in labels for label, _ in ranked)


def test_untrained_build_metadata(resnet_model) -> None:
    meta = resnet_model.metadata
    assert meta["trained"] is False
    assert meta["note"] == "untrained: for benchmarks only"
    assert meta["accuracy"] is None
    assert meta["input_size"] == [3, 224, 224]
    assert meta["architecture"] == "torchvision.models.resnet152"
    assert meta["parameters"] == 60_192_808
    assert len(meta["labels"]) == 1000
    # ImageNet class names come from torchvision's bundled metadata, offline.
    assert meta["labels"][0] == "tench"
    assert meta["artifact"]["joblib_compress"] == 0
    predictor = resnet_model.predictor
    assert isinstance(predictor, ImagePredictor)
    assert validate_predictor(predictor) == []
    assert all(type(array) is np.ndarray for array in predictor.state.values())


def test_predicts_top5_on_224px_image(resnet_model) -> None:
    predictor = resnet_model.predictor
    ranked = predictor.predict_image(_scene((224, 224)), top_k=5)
    _check_ranking(ranked, predictor.labels, 5)


def test_predicts_on_a_12_megapixel_jpeg(resnet_model) -> None:
    predictor = resnet_model.predictor
    photo = _jpeg(_scene((4000, 3000)))
    ranked = predictor.predict_image(photo, top_k=5)
    _check_ranking(ranked, predictor.labels, 5)
    # Decoded at 1/8 scale (500x375), still above the 256 px the resize needs.
    assert photo.size == (500, 375)


def test_labels_fall_back_without_torchvision_names() -> None:
    assert resnet152.imagenet_labels(3) == ["class_0", "class_1", "class_2"]


def test_weights_from_a_local_checkpoint(resnet_model, tmp_path) -> None:
    # The random model's own weights, saved the way training scripts often do
    # (wrapped, DataParallel prefixes) under torchvision's V1 file name.
    state = {
        f"module.{name}": torch.from_numpy(np.array(array))
        for name, array in resnet_model.predictor.state.items()
    }
    path = tmp_path / "resnet152-394f9c45.pth"
    torch.save({"state_dict": state, "epoch": 1}, path)
    del state
    predictor = resnet152.build(weights=path)
    path.unlink()  # 240 MB; pytest keeps recent temporary directories
    meta = predictor.metadata
    assert meta["trained"] is True
    assert meta["weights_file"] == "resnet152-394f9c45.pth"
    assert len(meta["weights_sha256"]) == 64
    # Named like torchvision's file but not its content: no accuracy is claimed.
    assert meta["accuracy"] is None
    assert "not recognised" in meta["note"]
    image = _scene((300, 260))
    np.testing.assert_allclose(
        predictor.predict_proba(image.copy()),
        resnet_model.predictor.predict_proba(image.copy()),
        atol=1e-6,
    )


def test_weights_that_do_not_fit_fail_the_build(tmp_path) -> None:
    path = tmp_path / "broken.pth"
    torch.save({"fc.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(ValueError, match="do not fit"):
        resnet152.build(weights=path)
