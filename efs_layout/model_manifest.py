"""model.json: the manifest of a model directory, and of model/ inside a release.

The JSON Schema in ``model.schema.json`` is the contract; the pipeline validates a model
directory against it with jsonschema (ci/model_dir.py) before anything is built. Inside a
release the manifest is one of the files the stamp covers, so the inference function only
reads it here, with the standard library, after check_release() said ok: a manifest
changed on EFS is refused with the rest of the release.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MANIFEST_FILE = "model.json"
SCHEMA_FILE = Path(__file__).with_name("model.schema.json")
SCHEMA_VERSION = 1
FORMATS = ("joblib", "onnx", "torch")
# The lib/ requirement set each format needs when the manifest names none.
DEFAULT_LIB = {"joblib": "sklearn", "onnx": "onnx", "torch": "torch"}
DEFAULT_MAX_ROWS = 1000
# What any request may carry at most, whatever a manifest says (the schema's maximum).
MAX_ROWS_LIMIT = 10_000


class ManifestError(ValueError):
    """model.json is missing, not JSON, or not a manifest this code can serve."""


@dataclass(frozen=True)
class InputSpec:
    """What /predict accepts: ``image`` or ``features`` (rows of numbers)."""

    kind: str
    features: int | None = None
    names: tuple[str, ...] = ()
    max_rows: int = DEFAULT_MAX_ROWS
    example: tuple[tuple[float, ...], ...] = ()
    preprocessing: Mapping[str, Any] | None = None

    def public(self) -> dict[str, Any]:
        """What /health, /warmup and the page are told about the input."""
        if self.kind == "image":
            return {"kind": "image"}
        return {
            "kind": "features",
            "features": self.features,
            "names": list(self.names),
            "max_rows": self.max_rows,
            "example": [list(row) for row in self.example],
        }


@dataclass(frozen=True)
class ModelManifest:
    """A parsed model.json."""

    name: str
    format: str
    file: str
    input: InputSpec
    output_kind: str
    labels: tuple[str, ...] = ()
    lib: str = ""
    requirements: str | None = None
    code: str | None = None
    torch: Mapping[str, Any] = field(default_factory=dict)
    build: Mapping[str, Any] | None = None
    description: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)


def _text(obj: Mapping[str, Any], key: str, default: str | None = None) -> str:
    value = obj.get(key, default)
    if not isinstance(value, str) or not value:
        raise ManifestError(f"{key} must be a non-empty string")
    return value


def parse_manifest(obj: object) -> ModelManifest:
    """The manifest ``obj`` describes (a json.loads result); ManifestError if it cannot be.

    This checks what serving relies on; the schema's full rules are the pipeline's job.
    """
    if not isinstance(obj, dict):
        raise ManifestError("model.json must hold a JSON object")
    if obj.get("schema_version") != SCHEMA_VERSION:
        raise ManifestError(
            f"schema_version {obj.get('schema_version')!r} is not one this code reads "
            f"({SCHEMA_VERSION})"
        )
    fmt = _text(obj, "format")
    if fmt not in FORMATS:
        raise ManifestError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    raw_input = obj.get("input")
    raw_output = obj.get("output")
    if not isinstance(raw_input, dict) or not isinstance(raw_output, dict):
        raise ManifestError("input and output must be objects")
    kind = _text(raw_input, "kind")
    if kind == "features":
        features = raw_input.get("features")
        if isinstance(features, bool) or not isinstance(features, int) or features < 1:
            raise ManifestError("input.features must be a positive integer")
        example = raw_input.get("example") or []
        if not isinstance(example, list) or not all(isinstance(r, list) for r in example):
            raise ManifestError("input.example must be a list of rows")
        try:
            spec = InputSpec(
                kind="features",
                features=features,
                names=tuple(str(n) for n in raw_input.get("names") or ()),
                max_rows=min(int(raw_input.get("max_rows", DEFAULT_MAX_ROWS)), MAX_ROWS_LIMIT),
                example=tuple(tuple(float(v) for v in row) for row in example),
            )
        except (TypeError, ValueError) as exc:
            raise ManifestError(f"input.max_rows or input.example is not numeric: {exc}") from exc
    elif kind == "image":
        preprocessing = raw_input.get("preprocessing")
        if preprocessing is not None and not isinstance(preprocessing, dict):
            raise ManifestError("input.preprocessing must be an object")
        spec = InputSpec(kind="image", preprocessing=preprocessing)
    else:
        raise ManifestError(f"input.kind {kind!r} is not image or features")
    output_kind = _text(raw_output, "kind")
    if output_kind not in ("probabilities", "logits", "values"):
        raise ManifestError(f"output.kind {output_kind!r} is not probabilities, logits or values")
    labels: Sequence[Any] = raw_output.get("labels") or ()
    torch = obj.get("torch") or {}
    if fmt == "torch" and not (isinstance(torch, dict) and "module" in torch and "class" in torch):
        raise ManifestError("format torch needs torch.module and torch.class")
    return ModelManifest(
        name=_text(obj, "name"),
        format=fmt,
        file=_text(obj, "file"),
        input=spec,
        output_kind=output_kind,
        labels=tuple(str(label) for label in labels),
        lib=str(obj.get("lib") or DEFAULT_LIB[fmt]),
        requirements=obj.get("requirements"),
        code=obj.get("code"),
        torch=dict(torch),
        build=obj.get("build"),
        description=str(obj.get("description", "")),
        raw=obj,
    )


def read_manifest(path: Path) -> ModelManifest:
    """Parse the model.json at ``path`` (a file, or a directory holding one)."""
    if path.is_dir():
        path = path / MANIFEST_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{path} is not UTF-8 text") from exc
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ManifestError(f"{path} is not valid JSON: {exc}") from exc
    return parse_manifest(obj)
