"""Open an uploaded image safely: header checks, then decoding, except for JPEG, whose decoding
(in draft mode) is left to the model's preprocessing. Imports Pillow, so it runs only after lib/
is on sys.path."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Any

from lambda_src.inference.http import HttpError

# A 12 MP photo must pass; a PNG declaring 100k x 100k pixels must not be decoded.
MAX_PIXELS = 50_000_000
ALLOWED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF"})
# Brands of the ISO media files iPhones save photos as (HEIC/HEIF), which Pillow cannot open.
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"})


@dataclass(frozen=True)
class OpenedImage:
    """An image whose header was read and judged safe to decode."""

    image: Any  # PIL.Image.Image, typed loosely: Pillow comes from lib/ at run time
    format: str
    size: tuple[int, int]


def open_image(data: bytes) -> OpenedImage | HttpError:
    """Read the header of encoded image bytes; refuse what is not a safe, supported image.

    Decodes the pixels too, except for JPEG (see the module docstring).
    """
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
        # A format people do send (a vector drawing, a document, an iPhone photo) is
        # unsupported (415) rather than damaged (422): the client can convert it.
        foreign = _foreign_format(data)
        if foreign is not None:
            return _unsupported(foreign)
        return HttpError(422, "undecodable_image", "the body is not an image that can be read")
    except (OSError, SyntaxError, ValueError) as exc:
        return HttpError(422, "undecodable_image", f"the image header is damaged: {exc}")
    fmt = str(image.format or "")
    if fmt not in ALLOWED_FORMATS:
        return _unsupported(fmt)
    width, height = image.size
    if width <= 0 or height <= 0:
        return HttpError(422, "empty_image", "the image has zero width or height")
    # Pillow keeps an 8-byte pointer per row besides the pixels (at most 4 bytes each), so a
    # 1-pixel-wide PNG of 50M rows (100 KB) costs up to 3 times a 50 MP photo, again for each
    # copy preprocessing makes: counting each row as 2 more pixels caps that.
    if width * height + 2 * height > MAX_PIXELS:
        return HttpError(
            422,
            "image_too_large",
            f"the image declares more than {MAX_PIXELS} pixels "
            f"({width}x{height}; each row counts as 2 more)",
        )
    if fmt != "JPEG":
        # Only JPEG gains from decoding later (draft mode). Anything else is decoded here,
        # where a stream that breaks while decoding (Pillow raises ValueError for a zTXt
        # bomb after the pixels) is the client's 422, not a 500 from the model's code.
        broken: tuple[type[BaseException], ...] = (*decode_errors(), ValueError)
        try:
            image.load()
        except broken as exc:
            return HttpError(422, "undecodable_image", f"the image could not be decoded: {exc}")
    return OpenedImage(image=image, format=fmt, size=(width, height))


def _unsupported(fmt: str) -> HttpError:
    return HttpError(
        415,
        "unsupported_image_format",
        f"{fmt or 'this'} images are not supported; send JPEG, PNG, WebP, GIF, BMP or TIFF",
    )


def _foreign_format(data: bytes) -> str | None:
    """The name of a common format Pillow cannot open that `data` starts with, if any."""
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith(b"%pdf-"):
        return "PDF"
    if head.startswith((b"<svg", b"<!doctype svg")) or (
        head.startswith(b"<?xml") and b"<svg" in head
    ):
        return "SVG"
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        return "HEIC"
    return None


def decode_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean the image data (not the model) is broken while decoding pixels."""
    from PIL import Image

    return (OSError, SyntaxError, EOFError, Image.DecompressionBombError)
