"""Open an uploaded image safely: header checks only, so decoding (and JPEG draft mode) is left
to the model's preprocessing. Imports Pillow, so it runs only after lib/ is on sys.path."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Any

from lambda_src.inference.http import HttpError

# A 12 MP photo must pass; a PNG declaring 100k x 100k pixels must not be decoded.
MAX_PIXELS = 50_000_000
ALLOWED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF"})


@dataclass(frozen=True)
class OpenedImage:
    """An image whose header was read and judged safe to decode."""

    image: Any  # PIL.Image.Image, typed loosely: Pillow comes from lib/ at run time
    format: str
    size: tuple[int, int]


def open_image(data: bytes) -> OpenedImage | HttpError:
    """Read the header of encoded image bytes; refuse what is not a safe, supported image."""
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with warnings.catch_warnings():
            # Pillow only warns between 1x and 2x the limit; here the limit is the limit.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return HttpError(
            422, "image_too_large", f"the image declares more than {MAX_PIXELS} pixels"
        )
    except UnidentifiedImageError:
        return HttpError(422, "undecodable_image", "the body is not an image that can be read")
    except (OSError, SyntaxError, ValueError) as exc:
        return HttpError(422, "undecodable_image", f"the image header is damaged: {exc}")
    fmt = str(image.format or "")
    if fmt not in ALLOWED_FORMATS:
        return HttpError(
            415,
            "unsupported_image_format",
            f"{fmt or 'this'} images are not supported; send JPEG, PNG, WebP, GIF, BMP or TIFF",
        )
    width, height = image.size
    if width <= 0 or height <= 0:
        return HttpError(422, "empty_image", "the image has zero width or height")
    if width * height > MAX_PIXELS:
        return HttpError(
            422, "image_too_large", f"the image declares more than {MAX_PIXELS} pixels"
        )
    return OpenedImage(image=image, format=fmt, size=(width, height))


def decode_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean the image data (not the model) is broken while decoding pixels."""
    from PIL import Image

    return (OSError, SyntaxError, EOFError, Image.DecompressionBombError)
