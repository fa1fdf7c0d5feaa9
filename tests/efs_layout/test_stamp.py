"""STAMP.json: the committed schema, the hand-written validator, and that both agree."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from efs_layout import stamp as stamp_module
from efs_layout.errors import StampInvalid
from efs_layout.stamp import (
    ManifestEntry,
    Stamp,
    StampError,
    StampErrorKind,
    StampFields,
    build_stamp,
    jsonschema_errors,
    load_schema,
    new_release_id,
    parse_stamp,
    schema_errors,
)

SHA_A = "a" * 64
SHA_B = "0123456789abcdef" * 4


def good_stamp() -> dict[str, Any]:
    """A valid stamp as plain JSON data."""
    return {
        "schema_version": 1,
        "release_id": "20240501T120000Z-3f2a9c1",
        "created_at": "2024-05-01T12:00:00Z",
        "git_commit": "3f2a9c1",
        "python": {"abi_tag": "cp311", "version": "3.11"},
        "platform": {"os": "linux", "machine": "x86_64", "manylinux": "manylinux_2_28_x86_64"},
        "packages": {
            "torch": "2.3.1+cpu",
            "joblib": "1.4.2",
            "pillow": "10.3.0",
            "numpy": "1.26.4",
            "scikit-learn": "1.5.0",
        },
        "model": {
            "format": "joblib",
            "framework": "torch",
            "name": "tiny-cnn",
            "file": "model/model.joblib",
            "metadata": {"labels": ["cat", "dog"], "input_size": [224, 224], "accuracy": 0.9},
        },
        "manifest": [
            {"path": "lib/torch/__init__.py", "size": 10, "sha256": SHA_A},
            {"path": "model/model.joblib", "size": 0, "sha256": SHA_B},
        ],
    }


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(load_schema())


def _set(doc: dict[str, Any], path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    target: Any = out
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return out


def _delete(doc: dict[str, Any], path: tuple[str | int, ...]) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    target: Any = out
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return out


def _paths(node: Any, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    found: list[tuple[str | int, ...]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            found.append((*prefix, key))
            found.extend(_paths(value, (*prefix, key)))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found.append((*prefix, i))
            found.extend(_paths(value, (*prefix, i)))
    return found


BAD_STAMPS: list[tuple[str, Callable[[dict[str, Any]], dict[str, Any]]]] = [
    ("missing created_at", lambda d: _delete(d, ("created_at",))),
    ("missing manifest", lambda d: _delete(d, ("manifest",))),
    ("extra top-level field", lambda d: _set(d, ("extra",), 1)),
    ("schema_version 2", lambda d: _set(d, ("schema_version",), 2)),
    ("schema_version string", lambda d: _set(d, ("schema_version",), "1")),
    ("schema_version true", lambda d: _set(d, ("schema_version",), True)),
    ("release_id dot-dot", lambda d: _set(d, ("release_id",), "..")),
    ("release_id dot", lambda d: _set(d, ("release_id",), ".")),
    ("release_id slash", lambda d: _set(d, ("release_id",), "a/b")),
    ("release_id too long", lambda d: _set(d, ("release_id",), "x" * 65)),
    ("release_id trailing newline", lambda d: _set(d, ("release_id",), "abc\n")),
    ("release_id empty", lambda d: _set(d, ("release_id",), "")),
    ("created_at local time", lambda d: _set(d, ("created_at",), "2024-05-01T12:00:00")),
    ("created_at offset", lambda d: _set(d, ("created_at",), "2024-05-01T12:00:00+02:00")),
    ("git_commit upper", lambda d: _set(d, ("git_commit",), "3F2A9C1")),
    ("git_commit short", lambda d: _set(d, ("git_commit",), "3f2a9c")),
    ("git_commit newline", lambda d: _set(d, ("git_commit",), "3f2a9c1\n")),
    ("abi tag", lambda d: _set(d, ("python", "abi_tag"), "py3")),
    ("python version", lambda d: _set(d, ("python", "version"), "3")),
    ("python extra", lambda d: _set(d, ("python", "impl"), "cpython")),
    ("machine arm64", lambda d: _set(d, ("platform", "machine"), "arm64")),
    ("os darwin", lambda d: _set(d, ("platform", "os"), "darwin")),
    ("manylinux", lambda d: _set(d, ("platform", "manylinux"), "macosx_11_0")),
    ("missing joblib", lambda d: _delete(d, ("packages", "joblib"))),
    ("empty version", lambda d: _set(d, ("packages", "numpy"), "")),
    ("version not string", lambda d: _set(d, ("packages", "numpy"), 1.26)),
    ("bad package name", lambda d: _set(d, ("packages", "-x"), "1")),
    ("model format", lambda d: _set(d, ("model", "format"), "pickle")),
    ("model file in lib", lambda d: _set(d, ("model", "file"), "lib/model.joblib")),
    ("model metadata list", lambda d: _set(d, ("model", "metadata"), [])),
    ("model missing name", lambda d: _delete(d, ("model", "name"))),
    ("manifest empty", lambda d: _set(d, ("manifest",), [])),
    ("manifest not list", lambda d: _set(d, ("manifest",), {})),
    ("path dot-dot", lambda d: _set(d, ("manifest", 0, "path"), "lib/../../etc/passwd")),
    ("path absolute", lambda d: _set(d, ("manifest", 0, "path"), "/lib/x")),
    ("path dot", lambda d: _set(d, ("manifest", 0, "path"), "lib/./x")),
    ("path STAMP.json", lambda d: _set(d, ("manifest", 0, "path"), "STAMP.json")),
    ("path outside lib/model", lambda d: _set(d, ("manifest", 0, "path"), "etc/x")),
    ("path empty segment", lambda d: _set(d, ("manifest", 0, "path"), "lib//x")),
    ("path trailing slash", lambda d: _set(d, ("manifest", 0, "path"), "lib/x/")),
    ("path bare lib", lambda d: _set(d, ("manifest", 0, "path"), "lib")),
    ("size negative", lambda d: _set(d, ("manifest", 0, "size"), -1)),
    ("size fraction", lambda d: _set(d, ("manifest", 0, "size"), 1.5)),
    ("size bool", lambda d: _set(d, ("manifest", 0, "size"), True)),
    ("sha upper", lambda d: _set(d, ("manifest", 0, "sha256"), "A" * 64)),
    ("sha short", lambda d: _set(d, ("manifest", 0, "sha256"), "a" * 63)),
    ("sha newline", lambda d: _set(d, ("manifest", 0, "sha256"), "a" * 64 + "\n")),
    ("manifest extra field", lambda d: _set(d, ("manifest", 0, "mode"), 420)),
    ("not an object", lambda d: [d]),  # type: ignore[list-item,return-value]
]


def test_schema_file_is_a_valid_draft_2020_12_schema() -> None:
    schema = load_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_schema_uses_the_same_constants_as_the_hand_written_validator() -> None:
    schema = load_schema()
    defs, props = schema["$defs"], schema["properties"]
    assert props["schema_version"]["const"] == stamp_module.SCHEMA_VERSION
    assert tuple(schema["required"]) == stamp_module.TOP_LEVEL_FIELDS
    assert defs["text"]["maxLength"] == stamp_module.TEXT_MAX_LENGTH
    assert defs["text"]["not"]["pattern"] == stamp_module.CONTROL_CHAR_PATTERN
    assert defs["release_id"]["pattern"] == stamp_module.RELEASE_ID_PATTERN
    assert defs["release_id"]["maxLength"] == stamp_module.RELEASE_ID_MAX_LENGTH
    assert tuple(defs["release_id"]["not"]["enum"]) == stamp_module.RELEASE_ID_FORBIDDEN
    assert defs["version"]["maxLength"] == stamp_module.VERSION_MAX_LENGTH
    assert defs["sha256"]["pattern"] == stamp_module.SHA256_PATTERN
    assert defs["manifest_path"]["pattern"] == stamp_module.MANIFEST_PATH_PATTERN
    assert defs["manifest_path"]["not"]["pattern"] == stamp_module.DOT_SEGMENT_PATTERN
    assert props["created_at"]["pattern"] == stamp_module.CREATED_AT_PATTERN
    assert props["git_commit"]["pattern"] == stamp_module.GIT_COMMIT_PATTERN
    python, plat = props["python"], props["platform"]
    assert tuple(python["required"]) == stamp_module.PYTHON_FIELDS
    assert python["properties"]["abi_tag"]["pattern"] == stamp_module.ABI_TAG_PATTERN
    assert python["properties"]["version"]["pattern"] == stamp_module.PYTHON_VERSION_PATTERN
    assert tuple(plat["required"]) == stamp_module.PLATFORM_FIELDS
    assert plat["properties"]["os"]["const"] == stamp_module.PLATFORM_OS
    assert tuple(plat["properties"]["machine"]["enum"]) == stamp_module.MACHINES
    assert plat["properties"]["manylinux"]["pattern"] == stamp_module.MANYLINUX_PATTERN
    pkgs = props["packages"]
    assert tuple(pkgs["required"]) == stamp_module.REQUIRED_PACKAGES
    assert pkgs["propertyNames"]["pattern"] == stamp_module.PACKAGE_NAME_PATTERN
    model = props["model"]
    assert tuple(model["required"]) == stamp_module.MODEL_FIELDS
    assert model["properties"]["format"]["const"] == stamp_module.MODEL_FORMAT
    assert model["properties"]["file"]["pattern"] == stamp_module.MODEL_FILE_PATTERN
    item = props["manifest"]["items"]
    assert tuple(item["required"]) == stamp_module.MANIFEST_FIELDS


def test_good_stamp_is_accepted_by_both(validator: jsonschema.Draft202012Validator) -> None:
    doc = good_stamp()
    assert list(validator.iter_errors(doc)) == []
    assert schema_errors(doc) == []
    assert jsonschema_errors(doc) == []
    assert isinstance(parse_stamp(doc), Stamp)


@pytest.mark.parametrize(("case", "mutate"), BAD_STAMPS, ids=[c for c, _ in BAD_STAMPS])
def test_bad_stamp_is_rejected_by_both(
    validator: jsonschema.Draft202012Validator,
    case: str,
    mutate: Callable[[dict[str, Any]], dict[str, Any]],
) -> None:
    doc = mutate(good_stamp())
    assert not validator.is_valid(doc), case
    assert schema_errors(doc), case
    assert isinstance(parse_stamp(doc), StampError), case


def test_a_lib_without_torch_is_recorded_as_it_is() -> None:
    # An ONNX Runtime lib/ holds no torch: the stamp lists what lib/ holds, no placeholders.
    doc = good_stamp()
    del doc["packages"]["torch"]
    doc["packages"]["onnxruntime"] = "1.32.0"
    parsed = parse_stamp(doc)
    assert isinstance(parsed, Stamp)
    assert parsed.packages.get("torch") is None
    assert parsed.packages.get("onnxruntime") == "1.32.0"
    assert jsonschema_errors(doc) == []


def test_parse_and_to_json_round_trip() -> None:
    parsed = parse_stamp(json.dumps(good_stamp()).encode())
    assert isinstance(parsed, Stamp)
    assert parsed.packages.extra == {"torch": "2.3.1+cpu", "scikit-learn": "1.5.0"}
    assert parsed.model.metadata["labels"] == ["cat", "dog"]
    again = parse_stamp(parsed.to_json())
    assert again == parsed
    assert json.loads(parsed.to_json()) == good_stamp()
    assert parsed.to_bytes() == parsed.to_json().encode()


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b'{"schema_version": 1, "release_id": "x"', StampErrorKind.INVALID_JSON),
        (b"", StampErrorKind.INVALID_JSON),
        (b"\xff\xfe", StampErrorKind.INVALID_JSON),
        (b'{"schema_version": NaN}', StampErrorKind.INVALID_JSON),
        (b"[1]", StampErrorKind.INVALID),
        (b'{"release_id": "x"}', StampErrorKind.INVALID),
        (b'{"schema_version": "1"}', StampErrorKind.INVALID),
        (b'{"schema_version": 1}', StampErrorKind.INVALID),
        (b'{"schema_version": 2}', StampErrorKind.SCHEMA_UNKNOWN),
        (b'{"schema_version": 0, "anything": "else"}', StampErrorKind.SCHEMA_UNKNOWN),
    ],
)
def test_parse_errors_are_typed(data: bytes, kind: StampErrorKind) -> None:
    result = parse_stamp(data)
    assert isinstance(result, StampError)
    assert result.kind is kind
    assert result.message


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: _set(d, ("manifest", 1), dict(d["manifest"][0])),
        lambda d: _set(d, ("model", "file"), "model/other.joblib"),
        lambda d: _set(d, ("created_at",), "2024-13-45T12:00:00Z"),
        lambda d: _set(d, ("manifest", 0, "path"), "model/model.joblib/inner"),
    ],
    ids=["duplicate path", "model file not in manifest", "impossible date", "file as dir"],
)
def test_rules_beyond_the_schema(mutate: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """Rules JSON Schema cannot express: the schema accepts these, parse_stamp does not."""
    doc = mutate(good_stamp())
    assert jsonschema_errors(doc) == []
    result = parse_stamp(doc)
    assert isinstance(result, StampError)
    assert result.kind is StampErrorKind.INVALID


def test_integral_float_counts_as_integer_like_json_schema() -> None:
    doc = _set(good_stamp(), ("manifest", 0, "size"), 10.0)
    assert jsonschema_errors(doc) == [] and schema_errors(doc) == []
    parsed = parse_stamp(doc)
    assert isinstance(parsed, Stamp)
    assert isinstance(parsed.manifest[0].size, int)


def test_build_stamp_sorts_manifest_and_validates(fields: StampFields) -> None:
    entries = [
        ManifestEntry("model/model.joblib", 3, SHA_B),
        ManifestEntry("lib/a.py", 1, SHA_A),
    ]
    stamp = build_stamp("r1", entries, fields)
    assert [e.path for e in stamp.manifest] == ["lib/a.py", "model/model.joblib"]
    assert jsonschema_errors(stamp.to_dict()) == []
    with pytest.raises(StampInvalid):
        build_stamp("r1", [ManifestEntry("lib/a.py", 1, SHA_A)], fields)  # model not listed
    with pytest.raises(StampInvalid):
        build_stamp("../r1", entries, fields)


def test_new_release_id_has_the_normal_form() -> None:
    from datetime import UTC, datetime

    rid = new_release_id("3F2A9C1D0E", datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC))
    assert rid == "20240501T120000Z-3f2a9c1"
    assert schema_errors(_set(good_stamp(), ("release_id",), rid)) == []


# -- the hand-written validator agrees with jsonschema ----------------------------------

_VALIDATOR = jsonschema.Draft202012Validator(load_schema())
_ALL_PATHS = _paths(good_stamp())


def _variants(value: Any) -> list[Any]:
    """Values next to ``value`` on every boundary the schema draws."""
    common: list[Any] = [None, "x", [], {}]
    if isinstance(value, bool):
        return [*common, not value, int(value)]
    if isinstance(value, int):
        return [*common, float(value), value + 0.5, -1, 0, value + 1, True, False, str(value)]
    if isinstance(value, float):
        return [*common, int(value), value + 1, str(value)]
    if isinstance(value, str):
        edits = [
            value + "\n",
            "\n" + value,
            value + "\x00",
            value + "\x7f",
            value + " ",
            value[:-1],
            value[1:],
            value + "x",
            value + "/",
            value + "/.",
            value + "/..",
            value + "//x",
            "/" + value,
            "./" + value,
            "../" + value,
            value.upper(),
            value + "\u00e9",
            value * 2,
            value + "a" * 70,
            value + "a" * 130,
            value + "a" * 4100,
            "",
            ".",
            "..",
        ]
        return [*common, *edits, 1, [value]]
    if isinstance(value, list):
        return [*common, value + value[:1], value[:1]]
    return [*common, "x"]


def test_hand_validator_agrees_with_jsonschema_on_every_boundary() -> None:
    """Every field of a good stamp set to each of its near variants, deleted, or extended."""
    base = good_stamp()
    cases: list[Any] = []
    for path in _ALL_PATHS:
        original = _get(base, path)
        cases.extend(_set(base, path, variant) for variant in _variants(original))
        if isinstance(path[-1], str):
            cases.append(_delete(base, path))
        if isinstance(original, dict):
            cases.append(_set(base, (*path, "unexpected"), "1"))
    cases.append(_set(base, ("unexpected",), 1))
    disagreements = [doc for doc in cases if (schema_errors(doc) == []) != _VALIDATOR.is_valid(doc)]
    assert disagreements == []
    assert len(cases) > 500


_TRICKY_TEXT = st.text(
    alphabet=st.sampled_from(list("0123456789abcdefABTZ-._/:\n\x00\x7f émodelib")), max_size=70
)
_JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-3, max_value=2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([1.0, 0.0, -1.0, 2.0])
    | _TRICKY_TEXT
)
_JSON_VALUES = st.recursive(
    _JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["path", "size", "sha256", "x", "torch"]), inner, max_size=3
        )
    ),
    max_leaves=6,
)


@st.composite
def mutated_stamps(draw: st.DrawFn) -> Any:
    """A good stamp with one to three random edits (near variants or arbitrary JSON)."""
    doc: Any = good_stamp()
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        if not isinstance(doc, dict):
            break
        paths = [p for p in _ALL_PATHS if _exists(doc, p)]
        action = draw(st.sampled_from(["near", "set", "delete", "add"]))
        path = draw(st.sampled_from(paths))
        if action == "near":
            doc = _set(doc, path, draw(st.sampled_from(_variants(_get(doc, path)))))
        elif action == "set":
            doc = _set(doc, path, draw(_JSON_VALUES))
        elif action == "delete" and isinstance(path[-1], str):
            doc = _delete(doc, path)
        else:
            parent = path[:-1]
            holder = _get(doc, parent) if parent else doc
            if isinstance(holder, dict):
                key = draw(st.sampled_from(["extra", "torch", "numpy", "-bad", "size"]))
                doc = _set(doc, (*parent, key), draw(_JSON_VALUES))
    return doc


def _get(doc: Any, path: tuple[str | int, ...]) -> Any:
    for key in path:
        doc = doc[key]
    return doc


def _exists(doc: Any, path: tuple[str | int, ...]) -> bool:
    try:
        _get(doc, path)
    except (KeyError, IndexError, TypeError):
        return False
    return True


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=mutated_stamps())
def test_hand_validator_agrees_with_jsonschema_on_mutated_stamps(doc: Any) -> None:
    assert (schema_errors(doc) == []) == _VALIDATOR.is_valid(doc)


@settings(max_examples=200, deadline=None)
@given(doc=_JSON_VALUES)
def test_hand_validator_agrees_with_jsonschema_on_arbitrary_json(doc: Any) -> None:
    assert (schema_errors(doc) == []) == _VALIDATOR.is_valid(doc)
