"""The request bodies the benchmark sends: photos from scikit-image's shipped data."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Payload:
    """One request body and what it is."""

    name: str
    content_type: str
    data: bytes
    pixels: int


def _photo() -> object:
    from PIL import Image
    from skimage import data

    return Image.fromarray(np.asarray(data.astronaut()))  # type: ignore[no-untyped-call]


def payloads() -> list[Payload]:
    """A 224 px PNG, a 1 MP JPEG and a 12 MP JPEG (4000x3000, as a phone takes them)."""
    from PIL import Image

    photo = _photo()
    assert isinstance(photo, Image.Image)
    out: list[Payload] = []
    for name, size, fmt, content_type in (
        ("png_224px", (224, 224), "PNG", "image/png"),
        ("jpeg_1mp", (1155, 866), "JPEG", "image/jpeg"),
        ("jpeg_12mp", (4000, 3000), "JPEG", "image/jpeg"),
    ):
        image = photo.resize(size, Image.Resampling.BICUBIC)
        buffer = io.BytesIO()
        image.save(buffer, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
        out.append(Payload(name, content_type, buffer.getvalue(), size[0] * size[1]))
    return out


def event(payload: Payload) -> dict[str, object]:
    """An API Gateway HTTP API (2.0) POST /predict event carrying the payload."""
    import base64

    return {
        "version": "2.0",
        "routeKey": "POST /predict",
        "rawPath": "/predict",
        "rawQueryString": "",
        "headers": {"content-type": payload.content_type},
        "requestContext": {"http": {"method": "POST", "path": "/predict"}},
        "body": base64.b64encode(payload.data).decode(),
        "isBase64Encoded": True,
    }
