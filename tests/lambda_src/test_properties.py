"""Properties of the decoder and the event parser on arbitrary input (hypothesis).

Decoder: `open_image` followed by the models' preprocessing (`digit_grids`, what the digits
model's `preprocess` normalises, and `imagenet_array`, what the ResNet's does) either
refuses with a 4xx verdict, or raises one of `decode_errors()` (the handler's 422), or
returns arrays of the fixed shape, dtype float32 and finite, bounded values. Anything else
would be a 500. A valid image, of any mode and size, is never refused or a decode error.

Parser: `parse_event` and `extract_image` on any event return a Request / ImagePayload or
a 4xx HttpError, and never raise.
"""

from __future__ import annotations

import base64
import io
import json
import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as tally
from hypothesis import strategies as st
from PIL import Image

from lambda_src.inference import http
from lambda_src.inference.http import HttpError, ImagePayload, Request
from lambda_src.inference.imaging import OpenedImage, decode_errors, open_image
from lambda_src.models import preprocessing

SETTINGS = settings(
    max_examples=200,
    deadline=None,  # a busy 2-core machine must not turn slowness into failures
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
DECODER_VERDICTS = {
    (415, "unsupported_image_format"),
    (422, "undecodable_image"),
    (422, "image_too_large"),
    (422, "empty_image"),
}
EDGE_STATUSES = {400, 404, 413, 415, 422}

# --- valid images of every mode the decoder may meet -----------------------------------------

# mode -> formats Pillow writes it in
MODE_FORMATS: dict[str, tuple[str, ...]] = {
    "1": ("PNG", "BMP", "TIFF", "GIF"),
    "L": ("PNG", "JPEG", "BMP", "TIFF", "GIF", "WEBP"),
    "LA": ("PNG", "TIFF"),
    "P": ("PNG", "BMP", "GIF", "TIFF"),
    "RGB": ("PNG", "JPEG", "BMP", "TIFF", "WEBP", "GIF"),
    "RGBA": ("PNG", "TIFF", "WEBP", "GIF", "BMP"),
    "CMYK": ("JPEG", "TIFF"),
    "YCbCr": ("JPEG", "TIFF"),
    "I;16": ("PNG", "TIFF"),
    "I": ("TIFF",),
    "F": ("TIFF",),
}
ORIENTATION_FORMATS = {"PNG", "JPEG", "WEBP", "TIFF"}


def _pixels(mode: str, size: tuple[int, int], seed: int, style: str) -> Image.Image:
    """An image of `mode` and `size`: one flat colour, noise, or a dark bar (ink) on light."""
    width, height = size
    rng = np.random.default_rng(seed)
    if style == "flat":
        values = np.empty((height, width, 4), dtype=np.uint8)
        values[...] = rng.integers(0, 256, 4, dtype=np.uint8)
    elif style == "noise":
        values = rng.integers(0, 256, (height, width, 4), dtype=np.uint8)
    else:
        values = np.full((height, width, 4), 230, dtype=np.uint8)
        values[height // 4 : 3 * height // 4 + 1, width // 3 : 2 * width // 3 + 1, :3] = 20
        values[..., 3] = rng.integers(0, 256, (height, width), dtype=np.uint8)
    rgba = Image.fromarray(values)
    if mode in ("I;16", "I", "F"):
        gray = np.asarray(rgba.convert("L"), dtype=np.float64) / 255.0
        top, dtype = {"I;16": (65535, np.uint16), "I": (2**31 - 1, np.int32), "F": (1, np.float32)}[
            mode
        ]
        return Image.fromarray((gray * top).astype(dtype))
    if mode in ("RGBA", "LA"):
        return rgba.convert(mode)
    rgb = rgba.convert("RGB")
    if mode == "P":
        return rgb.convert("P", palette=Image.Palette.ADAPTIVE)
    return rgb.convert(mode)


@st.composite
def valid_images(draw: st.DrawFn) -> tuple[bytes, str, str]:
    """Encoded bytes of a random valid image: (data, mode, format)."""
    mode = draw(st.sampled_from(sorted(MODE_FORMATS)))
    fmt = draw(st.sampled_from(MODE_FORMATS[mode]))
    shape = draw(st.sampled_from(["small", "tiny", "sliver", "tall-sliver"]))
    if shape == "tiny":
        size = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    elif shape == "sliver":
        size = (draw(st.integers(1, 3)), draw(st.integers(200, 3000)))
    elif shape == "tall-sliver":
        size = (draw(st.integers(200, 3000)), draw(st.integers(1, 3)))
    else:
        size = (draw(st.integers(5, 400)), draw(st.integers(5, 400)))
    image = _pixels(
        mode, size, draw(st.integers(0, 2**32 - 1)), draw(st.sampled_from(["flat", "noise", "ink"]))
    )
    options: dict[str, Any] = {}
    if mode == "P" and fmt in ("PNG", "GIF") and draw(st.booleans()):
        options["transparency"] = 0
    if fmt in ORIENTATION_FORMATS and draw(st.booleans()):
        exif = Image.Exif()
        exif[0x0112] = draw(st.integers(0, 9))  # 0 and 9 are out of range: must be ignored
        options["exif"] = exif.tobytes()
    if fmt == "JPEG":
        options["progressive"] = draw(st.booleans())
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue(), image.mode, fmt


SEEDS: list[bytes] = []


def _seed_images() -> list[bytes]:
    """A few small valid files of each format, the raw material of the mutations."""
    if not SEEDS:
        base = Image.new("RGB", (24, 17), "white")
        base.paste((10, 10, 10), (6, 3, 14, 14))
        for fmt, mode in [
            ("PNG", "RGBA"),
            ("PNG", "P"),
            ("PNG", "I;16"),
            ("JPEG", "RGB"),
            ("JPEG", "CMYK"),
            ("GIF", "P"),
            ("BMP", "RGB"),
            ("TIFF", "RGB"),
            ("WEBP", "RGB"),
        ]:
            buffer = io.BytesIO()
            image = base.convert("L").convert(mode) if mode == "I;16" else base.convert(mode)
            exif = Image.Exif()
            exif[0x0112] = 6
            extra = {"exif": exif.tobytes()} if fmt in ("JPEG", "PNG") else {}
            image.save(buffer, format=fmt, **extra)
            SEEDS.append(buffer.getvalue())
    return SEEDS


@st.composite
def mutated_images(draw: st.DrawFn) -> bytes:
    """A valid file with random damage: flipped bytes, a cut, an insertion, a patched size."""
    data = bytearray(draw(st.sampled_from(_seed_images())))
    for _ in range(draw(st.integers(0, 6))):
        position = draw(st.integers(0, len(data) - 1))
        data[position] = draw(st.integers(0, 255))
    action = draw(st.sampled_from(["none", "cut", "insert", "size"]))
    if action == "cut":
        data = data[: draw(st.integers(0, len(data)))]
    elif action == "insert":
        position = draw(st.integers(0, len(data)))
        data[position:position] = draw(st.binary(min_size=1, max_size=64))
    elif action == "size" and data[:4] == b"\x89PNG":
        struct.pack_into(
            ">II", data, 16, draw(st.integers(0, 2**31 - 1)), draw(st.integers(0, 70000))
        )
    return bytes(data)


def _decode_and_preprocess(data: bytes) -> tuple[int, str] | None:
    """The verdict on `data` the handler would give, or None when both pipelines ran.

    Raises only what the handler would turn into a 500.
    """
    opened = open_image(data)
    if isinstance(opened, HttpError):
        return opened.status, opened.code
    try:
        grids = preprocessing.digit_grids(opened.image)
    except decode_errors():
        return 422, "undecodable_image"
    assert grids.shape == (len(preprocessing.DIGIT_VIEWS), 8, 8) and grids.dtype == np.float32
    assert np.isfinite(grids).all() and grids.min() >= 0.0 and grids.max() <= 16.0
    again = open_image(data)  # a fresh image: draft mode and decoding happen once per image
    assert isinstance(again, OpenedImage)
    array = preprocessing.imagenet_array(again.image)
    assert array.shape == (3, 224, 224) and array.dtype == np.float32
    # (0 - mean) / std and (1 - mean) / std bound every normalised value.
    assert np.isfinite(array).all() and array.min() > -2.2 and array.max() < 2.7
    return None


@SETTINGS
@given(data=st.one_of(st.binary(max_size=4096), mutated_images()))
def test_decoder_on_arbitrary_bytes(data: bytes) -> None:
    verdict = _decode_and_preprocess(data)
    tally(f"verdict: {verdict or 'preprocessed'}")  # see --hypothesis-show-statistics
    assert verdict is None or verdict in DECODER_VERDICTS, verdict


@SETTINGS
@given(image=valid_images())
def test_decoder_on_valid_images_of_any_mode_and_size(image: tuple[bytes, str, str]) -> None:
    data, mode, fmt = image
    assert _decode_and_preprocess(data) is None, f"a valid {mode} {fmt} was refused"


def test_the_decoder_property_can_fail() -> None:
    """An exception outside decode_errors() escapes the helper, as it would reach the handler.

    A zTXt bomb after the pixels raised ValueError from the model's preprocessing (a 500)
    before open_image decoded non-JPEG images itself.
    """
    assert not issubclass(ValueError, decode_errors())
    with pytest.raises(ValueError, match="MAX_TEXT_CHUNK"):
        preprocessing.digit_grids(Image.open(io.BytesIO(_ztxt_bomb_after_pixels())))
    assert _decode_and_preprocess(_ztxt_bomb_after_pixels()) == (422, "undecodable_image")


def _ztxt_bomb_after_pixels() -> bytes:
    from tests.lambda_src.hostile_corpus import text_chunk_png

    return text_chunk_png(1, 8 * 1024 * 1024, compressed=True, after_pixels=True)


# --- events ------------------------------------------------------------------------------------

# Text with what a JSON event may carry and UTF-8 cannot encode: lone surrogates.
TEXT = st.text(
    alphabet=st.one_of(
        st.characters(), st.sampled_from(["\ud800", "\udc80", "\udfff", "\x00", "\u20ac", "="])
    ),
    max_size=40,
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(TEXT, children, max_size=3),
    max_leaves=8,
)
# Weighted towards the types that reach a parser (multipart, JSON, raw image).
CONTENT_TYPES = st.one_of(
    st.sampled_from(
        [
            "image/png",
            "IMAGE/JPEG; charset=binary",
            "application/octet-stream",
            "application/json",
            "application/json; charset=utf-8",
            "multipart/form-data; boundary=B",
            "multipart/form-data; boundary=B; charset=utf-8",
            'multipart/form-data; boundary="B"',
            "multipart/form-data",
            "multipart/form-data; boundary=",
            "multipart/form-data; boundary=\u20ac",
            "text/plain",
            "",
        ]
    ),
    st.sampled_from(["multipart/form-data; boundary=B", "application/json", "image/png"]),
    TEXT,
)


@st.composite
def multipart_bodies(draw: st.DrawFn) -> bytes:
    """Multipart-looking bodies: right or wrong boundaries, odd headers, random payloads."""
    parts = []
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(["image", "file", "", 'image"; x="1', "image*=utf-8''image"]))
        headers = draw(
            st.sampled_from(
                [
                    f'Content-Disposition: form-data; name="{name}"\r\n',
                    f'Content-Disposition: form-data; name="{name}"\r\n'
                    "Content-Transfer-Encoding: base64\r\n",
                    f'Content-Disposition: form-data; name="{name}"\r\n'
                    "Content-Type: multipart/mixed; boundary=C\r\n",
                    "Content-Disposition: \r\n",
                    "",
                ]
            )
        )
        parts.append(b"--B\r\n" + headers.encode() + b"\r\n" + draw(st.binary(max_size=64)))
    tail = draw(st.sampled_from([b"\r\n--B--\r\n", b"", b"\r\n--B\r\n", b"--"]))
    return b"\r\n".join(parts) + tail


def _bodies(content_type: str) -> st.SearchStrategy[tuple[Any, Any]]:
    """(body, isBase64Encoded): mostly what the content type promises, sometimes anything."""
    as_base64 = st.binary(max_size=300).map(lambda b: base64.b64encode(b).decode())
    fitting: st.SearchStrategy[tuple[Any, Any]]
    if content_type.lower().startswith("multipart"):
        fitting = st.one_of(
            multipart_bodies().map(lambda b: (base64.b64encode(b).decode(), True)),
            multipart_bodies().map(lambda b: (b.decode("latin-1"), False)),
        )
    elif "json" in content_type.lower():
        image_field = st.one_of(
            TEXT,
            st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode()),
            st.binary(max_size=64).map(lambda b: "data:,;base64," + base64.b64encode(b).decode()),
            JSON_VALUES,
        )
        docs = st.one_of(st.fixed_dictionaries({"image_base64": image_field}), JSON_VALUES)
        fitting = st.tuples(docs.map(json.dumps) | TEXT, st.just(False))
    else:
        fitting = st.tuples(
            st.one_of(as_base64, mutated_images().map(lambda b: base64.b64encode(b).decode())),
            st.just(True),
        )
    anything = st.tuples(
        st.one_of(st.none(), TEXT, as_base64, JSON_VALUES), st.one_of(st.booleans(), JSON_VALUES)
    )
    return st.one_of(fitting, fitting, anything)


@st.composite
def events(draw: st.DrawFn) -> Any:
    """Payload-2.0 events for /predict with hostile headers, query and body; one in four
    also has parts missing or of the wrong type, and one in ten is not an object at all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(JSON_VALUES)
    mistyped = draw(st.integers(0, 3)) == 0

    def part(good: st.SearchStrategy[Any]) -> Any:
        return draw(st.one_of(good, JSON_VALUES) if mistyped else good)

    method = draw(st.sampled_from(["POST"] * 6 + ["GET", "post", "DELETE"]))
    path = draw(st.sampled_from(["/predict"] * 6 + ["/health", "/warmup", "/predict/"]))
    content_type = draw(CONTENT_TYPES)
    event: dict[str, Any] = {"version": "2.0"}
    context = {"http": part(st.just({"method": method, "path": path})), "requestId": "r"}
    for key, value in [
        ("routeKey", f"{method} {path}"),
        ("rawPath", path),
        ("requestContext", context),
    ]:
        if not mistyped or draw(st.booleans()):
            event[key] = part(st.just(value))
    headers = {
        draw(st.sampled_from(["content-type", "Content-Type", "CONTENT-TYPE"])): content_type
    }
    headers.update(draw(st.dictionaries(TEXT, TEXT, max_size=2)))
    event["headers"] = part(st.just(headers))
    top_k = st.sampled_from(
        ["5", "5", "5", "1", "20", "21", "-1", "0", "5,5", " 3 ", "\u0663", "9" * 5000]
    )
    query = st.one_of(st.none(), st.fixed_dictionaries({"top_k": top_k | TEXT}))
    event["queryStringParameters"] = part(query)
    event["body"], event["isBase64Encoded"] = draw(_bodies(content_type))
    return event


@SETTINGS
@given(event=events())
def test_event_parser_never_raises(event: Any) -> None:
    request = http.parse_event(event)
    tally(f"parsed: {getattr(request, 'code', None) or getattr(request, 'route', '?')[:12]}")
    if isinstance(request, HttpError):
        assert request.status == 400 and request.code in {"bad_event", "bad_body"}, request
        assert request.message
        return
    assert isinstance(request, Request) and isinstance(request.body, bytes)
    result = http.extract_image(request)
    tally(f"extracted: {getattr(result, 'code', None) or getattr(result, 'source', '?')}")
    if isinstance(result, HttpError):
        assert result.status in EDGE_STATUSES and result.code and result.message, result
        response = http.error_response(result)
        assert json.loads(response["body"])["error"]["code"] == result.code
    else:
        assert isinstance(result, ImagePayload)
        assert 0 < len(result.data) <= http.MAX_IMAGE_BYTES
        assert 1 <= result.top_k <= http.MAX_TOP_K


def test_the_event_property_can_fail() -> None:
    """Events the parser used to raise on (a 500 from the handler) now get a 400."""
    cases: list[tuple[dict[str, Any], str]] = [
        ({"routeKey": "POST /predict", "requestContext": "x"}, "bad_event"),
        ({"routeKey": "POST /predict", "headers": [["content-type", "image/png"]]}, "bad_event"),
        ({"routeKey": "POST /predict", "body": "\ud800"}, "bad_body"),
    ]
    for event, code in cases:
        result = http.parse_event(event)
        assert isinstance(result, HttpError) and result.code == code, event
    for ctype, body, code in [
        ("application/json", b"[" * 100_000, "bad_json"),
        ("application/json", b'{"n": ' + b"1" * 5000 + b"}", "bad_json"),
        ("multipart/form-data; boundary=\u20ac", b"--x", "bad_multipart"),
    ]:
        request = Request("POST", "/predict", {"content-type": ctype}, {}, body)
        extracted = http.extract_image(request)
        assert isinstance(extracted, HttpError) and extracted.code == code, ctype
