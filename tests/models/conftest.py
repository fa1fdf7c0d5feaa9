"""Shared fixtures for the model tests: built models and digits rendered the way people send them.

Each model is built once per session through `ci.build_model.build`, exactly as the
pipeline does. Rendered digits use only the font that ships with Pillow.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from ci.build_model import build

CANVAS = 280


@dataclass(frozen=True)
class BuiltModel:
    """A model written by `build`, its metadata.json and the object loaded back from disk."""

    out_dir: Path
    metadata: dict[str, Any]
    predictor: Any


def _build_and_load(model: str, out_dir: Path) -> BuiltModel:
    returned = build(model, out_dir)
    on_disk = json.loads((out_dir / "metadata.json").read_text())
    assert on_disk == json.loads(json.dumps(returned))
    return BuiltModel(out_dir, on_disk, joblib.load(out_dir / "model.joblib"))


@pytest.fixture(scope="session")
def digits_model(digits_model_dir: Path) -> BuiltModel:
    """The digits ResNet the whole session shares (tests/conftest.py trains it once)."""
    on_disk = json.loads((digits_model_dir / "metadata.json").read_text())
    return BuiltModel(digits_model_dir, on_disk, joblib.load(digits_model_dir / "model.joblib"))


@pytest.fixture(scope="session")
def sklearn_model(tmp_path_factory: pytest.TempPathFactory) -> BuiltModel:
    """The bring-your-own scikit-learn example."""
    return _build_and_load("sklearn-digits", tmp_path_factory.mktemp("sklearn-model"))


@pytest.fixture(scope="session")
def resnet_model(tmp_path_factory: pytest.TempPathFactory) -> BuiltModel:
    """ResNet-152 with random weights (no weight file offline)."""
    return _build_and_load("resnet152", tmp_path_factory.mktemp("resnet-model"))


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    """The bytes of `image` saved as `fmt`."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled scalable font (Pillow >= 10.1)."""
    return ImageFont.load_default(size=size)


def glyph_mask(
    digit: int, size: tuple[int, int], font_size: int, centre: tuple[float, float]
) -> Image.Image:
    """An L image with the digit drawn in white (255) on black, anti-aliased."""
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).text(centre, str(digit), font=font(font_size), fill=255, anchor="mm")
    return mask


def black_on_white(digit: int) -> bytes:
    """A clear black digit on a white canvas, as a grayscale PNG."""
    ink = glyph_mask(digit, (CANVAS, CANVAS), 200, (CANVAS / 2, CANVAS / 2))
    return encode(Image.eval(ink, lambda v: 255 - v), "PNG")


def white_on_black(digit: int) -> bytes:
    """A clear white digit on black, as an RGB PNG."""
    ink = glyph_mask(digit, (CANVAS, CANVAS), 200, (CANVAS / 2, CANVAS / 2))
    return encode(Image.merge("RGB", (ink, ink, ink)), "PNG")


def noisy_photo_jpeg(digit: int) -> bytes:
    """A 'photo': off-centre dark ink, uneven (gradient) lighting, sensor noise, JPEG q70."""
    width, height = 640, 480
    rng = np.random.default_rng(100 + digit)
    xs = np.linspace(0.0, 1.0, width)[None, :]
    ys = np.linspace(0.0, 1.0, height)[:, None]
    paper = 140.0 + 95.0 * xs + 20.0 * ys
    ink = np.asarray(glyph_mask(digit, (width, height), 220, (width * 0.56, height * 0.5)))
    alpha = ink.astype(np.float64) / 255.0
    value = paper * (1.0 - alpha) + 45.0 * alpha
    rgb = np.stack([value, value * 0.97, value * 0.9], axis=-1)
    rgb += rng.normal(0.0, 18.0, size=(height, width, 1))
    image = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), mode="RGB")
    return encode(image, "JPEG", quality=70)


def transparent_rgba(digit: int) -> bytes:
    """Dark ink on a fully transparent background (a canvas export), as an RGBA PNG."""
    ink = glyph_mask(digit, (CANVAS, CANVAS), 200, (CANVAS / 2, CANVAS / 2))
    dark = Image.new("L", ink.size, 25)
    return encode(Image.merge("RGBA", (dark, dark, dark, ink)), "PNG")


def small_with_margin(digit: int) -> bytes:
    """A small digit off-centre on a large canvas: most of the picture is margin."""
    ink = glyph_mask(digit, (400, 400), 90, (140, 240))
    return encode(Image.eval(ink, lambda v: 255 - v), "PNG")


def hand_drawn(digit: int) -> bytes:
    """Thick strokes of lines and arcs, as drawn with a finger on a web canvas."""
    image = Image.new("L", (CANVAS, CANVAS), 255)
    draw = ImageDraw.Draw(image)
    width = 26

    def arc(box: tuple[int, int, int, int], start: int, end: int) -> None:
        draw.arc(box, start, end, fill=0, width=width)

    def line(*points: tuple[int, int]) -> None:
        draw.line(list(points), fill=0, width=width, joint="curve")

    def ellipse(box: tuple[int, int, int, int]) -> None:
        draw.ellipse(box, outline=0, width=width)

    if digit == 0:
        ellipse((80, 40, 200, 240))
    elif digit == 1:
        line((110, 80), (150, 45), (150, 240))
    elif digit == 2:
        arc((80, 40, 200, 150), 180, 30)
        line((190, 120), (85, 240), (205, 240))
    elif digit == 3:
        arc((85, 40, 195, 140), 200, 90)
        arc((80, 135, 200, 240), 270, 160)
    elif digit == 4:
        line((160, 240), (160, 40), (70, 180), (210, 180))
    elif digit == 5:
        line((195, 45), (100, 45), (95, 130))
        arc((85, 110, 205, 240), 220, 150)
    elif digit == 6:
        arc((75, 40, 210, 300), 190, 280)
        ellipse((80, 130, 200, 240))
    elif digit == 7:
        line((75, 45), (205, 45), (120, 240))
    elif digit == 8:
        ellipse((90, 35, 190, 135))
        ellipse((80, 135, 200, 245))
    else:
        ellipse((80, 40, 200, 145))
        line((195, 95), (185, 240))
    return encode(image, "PNG")


RENDERERS: dict[str, Callable[[int], bytes]] = {
    "black_on_white": black_on_white,
    "white_on_black": white_on_black,
    "noisy_photo_jpeg": noisy_photo_jpeg,
    "transparent_rgba": transparent_rgba,
    "small_with_margin": small_with_margin,
    "hand_drawn": hand_drawn,
}


@pytest.fixture(scope="session")
def rendered_digits() -> dict[str, list[bytes]]:
    """Encoded images of 0-9 for every variant; open with `Image.open(BytesIO(...))` per use."""
    return {name: [render(digit) for digit in range(10)] for name, render in RENDERERS.items()}
