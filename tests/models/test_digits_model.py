"""The digits ResNet: held-out accuracy, persistence, and digits as people actually send them."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from lambda_src.models.digits import LABELS, DigitsResNetPredictor
from lambda_src.models.protocol import ImagePredictor, SupportsWarmup, validate_predictor

REPO_ROOT = Path(__file__).resolve().parents[2]


def _open(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def _top_label(predictor: DigitsResNetPredictor, data: bytes) -> str:
    return predictor.predict_image(_open(data), top_k=1)[0][0]


def test_held_out_accuracy_and_metadata(digits_model) -> None:
    meta = digits_model.metadata
    assert meta["accuracy"] >= 0.97
    assert meta["labels"] == [str(d) for d in range(10)] == LABELS
    assert meta["trained"] is True
    assert meta["input_size"] == [1, 8, 8]
    assert meta["seed"] == 0
    assert meta["split"]["test_samples"] == 360
    assert meta["split"]["method"] == "stratified train_test_split"
    assert {"mean", "std"} <= set(meta["normalisation"])
    assert "Otsu" in meta["preprocessing"]
    assert 0 < meta["train_seconds"] < 180
    assert meta["artifact"]["class"] == "lambda_src.models.digits.DigitsResNetPredictor"


def test_persisted_object_is_self_contained(digits_model) -> None:
    predictor = digits_model.predictor
    assert isinstance(predictor, DigitsResNetPredictor)
    assert isinstance(predictor, ImagePredictor)
    assert isinstance(predictor, SupportsWarmup)
    assert validate_predictor(predictor) == []
    # Weights are plain arrays plus a config, not a pickled nn.Module.
    assert all(type(array) is np.ndarray for array in predictor.state.values())
    assert predictor.config["kind"] == "compact_resnet"
    json.dumps(predictor.metadata, allow_nan=False)


def test_grids_from_the_data_set_are_classified(digits_model) -> None:
    digits = load_digits()
    probabilities = digits_model.predictor.predict_grids(digits.images[:200].astype(np.float32))
    assert probabilities.shape == (200, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
    assert (probabilities.argmax(axis=1) == digits.target[:200]).mean() >= 0.97


def test_round_trip_in_a_fresh_interpreter(digits_model, rendered_digits, tmp_path) -> None:
    image_path = tmp_path / "four.png"
    image_path.write_bytes(rendered_digits["black_on_white"][4])
    script = (
        "import json, sys, joblib\n"
        "from PIL import Image\n"
        "predictor = joblib.load(sys.argv[1])\n"
        "torch_on_load = 'torch' in sys.modules\n"
        "top = predictor.predict_image(Image.open(sys.argv[2]), top_k=3)\n"
        "print(json.dumps({'torch_on_load': torch_on_load, 'top': top}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", script, str(digits_model.out_dir / "model.joblib"), str(image_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=True,
    )
    result = json.loads(done.stdout)
    # Unpickling needs numpy only; torch is imported for the first prediction.
    assert result["torch_on_load"] is False
    labels = [label for label, _ in result["top"]]
    probabilities = [p for _, p in result["top"]]
    assert labels[0] == "4"
    assert probabilities == sorted(probabilities, reverse=True)


def test_rendered_digits_overall(digits_model, rendered_digits) -> None:
    predictor = digits_model.predictor
    correct: dict[str, int] = {}
    wrong: list[str] = []
    for variant, images in rendered_digits.items():
        correct[variant] = 0
        for digit, data in enumerate(images):
            label = _top_label(predictor, data)
            if label == str(digit):
                correct[variant] += 1
            else:
                wrong.append(f"{variant}:{digit}->{label}")
    total = sum(correct.values())
    count = sum(len(images) for images in rendered_digits.values())
    print(f"rendered digits: {total}/{count} {correct} wrong={wrong}")
    assert total / count >= 0.85, (correct, wrong)
    # The same glyphs in either polarity must be read; this is the polarity check.
    assert correct["black_on_white"] >= 8, wrong
    assert correct["white_on_black"] >= 8, wrong
    assert correct["hand_drawn"] >= 8, wrong
    for variant in ("noisy_photo_jpeg", "transparent_rgba", "small_with_margin"):
        assert correct[variant] >= 7, (variant, wrong)


def test_polarity_does_not_change_the_answer(digits_model, rendered_digits) -> None:
    predictor = digits_model.predictor
    for dark, light in zip(
        rendered_digits["black_on_white"], rendered_digits["white_on_black"], strict=True
    ):
        np.testing.assert_allclose(
            predictor.predict_proba(_open(dark)), predictor.predict_proba(_open(light)), atol=0.02
        )


def test_data_set_samples_as_tiny_images(digits_model) -> None:
    # An 8x8 image of a data set sample (as a person might upload one) goes
    # through the full pipeline, including the small-image upsampling.
    digits = load_digits()
    predictor = digits_model.predictor
    hits = 0
    for index in range(40):
        pixels = (digits.images[index] * (255 / 16)).astype(np.uint8)
        image = Image.fromarray(255 - pixels, mode="L")
        hits += predictor.predict_image(image, top_k=1)[0][0] == str(digits.target[index])
    assert hits >= 34


def test_photo_without_a_digit_still_gives_a_distribution(digits_model) -> None:
    skimage_data = pytest.importorskip("skimage.data")
    photo = Image.fromarray(skimage_data.astronaut())
    ranked = digits_model.predictor.predict_image(photo, top_k=10)
    assert sorted(label for label, _ in ranked) == LABELS
    assert sum(p for _, p in ranked) == pytest.approx(1.0, abs=1e-6)
    assert [p for _, p in ranked] == sorted((p for _, p in ranked), reverse=True)


def test_blank_image_is_answered(digits_model) -> None:
    ranked = digits_model.predictor.predict_image(Image.new("RGB", (100, 80), "white"), top_k=3)
    assert len(ranked) == 3


def test_top_k_is_validated_and_clipped(digits_model, rendered_digits) -> None:
    predictor = digits_model.predictor
    assert len(predictor.predict_image(_open(rendered_digits["hand_drawn"][0]), top_k=50)) == 10
    with pytest.raises(ValueError):
        predictor.predict_image(_open(rendered_digits["hand_drawn"][0]), top_k=0)


def test_warmup_builds_the_network_once(digits_model) -> None:
    predictor = digits_model.predictor
    predictor.warmup()
    network = predictor.network()
    predictor.warmup()
    assert predictor.network() is network
    assert not network.training
