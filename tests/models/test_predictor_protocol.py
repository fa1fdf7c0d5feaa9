"""The predictor protocol: what any joblib file must provide to be served."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from lambda_src.models.protocol import (
    ImagePredictor,
    SupportsWarmup,
    check_top_k,
    rank,
    validate_predictor,
    warmup,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


class BrightnessPredictor:
    """The bring-your-own example from lambda_src/models/README.md."""

    def __init__(self) -> None:
        self.labels = ["dark", "light"]
        self.metadata: dict[str, Any] = {
            "name": "brightness",
            "framework": "none",
            "input_size": [1, 1, 1],
            "normalisation": {},
            "labels": self.labels,
            "trained": False,
            "accuracy": None,
        }

    def predict_image(self, image: Image.Image, top_k: int) -> list[tuple[str, float]]:
        pixel = image.convert("L").resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))
        light = float(pixel) / 255
        return rank([1.0 - light, light], self.labels, top_k)


def test_minimal_predictor_is_servable() -> None:
    predictor = BrightnessPredictor()
    assert isinstance(predictor, ImagePredictor)
    assert not isinstance(predictor, SupportsWarmup)
    assert validate_predictor(predictor) == []
    assert warmup(predictor) is False
    assert predictor.predict_image(Image.new("RGB", (5, 5), "white"), 1) == [("light", 1.0)]


def test_validation_names_the_problems() -> None:
    assert "missing" in validate_predictor(object())[0]
    broken = BrightnessPredictor()
    broken.labels = []
    broken.metadata = {"name": "x", "bad": {1, 2}}
    problems = " | ".join(validate_predictor(broken))
    assert "non-empty" in problems
    assert "lacks" in problems
    assert "JSON" in problems


def test_rank_orders_and_clips() -> None:
    assert rank([0.1, 0.7, 0.2], ["a", "b", "c"], 2) == [("b", 0.7), ("c", 0.2)]
    assert rank([0.5, 0.5], ["a", "b"], 5) == [("a", 0.5), ("b", 0.5)]
    assert rank([float("nan"), 1.0], ["a", "b"], 2) == [("b", 1.0), ("a", 0.0)]
    with pytest.raises(ValueError):
        rank([1.0], ["a", "b"], 1)
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ValueError):
            check_top_k(bad, 3)  # type: ignore[arg-type]


def test_package_import_is_light() -> None:
    # The handler imports the package before lib/ (numpy, Pillow, torch) is on sys.path.
    script = (
        "import sys, lambda_src.models\n"
        "heavy = [m for m in ('numpy', 'PIL', 'torch', 'sklearn') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == ""
