"""The hostile corpus through the real inference handler, in this process, against a digits release.

Each input is its own test: it must get its expected 4xx (exact status and code, JSON error
body with a message) or a well-formed prediction (the right digit where the picture shows
one), never a 5xx, and the same runtime must still read a plain digit afterwards. The same
corpus goes through a real execution environment in tests/local/test_hostile_environment.py.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lambda_src.inference import handler
from lambda_src.inference.imaging import OpenedImage, open_image
from lambda_src.inference.runtime import Config, Runtime
from lambda_src.models import preprocessing
from tests.lambda_src import hostile_corpus as corpus
from tests.lambda_src.test_inference_handler import RID, make_release

CONTROL = corpus.Case(
    "control", lambda: corpus.api_event(corpus.encode(corpus.digit(2), "PNG")), 200, label="2"
)


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory, digits_model_dir: Path) -> Iterator[Runtime]:
    """One runtime serving a digits release for the whole module, as one warm environment."""
    root = tmp_path_factory.mktemp("hostile-efs") / "efs"
    make_release(root, RID, digits_model_dir)
    saved_path = list(sys.path)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LIB_IMPORT_MARKER", str(root.parent / "marker"))
        served = Runtime(Config(root, RID))
        patch.setattr(handler, "RUNTIME", served)
        yield served
    sys.path[:] = saved_path


def test_the_corpus_covers_the_brief() -> None:
    statuses = {case.status for case in corpus.CORPUS}
    assert len(corpus.CORPUS) >= 40
    assert {200, 400, 404, 413, 415, 422} <= statuses
    digits = {case.label for case in corpus.CORPUS if case.label is not None}
    assert digits == {str(d) for d in range(10)}, "every digit is read in some odd container"


@pytest.mark.parametrize("case", corpus.CORPUS, ids=lambda case: case.id)
def test_hostile_input(runtime: Runtime, case: corpus.Case) -> None:
    problems = corpus.check_answer(case, handler.handle(case.make(), None))
    assert not problems, f"{case.id}: {problems}"
    # The input left nothing behind: the same runtime still reads a plain digit.
    assert not corpus.check_answer(CONTROL, handler.handle(CONTROL.make(), None))


@pytest.mark.parametrize("value", range(10))
def test_the_plain_drawings_are_read_right(runtime: Runtime, value: int) -> None:
    """The reference each variant in the corpus is held to: the plain PNG of the same drawing."""
    response = handler.handle(corpus.api_event(corpus.encode(corpus.digit(value), "PNG")), None)
    assert json.loads(response["body"])["predictions"][0]["label"] == str(value)


def _grids(data: bytes) -> np.ndarray:
    opened = open_image(data)
    assert isinstance(opened, OpenedImage), opened
    return preprocessing.digit_grids(opened.image)


@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_orientation_is_honoured(orientation: int) -> None:
    """A sideways-stored picture with its orientation tag is read as the upright one."""
    upright = corpus.digit(7)
    reference = _grids(corpus.encode(upright, "PNG"))
    tagged = _grids(corpus.with_orientation(upright, orientation, "PNG"))
    untagged = _grids(corpus.sideways(upright, orientation, "PNG"))
    np.testing.assert_array_equal(tagged, reference)
    # The control: without the tag the model would see a very different picture.
    assert float(np.abs(untagged - reference).mean()) > 1.0
    # JPEG is lossy, so close rather than equal, and still far from the sideways picture.
    tagged_jpeg = _grids(corpus.with_orientation(upright, orientation, "JPEG"))
    assert float(np.abs(tagged_jpeg - reference).mean()) < 0.5
    stored = Image.open(io.BytesIO(corpus.with_orientation(upright, orientation, "JPEG")))
    assert stored.getexif().get(0x0112) == orientation and stored.size == (280, 280)


def test_the_animated_gif_is_read_from_its_first_frame() -> None:
    data = corpus.animated_gif(3, (1, 7, 1))
    assert Image.open(io.BytesIO(data)).n_frames == 4
    np.testing.assert_array_equal(
        _grids(data), _grids(corpus.encode(corpus.digit(3).convert("P"), "GIF"))
    )


def test_the_bombs_are_small_and_declare_what_they_claim() -> None:
    """The refusals above are for the declared size, not for a broken file."""
    for data, size in [
        (corpus.bomb_png(100_000, 100_000), (100_000, 100_000)),
        (corpus.bomb_gif(), (65535, 65535)),
        (corpus.bomb_bmp(), (30000, 30000)),
        (corpus.bomb_jpeg(), (60000, 60000)),
        (corpus.hand_png(1, 25_000_000, b"\0" * 5, colour_type=6), (1, 25_000_000)),
    ]:
        assert len(data) < 200_000
        limit = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None  # read the header only, to see the declared size
        try:
            assert Image.open(io.BytesIO(data)).size == size
        finally:
            Image.MAX_IMAGE_PIXELS = limit


def test_the_row_rule_draws_the_line_where_a_50_megapixel_photo_does() -> None:
    """A 1-pixel-wide image may have a third of 50M rows: per copy, what a 50 MP photo costs."""
    rows = 50_000_000 // 3
    allowed = open_image(corpus.hand_png(1, rows, b"\0\0"))
    assert isinstance(allowed, OpenedImage) and allowed.size == (1, rows)
    refused = open_image(corpus.bomb_png(1, rows + 1))
    assert not isinstance(refused, OpenedImage)
    assert (refused.status, refused.code) == (422, "image_too_large")
    photo = open_image(corpus.bomb_png(7070, 7070))  # 49.98 MP: under the limit, then truncated
    assert not isinstance(photo, OpenedImage) and photo.code == "undecodable_image"
