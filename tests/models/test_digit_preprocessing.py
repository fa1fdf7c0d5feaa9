"""The digit pipeline: image modes, orientation, polarity, lighting, large photos."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from lambda_src.models import preprocessing


def _open(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def _reopen(image: Image.Image, fmt: str, **options: object) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return Image.open(io.BytesIO(buffer.getvalue()))


@pytest.fixture()
def seven(rendered_digits) -> Image.Image:
    """A black-on-white 7 (asymmetric, so a rotation shows), loaded as L."""
    return _open(rendered_digits["black_on_white"][7]).convert("L")


def _close(grid: np.ndarray, reference: np.ndarray, tolerance: float = 0.6) -> bool:
    return float(np.abs(grid - reference).mean()) < tolerance


def _modes(seven: Image.Image) -> dict[str, Image.Image]:
    rgb = seven.convert("RGB")
    palette = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    transparent_palette = palette.copy()
    white_index = int(np.asarray(palette)[0, 0])
    transparent_palette.info["transparency"] = white_index
    pixels = np.asarray(seven, dtype=np.uint16)
    return {
        "L": seven,
        "RGB": rgb,
        "RGBA opaque": rgb.convert("RGBA"),
        "LA": seven.convert("LA"),
        "P": _reopen(palette, "PNG"),
        "P transparent": _reopen(transparent_palette, "PNG"),
        "CMYK": rgb.convert("CMYK"),
        "CMYK JPEG": _reopen(rgb.convert("CMYK"), "JPEG", quality=95),
        "1": seven.convert("1"),
        "I;16 full range": _reopen(Image.fromarray(pixels * 257), "PNG"),
        "I;16 12-bit": _reopen(Image.fromarray(pixels * 16), "PNG"),
        "I": seven.convert("I"),
        "F": seven.convert("F"),
    }


def test_every_mode_gives_the_same_grid(seven) -> None:
    reference = preprocessing.digit_grid(seven)
    assert reference.shape == (8, 8)
    assert reference.max() > 10
    for mode, image in _modes(seven).items():
        grid = preprocessing.digit_grid(image)
        assert grid.shape == (8, 8), mode
        assert _close(grid, reference), (mode, np.abs(grid - reference).mean())


def test_sixteen_bit_png_is_really_sixteen_bit(seven) -> None:
    image = _modes(seven)["I;16 12-bit"]
    assert image.mode.startswith("I;16")
    # Pillow's own conversion clips at 255: proof that the stretch is needed.
    assert preprocessing.to_grayscale(image).getextrema() == (0, 255)


def test_transparent_canvas_with_dark_or_light_ink(rendered_digits) -> None:
    dark_ink = _open(rendered_digits["transparent_rgba"][2])
    assert dark_ink.mode == "RGBA"
    reference = preprocessing.digit_grid(_open(rendered_digits["black_on_white"][2]))
    assert _close(preprocessing.digit_grid(dark_ink), reference)
    # White ink on transparency would vanish on a white background; it is put on black.
    alpha = dark_ink.getchannel("A")
    white = Image.new("L", dark_ink.size, 255)
    light_ink = Image.merge("RGBA", (white, white, white, alpha))
    assert _close(preprocessing.digit_grid(light_ink), reference)


def test_exif_orientation_is_applied(seven) -> None:
    upright = preprocessing.digit_grid(seven)
    # Stored rotated a quarter turn anticlockwise; orientation 6 tells viewers
    # to turn it clockwise to display it upright.
    stored = seven.convert("RGB").transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    with_exif = _reopen(stored, "JPEG", quality=92, exif=exif.tobytes())
    without_exif = _reopen(stored, "JPEG", quality=92)
    assert _close(preprocessing.digit_grid(with_exif), upright)
    assert not _close(preprocessing.digit_grid(without_exif), upright)


def test_polarity_is_detected(seven) -> None:
    gray = np.asarray(seven, dtype=np.float32) / 255.0
    assert preprocessing.ink_intensity(gray).mean() < 0.5
    assert preprocessing.ink_intensity(1.0 - gray).mean() < 0.5


def _photo(digit: int, size: tuple[int, int], seed: int) -> Image.Image:
    width, height = size
    rng = np.random.default_rng(seed)
    ink = Image.new("L", size, 0)
    font = ImageFont.load_default(size=int(height * 0.45))
    ImageDraw.Draw(ink).text(
        (width * 0.45, height * 0.55), str(digit), font=font, fill=255, anchor="mm"
    )
    xs = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    ys = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    # Strong vignette-like lighting: a corner of the paper is darker than the
    # middle of a stroke is light.
    paper = 120.0 + 110.0 * xs * (1.0 - 0.5 * ys)
    alpha = np.asarray(ink, dtype=np.float32) / 255.0
    values = paper * (1.0 - alpha) + 30.0 * alpha
    noise = rng.normal(0.0, 12.0, size=(height // 8 + 1, width // 8 + 1)).astype(np.float32)
    values += np.repeat(np.repeat(noise, 8, axis=0), 8, axis=1)[:height, :width]
    gray = Image.fromarray(np.clip(values, 0, 255).astype(np.uint8), mode="L")
    return gray.convert("RGB")


def test_twelve_megapixel_jpeg_is_decoded_at_reduced_scale() -> None:
    big = _reopen(_photo(3, (4000, 3000), seed=1), "JPEG", quality=85)
    assert big.size == (4000, 3000)
    # CPU seconds, not wall time, which on a loaded machine counts other processes' turns.
    started = time.process_time()
    gray = preprocessing.load_grayscale(big)
    grid = preprocessing.fit_to_grid(preprocessing.ink_mask(gray))
    elapsed = time.process_time() - started
    # draft() made libjpeg decode at 1/8 scale: 500x375 instead of 4000x3000.
    assert big.size == (500, 375)
    assert max(gray.size) == preprocessing.DIGIT_WORK_SIDE
    assert grid.max() > 0.5
    assert elapsed < 3.0


def test_uneven_lighting_and_a_dark_frame_edge(rendered_digits) -> None:
    reference = preprocessing.digit_grid(_open(rendered_digits["black_on_white"][5]))
    photo = _photo(5, (640, 480), seed=2)
    # A dark table edge along the left border, as in a hand-held photo.
    ImageDraw.Draw(photo).rectangle((0, 0, 40, 479), fill=(20, 20, 20))
    grid = preprocessing.digit_grid(_reopen(photo, "JPEG", quality=80))
    assert _close(grid, reference, tolerance=1.0), np.abs(grid - reference).mean()


def test_blank_and_tiny_images() -> None:
    assert not preprocessing.digit_grid(Image.new("L", (50, 50), 255)).any()
    assert not preprocessing.digit_grid(Image.new("RGBA", (50, 50), (0, 0, 0, 0))).any()
    tiny = Image.new("L", (8, 8), 255)
    tiny.putpixel((4, 2), 0)
    tiny.putpixel((4, 3), 0)
    tiny.putpixel((4, 4), 0)
    tiny.putpixel((4, 5), 0)
    assert preprocessing.digit_grid(tiny).max() > 8


def test_grid_matches_the_data_set_layout(rendered_digits) -> None:
    grid = preprocessing.digit_grid(_open(rendered_digits["small_with_margin"][0]))
    assert grid.min() >= 0.0 and grid.max() <= 16.0
    # Like every sample of load_digits: ink in the top and bottom rows, margin at the sides.
    assert grid[0].max() > 2 and grid[7].max() > 2
    assert grid[:, 0].max() < 2 and grid[:, 7].max() < 2
    coverage = grid.sum() / (64 * 16)
    assert coverage == pytest.approx(preprocessing.DIGIT_COVERAGE, abs=0.02)


def test_otsu_and_coverage_helpers() -> None:
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(0.2, 0.03, 900), rng.normal(0.8, 0.03, 100)])
    threshold = preprocessing.otsu_threshold(np.clip(values, 0, 1).astype(np.float32))
    assert 0.35 < threshold < 0.65
    canvas = np.zeros((32, 32), dtype=np.float32)
    canvas[:, 15:17] = 1.0
    thick = preprocessing.normalise_coverage(canvas, preprocessing.DIGIT_COVERAGE)
    assert thick.mean() == pytest.approx(preprocessing.DIGIT_COVERAGE, abs=0.01)


def test_imagenet_array_shape_and_normalisation() -> None:
    mean = tuple(round(255 * m) for m in preprocessing.IMAGENET_MEAN)
    image = Image.new("RGB", (640, 300), mean)
    array = preprocessing.imagenet_array(image)
    assert array.shape == (3, 224, 224)
    assert array.dtype == np.float32
    assert np.abs(array).max() < 0.02
