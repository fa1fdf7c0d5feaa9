"""Hostile and odd /predict requests, generated on the fly, each with the answer it must get.

Nothing here is a committed binary: every input is built from Pillow drawings, scikit-image's
bundled sample photos, or bytes assembled by hand with struct and zlib (the decompression
bombs, so they stay a few hundred bytes). Builders are lazy, because a few inputs are
megabytes and each test builds only its own.

A case expects either an exact 4xx status and error code, or a 200 whose top label is the
digit the picture shows (`label`), or a 200 with any well-formed prediction (`label=None`,
for photos and blank images).
"""

from __future__ import annotations

import base64
import functools
import io
import json
import math
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from tests.models.conftest import glyph_mask, hand_drawn

# The limits the handler documents (lambda_src/inference/http.py), restated so that a
# change there shows up here as a failing test rather than a silently adapted corpus.
MIB = 1024 * 1024
MAX_IMAGE_BYTES = 4 * MIB
LABELS = 10  # the digits model: top_k above this lists every label


@dataclass(frozen=True)
class Case:
    """One request and the answer it must get."""

    id: str
    make: Callable[[], dict[str, Any]]
    status: int
    code: str | None = None  # the error code of a 4xx
    label: str | None = None  # the top label of a 200, where the input is a clear digit
    predictions: int = 5  # how many predictions a 200 lists

    def __post_init__(self) -> None:
        # A corpus entry that expects nothing in particular could never fail.
        if self.status >= 400 and not self.code:
            raise ValueError(f"{self.id}: a refusal must name its error code")
        if self.status == 200 and self.code:
            raise ValueError(f"{self.id}: a 200 has no error code")
        if self.status >= 500:
            raise ValueError(f"{self.id}: no input may expect a server error")


# --- events --------------------------------------------------------------------------------


def api_event(
    body: bytes | str | None,
    content_type: str | None = "image/png",
    *,
    method: str = "POST",
    path: str = "/predict",
    query: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An API Gateway HTTP API (payload 2.0) event: bytes go base64-encoded, str as text."""
    if isinstance(body, bytes):
        raw: str | None = base64.b64encode(body).decode("ascii")
    else:
        raw = body
    query_string = "&".join(f"{k}={v}" for k, v in (query or {}).items())
    return {
        "version": "2.0",
        "routeKey": f"{method} {path}",
        "rawPath": path,
        "rawQueryString": query_string,
        "headers": {"content-type": content_type} if content_type else {},
        "queryStringParameters": query,
        "requestContext": {
            "http": {"method": method, "path": path},
            "requestId": "hostile",
            "stage": "$default",
        },
        "body": raw,
        "isBase64Encoded": isinstance(body, bytes),
    }


def multipart(fields: dict[str, tuple[str, bytes]], boundary: str = "HostileBoundary") -> bytes:
    """A multipart/form-data body with one file part per field."""
    out = b""
    for name, (ctype, data) in fields.items():
        out += (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                f'filename="{name}.bin"\r\nContent-Type: {ctype}\r\n\r\n'
            ).encode()
            + data
            + b"\r\n"
        )
    return out + f"--{boundary}--\r\n".encode()


# --- images --------------------------------------------------------------------------------


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    """`image` saved as `fmt`."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


@functools.cache
def _digit_png(value: int) -> bytes:
    return hand_drawn(value)


def digit(value: int) -> Image.Image:
    """A finger-drawn digit, black on white, 280x280, mode L (a fresh copy each call)."""
    return Image.open(io.BytesIO(_digit_png(value))).convert("L")


def _ink(image: Image.Image) -> Image.Image:
    return Image.eval(image, lambda v: 255 - v)


def transparent(image: Image.Image, mode: str) -> Image.Image:
    """Dark ink on a fully transparent background (a canvas export) in RGBA or LA."""
    ink = _ink(image)
    dark = Image.new("L", image.size, 20)
    if mode == "LA":
        return Image.merge("LA", (dark, ink))
    return Image.merge("RGBA", (dark, dark, dark, ink))


def palette(image: Image.Image, with_transparency: bool) -> bytes:
    """A palette PNG; with transparency, the white background's palette entry is transparent."""
    indexed = image.convert("RGB").quantize(colors=4, method=Image.Quantize.MEDIANCUT)
    if with_transparency:
        colours = indexed.getpalette() or []
        entries = [tuple(colours[i : i + 3]) for i in range(0, len(colours), 3)]
        brightest = max(range(len(entries)), key=lambda i: sum(entries[i]))
        return encode(indexed, "PNG", transparency=brightest)
    return encode(indexed, "PNG")


def sixteen_bit(image: Image.Image, full_scale: int) -> bytes:
    """A 16-bit grayscale PNG (mode I;16) using 0..full_scale (4095: a 12-bit sensor)."""
    values = np.asarray(image, dtype=np.uint32) * full_scale // 255
    return encode(Image.fromarray(values.astype(np.uint16)), "PNG")


def with_orientation(image: Image.Image, orientation: int, fmt: str) -> bytes:
    """The image stored sideways, with the EXIF orientation tag that turns it upright again."""
    # exif_transpose applies ROTATE_270 for orientation 6 and ROTATE_90 for 8; store the inverse.
    stored = image.transpose(
        Image.Transpose.ROTATE_90 if orientation == 6 else Image.Transpose.ROTATE_270
    )
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(stored, fmt, exif=exif.tobytes(), **({"quality": 95} if fmt == "JPEG" else {}))


def sideways(image: Image.Image, orientation: int, fmt: str) -> bytes:
    """The same stored pixels as `with_orientation`, without the tag (the control)."""
    stored = image.transpose(
        Image.Transpose.ROTATE_90 if orientation == 6 else Image.Transpose.ROTATE_270
    )
    return encode(stored, fmt)


def animated_gif(first: int, others: tuple[int, ...]) -> bytes:
    """A multi-frame GIF whose first frame shows `first`; the model reads the first frame."""
    frames = [digit(first).convert("P")] + [digit(d).convert("P") for d in others]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=200, loop=0)


def huge_digit_jpeg(value: int, size: tuple[int, int] = (4000, 3000)) -> bytes:
    """A 12 MP photo-sized JPEG of a digit: dark ink on slightly uneven paper."""
    width, height = size
    ink = glyph_mask(value, size, int(height * 0.8), (width / 2, height / 2))
    paper = np.linspace(215, 245, width, dtype=np.float32)[None, :].repeat(height, axis=0)
    alpha = np.asarray(ink, dtype=np.float32) / 255.0
    values = paper * (1 - alpha) + 30 * alpha
    return encode(Image.fromarray(values.astype(np.uint8)).convert("RGB"), "JPEG", quality=85)


def sample_photo(name: str) -> Image.Image:
    """A sample photo shipped with scikit-image (astronaut, chelsea, coffee): no download."""
    from skimage import data

    return Image.fromarray(getattr(data, name)())


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk with its length and CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def hand_png(
    width: int,
    height: int,
    row: bytes,
    colour_type: int = 0,
    before_pixels: bytes = b"",
    after_pixels: bytes = b"",
    bit_depth: int = 8,
) -> bytes:
    """A PNG assembled by hand: every row is `row` (filter byte included), compressed in
    pieces so that tens of millions of rows cost little memory to build."""
    compressor = zlib.compressobj(9)
    parts = []
    batch = max(1, min(height, 1_000_000 // max(1, len(row))))
    remaining = height
    while remaining > 0:
        count = min(batch, remaining)
        parts.append(compressor.compress(row * count))
        remaining -= count
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + before_pixels
        + png_chunk(b"IDAT", b"".join(parts))
        + after_pixels
        + png_chunk(b"IEND", b"")
    )


def bomb_png(width: int, height: int) -> bytes:
    """A valid PNG header declaring width x height, with one tiny compressed row."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\0"))
        + png_chunk(b"IEND", b"")
    )


def bomb_gif(width: int = 65535, height: int = 65535) -> bytes:
    """A GIF whose screen and only frame declare width x height, with almost no data."""
    screen = struct.pack("<HHBBB", width, height, 0, 0, 0)
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0)
    return b"GIF89a" + screen + frame + b"\x02\x02\x44\x01\x00" + b"\x3b"


def bomb_bmp(width: int = 30000, height: int = 30000) -> bytes:
    """A 24-bit BMP header declaring width x height, followed by a few bytes of pixels."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    pixels = b"\0" * 64
    file_header = struct.pack("<2sIHHI", b"BM", 14 + len(info) + len(pixels), 0, 0, 14 + 40)
    return file_header + info + pixels


def bomb_jpeg(width: int = 60000, height: int = 60000) -> bytes:
    """A real small JPEG whose frame header (SOF0) is patched to declare width x height."""
    data = bytearray(encode(Image.new("RGB", (16, 16), "white"), "JPEG"))
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def text_chunk_png(value: int, text_bytes: int, compressed: bool, after_pixels: bool) -> bytes:
    """The digit PNG with one iTXt chunk of `text_bytes` bytes of text inserted."""
    png = _digit_png(value)
    text = b"A" * text_bytes
    payload = b"Comment\0" + (b"\x01\x00" if compressed else b"\x00\x00") + b"\0\0"
    payload += zlib.compress(text, 9) if compressed else text
    chunk = png_chunk(b"iTXt", payload)
    # Insert before IDAT (read while opening) or before IEND (read after decoding the pixels).
    at = png.rindex(b"IEND") - 4 if after_pixels else png.index(b"IDAT") - 4
    return png[:at] + chunk + png[at:]


def bad_crc_png(value: int) -> bytes:
    """The digit PNG with one flipped byte inside IHDR, so its CRC no longer matches."""
    data = bytearray(_digit_png(value))
    data[16] ^= 0xFF  # the top byte of the width
    return bytes(data)


SVG = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<svg xmlns="http://www.w3.org/2000/svg" width="280" height="280">'
    b'<text x="100" y="200" font-size="200">7</text></svg>\n'
)
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<<>>\n%%EOF\n"
# The first box of an iPhone photo: size, "ftyp", brand "heic", then compatible brands.
HEIC = struct.pack(">I", 24) + b"ftypheic" + b"\0\0\0\0" + b"mif1heic" + b"\0" * 64
HTML = b"<!doctype html><html><body><h1>Not an image</h1></body></html>\n"


# --- the corpus ----------------------------------------------------------------------------


def _png(image: Image.Image, **options: Any) -> bytes:
    return encode(image, "PNG", **options)


def _ok(case_id: str, make: Callable[[], dict[str, Any]], label: int | None, **kw: Any) -> Case:
    return Case(case_id, make, 200, label=None if label is None else str(label), **kw)


def _no(case_id: str, make: Callable[[], dict[str, Any]], status: int, code: str) -> Case:
    return Case(case_id, make, status, code=code)


def _image(data: Callable[[], bytes], content_type: str = "image/png") -> Callable[[], Any]:
    return lambda: api_event(data(), content_type)


def _cases() -> list[Case]:
    d = digit
    cases = [
        # -- the plain reference, and the same drawings in every mode and container --------
        _ok("digit-png-L", _image(lambda: _png(d(7))), 7),
        _ok("digit-png-RGB", _image(lambda: _png(d(3).convert("RGB"))), 3),
        _ok("digit-png-RGBA-transparent", _image(lambda: _png(transparent(d(2), "RGBA"))), 2),
        _ok("digit-png-LA-transparent", _image(lambda: _png(transparent(d(5), "LA"))), 5),
        _ok("digit-png-P", _image(lambda: palette(d(4), with_transparency=False)), 4),
        _ok("digit-png-P-transparency", _image(lambda: palette(d(0), with_transparency=True)), 0),
        _ok("digit-png-I16-full-range", _image(lambda: sixteen_bit(d(6), 65535)), 6),
        _ok("digit-png-I16-12-bit", _image(lambda: sixteen_bit(d(8), 4095)), 8),
        _ok(
            "digit-png-1-bit",
            _image(lambda: _png(d(1).convert("1", dither=Image.Dither.NONE))),
            1,
        ),
        _ok("digit-jpeg-baseline", _image(lambda: encode(d(9), "JPEG"), "image/jpeg"), 9),
        _ok(
            "digit-jpeg-progressive",
            _image(
                lambda: encode(d(2).convert("RGB"), "JPEG", progressive=True, quality=80),
                "image/jpeg",
            ),
            2,
        ),
        _ok(
            "digit-jpeg-CMYK",
            _image(lambda: encode(d(5).convert("CMYK"), "JPEG", quality=90), "image/jpeg"),
            5,
        ),
        _ok(
            "digit-jpeg-exif-orientation-6",
            _image(lambda: with_orientation(d(7), 6, "JPEG"), "image/jpeg"),
            7,
        ),
        _ok(
            "digit-jpeg-exif-orientation-8",
            _image(lambda: with_orientation(d(4), 8, "JPEG"), "image/jpeg"),
            4,
        ),
        _ok("digit-png-exif-orientation-6", _image(lambda: with_orientation(d(2), 6, "PNG")), 2),
        _ok("digit-webp-lossy", _image(lambda: encode(d(3), "WEBP", quality=80), "image/webp"), 3),
        _ok(
            "digit-webp-lossless",
            _image(lambda: encode(d(6).convert("RGB"), "WEBP", lossless=True), "image/webp"),
            6,
        ),
        _ok("digit-bmp", _image(lambda: encode(d(8).convert("RGB"), "BMP"), "image/bmp"), 8),
        _ok(
            "digit-tiff-lzw",
            _image(lambda: encode(d(9), "TIFF", compression="tiff_lzw"), "image/tiff"),
            9,
        ),
        _ok("digit-gif", _image(lambda: encode(d(0).convert("P"), "GIF"), "image/gif"), 0),
        _ok("digit-gif-animated", _image(lambda: animated_gif(3, (1, 7, 1)), "image/gif"), 3),
        _ok("digit-jpeg-12-megapixel", _image(lambda: huge_digit_jpeg(4), "image/jpeg"), 4),
        _ok(
            "digit-png-with-3MB-iTXt",
            _image(lambda: text_chunk_png(7, 3 * MIB, compressed=False, after_pixels=False)),
            7,
        ),
        # -- the same bytes through every transport ----------------------------------------
        _ok(
            "digit-multipart",
            lambda: api_event(
                multipart({"note": ("text/plain", b"hi"), "image": ("image/png", _png(d(5)))}),
                "multipart/form-data; boundary=HostileBoundary",
            ),
            5,
        ),
        _ok(
            "digit-json-base64",
            lambda: api_event(
                json.dumps({"image_base64": base64.b64encode(_png(d(2))).decode()}),
                "application/json",
            ),
            2,
        ),
        _ok(
            "digit-json-data-url",
            lambda: api_event(
                json.dumps(
                    {
                        "image_base64": "data:image/png;base64,"
                        + base64.b64encode(_png(d(1))).decode()
                    }
                ),
                "application/json; charset=utf-8",
            ),
            1,
        ),
        _ok("digit-octet-stream", _image(lambda: _png(d(6)), "application/octet-stream"), 6),
        # The declared image type only routes the body; the bytes say what the format is.
        _ok("digit-png-labelled-image-jpeg", _image(lambda: _png(d(9)), "image/jpeg"), 9),
        _ok("digit-content-type-upper-case", _image(lambda: _png(d(0)), "IMAGE/PNG; q=1"), 0),
        _ok(
            "digit-top-k-above-label-count",
            lambda: api_event(_png(d(3)), query={"top_k": "20"}),
            3,
            predictions=LABELS,
        ),
        _ok("digit-top-k-1", lambda: api_event(_png(d(8)), query={"top_k": "1"}), 8, predictions=1),
        # -- valid but odd pictures: any prediction, as long as it is one ---------------------
        _ok("photo-astronaut-png", _image(lambda: _png(sample_photo("astronaut"))), None),
        _ok(
            "photo-chelsea-jpeg",
            _image(lambda: encode(sample_photo("chelsea"), "JPEG"), "image/jpeg"),
            None,
        ),
        _ok(
            "photo-coffee-webp",
            _image(lambda: encode(sample_photo("coffee"), "WEBP"), "image/webp"),
            None,
        ),
        _ok(
            "photo-astronaut-12-megapixel-jpeg",
            _image(
                lambda: encode(
                    sample_photo("astronaut").resize((4000, 3000), Image.Resampling.BILINEAR),
                    "JPEG",
                    quality=85,
                ),
                "image/jpeg",
            ),
            None,
        ),
        _ok("png-1x1", _image(lambda: _png(Image.new("L", (1, 1), 0))), None),
        _ok(
            "jpeg-8x8-tiny",
            _image(lambda: encode(Image.new("L", (8, 8), 200), "JPEG"), "image/jpeg"),
            None,
        ),
        _ok("png-1x5000-aspect", _image(lambda: _png(_stripe((1, 5000)))), None),
        _ok("png-5000x1-aspect", _image(lambda: _png(_stripe((5000, 1)))), None),
        # 49 MP RGBA, 190 KB: legitimate, and the most memory a picture may cost.
        _ok(
            "png-7000x7000-RGBA-near-pixel-limit",
            _image(lambda: hand_png(7000, 7000, b"\0" * (1 + 4 * 7000), colour_type=6)),
            None,
        ),
        # The alpha and 16-bit paths make the most full-size copies: the worst legal inputs.
        _ok(
            "png-7000x7000-LA-near-pixel-limit",
            _image(lambda: hand_png(7000, 7000, b"\0" + b"\x80\x40" * 7000, colour_type=4)),
            None,
        ),
        _ok(
            "png-7000x7000-I16-near-pixel-limit",
            _image(
                lambda: hand_png(
                    7000,
                    7000,
                    b"\0" + struct.pack(">H", 900) * 3500 + struct.pack(">H", 40000) * 3500,
                    bit_depth=16,
                )
            ),
            None,
        ),
        # -- what the decoder must refuse --------------------------------------------------
        _no(
            "png-bomb-100000x100000",
            _image(lambda: bomb_png(100_000, 100_000)),
            422,
            "image_too_large",
        ),
        _no(
            "png-bomb-8000x8000-warning-band",
            _image(lambda: bomb_png(8000, 8000)),
            422,
            "image_too_large",
        ),
        _no("gif-bomb-65535x65535", _image(bomb_gif, "image/gif"), 422, "image_too_large"),
        _no("bmp-bomb-30000x30000", _image(bomb_bmp, "image/bmp"), 422, "image_too_large"),
        _no("jpeg-bomb-sof-60000x60000", _image(bomb_jpeg, "image/jpeg"), 422, "image_too_large"),
        # Under the 50 MP limit, but a row costs Pillow an 8-byte pointer: 1 x 25M RGBA
        # (120 KB) would need 300 MB per copy and more than 2 GB to preprocess.
        _no(
            "png-1x25M-RGBA-row-bomb",
            _image(lambda: hand_png(1, 25_000_000, b"\0" * 5, colour_type=6)),
            422,
            "image_too_large",
        ),
        _no(
            "png-1x49M-L-row-bomb",
            _image(lambda: hand_png(1, 49_000_000, b"\0\0")),
            422,
            "image_too_large",
        ),
        _no(
            "png-iTXt-zlib-bomb-before-pixels",
            _image(lambda: text_chunk_png(7, 20 * MIB, compressed=True, after_pixels=False)),
            422,
            "undecodable_image",
        ),
        _no(
            "png-iTXt-zlib-bomb-after-pixels",
            _image(lambda: text_chunk_png(7, 20 * MIB, compressed=True, after_pixels=True)),
            422,
            "undecodable_image",
        ),
        _no(
            "png-truncated-half",
            _image(lambda: _digit_png(3)[: len(_digit_png(3)) // 2]),
            422,
            "undecodable_image",
        ),
        _no(
            "jpeg-truncated",
            _image(lambda: encode(d(3).resize((640, 480)), "JPEG")[:400], "image/jpeg"),
            422,
            "undecodable_image",
        ),
        _no("png-signature-only", _image(lambda: b"\x89PNG\r\n\x1a\n"), 422, "undecodable_image"),
        _no("png-bad-crc", _image(lambda: bad_crc_png(3)), 422, "undecodable_image"),
        _no("text-as-image-png", _image(lambda: b"hello, this is text"), 422, "undecodable_image"),
        _no("html-as-image-png", _image(lambda: HTML), 422, "undecodable_image"),
        _no("svg-as-image-png", _image(lambda: SVG), 415, "unsupported_image_format"),
        _no(
            "svg-in-multipart",
            lambda: api_event(
                multipart({"image": ("image/svg+xml", SVG)}),
                "multipart/form-data; boundary=HostileBoundary",
            ),
            415,
            "unsupported_image_format",
        ),
        _no(
            "pdf-as-octet-stream",
            _image(lambda: PDF, "application/octet-stream"),
            415,
            "unsupported_image_format",
        ),
        _no(
            "heic-as-image-jpeg",
            _image(lambda: HEIC, "image/jpeg"),
            415,
            "unsupported_image_format",
        ),
        _no(
            "avif",
            _image(lambda: encode(d(7).convert("RGB"), "AVIF"), "image/jpeg"),
            415,
            "unsupported_image_format",
        ),
        _no(
            "jpeg-2000",
            _image(lambda: encode(d(7).convert("RGB"), "JPEG2000"), "image/jpeg"),
            415,
            "unsupported_image_format",
        ),
        _no(
            "multipart-zero-byte-file",
            lambda: api_event(
                multipart({"image": ("image/png", b"")}),
                "multipart/form-data; boundary=HostileBoundary",
            ),
            422,
            "empty_image",
        ),
        # -- what the edge must refuse before decoding -------------------------------------
        _no("empty-body", lambda: api_event(None), 400, "empty_body"),
        _no("zero-byte-base64-body", lambda: api_event(b""), 400, "empty_body"),
        _no("base64-with-junk", lambda: _flagged_base64("iVBORw0KGgo*&^%$#!!"), 400, "bad_body"),
        _no(
            "text-body-lone-surrogate",
            lambda: api_event("\ud800\udfff\ud800", "image/png"),
            400,
            "bad_body",
        ),
        _no(
            "svg-content-type",
            lambda: api_event(SVG, "image/svg+xml"),
            415,
            "unsupported_media_type",
        ),
        _no(
            "application-xml",
            lambda: api_event(b"<image/>", "application/xml"),
            415,
            "unsupported_media_type",
        ),
        # An image sent as text/plain is refused, not sniffed: see docs/hostile-section.md.
        _no(
            "text-plain-with-png-bytes",
            lambda: api_event(_png(d(7)), "text/plain"),
            415,
            "unsupported_media_type",
        ),
        _no("no-content-type", lambda: api_event(_png(d(7)), None), 415, "unsupported_media_type"),
        _no(
            "raw-7MB-text-body",
            lambda: api_event("A" * (7 * MIB), "image/png"),
            413,
            "payload_too_large",
        ),
        _no("base64-7MB-body", lambda: api_event(b"\xff" * (7 * MIB)), 413, "payload_too_large"),
        _no(
            "png-with-4.5MB-iTXt-over-limit",
            _image(
                lambda: text_chunk_png(
                    7, MAX_IMAGE_BYTES + MIB // 2, compressed=False, after_pixels=False
                )
            ),
            413,
            "payload_too_large",
        ),
        _no(
            "json-base64-over-limit",
            lambda: api_event(
                json.dumps(
                    {"image_base64": base64.b64encode(b"\0" * (MAX_IMAGE_BYTES + 1)).decode()}
                ),
                "application/json",
            ),
            413,
            "payload_too_large",
        ),
        _no(
            "json-invalid",
            lambda: api_event("{'image_base64': nope", "application/json"),
            400,
            "bad_json",
        ),
        _no(
            "json-nesting-bomb",
            lambda: api_event("[" * 100_000, "application/json"),
            400,
            "bad_json",
        ),
        _no(
            "json-5000-digit-number",
            lambda: api_event(
                '{"image_base64": "AAAA", "n": ' + "7" * 5000 + "}", "application/json"
            ),
            400,
            "bad_json",
        ),
        _no(
            "json-field-named-image",
            lambda: api_event(
                json.dumps({"image": base64.b64encode(_png(d(7))).decode()}), "application/json"
            ),
            400,
            "missing_field",
        ),
        _no(
            "json-image-not-a-string",
            lambda: api_event('{"image_base64": 42}', "application/json"),
            400,
            "missing_field",
        ),
        _no("json-array", lambda: api_event("[1, 2, 3]", "application/json"), 400, "missing_field"),
        _no(
            "json-base64-with-junk",
            lambda: api_event('{"image_base64": "iVBOR w0KG*go="}', "application/json"),
            400,
            "bad_base64",
        ),
        _no(
            "multipart-missing-field",
            lambda: api_event(
                multipart({"file": ("image/png", _png(d(7)))}),
                "multipart/form-data; boundary=HostileBoundary",
            ),
            400,
            "missing_field",
        ),
        _no(
            "multipart-wrong-boundary",
            lambda: api_event(
                multipart({"image": ("image/png", _png(d(7)))}),
                "multipart/form-data; boundary=SomethingElse",
            ),
            400,
            "bad_multipart",
        ),
        _no(
            "multipart-no-boundary",
            lambda: api_event(multipart({"image": ("image/png", b"x")}), "multipart/form-data"),
            400,
            "bad_multipart",
        ),
        _no(
            "multipart-non-latin-1-boundary",
            lambda: api_event("--\u20ac\r\n", "multipart/form-data; boundary=\u20ac"),
            400,
            "bad_multipart",
        ),
        _no(
            "top-k-huge", lambda: api_event(_png(d(7)), query={"top_k": "9" * 30}), 400, "bad_top_k"
        ),
        _no(
            "top-k-5000-digits",
            lambda: api_event(_png(d(7)), query={"top_k": "9" * 5000}),
            400,
            "bad_top_k",
        ),
        _no(
            "top-k-negative", lambda: api_event(_png(d(7)), query={"top_k": "-3"}), 400, "bad_top_k"
        ),
        _no("top-k-zero", lambda: api_event(_png(d(7)), query={"top_k": "0"}), 400, "bad_top_k"),
        # API Gateway joins a repeated query parameter with commas.
        _no(
            "top-k-repeated",
            lambda: api_event(_png(d(7)), query={"top_k": "3,5"}),
            400,
            "bad_top_k",
        ),
        _no("top-k-float", lambda: api_event(_png(d(7)), query={"top_k": "2.5"}), 400, "bad_top_k"),
        _no("get-predict", lambda: api_event(None, None, method="GET"), 404, "not_found"),
        _no(
            "post-unknown-route",
            lambda: api_event(_png(d(7)), path="/predict/../admin"),
            404,
            "not_found",
        ),
        _no("event-headers-not-an-object", lambda: _malformed_headers(), 400, "bad_event"),
    ]
    ids = [case.id for case in cases]
    duplicates = {i for i in ids if ids.count(i) > 1}
    if duplicates:
        raise ValueError(f"duplicate corpus ids: {sorted(duplicates)}")
    return cases


def _stripe(size: tuple[int, int]) -> Image.Image:
    """A dark bar along the middle of a white strip."""
    image = Image.new("L", size, 255)
    width, height = size
    ImageDraw.Draw(image).line([(0, 0), (width - 1, height - 1)], fill=0)
    return image


def _flagged_base64(text: str) -> dict[str, Any]:
    event = api_event(b"placeholder")
    event["body"] = text
    return event


def _malformed_headers() -> dict[str, Any]:
    # A direct invocation (not API Gateway) can send any JSON.
    event = api_event(_png(digit(7)))
    event["headers"] = [["content-type", "image/png"]]
    return event


CORPUS: tuple[Case, ...] = tuple(_cases())


# --- judging an answer ---------------------------------------------------------------------


def check_answer(case: Case, response: Any) -> list[str]:
    """What is wrong with the handler's payload-2.0 `response` to `case`; empty if nothing."""
    if not isinstance(response, dict) or not isinstance(response.get("statusCode"), int):
        return [f"not a payload-2.0 response: {str(response)[:200]}"]
    status = response["statusCode"]
    problems = []
    if status >= 500:
        problems.append(f"server error {status}")
    if (response.get("headers") or {}).get("content-type") != "application/json":
        problems.append(f"content-type {response.get('headers')}")
    try:
        body = json.loads(response.get("body") or "")
    except ValueError:
        return [*problems, f"body is not JSON: {str(response.get('body'))[:200]}"]
    if status != case.status:
        problems.append(f"status {status}, expected {case.status}: {str(body)[:300]}")
    elif status >= 400:
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict) or set(error) != {"code", "message"}:
            problems.append(f"error body is not {{error: {{code, message}}}}: {body}")
        else:
            if error["code"] != case.code:
                problems.append(f"code {error['code']!r}, expected {case.code!r}")
            if not isinstance(error["message"], str) or not error["message"].strip():
                problems.append("the error message is empty")
    else:
        problems.extend(_prediction_problems(case, body))
    return problems


def _prediction_problems(case: Case, body: Any) -> list[str]:
    predictions = body.get("predictions") if isinstance(body, dict) else None
    if not isinstance(predictions, list) or len(predictions) != case.predictions:
        return [f"expected {case.predictions} predictions: {str(body)[:300]}"]
    labels = [p.get("label") for p in predictions]
    scores = [p.get("score") for p in predictions]
    problems = []
    if any(label not in {str(i) for i in range(LABELS)} for label in labels):
        problems.append(f"labels {labels}")
    if len(set(labels)) != len(labels):
        problems.append(f"repeated labels {labels}")
    if not all(isinstance(s, float) and math.isfinite(s) and 0.0 <= s <= 1.0 for s in scores):
        problems.append(f"scores {scores}")
    elif scores != sorted(scores, reverse=True) or sum(scores) > 1.0 + 1e-6:
        problems.append(f"scores not ranked probabilities: {scores}")
    if case.label is not None and labels and labels[0] != case.label:
        problems.append(f"read {labels[0]!r} ({scores[0]}), the picture shows {case.label!r}")
    return problems
