"""STAMP.json: the typed stamp, its hand-written validator and its JSON form.

The JSON Schema in ``stamp.schema.json`` is the published contract; the pipeline and the
tests validate against it with jsonschema. The Lambda runtime has no jsonschema, so
``schema_errors()`` re-implements exactly the same rules with the constants below (a test
checks that the schema file uses these constants and that both validators agree).

``parse_stamp()`` adds rules JSON Schema cannot say (unique manifest paths, model.file
listed in the manifest, a real calendar date) and returns either a Stamp or a StampError,
never raises, so the cold-start path can turn any bad stamp into a Verdict.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
KNOWN_SCHEMA_VERSIONS = frozenset({SCHEMA_VERSION})
SCHEMA_FILE = Path(__file__).with_name("stamp.schema.json")

# Every constant below appears verbatim in stamp.schema.json.
TEXT_MAX_LENGTH = 4096
CONTROL_CHAR_PATTERN = r"[\u0000-\u001f\u007f]"
RELEASE_ID_PATTERN = r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{7,40}$|^[A-Za-z0-9._-]{1,64}$"
RELEASE_ID_MAX_LENGTH = 64
RELEASE_ID_FORBIDDEN = (".", "..")
CREATED_AT_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?Z$"
GIT_COMMIT_PATTERN = r"^[0-9a-f]{7,40}$"
ABI_TAG_PATTERN = r"^cp[0-9]{2,3}$"
PYTHON_VERSION_PATTERN = r"^[0-9]+\.[0-9]+$"
PLATFORM_OS = "linux"
MACHINES = ("x86_64", "aarch64")
MANYLINUX_PATTERN = r"^manylinux[0-9a-z_]+$"
# The runtime itself imports these three for every model; everything else lib/ holds (torch,
# onnxruntime, scikit-learn, their dependencies) is recorded too, by canonical name.
REQUIRED_PACKAGES = ("joblib", "pillow", "numpy")
PACKAGE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
VERSION_MAX_LENGTH = 128
MODEL_FORMAT = "joblib"
MODEL_FILE_PATTERN = r"^model/"
SHA256_PATTERN = r"^[0-9a-f]{64}$"
MANIFEST_PATH_PATTERN = r"^(lib|model)(/[^/]+)+$"
DOT_SEGMENT_PATTERN = r"(^|/)\.{1,2}(/|$)"

TOP_LEVEL_FIELDS = (
    "schema_version",
    "release_id",
    "created_at",
    "git_commit",
    "python",
    "platform",
    "packages",
    "model",
    "manifest",
)
PYTHON_FIELDS = ("abi_tag", "version")
PLATFORM_FIELDS = ("os", "machine", "manylinux")
MODEL_FIELDS = ("format", "framework", "name", "file", "metadata")
MANIFEST_FIELDS = ("path", "size", "sha256")

# jsonschema applies "pattern" with re.search; so do we, with the very same strings.
_CONTROL = re.compile(CONTROL_CHAR_PATTERN)
_RELEASE_ID = re.compile(RELEASE_ID_PATTERN)
_CREATED_AT = re.compile(CREATED_AT_PATTERN)
_GIT_COMMIT = re.compile(GIT_COMMIT_PATTERN)
_ABI_TAG = re.compile(ABI_TAG_PATTERN)
_PYTHON_VERSION = re.compile(PYTHON_VERSION_PATTERN)
_MANYLINUX = re.compile(MANYLINUX_PATTERN)
_PACKAGE_NAME = re.compile(PACKAGE_NAME_PATTERN)
_MODEL_FILE = re.compile(MODEL_FILE_PATTERN)
_SHA256 = re.compile(SHA256_PATTERN)
_MANIFEST_PATH = re.compile(MANIFEST_PATH_PATTERN)
_DOT_SEGMENT = re.compile(DOT_SEGMENT_PATTERN)


class StampErrorKind(StrEnum):
    """Why a STAMP.json was not accepted."""

    INVALID_JSON = "invalid_json"  # not JSON at all (e.g. truncated)
    INVALID = "invalid"  # JSON, but not a valid stamp of a known version (e.g. partial)
    SCHEMA_UNKNOWN = "schema_unknown"  # schema_version is an integer this code does not know


@dataclass(frozen=True)
class StampError:
    """A stamp that could not be parsed; ``errors`` lists every rule it broke."""

    kind: StampErrorKind
    message: str
    errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class PythonInfo:
    """Interpreter lib/ was built for."""

    abi_tag: str  # e.g. "cp311"
    version: str  # e.g. "3.11"


@dataclass(frozen=True)
class PlatformInfo:
    """Platform lib/ was built for."""

    machine: str  # "x86_64" or "aarch64"
    manylinux: str  # e.g. "manylinux_2_28_x86_64"
    os: str = PLATFORM_OS


@dataclass(frozen=True)
class Packages:
    """Versions of the distributions in lib/: the three every release needs, then the rest.

    ``extra`` holds every other distribution lib/ installs (torch, onnxruntime, their
    dependencies), so the stamp records exactly what lib/ holds and nothing it lacks.
    """

    joblib: str
    pillow: str
    numpy: str
    extra: Mapping[str, str] = field(default_factory=dict, hash=False)

    def as_dict(self) -> dict[str, str]:
        """All versions, the required ones and the extra ones, by package name."""
        out = {name: str(getattr(self, name)) for name in REQUIRED_PACKAGES}
        out.update(self.extra)
        return out

    def get(self, name: str) -> str | None:
        """The version of ``name`` in lib/, or None when lib/ does not hold it."""
        return self.as_dict().get(name)


@dataclass(frozen=True)
class ModelInfo:
    """The model in model/ and how to load it."""

    framework: str  # e.g. "torch" or "sklearn"
    name: str
    file: str  # relative to the release dir, e.g. "model/model.joblib"
    metadata: Mapping[str, Any] = field(default_factory=dict, hash=False)
    format: str = MODEL_FORMAT


@dataclass(frozen=True, order=True)
class ManifestEntry:
    """One file of a release: path relative to the release dir, size and sha256 (hex)."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Stamp:
    """The parsed STAMP.json of a release."""

    schema_version: int
    release_id: str
    created_at: str
    git_commit: str
    python: PythonInfo
    platform: PlatformInfo
    packages: Packages
    model: ModelInfo
    manifest: tuple[ManifestEntry, ...]

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form (plain dicts and lists)."""
        return {
            "schema_version": self.schema_version,
            "release_id": self.release_id,
            "created_at": self.created_at,
            "git_commit": self.git_commit,
            "python": {"abi_tag": self.python.abi_tag, "version": self.python.version},
            "platform": {
                "os": self.platform.os,
                "machine": self.platform.machine,
                "manylinux": self.platform.manylinux,
            },
            "packages": self.packages.as_dict(),
            "model": {
                "format": self.model.format,
                "framework": self.model.framework,
                "name": self.model.name,
                "file": self.model.file,
                "metadata": copy.deepcopy(dict(self.model.metadata)),
            },
            "manifest": [
                {"path": e.path, "size": e.size, "sha256": e.sha256} for e in self.manifest
            ],
        }

    def to_json(self) -> str:
        """Canonical JSON text (sorted keys, two-space indent, final newline)."""
        return (
            json.dumps(
                self.to_dict(), indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False
            )
            + "\n"
        )

    def to_bytes(self) -> bytes:
        """``to_json()`` encoded as UTF-8: the exact bytes written to STAMP.json."""
        return self.to_json().encode("utf-8")

    def manifest_key(self) -> tuple[ManifestEntry, ...]:
        """The manifest in path order, for comparing the content of two releases."""
        return tuple(sorted(self.manifest))


@dataclass(frozen=True)
class StampFields:
    """What the pipeline supplies for a new stamp; the writer adds id, time and manifest.

    ``python`` and ``platform`` describe the Lambda runtime lib/ was built for, not the
    machine running the pipeline, so they have no default.
    """

    git_commit: str
    python: PythonInfo
    platform: PlatformInfo
    packages: Packages
    model: ModelInfo
    created_at: str | None = None  # default: now, UTC


# --------------------------------------------------------------------------------------
# Hand-written validator: the rules of stamp.schema.json, one function per $defs entry.


def _is_integer(value: object) -> bool:
    # JSON Schema counts 1.0 as an integer and true as not one; Python disagrees on both.
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def _text(
    value: object,
    where: str,
    errors: list[str],
    *,
    max_length: int = TEXT_MAX_LENGTH,
    patterns: Iterable[re.Pattern[str]] = (),
) -> bool:
    if not isinstance(value, str):
        errors.append(f"{where}: must be a string")
        return False
    ok = True
    if len(value) < 1:
        errors.append(f"{where}: must not be empty")
        ok = False
    if len(value) > min(max_length, TEXT_MAX_LENGTH):
        errors.append(f"{where}: longer than {min(max_length, TEXT_MAX_LENGTH)} characters")
        ok = False
    if _CONTROL.search(value):
        errors.append(f"{where}: contains a control character")
        ok = False
    for pattern in patterns:
        if not pattern.search(value):
            errors.append(f"{where}: {value!r} does not match {pattern.pattern!r}")
            ok = False
    return ok


def _const(value: object, expected: str, where: str, errors: list[str]) -> None:
    if not (isinstance(value, str) and value == expected):
        errors.append(f"{where}: must be {expected!r}")


def _object(
    value: object,
    where: str,
    errors: list[str],
    required: Iterable[str],
    allowed: Iterable[str] | None,
) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        errors.append(f"{where}: must be an object")
        return None
    for name in required:
        if name not in value:
            errors.append(f"{where}: missing {name!r}")
    if allowed is not None:
        known = set(allowed)
        for name in value:
            if name not in known:
                errors.append(f"{where}: unexpected field {name!r}")
    return value


def _release_id(value: object, where: str, errors: list[str]) -> None:
    _text(value, where, errors, max_length=RELEASE_ID_MAX_LENGTH, patterns=(_RELEASE_ID,))
    if isinstance(value, str) and value in RELEASE_ID_FORBIDDEN:
        errors.append(f"{where}: {value!r} is not allowed")


def _manifest_path(value: object, where: str, errors: list[str]) -> None:
    _text(value, where, errors, patterns=(_MANIFEST_PATH,))
    if isinstance(value, str) and _DOT_SEGMENT.search(value):
        errors.append(f"{where}: {value!r} has a '.' or '..' segment")


def _sha256(value: object, where: str, errors: list[str]) -> None:
    if not isinstance(value, str):
        errors.append(f"{where}: must be a string")
    elif len(value) != 64 or not _SHA256.search(value):
        errors.append(f"{where}: must be 64 lowercase hex digits")


def schema_errors(obj: object) -> list[str]:
    """Every way ``obj`` breaks stamp.schema.json; empty means jsonschema would accept it."""
    errors: list[str] = []
    top = _object(obj, "stamp", errors, TOP_LEVEL_FIELDS, TOP_LEVEL_FIELDS)
    if top is None:
        return errors

    if "schema_version" in top:
        version = top["schema_version"]
        if not _is_integer(version):
            errors.append("schema_version: must be an integer")
        elif version != SCHEMA_VERSION:
            errors.append(f"schema_version: must be {SCHEMA_VERSION}")
    if "release_id" in top:
        _release_id(top["release_id"], "release_id", errors)
    if "created_at" in top:
        _text(top["created_at"], "created_at", errors, patterns=(_CREATED_AT,))
    if "git_commit" in top:
        _text(top["git_commit"], "git_commit", errors, patterns=(_GIT_COMMIT,))

    if "python" in top:
        py = _object(top["python"], "python", errors, PYTHON_FIELDS, PYTHON_FIELDS)
        if py is not None:
            if "abi_tag" in py:
                _text(py["abi_tag"], "python.abi_tag", errors, patterns=(_ABI_TAG,))
            if "version" in py:
                _text(py["version"], "python.version", errors, patterns=(_PYTHON_VERSION,))

    if "platform" in top:
        plat = _object(top["platform"], "platform", errors, PLATFORM_FIELDS, PLATFORM_FIELDS)
        if plat is not None:
            if "os" in plat:
                _const(plat["os"], PLATFORM_OS, "platform.os", errors)
            if "machine" in plat and not (
                isinstance(plat["machine"], str) and plat["machine"] in MACHINES
            ):
                errors.append(f"platform.machine: must be one of {list(MACHINES)}")
            if "manylinux" in plat:
                _text(plat["manylinux"], "platform.manylinux", errors, patterns=(_MANYLINUX,))

    if "packages" in top:
        pkgs = _object(top["packages"], "packages", errors, REQUIRED_PACKAGES, None)
        if pkgs is not None:
            for name, version in pkgs.items():
                _text(name, f"packages name {name!r}", errors, patterns=(_PACKAGE_NAME,))
                _text(version, f"packages.{name}", errors, max_length=VERSION_MAX_LENGTH)

    if "model" in top:
        model = _object(top["model"], "model", errors, MODEL_FIELDS, MODEL_FIELDS)
        if model is not None:
            if "format" in model:
                _const(model["format"], MODEL_FORMAT, "model.format", errors)
            if "framework" in model:
                _text(model["framework"], "model.framework", errors)
            if "name" in model:
                _text(model["name"], "model.name", errors)
            if "file" in model:
                _manifest_path(model["file"], "model.file", errors)
                if isinstance(model["file"], str) and not _MODEL_FILE.search(model["file"]):
                    errors.append("model.file: must be under model/")
            if "metadata" in model and not isinstance(model["metadata"], dict):
                errors.append("model.metadata: must be an object")

    if "manifest" in top:
        manifest = top["manifest"]
        if not isinstance(manifest, list):
            errors.append("manifest: must be an array")
        else:
            if len(manifest) < 1:
                errors.append("manifest: must not be empty")
            for i, item in enumerate(manifest):
                where = f"manifest[{i}]"
                entry = _object(item, where, errors, MANIFEST_FIELDS, MANIFEST_FIELDS)
                if entry is None:
                    continue
                if "path" in entry:
                    _manifest_path(entry["path"], f"{where}.path", errors)
                if "size" in entry and not (_is_integer(entry["size"]) and entry["size"] >= 0):
                    errors.append(f"{where}.size: must be an integer >= 0")
                if "sha256" in entry:
                    _sha256(entry["sha256"], f"{where}.sha256", errors)
    return errors


def _semantic_errors(top: dict[str, Any]) -> list[str]:
    """Rules beyond JSON Schema; only called on a schema-valid stamp."""
    errors: list[str] = []
    paths: set[str] = set()
    for entry in top["manifest"]:
        path = entry["path"]
        if path in paths:
            errors.append(f"manifest: duplicate path {path!r}")
        paths.add(path)
    # A path cannot be both a file and the directory of another file.
    for path in paths:
        parent, _, _ = path.rpartition("/")
        while parent:
            if parent in paths:
                errors.append(f"manifest: {parent!r} is a file and a directory")
                break
            parent, _, _ = parent.rpartition("/")
    if top["model"]["file"] not in paths:
        errors.append(f"model.file: {top['model']['file']!r} is not in the manifest")
    try:
        datetime.strptime(top["created_at"][:19], "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        errors.append(f"created_at: {top['created_at']!r} is not a real date and time")
    return errors


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; Python's json module would accept them silently.
    raise ValueError(f"{name} is not valid JSON")


def parse_stamp(data: bytes | str | Mapping[str, Any]) -> Stamp | StampError:
    """Parse STAMP.json bytes/text or an already decoded dict; never raises."""
    obj: object
    if isinstance(data, bytes | str):
        try:
            obj = json.loads(data, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:
            return StampError(StampErrorKind.INVALID_JSON, f"STAMP.json is not JSON: {exc}")
    else:
        obj = dict(data) if isinstance(data, Mapping) else data

    if not isinstance(obj, dict):
        return StampError(StampErrorKind.INVALID, "STAMP.json is not a JSON object")
    version = obj.get("schema_version")
    if not _is_integer(version):
        return StampError(
            StampErrorKind.INVALID, "STAMP.json has no integer schema_version (partial?)"
        )
    if version not in KNOWN_SCHEMA_VERSIONS:
        return StampError(
            StampErrorKind.SCHEMA_UNKNOWN,
            f"schema_version {version} is not one of {sorted(KNOWN_SCHEMA_VERSIONS)}",
        )
    errors = schema_errors(obj)
    if not errors:
        errors = _semantic_errors(obj)
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return StampError(
            StampErrorKind.INVALID, f"invalid STAMP.json: {errors[0]}{more}", tuple(errors)
        )
    return _build(obj)


def _build(top: dict[str, Any]) -> Stamp:
    py, plat, pkgs, model = top["python"], top["platform"], top["packages"], top["model"]
    return Stamp(
        schema_version=int(top["schema_version"]),
        release_id=top["release_id"],
        created_at=top["created_at"],
        git_commit=top["git_commit"],
        python=PythonInfo(abi_tag=py["abi_tag"], version=py["version"]),
        platform=PlatformInfo(os=plat["os"], machine=plat["machine"], manylinux=plat["manylinux"]),
        packages=Packages(
            **{name: pkgs[name] for name in REQUIRED_PACKAGES},
            extra={k: v for k, v in pkgs.items() if k not in REQUIRED_PACKAGES},
        ),
        model=ModelInfo(
            format=model["format"],
            framework=model["framework"],
            name=model["name"],
            file=model["file"],
            metadata=copy.deepcopy(model["metadata"]),
        ),
        manifest=tuple(
            ManifestEntry(path=e["path"], size=int(e["size"]), sha256=e["sha256"])
            for e in top["manifest"]
        ),
    )


def utc_now() -> str:
    """The current UTC time in the stamp's created_at format (whole seconds)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_release_id(git_commit: str, when: datetime | None = None) -> str:
    """The normal release id, ``<UTC time>Z-<first 7 hex of the commit>``."""
    moment = (when or datetime.now(UTC)).astimezone(UTC)
    return f"{moment.strftime('%Y%m%dT%H%M%SZ')}-{git_commit[:7].lower()}"


def build_stamp(release_id: str, manifest: Iterable[ManifestEntry], fields: StampFields) -> Stamp:
    """A validated Stamp for ``manifest`` (sorted by path); raises StampInvalid if invalid."""
    from efs_layout.errors import StampInvalid

    entries = tuple(sorted(manifest))
    draft = Stamp(
        schema_version=SCHEMA_VERSION,
        release_id=release_id,
        created_at=fields.created_at or utc_now(),
        git_commit=fields.git_commit,
        python=fields.python,
        platform=fields.platform,
        packages=fields.packages,
        model=fields.model,
        manifest=entries,
    )
    # Round-trip through the validator so that a hand-built stamp obeys the schema too.
    parsed = parse_stamp(draft.to_dict())
    if isinstance(parsed, StampError):
        raise StampInvalid(parsed)
    return parsed


def load_schema() -> dict[str, Any]:
    """The committed JSON Schema (stamp.schema.json) as a dict."""
    schema: dict[str, Any] = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    return schema


def jsonschema_errors(obj: object) -> list[str]:
    """Validate with the real jsonschema library (pipeline and tests only, never Lambda)."""
    import jsonschema  # deferred: not installed in the Lambda runtime

    validator = jsonschema.Draft202012Validator(load_schema())
    return [error.message for error in validator.iter_errors(obj)]
