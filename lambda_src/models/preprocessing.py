"""Turn an image a person sends into model input, with Pillow and numpy only.

Two pipelines live here:

* the digit pipeline (`digit_grid`), which reads a handwritten or rendered digit
  from a photo, a scan or a canvas export and produces the same kind of 8x8 grid
  of 0..16 values as scikit-learn's digits data set;
* the ImageNet pipeline (`imagenet_array`), the standard resize/centre-crop/
  normalise used by torchvision's classification weights.

Both decode JPEGs at reduced scale with `Image.draft`, so a 12 MP photo costs a
fraction of a full decode. To benefit, pass an image that has not been loaded
yet (e.g. straight from `open_image`).
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageFilter, ImageOps

FloatArray = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]

# The longest side the digit pipeline works at. Large enough that a pen stroke on
# a phone photo stays about a pixel wide, small enough that every step is cheap.
DIGIT_WORK_SIDE = 256
# Small inputs (an 8x8 or 28x28 digit) are upsampled to this so the blur and
# clean-up steps have room to work.
DIGIT_MIN_SIDE = 64

# In scikit-learn's digits every sample has ink in the top and bottom rows and
# about 6 of 8 columns: each digit was scaled to the full height of its 32x32
# bitmap before the 4x4 block counts were taken. So the digit fills the height.
DIGIT_FILL = 1.0
# Ink covers 25%..39% of the 8x8 area in 98% of the digits data set whatever the
# class (median 31%): stroke width was effectively normalised. Every digit is
# brought to the median, so a thin pen line and a fat marker stroke look alike.
DIGIT_COVERAGE = 0.31

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})


def open_image(data: bytes) -> Image.Image:
    """Open encoded image bytes without decoding them yet (so JPEG draft mode still applies)."""
    return Image.open(io.BytesIO(data))


def _draft(image: Image.Image, mode: str, size: tuple[int, int]) -> None:
    # draft() is a no-op for non-JPEG formats and for images that are already
    # decoded; for JPEG it makes libjpeg scale by 1/2, 1/4 or 1/8 while decoding,
    # never below the requested size.
    if image.format == "JPEG":
        image.draft(mode, size)


def _sixteen_bit_to_l(image: Image.Image) -> Image.Image:
    # Pillow's own I;16 -> L conversion clips at 255, which turns most 16-bit
    # images white; stretch the actual range instead (12-bit sensors use 0..4095).
    values = np.asarray(image, dtype=np.float32)
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return Image.new("L", image.size, 0)
    scaled = (values - low) * (255.0 / (high - low))
    return Image.fromarray(np.clip(scaled + 0.5, 0, 255).astype(np.uint8), mode="L")


def _flatten_alpha(image: Image.Image, fill: float | None = None) -> Image.Image:
    """Composite an image with transparency onto a plain background; return mode RGB."""
    # No copy of an image that already is RGBA: at 49 MP every full-size copy is 196 MB.
    rgba = image if image.mode == "RGBA" else image.convert("RGBA")
    if fill is None:
        # The statistics need no detail; a reduced copy keeps 12 MP inputs cheap.
        factor = max(1, max(rgba.size) // 512)
        probe = rgba.reduce(factor) if factor > 1 else rgba
        alpha = np.asarray(probe.getchannel("A"), dtype=np.float32) / 255.0
        luma = np.asarray(probe.convert("L"), dtype=np.float32) / 255.0
        opaque = float(alpha.sum())
        visible_mean = float((luma * alpha).sum() / opaque) if opaque > 0 else 0.0
        if alpha.mean() < 0.5:
            # Mostly transparent: the visible pixels are the drawing (a canvas
            # export). White under dark ink, black under light ink, so the ink
            # keeps its contrast either way.
            fill = 1.0 if visible_mean < 0.5 else 0.0
        else:
            # Mostly opaque (e.g. rounded transparent corners): the transparent
            # parts belong to the background, so give them its brightness.
            fill = float(np.median(luma[alpha > 0.5])) if (alpha > 0.5).any() else 1.0
    level = round(fill * 255)
    background = Image.new("RGBA", rgba.size, (level, level, level, 255))
    composite = Image.alpha_composite(background, rgba)
    del background  # freed before the RGB copy is made, for the same reason
    return composite.convert("RGB")


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to RGB: transparency composited, 16-bit stretched, CMYK/P/LAB converted."""
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES:
        return _sixteen_bit_to_l(image).convert("RGB")
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode in ("L", "RGB") and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in _ALPHA_MODES:
        return _flatten_alpha(image)
    if image.mode == "RGB":
        return image
    try:
        return image.convert("RGB")
    except ValueError:
        # Modes such as LAB have no conversion; their first band is lightness.
        return image.getchannel(0).convert("RGB")


def to_grayscale(image: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit L (see `to_rgb` for transparency and 16-bit handling)."""
    if image.mode == "L" and "transparency" not in image.info:
        return image
    if image.mode in _SIXTEEN_BIT_MODES:
        return _sixteen_bit_to_l(image)
    if image.mode in ("1", "CMYK", "YCbCr", "RGB", "HSV") and "transparency" not in image.info:
        return image.convert("RGB").convert("L") if image.mode == "HSV" else image.convert("L")
    return to_rgb(image).convert("L")


def _fit_side(image: Image.Image, max_side: int, min_side: int) -> Image.Image:
    width, height = image.size
    longest = max(width, height)
    if longest > max_side:
        scale = max_side / longest
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        # BOX is exact area averaging; reducing_gap lets Pillow shrink by whole
        # factors first, which matters for 12 MP PNGs.
        return image.resize(size, Image.Resampling.BOX, reducing_gap=3.0)
    if longest < min_side:
        # Whole-factor nearest-neighbour enlargement keeps every pixel's value,
        # so area-averaging back down reproduces the original exactly.
        factor = -(-min_side // longest)
        return image.resize((width * factor, height * factor), Image.Resampling.NEAREST)
    return image


def load_grayscale(
    image: Image.Image, max_side: int = DIGIT_WORK_SIDE, min_side: int = DIGIT_MIN_SIDE
) -> Image.Image:
    """Decode (JPEG at reduced scale), apply EXIF orientation, convert to L, fit to max_side."""
    _draft(image, "L", (max_side, max_side))
    image = ImageOps.exif_transpose(image)
    return _fit_side(to_grayscale(image), max_side, min_side)


def load_rgb(image: Image.Image, at_least: tuple[int, int] | None = None) -> Image.Image:
    """Decode (a JPEG no larger than needed to keep `at_least`), apply EXIF orientation, RGB."""
    if at_least is not None:
        _draft(image, "RGB", at_least)
    return to_rgb(ImageOps.exif_transpose(image))


def _border_ring(values: FloatArray, fraction: float) -> FloatArray:
    height, width = values.shape
    band = max(1, round(fraction * min(height, width)))
    ring = np.ones_like(values, dtype=bool)
    ring[band : height - band, band : width - band] = False
    return np.asarray(values[ring], dtype=np.float32)


def border_mean(values: FloatArray, fraction: float = 0.03) -> float:
    """Mean of a ring along the image edges, `fraction` of the shorter side wide (at least 1 px)."""
    return float(_border_ring(values, fraction).mean())


def border_median(values: FloatArray, fraction: float = 0.03) -> float:
    """Median of the same ring as `border_mean`."""
    return float(np.median(_border_ring(values, fraction)))


def ink_intensity(gray: FloatArray) -> FloatArray:
    """Make ink bright on a dark background, as in the digits data set, whatever the input polarity.

    The background is what the border shows; if the border is brighter than the
    image as a whole the ink is dark, so the image is inverted. The border's
    median, not its mean, stands for the background, so a dark table edge or
    shadow along one side of a photo does not flip the decision.
    """
    if border_median(gray) > float(gray.mean()):
        return np.asarray(1.0 - gray, dtype=np.float32)
    return gray


def otsu_threshold(values: FloatArray, bins: int = 256) -> float:
    """Otsu's threshold for values in [0, 1]: the cut maximising between-class variance."""
    hist, edges = np.histogram(values, bins=bins, range=(0.0, 1.0))
    hist = hist.astype(np.float64)
    centres = (edges[:-1] + edges[1:]) / 2
    weight_low = np.cumsum(hist)
    weight_high = weight_low[-1] - weight_low
    sum_low = np.cumsum(hist * centres)
    mean_low = sum_low / np.maximum(weight_low, 1e-12)
    mean_high = (sum_low[-1] - sum_low) / np.maximum(weight_high, 1e-12)
    between = weight_low * weight_high * (mean_low - mean_high) ** 2
    # With a clean two-level image every cut in the gap between the levels is
    # equally good; take the middle of that plateau, not its first bin.
    best = np.flatnonzero(between >= between.max() * (1.0 - 1e-9))
    return float(edges[int(best[len(best) // 2]) + 1])


def _quadratic_background(values: FloatArray, background: BoolArray) -> FloatArray | None:
    # Uneven lighting in a photo is smooth across the frame, so a quadratic
    # surface fitted to the background pixels alone (ink excluded, so fat
    # strokes cannot bias it) models it well enough.
    height, width = values.shape
    step = max(1, round(np.sqrt(height * width / 4096)))
    ys, xs = np.mgrid[0:height:step, 0:width:step]
    keep = background[ys, xs]
    if int(keep.sum()) < 12:
        return None
    y = ys[keep] / height - 0.5
    x = xs[keep] / width - 0.5
    design = np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=1)
    coef, *_ = np.linalg.lstsq(design, values[ys, xs][keep], rcond=None)
    gy, gx = np.mgrid[0:height, 0:width]
    gy_n, gx_n = gy / height - 0.5, gx / width - 0.5
    surface = (
        coef[0]
        + coef[1] * gx_n
        + coef[2] * gy_n
        + coef[3] * gx_n * gx_n
        + coef[4] * gx_n * gy_n
        + coef[5] * gy_n * gy_n
    )
    return np.asarray(surface, dtype=np.float32)


def _box_count(mask: BoolArray, radius: int) -> npt.NDArray[np.int32]:
    """Number of set pixels in the (2r+1)^2 window around each pixel (summed-area table)."""
    padded = np.pad(mask.astype(np.int32), radius + 1)[:-1, :-1]
    table = padded.cumsum(0).cumsum(1)
    size = 2 * radius + 1
    height, width = mask.shape
    return np.asarray(
        table[size : size + height, size : size + width]
        - table[:height, size : size + width]
        - table[size : size + height, :width]
        + table[:height, :width],
        dtype=np.int32,
    )


def _dilate(mask: BoolArray) -> BoolArray:
    grown = mask.copy()
    grown[1:, :] |= mask[:-1, :]
    grown[:-1, :] |= mask[1:, :]
    grown[:, 1:] |= mask[:, :-1]
    grown[:, :-1] |= mask[:, 1:]
    grown[1:, 1:] |= mask[:-1, :-1]
    grown[1:, :-1] |= mask[:-1, 1:]
    grown[:-1, 1:] |= mask[1:, :-1]
    grown[:-1, :-1] |= mask[1:, 1:]
    return grown


def _long_runs(line: BoolArray, min_length: int) -> BoolArray:
    """The set pixels of a 1-D mask that belong to runs of at least min_length."""
    padded = np.concatenate([[False], line, [False]])
    changes = np.flatnonzero(padded[1:] != padded[:-1])
    keep = np.zeros_like(line)
    for start, stop in zip(changes[::2], changes[1::2], strict=True):
        if stop - start >= min_length:
            keep[start:stop] = True
    return keep


def _drop_border_blobs(mask: BoolArray) -> BoolArray:
    # In photos the paper edge, a table or a shadow often runs along the frame
    # and would stretch the digit's bounding box to the whole image. Such ink
    # lies along a long stretch of the border; a digit that merely touches the
    # border (a tight crop) crosses it in stroke-wide runs. Ink connected to a
    # long border run is dropped, unless nothing of substance would be left,
    # which means it was the digit itself (a tightly cropped 7 or 2).
    height, width = mask.shape
    reached = np.zeros_like(mask)
    reached[0, :] = _long_runs(mask[0, :], max(3, width // 5))
    reached[-1, :] = _long_runs(mask[-1, :], max(3, width // 5))
    reached[:, 0] |= _long_runs(mask[:, 0], max(3, height // 5))
    reached[:, -1] |= _long_runs(mask[:, -1], max(3, height // 5))
    if not reached.any():
        return mask
    while True:
        grown = _dilate(reached) & mask
        if np.array_equal(grown, reached):
            break
        reached = grown
    interior = mask & ~reached
    if int(interior.sum()) >= 0.002 * height * width:
        return interior
    return mask


def ink_mask(gray: Image.Image, invert_if_light_background: bool = True) -> BoolArray:
    """Binary ink mask of a grayscale image: bright ink, robust to noise and uneven lighting.

    Otsu's threshold on a slightly blurred image, then a second pass after a
    smooth background surface is subtracted, then isolated specks and ink
    touching the border (unless it is the digit) are removed.
    """
    radius = max(1.0, max(gray.size) / DIGIT_WORK_SIDE)
    blurred = np.asarray(gray.filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32) / 255.0
    values = ink_intensity(blurred) if invert_if_light_background else blurred
    if float(values.max() - values.min()) < 0.08:
        return np.zeros(values.shape, dtype=bool)
    mask = values > otsu_threshold(values)
    surface = _quadratic_background(values, ~mask)
    if surface is not None:
        flat = values - surface
        low, high = float(flat.min()), float(flat.max())
        if high > low:
            flat = (flat - low) / (high - low)
            mask = flat > otsu_threshold(flat)
    # A speck is a set pixel with fewer than 4 set pixels in its 5x5 window; a
    # one-pixel pen line keeps 5 and survives.
    mask &= _box_count(mask, 2) >= 4
    return _drop_border_blobs(mask)


def _max3(values: FloatArray) -> FloatArray:
    padded = np.pad(values, 1)
    height, width = values.shape
    windows = [padded[dy : dy + height, dx : dx + width] for dy in range(3) for dx in range(3)]
    return np.asarray(np.max(windows, axis=0), dtype=np.float32)


def _min3(values: FloatArray) -> FloatArray:
    padded = np.pad(values, 1)
    height, width = values.shape
    windows = [padded[dy : dy + height, dx : dx + width] for dy in range(3) for dx in range(3)]
    return np.asarray(np.min(windows, axis=0), dtype=np.float32)


def normalise_coverage(values: FloatArray, target: float, max_steps: int = 6) -> FloatArray:
    """Thicken or thin strokes until the inked fraction of the canvas is `target`.

    Each step is a 3x3 grey dilation or erosion; the last step is blended so the
    coverage lands on the target instead of overshooting by a whole pixel ring,
    which keeps the result a continuous function of the input.
    """
    current = float(values.mean())
    if current <= 0.0 or current == target:
        return values
    step = _max3 if current < target else _min3
    for _ in range(max_steps):
        following = step(values)
        reached = float(following.mean())
        if reached <= 0.0 or reached == current:
            break
        if (current < target) == (reached >= target):
            blend = (target - current) / (reached - current)
            return np.asarray(values + blend * (following - values), dtype=np.float32)
        values, current = following, reached
    return values


def ink_bounding_box(mask: BoolArray) -> tuple[int, int, int, int] | None:
    """(top, left, bottom, right) inclusive bounds of the ink, or None for a blank mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return int(rows[0]), int(cols[0]), int(rows[-1]), int(cols[-1])


def fit_to_grid(
    mask: BoolArray,
    grid: tuple[int, int] = (8, 8),
    supersample: int = 4,
    fill: float = DIGIT_FILL,
    coverage: float | None = DIGIT_COVERAGE,
    shift: tuple[int, int] = (0, 0),
) -> FloatArray:
    """Crop the ink, scale it (aspect kept) to fill `fill` of the grid, centre it, area-average.

    Returns a (rows, cols) = (grid[1], grid[0]) array in [0, 1]: the fraction of
    each cell covered by ink, computed on a `supersample`-times finer canvas the
    way the digits data set counted pixels of a 32x32 bitmap in 4x4 blocks.
    """
    cols, rows = grid
    canvas_w, canvas_h = cols * supersample, rows * supersample
    canvas = np.zeros((canvas_h, canvas_w), dtype=np.float32)
    box = ink_bounding_box(mask)
    if box is None:
        return np.zeros((rows, cols), dtype=np.float32)
    top, left, bottom, right = box
    crop = mask[top : bottom + 1, left : right + 1]
    height, width = crop.shape
    scale = min(canvas_h * fill / height, canvas_w * fill / width)
    new_w = min(canvas_w, max(1, round(width * scale)))
    new_h = min(canvas_h, max(1, round(height * scale)))
    crop_image = Image.fromarray(crop.astype(np.uint8) * 255, mode="L")
    resized = crop_image.resize((new_w, new_h), Image.Resampling.BOX)
    x0 = min(max((canvas_w - new_w) // 2 + shift[0], 0), canvas_w - new_w)
    y0 = min(max((canvas_h - new_h) // 2 + shift[1], 0), canvas_h - new_h)
    canvas[y0 : y0 + new_h, x0 : x0 + new_w] = np.asarray(resized, dtype=np.float32) / 255.0
    if coverage is not None:
        canvas = normalise_coverage(canvas, coverage)
    cells = canvas.reshape(rows, supersample, cols, supersample).mean(axis=(1, 3))
    return np.asarray(np.clip(cells, 0.0, 1.0), dtype=np.float32)


def digit_grid(image: Image.Image, scale: float = 16.0) -> FloatArray:
    """The digit in `image` as an 8x8 array of 0..scale values, like `load_digits().images`.

    Accepts any size and mode, dark-on-light or light-on-dark, canvas drawings or
    photos; returns zeros if no ink is found.
    """
    return fit_to_grid(ink_mask(load_grayscale(image))) * np.float32(scale)


# Views of one digit for test-time averaging: the fit at 100% and 90% of the
# height, each centred and nudged by a quarter cell. At 8x8 a quarter-cell
# change of alignment can flip a prediction; averaging over views steadies it.
DIGIT_VIEWS: tuple[tuple[float, tuple[int, int]], ...] = tuple(
    (fill, shift) for fill in (1.0, 0.9) for shift in ((0, 0), (1, 0), (-1, 0), (0, 1))
)


def digit_grids(
    image: Image.Image,
    views: Sequence[tuple[float, tuple[int, int]]] = DIGIT_VIEWS,
    scale: float = 16.0,
) -> FloatArray:
    """`digit_grid` for several (fill, shift) views of one image: (len(views), 8, 8)."""
    mask = ink_mask(load_grayscale(image))
    grids = [fit_to_grid(mask, fill=fill, shift=shift) for fill, shift in views]
    return np.stack(grids).astype(np.float32) * np.float32(scale)


def imagenet_array(
    image: Image.Image,
    resize: int = 256,
    crop: int = 224,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> FloatArray:
    """torchvision's classification preprocessing: shorter side to `resize`, centre crop, normalise.

    Returns a (3, crop, crop) float32 array.
    """
    rgb = load_rgb(image, (resize, resize))
    width, height = rgb.size
    scale = resize / min(width, height)
    size = (max(crop, round(width * scale)), max(crop, round(height * scale)))
    rgb = rgb.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)
    left, top = (size[0] - crop) // 2, (size[1] - crop) // 2
    rgb = rgb.crop((left, top, left + crop, top + crop))
    values = np.asarray(rgb, dtype=np.float32) / 255.0
    normalised = (values - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(normalised.transpose(2, 0, 1), dtype=np.float32)
