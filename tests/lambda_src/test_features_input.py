"""The JSON-features input kind at the edge: `is_features_request` and `extract_instances`.

Every refusal is an HttpError with a 4xx status and a stable code; nothing a client sends
makes `extract_instances` raise, and a payload it returns holds equal-length rows of finite
floats.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lambda_src.inference import http
from lambda_src.inference.http import FeaturesPayload, HttpError, Request

SETTINGS = settings(
    max_examples=300,
    deadline=None,  # a busy 2-core machine must not turn slowness into failures
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def request(
    body: bytes | str | dict[str, Any] | list[Any],
    query: dict[str, str] | None = None,
    content_type: str = "application/json",
) -> Request:
    if isinstance(body, (dict, list)):
        raw = json.dumps(body).encode()
    elif isinstance(body, str):
        raw = body.encode()
    else:
        raw = body
    return Request(
        method="POST",
        path="/predict",
        headers={"content-type": content_type},
        query=query or {},
        body=raw,
    )


def extract(
    body: bytes | str | dict[str, Any] | list[Any],
    *,
    features: int | None = None,
    max_rows: int = http.MAX_FEATURE_ROWS,
    query: dict[str, str] | None = None,
) -> FeaturesPayload | HttpError:
    return http.extract_instances(request(body, query), features=features, max_rows=max_rows)


def refused(result: FeaturesPayload | HttpError, status: int, code: str) -> HttpError:
    assert isinstance(result, HttpError), result
    assert (result.status, result.code) == (status, code), result
    return result


def rows_of(result: FeaturesPayload | HttpError) -> list[list[float]]:
    assert isinstance(result, FeaturesPayload), result
    return result.rows


# --- accepted -------------------------------------------------------------------------------


def test_one_row_of_ints_and_floats_becomes_floats() -> None:
    rows = rows_of(extract({"instances": [[1, 2.5, -3, 0, 1e-3]]}))
    assert rows == [[1.0, 2.5, -3.0, 0.0, 0.001]]
    assert all(type(v) is float for v in rows[0])


def test_many_rows() -> None:
    instances = [[float(i), float(i * 2), -float(i)] for i in range(500)]
    rows = rows_of(extract({"instances": instances}, features=3))
    assert rows == instances


def test_rows_at_the_limits_are_accepted() -> None:
    assert len(rows_of(extract({"instances": [[1]] * 7}, max_rows=7))) == 7
    wide = [[0.5] * (http.MAX_FEATURE_VALUES // 4)] * 4
    assert len(rows_of(extract({"instances": wide}))) == 4


def test_features_none_takes_the_first_row_width() -> None:
    assert rows_of(extract({"instances": [[1, 2], [3, 4]]}, features=None)) == [
        [1.0, 2.0],
        [3.0, 4.0],
    ]


def test_other_keys_are_ignored() -> None:
    assert rows_of(extract({"instances": [[1]], "signature_name": "x"})) == [[1.0]]


def test_large_but_finite_numbers_pass() -> None:
    rows = rows_of(extract('{"instances": [[1.7e308, -1.7e308, 1e-400, ' + "9" * 300 + "]]}"))
    assert rows[0][:3] == [1.7e308, -1.7e308, 0.0]
    assert math.isfinite(rows[0][3])


def test_utf8_bom_is_accepted() -> None:
    # json.loads on bytes detects the encoding, as it does for the image kind.
    assert rows_of(extract(b'\xef\xbb\xbf{"instances": [[1]]}')) == [[1.0]]


# --- top_k ----------------------------------------------------------------------------------


def test_top_k_defaults_and_is_read_from_the_query() -> None:
    payload = extract({"instances": [[1]]})
    assert isinstance(payload, FeaturesPayload) and payload.top_k == http.DEFAULT_TOP_K
    payload = extract({"instances": [[1]]}, query={"top_k": "3"})
    assert isinstance(payload, FeaturesPayload) and payload.top_k == 3


@pytest.mark.parametrize("raw", ["0", "21", "x", "1.5", "-1"])
def test_bad_top_k_is_refused_first(raw: str) -> None:
    # Even a body that is itself bad: top_k is checked before the body, as for images.
    refused(extract(b"", query={"top_k": raw}), 400, "bad_top_k")
    refused(extract({"instances": [[1]]}, query={"top_k": raw}), 400, "bad_top_k")


# --- body size and JSON ---------------------------------------------------------------------


def test_empty_body() -> None:
    refused(extract(b""), 400, "empty_body")


def test_body_over_6_mib_is_refused_before_parsing() -> None:
    body = b'{"instances": [[1]], "pad": "' + b"x" * http.MAX_FEATURES_BODY_BYTES + b'"}'
    error = refused(extract(body), 413, "payload_too_large")
    assert str(http.MAX_FEATURES_BODY_BYTES) in error.message
    # Not valid JSON either: size is checked first.
    refused(extract(b"{" * (http.MAX_FEATURES_BODY_BYTES + 1)), 413, "payload_too_large")


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b'{"instances": [[1, 2]',
        b"instances=1,2",
        b'{"instances": [[1,]]}',
        b'{"instances": [[01]]}',
        b"\xff\xfe\x00garbage",
        b'{"instances": [["\xff\xfe"]]}',  # not UTF-8
        b"\x80\x81\x82",
        b'{"instances": [[' + b"1" * 5000 + b"]]}",  # beyond Python's int-digit limit
    ],
)
def test_invalid_json(body: bytes) -> None:
    refused(extract(body), 400, "bad_json")


@pytest.mark.parametrize(
    "body",
    [
        '{"instances": [[1, NaN]]}',
        '{"instances": [[Infinity]]}',
        '{"instances": [[-Infinity, 2]]}',
        '{"instances": [[1]], "other": NaN}',
        '{"instances": [[1, 1e400]]}',
        '{"instances": [[-1e400]]}',
        '{"instances": [[' + str(10**400) + "]]}",
        '{"instances": [[-' + str(10**400) + "]]}",
    ],
)
def test_non_finite_values(body: str) -> None:
    refused(extract(body), 422, "non_finite_value")


def test_non_finite_message_names_the_cell() -> None:
    error = refused(extract('{"instances": [[1, 2], [3, 1e999]]}'), 422, "non_finite_value")
    assert "instances[1][1]" in error.message


# --- shape ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        [[1, 2]],
        "[[1, 2]]",
        "1",
        "null",
        '"instances"',
        {"rows": [[1]]},
        {"Instances": [[1]]},
        {"instances": None},
        {"instances": 1},
        {"instances": "[[1]]"},
        {"instances": {"0": [1]}},
    ],
)
def test_missing_instances(body: Any) -> None:
    error = refused(extract(body), 400, "missing_field")
    assert error.message == 'JSON features need {"instances": [[number, ...], ...]}'


def test_empty_instances() -> None:
    refused(extract({"instances": []}), 422, "empty_instances")


def test_too_many_rows_for_the_model() -> None:
    error = refused(extract({"instances": [[1]] * 11}, max_rows=10), 413, "too_many_rows")
    assert "at most 10 rows" in error.message


def test_too_many_rows_past_the_global_cap() -> None:
    body = {"instances": [[1]] * (http.MAX_FEATURE_ROWS + 1)}
    error = refused(extract(body, max_rows=10**9), 413, "too_many_rows")
    assert f"at most {http.MAX_FEATURE_ROWS} rows" in error.message


def test_too_many_rows_counted_after_parsing() -> None:
    # Rows without brackets (bare numbers) pass the byte count; the parsed length catches them.
    refused(extract({"instances": [1] * 11}, max_rows=10), 413, "too_many_rows")


def test_a_million_rows_are_refused_by_a_byte_count() -> None:
    body = b'{"instances": [' + b",".join([b"[1]"] * 10**6) + b"]}"
    assert len(body) <= http.MAX_FEATURES_BODY_BYTES  # the guard is not the size check
    refused(extract(body), 413, "too_many_rows")


def test_deep_nesting_is_refused_by_a_byte_count() -> None:
    depth = 100_000
    body = b'{"instances": ' + b"[" * depth + b"1" + b"]" * depth + b"}"
    refused(extract(body), 413, "too_many_rows")


def test_nesting_under_the_row_limit_is_refused_cleanly() -> None:
    # 5,000 deep passes the byte count but not json.loads' recursion limit.
    depth = 5_000
    body = b'{"instances": ' + b"[" * depth + b"1" + b"]" * depth + b"}"
    refused(extract(body), 400, "bad_json")
    # Shallow enough to parse: the inner array is a value that is not a number.
    refused(extract({"instances": [[[1, 2]]]}), 422, "non_numeric_value")


def test_deep_objects_are_bad_json() -> None:
    depth = 100_000
    body = b'{"instances": [[1]], "x": ' + b'{"a":' * depth + b"1" + b"}" * depth + b"}"
    refused(extract(body), 400, "bad_json")


def test_brackets_inside_strings_count_against_the_guard() -> None:
    # Conservative: the guard cannot tell a "[" in a string from an array.
    body = {"instances": [[1]], "note": "[" * 20}
    refused(extract(body, max_rows=10), 413, "too_many_rows")


@pytest.mark.parametrize(
    ("row", "kind"),
    [(1, "a number"), ({"a": 1}, "an object"), ("1,2", "a string"), (None, "null")],
)
def test_a_row_that_is_not_an_array(row: Any, kind: str) -> None:
    error = refused(extract({"instances": [[1], row]}), 422, "bad_row")
    assert error.message == f"instances[1] is {kind}, not an array"


def test_a_first_row_that_is_not_an_array() -> None:
    refused(extract({"instances": [{"x": 1}, [1]]}), 422, "bad_row")
    refused(extract({"instances": [7]}, features=1), 422, "bad_row")


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("1.5", "a string"),
        (True, "a boolean"),
        (False, "a boolean"),
        (None, "null"),
        ([1], "an array"),
        ({"v": 1}, "an object"),
    ],
)
def test_non_numeric_values(value: Any, kind: str) -> None:
    body = {"instances": [[1, 2], [3, 4], [5, 6], [7, value]]}
    error = refused(extract(body), 422, "non_numeric_value")
    assert error.message == f"instances[3][1] is {kind}, not a number"


def test_ragged_rows() -> None:
    error = refused(extract({"instances": [[1, 2], [3, 4], [5]]}), 422, "ragged_instances")
    assert error.message == "instances[2] has length 1; expected 2"
    refused(extract({"instances": [[1], [2, 3]]}), 422, "ragged_instances")


def test_row_length_must_match_the_model() -> None:
    error = refused(extract({"instances": [[1, 2, 3]]}, features=4), 422, "ragged_instances")
    assert error.message == "instances[0] has length 3; expected 4"


@pytest.mark.parametrize(
    ("instances", "features"),
    [([[]], None), ([[]], 0), ([[], []], None), ([[1], []], None), ([[]], 3)],
)
def test_empty_rows_are_never_accepted(instances: list[Any], features: int | None) -> None:
    refused(extract({"instances": instances}, features=features), 422, "ragged_instances")


def test_too_many_values() -> None:
    width = http.MAX_FEATURE_VALUES // 10 + 1
    body = {"instances": [[0] * width] * 10}
    error = refused(extract(body), 413, "too_many_values")
    assert str(http.MAX_FEATURE_VALUES) in error.message
    # The model's width counts, not only what was sent.
    refused(
        extract({"instances": [[1]] * 2}, features=http.MAX_FEATURE_VALUES), 413, "too_many_values"
    )


# --- the request kind -----------------------------------------------------------------------


def test_is_features_request() -> None:
    assert http.is_features_request(request({"instances": [[1, 2]]}))
    assert http.is_features_request(
        request(b'{"instances": [[1]]}', content_type="Application/JSON; charset=utf-8")
    )
    assert not http.is_features_request(request(b""))  # the image path: empty_body
    # JSON that names no instances keeps its image-path answer (a nesting bomb: bad_json).
    assert not http.is_features_request(request(b"[" * 100_000))
    assert not http.is_features_request(request({"rows": [[1]]}))
    assert not http.is_features_request(request({"image_base64": "iVBORw0KGgo="}))
    assert not http.is_features_request(request({"instances": [[1]], "image_base64": "x"}))
    assert not http.is_features_request(request(b"\x89PNG\r\n", content_type="image/png"))
    assert not http.is_features_request(request({"instances": [[1]]}, content_type="text/plain"))


def test_image_json_still_goes_to_extract_image() -> None:
    image = request({"image_base64": "aGVsbG8="})
    assert not http.is_features_request(image)
    payload = http.extract_image(image)
    assert isinstance(payload, http.ImagePayload) and payload.data == b"hello"


# --- properties -----------------------------------------------------------------------------

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**300, max_value=10**400)
    | st.floats()  # NaN and +-inf included: json.dumps writes them as NaN / Infinity
    | st.text(max_size=5)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=5), children, max_size=5)
    ),
    max_leaves=30,
)
NUMBERS = st.integers(min_value=-(10**20), max_value=10**20) | st.floats()
# Near-valid rows, so the success path is exercised and not only the refusals.
ROW_LISTS = st.integers(min_value=0, max_value=4).flatmap(
    lambda width: st.lists(
        st.lists(NUMBERS, min_size=width, max_size=width)
        | st.lists(NUMBERS | JSON_SCALARS, max_size=5),
        max_size=6,
    )
)
FEATURES = st.none() | st.integers(min_value=-1, max_value=5)
MAX_ROWS = st.integers(min_value=0, max_value=8) | st.just(10**9)


def check(result: FeaturesPayload | HttpError, features: int | None, max_rows: int) -> None:
    if isinstance(result, HttpError):
        assert 400 <= result.status < 500, result
        assert result.code and result.message
        return
    assert isinstance(result, FeaturesPayload)
    assert 0 < len(result.rows) <= min(max_rows, http.MAX_FEATURE_ROWS)
    width = len(result.rows[0])
    assert width > 0
    if features is not None:
        assert width == features
    for row in result.rows:
        assert len(row) == width
        assert all(type(v) is float and math.isfinite(v) for v in row)


@SETTINGS
@given(
    instances=JSON_VALUES | ROW_LISTS,
    features=FEATURES,
    max_rows=MAX_ROWS,
    extra=st.dictionaries(st.text(max_size=5), JSON_VALUES, max_size=2),
)
def test_any_json_under_instances_is_a_payload_or_a_4xx(
    instances: Any, features: int | None, max_rows: int, extra: dict[str, Any]
) -> None:
    body = json.dumps({**extra, "instances": instances}).encode()
    result = extract(body, features=features, max_rows=max_rows)
    check(result, features, max_rows)


@SETTINGS
@given(doc=JSON_VALUES, features=FEATURES, max_rows=MAX_ROWS)
def test_any_json_document_is_a_payload_or_a_4xx(
    doc: Any, features: int | None, max_rows: int
) -> None:
    check(
        extract(json.dumps(doc).encode(), features=features, max_rows=max_rows), features, max_rows
    )


@SETTINGS
@given(
    body=st.binary(max_size=300)
    | st.builds(lambda tail: b'{"instances": [[' + tail, st.binary(max_size=100)),
    features=FEATURES,
    max_rows=MAX_ROWS,
    query=st.dictionaries(st.sampled_from(["top_k", "x"]), st.text(max_size=4), max_size=2),
)
def test_arbitrary_bytes_never_raise(
    body: bytes, features: int | None, max_rows: int, query: dict[str, str]
) -> None:
    result = extract(body, features=features, max_rows=max_rows, query=query)
    check(result, features, max_rows)
    # is_features_request is total too.
    assert isinstance(http.is_features_request(request(body)), bool)


FINITE = st.integers(min_value=-(10**30), max_value=10**30) | st.floats(
    allow_nan=False, allow_infinity=False
)


@SETTINGS
@given(
    data=st.integers(min_value=1, max_value=6).flatmap(
        lambda width: st.lists(
            st.lists(FINITE, min_size=width, max_size=width), min_size=1, max_size=8
        )
    ),
    tell_width=st.booleans(),
)
def test_valid_rows_are_accepted_as_floats(data: list[list[int | float]], tell_width: bool) -> None:
    features = len(data[0]) if tell_width else None
    rows = rows_of(extract({"instances": data}, features=features, max_rows=len(data)))
    assert rows == [[float(v) for v in row] for row in data]
    check(FeaturesPayload(rows=rows), features, len(data))
