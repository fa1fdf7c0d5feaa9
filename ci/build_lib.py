"""Pipeline step 2, build-lib: the Lambda's Python dependencies as a ``lib/`` directory.

The inference Lambda puts ``lib/`` (shipped inside a release on EFS) first on ``sys.path``
after checking the release's stamp. This step builds that directory for the Lambda's
interpreter and machine, whatever machine the pipeline runs on:

1. install with ``--target`` for the target's Python and platform, ``--only-binary``, so
   the installer picks wheels for the target instead of the build host: uv (``uv pip
   install --python-platform``) where it can name the target, else pip
   (``--platform``/``--python-version``/``--abi``); see "Installer" below;
2. strip what inference never needs (tests, C/C++ headers, stubs, console scripts, stray
   bytecode), see ``strip()``;
3. check that every ELF file in lib/ loads with the target's glibc: the GLIBC_x.y symbol
   versions it needs (``glibc_check()``), so a lib/ the runtime's OS cannot load fails the
   build instead of every cold start;
4. compile ``.pyc`` ahead of time with ``--invalidation-mode unchecked-hash``: releases are
   stored read-only with mtime 0, so timestamp-checked bytecode would be rejected and
   recompiled in memory on every cold start;
5. import the key packages from the built lib in an isolated interpreter;
6. record versions and sizes in ``<out>.json`` next to the lib, which is also the cache:
   the same inputs again reuse ``<out>`` instead of rebuilding it (minutes for torch).

Steps 4 and 5 need the target's Python and machine, so build-lib runs on them: a target
that differs from the interpreter running it is refused before anything is installed
(CANNOT_CHECK), unless ``--allow-unchecked`` accepts a lib whose bytecode every cold start
compiles in memory and whose imports nobody tried. The target is a Lambda runtime
(``--runtime python3.12``: its Python and its OS's glibc, ci/runtime.py), the deployed
inference function's (``--from-function``) or ``--python-version``/``--max-glibc``.

Installer: uv by default (``--installer auto``) when its binary is there (requirements/dev.txt
installs it) and it can name the target's glibc (it knows manylinux_2_17, 2_28 and 2_31+).
Measured here on the torch lib: uv 17 s, pip 90 s, for the same distributions and files.
uv reads no pip configuration, so it is given pip's (ci/pip_config.py: index, extra
indexes, find-links, constraints) with pip's precedence rules; ``--installer pip`` keeps
pip for an index setup uv cannot follow. The installer is part of the cache key.

A line ``--no-deps`` in the requirements file (pip has no such requirement-file option, so
build-lib takes it out and passes it on the command line) says the file is the whole of
lib/: its pins are installed without their declared dependencies. requirements/lambda.txt
uses it to leave torch's compile-time dependencies out; the isolated import check below
catches anything the set then lacks.

Environment markers: pip evaluates ``; platform_machine == ...`` markers against the machine
running pip, even with ``--platform``. So the requirements file is rewritten with its
markers evaluated against the *target* (``resolve_requirements()``) and pip gets the
marker-free result. Markers inside the dependency metadata of the packages themselves are
still evaluated by pip against the build host; a cross-architecture build whose packages
have machine-specific dependencies (CUDA torch pulls nvidia-* and triton on x86_64 only) is
therefore best done on a host of the target's architecture or from a fully pinned file.

Index: by default pip's own configuration (pip.conf, ``PIP_*`` variables) decides where
wheels come from. ``--index-url``/``--extra-index-url`` (or ``LIB_INDEX_URL`` and the
space-separated ``LIB_EXTRA_INDEX_URL``) are passed to pip; note that pip lets an
``--extra-index-url`` given on its command line replace the configured extra index URLs.
Real deployments use https://download.pytorch.org/whl/cpu for torch.
"""

from __future__ import annotations

import argparse
import email.parser
import fcntl
import hashlib
import importlib.util
import json
import os
import platform
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, BinaryIO

from ci import pip_config
from ci.runtime import LAMBDA_RUNTIMES, LambdaRuntime
from efs_layout.stamp import REQUIRED_PACKAGES, Packages, PlatformInfo, PythonInfo
from efs_layout.verify import normalise_machine

try:
    from packaging.markers import Marker, default_environment
    from packaging.requirements import InvalidRequirement, Requirement
except ImportError:  # pragma: no cover - pip always vendors packaging
    from pip._vendor.packaging.markers import (  # type: ignore[assignment]
        Marker,
        default_environment,
    )
    from pip._vendor.packaging.requirements import (  # type: ignore[assignment]
        InvalidRequirement,
        Requirement,
    )

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REQUIREMENTS = REPO_ROOT / "requirements" / "lambda.txt"
ONNX_REQUIREMENTS = REPO_ROOT / "requirements" / "lambda-onnx.txt"
DEFAULT_PYTHON_VERSION = "3.11"
DEFAULT_ARCHITECTURE = "x86_64"
# The newest glibc the lib may need when neither --runtime nor --from-function says: the
# runtimes' own glibc versions are in ci/runtime.py LAMBDA_RUNTIMES.
DEFAULT_MAX_GLIBC = (2, 28)
ENV_INDEX_URL = "LIB_INDEX_URL"
ENV_EXTRA_INDEX_URL = "LIB_EXTRA_INDEX_URL"

# Bump whenever strip() or the compile step changes what ends up in lib/: it is part of the
# cache key, so every cached lib built under the old rules gets rebuilt.
STRIP_RULES_VERSION = 2
# Bump whenever build-lib checks something new about lib/ (CHECKS_VERSION 1: glibc_check),
# so that a lib cached before the check is built, and checked, again.
CHECKS_VERSION = 1
REPORT_VERSION = 2
NOT_INSTALLED = "not-installed"

# Lambda's names (and uname's) for the two machines, mapped onto the stamp's.
ARCHITECTURES = ("x86_64", "arm64")
_OLDEST_GLIBC = {"x86_64": (2, 5), "aarch64": (2, 17)}
# PEP 600 spells the old manylinux tags as glibc versions.
_LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}

_HEADER_SUFFIXES = frozenset({".h", ".hh", ".hpp", ".hxx", ".cuh"})
_TEST_DIR_NAMES = frozenset({"tests", "test"})
# An installer's own records in *.dist-info: which tool installed it, for uninstalling. A
# lib/ is never uninstalled from, and without them uv and pip give byte-identical trees.
# (METADATA and WHEEL stay: versions and platform tags are read from them.)
_INSTALLER_RECORDS = frozenset(
    {"INSTALLER", "REQUESTED", "RECORD", "direct_url.json", "uv_cache.json"}
)
# uv's lock file for the --target directory.
_TOP_LEVEL_INSTALLER_FILES = frozenset({".lock"})

# What the import check imports for each required distribution that is installed. PIL.Image
# is there because it loads Pillow's C extension, which `import PIL` alone does not.
IMPORT_CHECKS: Mapping[str, tuple[str, ...]] = {
    "numpy": ("numpy",),
    "pillow": ("PIL", "PIL.Image"),
    "joblib": ("joblib",),
    "torch": ("torch",),
    "onnxruntime": ("onnxruntime",),
    "scikit-learn": ("sklearn",),
}

NO_DEPS_LINE = "--no-deps"
# The glibc levels uv's --python-platform can name (uv pip install --help).
_UV_GLIBC_MINORS = frozenset({17, 28, *range(31, 41)})


class Installer(StrEnum):
    """What installs the distributions into lib/."""

    UV = "uv"
    PIP = "pip"


_PIP_TIMEOUT_SECONDS = 3600
_IMPORT_TIMEOUT_SECONDS = 600
_COMPILE_TIMEOUT_SECONDS = 1800

Log = Callable[[str], None]


class BuildLibErrorKind(StrEnum):
    """Why build-lib failed."""

    BAD_INPUT = "bad_input"  # arguments or requirements file unusable
    PIP_FAILED = "pip_failed"  # pip could not resolve or install the requirements
    MISSING_PACKAGES = "missing_packages"  # a package the stamp requires is not in the set
    COMPILE_FAILED = "compile_failed"  # compileall itself broke (not just a bad file)
    IMPORT_CHECK_FAILED = "import_check_failed"  # the built lib does not import
    OUT_NOT_OURS = "out_not_ours"  # <out> exists but was not made by build-lib
    CANNOT_CHECK = "cannot_check"  # target is not this interpreter: no compile, no import check
    GLIBC_TOO_NEW = "glibc_too_new"  # a binary in lib/ needs a newer glibc than the target's


class BuildLibError(Exception):
    """An expected build-lib failure; ``str()`` is a one-paragraph reason for a human."""

    def __init__(self, kind: BuildLibErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class LibReport:
    """A built lib/ and what the stamp needs to know about it (``<out>.json`` holds it)."""

    lib: Path
    python: PythonInfo
    platform: PlatformInfo
    packages: Packages
    requirements_sha256: str
    cache_key: str
    platform_tags: tuple[str, ...]
    index_url: str | None  # as recorded: any password in the URL is redacted
    extra_index_urls: tuple[str, ...]
    installer: str  # "uv" or "pip"
    installed_bytes: int  # what the installer installed, before strip()
    stripped_bytes: int  # removed by strip()
    bytes: int  # lib/ as built, compiled bytecode included
    files: int
    build_seconds: float
    step_seconds: Mapping[str, float] = field(hash=False)
    compiled: bool
    import_checked: bool
    warnings: tuple[str, ...]
    cached: bool = False  # True when this call reused <out> instead of building it

    @property
    def report_path(self) -> Path:
        """Where the JSON form of this report lives: ``<out>.json``."""
        return report_path(self.lib)

    def to_json(self) -> dict[str, Any]:
        """The JSON form written to ``<out>.json`` (``cached`` and the path are per call)."""
        packages: dict[str, Any] = {
            name: getattr(self.packages, name) for name in REQUIRED_PACKAGES
        }
        packages["extra"] = dict(sorted(self.packages.extra.items()))
        return {
            "report_version": REPORT_VERSION,
            "cache_key": self.cache_key,
            "python": {"abi_tag": self.python.abi_tag, "version": self.python.version},
            "platform": {
                "os": self.platform.os,
                "machine": self.platform.machine,
                "manylinux": self.platform.manylinux,
            },
            "packages": packages,
            "requirements_sha256": self.requirements_sha256,
            "platform_tags": list(self.platform_tags),
            "index": {"index_url": self.index_url, "extra_index_urls": list(self.extra_index_urls)},
            "installer": self.installer,
            "installed_bytes": self.installed_bytes,
            "stripped_bytes": self.stripped_bytes,
            "bytes": self.bytes,
            "files": self.files,
            "build_seconds": self.build_seconds,
            "step_seconds": dict(self.step_seconds),
            "compiled": self.compiled,
            "import_checked": self.import_checked,
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], lib: Path, *, cached: bool) -> LibReport:
        """Rebuild a report from its JSON form; KeyError/TypeError/ValueError if malformed."""
        if data["report_version"] != REPORT_VERSION:
            raise ValueError(f"report_version {data['report_version']!r}")
        pkgs = data["packages"]
        return cls(
            lib=lib,
            python=PythonInfo(
                abi_tag=str(data["python"]["abi_tag"]), version=str(data["python"]["version"])
            ),
            platform=PlatformInfo(
                os=str(data["platform"]["os"]),
                machine=str(data["platform"]["machine"]),
                manylinux=str(data["platform"]["manylinux"]),
            ),
            packages=Packages(
                **{name: str(pkgs[name]) for name in REQUIRED_PACKAGES},
                extra={str(k): str(v) for k, v in dict(pkgs["extra"]).items()},
            ),
            requirements_sha256=str(data["requirements_sha256"]),
            cache_key=str(data["cache_key"]),
            platform_tags=tuple(str(t) for t in data["platform_tags"]),
            index_url=None
            if data["index"]["index_url"] is None
            else str(data["index"]["index_url"]),
            extra_index_urls=tuple(str(u) for u in data["index"]["extra_index_urls"]),
            installer=str(data["installer"]),
            installed_bytes=int(data["installed_bytes"]),
            stripped_bytes=int(data["stripped_bytes"]),
            bytes=int(data["bytes"]),
            files=int(data["files"]),
            build_seconds=float(data["build_seconds"]),
            step_seconds={str(k): float(v) for k, v in dict(data["step_seconds"]).items()},
            compiled=bool(data["compiled"]),
            import_checked=bool(data["import_checked"]),
            warnings=tuple(str(w) for w in data["warnings"]),
            cached=cached,
        )


def requirements_for(model: str) -> Path:
    """lib/'s requirement set for a model directory (or a name under models/): its manifest's
    base set (sklearn, onnx or CPU torch), plus the directory's own requirements."""
    from ci import model_dir, paths

    return model_dir.lib_requirements(model_dir.load(model), paths.build_dir())


# --- target description -------------------------------------------------------------------


def machine_for(architecture: str) -> str:
    """The stamp's machine name ("x86_64" or "aarch64") for a Lambda architecture name."""
    machine = normalise_machine(architecture)
    if machine not in _OLDEST_GLIBC:
        raise BuildLibError(
            BuildLibErrorKind.BAD_INPUT,
            f"unknown architecture {architecture!r}: use one of {', '.join(ARCHITECTURES)}",
        )
    return machine


def platform_tags(architecture: str, max_glibc: tuple[int, int] = DEFAULT_MAX_GLIBC) -> list[str]:
    """The manylinux platform tags pip may install for ``architecture``, newest first.

    pip does not widen a PEP 600 ``--platform`` tag to older glibc versions by itself, so
    every glibc from ``max_glibc`` down to the oldest manylinux of the machine is listed,
    each legacy alias (manylinux2014/2010/1) right after the glibc version it stands for.
    """
    machine = machine_for(architecture)
    major, newest = max_glibc
    oldest = _OLDEST_GLIBC[machine][1]
    if major != 2 or newest < oldest:
        raise BuildLibError(
            BuildLibErrorKind.BAD_INPUT,
            f"max glibc {major}.{newest} is older than the oldest manylinux for {machine}",
        )
    aliases = {glibc: name for name, glibc in _LEGACY_MANYLINUX.items()}
    tags: list[str] = []
    for minor in range(newest, oldest - 1, -1):
        tags.append(f"manylinux_2_{minor}_{machine}")
        legacy = aliases.get((2, minor))
        # manylinux1/2010 were only ever defined for Intel machines.
        if legacy is not None and (legacy == "manylinux2014" or machine == "x86_64"):
            tags.append(f"{legacy}_{machine}")
    return tags


def _python_info(python_version: str) -> PythonInfo:
    if not re.fullmatch(r"3\.[0-9]{1,2}", python_version):
        raise BuildLibError(
            BuildLibErrorKind.BAD_INPUT,
            f"python version {python_version!r} is not of the form 3.N (e.g. 3.11)",
        )
    return PythonInfo(abi_tag="cp" + python_version.replace(".", ""), version=python_version)


def _host_python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def _host_machine() -> str:
    return normalise_machine(platform.machine())


def target_environment(python_version: str, machine: str) -> dict[str, str]:
    """PEP 508 marker environment of the Lambda runtime for this target.

    The patch level of a foreign Python is unknown, so python_full_version is "X.Y.0" unless
    the build interpreter has the same minor version.
    """
    env = {str(k): str(v) for k, v in default_environment().items()}
    full = (
        platform.python_version()
        if python_version == _host_python_version()
        else f"{python_version}.0"
    )
    env.update(
        implementation_name="cpython",
        implementation_version=full,
        os_name="posix",
        platform_machine=machine,
        platform_python_implementation="CPython",
        platform_system="Linux",
        python_full_version=full,
        python_version=python_version,
        sys_platform="linux",
    )
    return env


# --- requirements ----------------------------------------------------------------------------

_INCLUDE_OPTION = re.compile(
    r"^(--requirement|--constraint|--find-links|-r|-c|-f)(?:\s*=\s*|\s+|(?=\S))(\S.*)$"
)
_COMMENT = re.compile(r"(^|\s)#.*$")
# Per-requirement pip options (--hash=..., --config-settings ...) follow the requirement.
_REQUIREMENT_OPTIONS = re.compile(r"\s+--?[A-Za-z]")


def _logical_lines(text: str) -> Iterator[str]:
    pending: list[str] = []
    for raw in text.splitlines():
        line = _COMMENT.sub("", raw).strip()
        if line.endswith("\\"):
            pending.append(line[:-1].strip())
            continue
        joined = " ".join(p for p in [*pending, line] if p)
        pending = []
        if joined:
            yield joined
    if pending:
        yield " ".join(p for p in pending if p)


def _local_path(value: str, base: Path) -> str:
    # pip reads nested files relative to the file naming them; the resolved copy lives
    # elsewhere, so relative local paths are made absolute. URLs stay as they are.
    if "://" in value or value.startswith("file:"):
        return value
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def _resolve_requirement(line: str, environment: Mapping[str, str]) -> str | None:
    split = _REQUIREMENT_OPTIONS.search(line)
    spec, options = (line[: split.start()], line[split.start() :]) if split else (line, "")
    try:
        req = Requirement(spec)
    except InvalidRequirement:
        # A bare path or URL, possibly with "; marker"; pip will judge the rest.
        target, sep, marker_text = spec.partition(" ;")
        if not sep:
            return line
        if not Marker(marker_text.strip()).evaluate(dict(environment)):
            return None
        return target.strip() + options
    if req.marker is None:
        return line
    if not req.marker.evaluate(dict(environment)):
        return None
    req.marker = None
    return str(req) + options


def resolve_requirements(
    requirements: Path, environment: Mapping[str, str], _seen: frozenset[Path] = frozenset()
) -> str:
    """The requirements file with markers evaluated for ``environment`` and includes inlined.

    Requirements whose marker is false are dropped (left as a comment), true markers are
    removed; ``-r`` files are inlined with the same treatment and ``-c``/``-f`` paths made
    absolute. Other pip options pass through unchanged.
    """
    path = requirements.resolve()
    if path in _seen:
        raise BuildLibError(BuildLibErrorKind.BAD_INPUT, f"{requirements} includes itself")
    try:
        text = path.read_text()
    except OSError as exc:
        raise BuildLibError(
            BuildLibErrorKind.BAD_INPUT,
            f"cannot read requirements file {requirements}: {exc.strerror}",
        ) from None
    out = [f"# from {path}"]
    for line in _logical_lines(text):
        option = _INCLUDE_OPTION.match(line)
        if option:
            name, value = option.group(1), option.group(2).strip()
            if name in ("-r", "--requirement"):
                nested = Path(_local_path(value, path.parent))
                out.append(resolve_requirements(nested, environment, _seen | {path}).rstrip("\n"))
            else:
                out.append(f"{name} {_local_path(value, path.parent)}")
            continue
        if line.startswith("-"):
            out.append(line)
            continue
        resolved = _resolve_requirement(line, environment)
        out.append(resolved if resolved is not None else f"# not for this target: {line}")
    return "\n".join(out) + "\n"


# --- strip ---------------------------------------------------------------------------------


def _tree_size(root: Path) -> tuple[int, int]:
    """(files, bytes) under root; symlinks count as themselves and are not followed."""
    files = total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        # os.walk does not descend into symlinked dirs; count the links themselves.
        names = filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
        for name in names:
            files += 1
            total += os.lstat(os.path.join(dirpath, name)).st_size
    return files, total


def _remove(path: Path) -> int:
    if path.is_symlink() or not path.is_dir():
        size = path.lstat().st_size
        path.unlink()
        return size
    size = _tree_size(path)[1]
    shutil.rmtree(path)
    return size


def _has_python(path: Path) -> bool:
    return next(path.rglob("*.py"), None) is not None


def _strip_dir(path: Path, depth: int, keep_tests: bool) -> bool:
    name = path.name
    if name == "__pycache__":
        return True  # bytecode of whatever Python built the wheel; compiled afresh later
    if depth == 1 and name == "bin":
        return True  # console scripts pip writes with --target; the Lambda never runs them
    if name == "include" and not _has_python(path):
        return True  # headers for building extensions against the package
    # Only inside packages: a top-level "tests" would be a (badly named) package of its own.
    return not keep_tests and depth >= 2 and name in _TEST_DIR_NAMES


def _strip_file(path: Path, siblings: set[str], pyc_magic: bytes | None, depth: int) -> bool:
    if depth == 1 and path.name in _TOP_LEVEL_INSTALLER_FILES:
        return True
    if path.name in _INSTALLER_RECORDS and path.parent.name.endswith(".dist-info"):
        return True
    suffix = path.suffix
    if suffix in _HEADER_SUFFIXES or suffix == ".pyi":
        return True
    if suffix != ".pyc":
        return False
    if path.stem + ".py" in siblings:
        return True  # a legacy .pyc next to its source is never used by Python 3
    if pyc_magic is None:
        return False
    with path.open("rb") as f:
        return f.read(4) != pyc_magic  # sourceless bytecode of another Python cannot load


def strip(lib: Path, *, keep_tests: bool = False, pyc_magic: bytes | None = None) -> int:
    """Delete from ``lib`` what inference never needs; return the bytes removed.

    Removed: every ``__pycache__`` (the build compiles afresh), the top-level ``bin/``
    console scripts, ``include/`` dirs without Python files and loose C/C++/CUDA headers,
    ``*.pyi`` stubs, ``tests/``/``test/`` dirs inside packages (unless ``keep_tests``), legacy
    ``.pyc`` files shadowed by their source and, given the target's ``pyc_magic``, sourceless
    ``.pyc`` files of other Python versions, and the installer's own records (INSTALLER,
    REQUESTED, RECORD, direct_url.json in ``*.dist-info``, uv's ``.lock``), so that uv and
    pip build the same tree. Packages named ``testing`` (``torch.testing``,
    ``numpy.testing``) are imported by their parents and are kept. Bump STRIP_RULES_VERSION
    when these rules change.
    """
    removed = 0
    for dirpath, dirnames, filenames in os.walk(lib):
        here = Path(dirpath)
        depth = len(here.relative_to(lib).parts) + 1
        for name in list(dirnames):
            if _strip_dir(here / name, depth, keep_tests):
                removed += _remove(here / name)
                dirnames.remove(name)
        siblings = set(filenames)
        for name in filenames:
            if _strip_file(here / name, siblings, pyc_magic, depth):
                removed += _remove(here / name)
    return removed


# --- versions --------------------------------------------------------------------------------


def canonical_name(name: str) -> str:
    """PEP 503 normalised distribution name ("Pillow" -> "pillow")."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _dist_infos(lib: Path) -> list[Path]:
    return sorted(p for p in lib.glob("*.dist-info") if p.is_dir())


def read_versions(lib: Path) -> dict[str, str]:
    """Canonical name -> version of every distribution installed in ``lib``, from METADATA."""
    parser = email.parser.HeaderParser()
    versions: dict[str, str] = {}
    for info in _dist_infos(lib):
        meta = info / "METADATA"
        if not meta.is_file():
            continue
        headers = parser.parsestr(meta.read_text(encoding="utf-8", errors="replace"))
        name, version = headers.get("Name"), headers.get("Version")
        if not name or not version:
            continue
        key = canonical_name(name.strip())
        if versions.get(key, version.strip()) != version.strip():
            raise BuildLibError(
                BuildLibErrorKind.PIP_FAILED,
                f"{lib} holds two versions of {key}: {versions[key]} and {version.strip()}",
            )
        versions[key] = version.strip()
    return dict(sorted(versions.items()))


def _glibc_of(tag: str) -> tuple[int, int] | None:
    m = re.fullmatch(r"manylinux_([0-9]+)_([0-9]+)_.+", tag)
    if m:
        return int(m.group(1)), int(m.group(2))
    return _LEGACY_MANYLINUX.get(tag.split("_", 1)[0])


def required_manylinux(lib: Path, machine: str) -> str:
    """The manylinux tag lib/ needs: the newest glibc any installed binary wheel requires.

    A wheel tagged for several glibc versions runs on the oldest of them. A lib of pure
    Python wheels gets the oldest manylinux of the machine.
    """
    parser = email.parser.HeaderParser()
    needed = _OLDEST_GLIBC[machine]
    for info in _dist_infos(lib):
        wheel = info / "WHEEL"
        if not wheel.is_file():
            continue
        tags = parser.parsestr(wheel.read_text(errors="replace")).get_all("Tag") or []
        platforms = {t.strip().rsplit("-", 1)[-1] for t in tags}
        if not platforms or "any" in platforms:
            continue
        glibcs = [g for g in (_glibc_of(p) for p in platforms) if g is not None]
        if glibcs:
            needed = max(needed, min(glibcs))
    return f"manylinux_{needed[0]}_{needed[1]}_{machine}"


def _packages(versions: Mapping[str, str], allow_missing: bool) -> Packages:
    missing = [name for name in REQUIRED_PACKAGES if name not in versions]
    if missing and not allow_missing:
        raise BuildLibError(
            BuildLibErrorKind.MISSING_PACKAGES,
            f"the requirement set does not install {', '.join(missing)}, which the release "
            f"stamp requires (installed: {', '.join(versions) or 'nothing'}); add them to the "
            "requirements file or pass --allow-missing to record them as "
            f"{NOT_INSTALLED!r}",
        )
    required = {name: versions.get(name, NOT_INSTALLED) for name in REQUIRED_PACKAGES}
    extra = {name: v for name, v in versions.items() if name not in REQUIRED_PACKAGES}
    return Packages(**required, extra=extra)


# --- glibc check -----------------------------------------------------------------------------

# A short parser of the ELF version-needs table, not pyelftools: that would be one more
# dependency of every build venv for one table, and this reads only the header, the section
# headers and that table of each file, so a 10,000-file torch lib takes a second or two.
_ELF_MAGIC = b"\x7fELF"
_SHT_GNU_VERNEED = 0x6FFFFFFE
# (sh_type, sh_offset, sh_size, sh_link, sh_info) of a section header, by ELF class.
_SECTION_HEADER = {1: ("IIIIIIIIII", (1, 4, 5, 6, 7)), 2: ("IIQQQQIIQQ", (1, 4, 5, 6, 7))}
# (e_shoff, e_shentsize, e_shnum) offsets in the ELF header, by class.
_HEADER_FIELDS = {1: ((0x20, "I"), 0x2E, 0x30), 2: ((0x28, "Q"), 0x3A, 0x3C)}
_GLIBC_SYMBOL_VERSION = re.compile(r"GLIBC_([0-9]+)\.([0-9]+)(?:\.[0-9]+)*")
# Versions that name an ABI feature instead of a release; the value is the glibc adding it.
_GLIBC_FEATURE_VERSIONS = {"GLIBC_ABI_DT_RELR": (2, 36)}
# Sources and bytecode make up most of a lib and are never ELF: not even opened.
_NEVER_ELF_SUFFIXES = frozenset({".py", ".pyc", ".pyi", ".txt", ".json", ".md", ".h"})


def _cstring(f: BinaryIO, offset: int) -> str:
    f.seek(offset)
    raw = f.read(256)
    end = raw.find(b"\0")
    if end < 0:
        raise ValueError(f"unterminated string at {offset}")
    return raw[:end].decode("ascii", errors="replace")


def elf_version_needs(path: Path) -> dict[str, frozenset[str]] | None:
    """{library: symbol versions needed from it} of an ELF file; None if it is not ELF.

    Reads the section headers and the SHT_GNU_verneed section (``.gnu.version_r``, what
    ``readelf -V`` prints as "Version needs"), whose names live in the string table the
    section links to. A file with no section headers yields an empty result. ValueError if
    the file starts like ELF but its tables do not add up.
    """
    with path.open("rb") as f:
        header = f.read(64)
        if header[:4] != _ELF_MAGIC:
            return None
        elf_class, encoding = header[4], header[5]
        if elf_class not in _SECTION_HEADER or encoding not in (1, 2) or len(header) < 52:
            raise ValueError("unknown ELF class or byte order")
        order = "<" if encoding == 1 else ">"
        (shoff_at, shoff_fmt), shentsize_at, shnum_at = _HEADER_FIELDS[elf_class]
        try:
            (shoff,) = struct.unpack_from(order + shoff_fmt, header, shoff_at)
            (shentsize,) = struct.unpack_from(order + "H", header, shentsize_at)
            (shnum,) = struct.unpack_from(order + "H", header, shnum_at)
            if shoff == 0 or shnum == 0:
                return {}
            layout, picks = _SECTION_HEADER[elf_class]
            f.seek(shoff)
            table = f.read(shentsize * shnum)
            sections = [
                tuple(struct.unpack_from(order + layout, table, i * shentsize)[k] for k in picks)
                for i in range(shnum)
            ]
            needs: dict[str, set[str]] = {}
            for sh_type, offset, size, link, count in sections:
                if sh_type != _SHT_GNU_VERNEED:
                    continue
                strings = sections[link][1]
                f.seek(offset)
                body = f.read(size)
                at = 0
                # Verneed: vn_version, vn_cnt, vn_file, vn_aux, vn_next (16 bytes), and
                # vn_cnt Vernaux after it: vna_hash, vna_flags, vna_other, vna_name, vna_next.
                for _ in range(count):
                    _v, aux_count, file_name, aux, next_need = struct.unpack_from(
                        order + "HHIII", body, at
                    )
                    versions = needs.setdefault(_cstring(f, strings + file_name), set())
                    aux_at = at + aux
                    for _ in range(aux_count):
                        _h, _fl, _o, name, next_aux = struct.unpack_from(
                            order + "IHHII", body, aux_at
                        )
                        versions.add(_cstring(f, strings + name))
                        aux_at += next_aux
                    if next_need == 0:
                        break
                    at += next_need
        except (struct.error, IndexError) as exc:
            raise ValueError(f"malformed ELF tables: {exc}") from None
    return {library: frozenset(v) for library, v in needs.items()}


def glibc_needed(versions: Iterable[str]) -> tuple[int, int] | None:
    """The newest glibc that symbol versions such as GLIBC_2.28 need (None: no glibc ones)."""
    needed: tuple[int, int] | None = None
    for version in versions:
        m = _GLIBC_SYMBOL_VERSION.fullmatch(version)
        found = (int(m.group(1)), int(m.group(2))) if m else _GLIBC_FEATURE_VERSIONS.get(version)
        if found is not None and (needed is None or found > needed):
            needed = found
    return needed


def glibc_check(lib: Path, max_glibc: tuple[int, int], target: str) -> list[str]:
    """Fail (GLIBC_TOO_NEW) if an ELF file in ``lib`` needs a newer glibc than ``max_glibc``.

    The dynamic loader refuses such a file ("version `GLIBC_2.35' not found") when it is
    imported, on the Lambda that is at a cold start. ``target`` names the runtime in the
    message. Returns warnings for ELF files whose tables cannot be read.
    """
    too_new: list[tuple[str, tuple[int, int]]] = []
    unreadable: list[str] = []
    for dirpath, _dirnames, filenames in os.walk(lib):
        for name in filenames:
            path = Path(dirpath, name)
            if path.suffix in _NEVER_ELF_SUFFIXES or path.is_symlink():
                continue
            try:
                needs = elf_version_needs(path)
            except ValueError:
                unreadable.append(path.relative_to(lib).as_posix())
                continue
            if not needs:
                continue
            needed = glibc_needed(set().union(*needs.values()))
            if needed is not None and needed > max_glibc:
                too_new.append((path.relative_to(lib).as_posix(), needed))
    if too_new:
        too_new.sort(key=lambda item: (item[1], item[0]), reverse=True)
        file, needed = too_new[0]
        more = (
            f" ({len(too_new) - 1} more file(s) too: "
            + ", ".join(f for f, _ in too_new[1:4])
            + (", ..." if len(too_new) > 4 else "")
            + ")"
            if len(too_new) > 1
            else ""
        )
        raise BuildLibError(
            BuildLibErrorKind.GLIBC_TOO_NEW,
            f"lib/ cannot load on {target}: {file} needs GLIBC_{needed[0]}.{needed[1]}, and "
            f"{target} has glibc {max_glibc[0]}.{max_glibc[1]}{more}; pin a release of that "
            "package built for an older glibc (manylinux tag), or deploy a runtime whose OS "
            "has a newer glibc",
        )
    if unreadable:
        return [f"glibc check could not read the ELF tables of {', '.join(unreadable[:5])}"]
    return []


def target_description(runtime: LambdaRuntime | None, max_glibc: tuple[int, int]) -> str:
    """How messages name the target: the Lambda runtime and its OS, or "the target"."""
    if runtime is not None and runtime.glibc == max_glibc:
        return f"the {runtime.name} runtime ({runtime.os})"
    return "the target"


# --- subprocess steps ----------------------------------------------------------------------


def _redact(url: str) -> str:
    # A token may sit in either half of the user info (https://TOKEN@host/simple).
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


def _install_error(lines: Sequence[str]) -> str:
    # pip says "ERROR: ..."; uv "error: ..." followed by indented "cause: ..." lines (or,
    # on a terminal, a tree drawn under U+00D7 and U+2570).
    errors = [
        line.strip()
        for line in lines
        if line.startswith(("ERROR:", "error:"))
        or line.lstrip().startswith(("cause:", "\u00d7", "\u2570"))
    ]
    picked = errors or [line.strip() for line in list(lines)[-5:] if line.strip()]
    return " ".join(picked) or "no output"


def split_no_deps(resolved: str) -> tuple[str, bool]:
    """The resolved requirements without ``--no-deps`` lines, and whether there was one."""
    lines = resolved.splitlines()
    kept = [line for line in lines if line.strip() != NO_DEPS_LINE]
    return "\n".join(kept) + "\n", len(kept) != len(lines)


def uv_binary() -> str | None:
    """The uv executable: the one the ``uv`` package installed, else one on PATH."""
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        return shutil.which("uv")


def choose_installer(
    requested: str, max_glibc: tuple[int, int], uv: str | None
) -> tuple[Installer, str | None]:
    """(installer, why not uv) for ``--installer auto|uv|pip``; BAD_INPUT if uv cannot be used."""
    if requested == Installer.PIP:
        return Installer.PIP, "--installer pip"
    reason = None
    if uv is None:
        reason = "uv is not installed (pip install uv, or requirements/dev.txt)"
    elif max_glibc[0] != 2 or max_glibc[1] not in _UV_GLIBC_MINORS:
        reason = f"uv cannot name glibc {max_glibc[0]}.{max_glibc[1]} as a target platform"
    if reason is None:
        return Installer.UV, None
    if requested == Installer.UV:
        raise BuildLibError(BuildLibErrorKind.BAD_INPUT, f"--installer uv: {reason}")
    return Installer.PIP, reason


def uv_command(
    uv: str,
    staging: Path,
    requirements: Path,
    python: PythonInfo,
    machine: str,
    max_glibc: tuple[int, int],
    settings: pip_config.IndexSettings,
    *,
    no_deps: bool = False,
) -> list[str]:
    """The uv command line that installs ``requirements`` for the target into ``staging``.

    uv evaluates environment markers, in the file and in every dependency's metadata,
    for the target named by ``--python-platform``/``--python-version``, not for this host.
    """
    cmd = [
        uv,
        "pip",
        "install",
        "--target",
        str(staging),
        "--python",
        sys.executable,
        "--python-platform",
        f"{machine}-manylinux_{max_glibc[0]}_{max_glibc[1]}",
        "--python-version",
        python.version,
        "--only-binary",
        ":all:",
        # Copies, not hard links into uv's cache: lib/ is an artefact that later steps link
        # and chmod, and a change to a linked file would change the cache for everyone.
        "--link-mode",
        "copy",
        "--no-progress",
        *settings.uv_args(),
    ]
    if no_deps:
        cmd.append("--no-deps")
    return [*cmd, "-r", str(requirements)]


def pip_command(
    staging: Path,
    requirements: Path,
    python: PythonInfo,
    tags: Sequence[str],
    index_url: str | None,
    extra_index_urls: Sequence[str],
    *,
    no_deps: bool = False,
) -> list[str]:
    """The pip command line that installs ``requirements`` for the target into ``staging``."""
    cmd = [sys.executable, "-m", "pip", "install", "--target", str(staging)]
    for tag in tags:
        cmd += ["--platform", tag]
    cmd += [
        "--python-version",
        python.version,
        "--implementation",
        "cp",
        "--abi",
        python.abi_tag,
        "--only-binary=:all:",
        "--no-compile",
        "--no-input",
        "--progress-bar",
        "off",
        "--disable-pip-version-check",
    ]
    if index_url:
        cmd += ["--index-url", index_url]
    for url in extra_index_urls:
        cmd += ["--extra-index-url", url]
    if no_deps:
        cmd.append("--no-deps")
    return [*cmd, "-r", str(requirements)]


def _run_installer(cmd: Sequence[str], installer: Installer, log: Log | None) -> None:
    tail: deque[str] = deque(maxlen=400)
    with subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    ) as proc:
        assert proc.stdout is not None
        # Streamed rather than captured in one go: a torch build downloads for minutes.
        for line in proc.stdout:
            tail.append(line.rstrip("\n"))
            if log is not None:
                log(f"  {installer}: " + line.rstrip("\n"))
        try:
            code = proc.wait(timeout=_PIP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise BuildLibError(
                BuildLibErrorKind.PIP_FAILED,
                f"{installer} install took over {_PIP_TIMEOUT_SECONDS} s",
            ) from None
    if code != 0:
        raise BuildLibError(
            BuildLibErrorKind.PIP_FAILED,
            f"{installer} install failed (exit {code}): {_install_error(tail)}",
        )


def _compile(lib: Path) -> list[str]:
    """Compile lib's .py files in place; return warnings for files that do not compile."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "compileall",
            "-q",
            "-j",
            "0",
            "--invalidation-mode",
            "unchecked-hash",
            # Record "lib/..." instead of the random staging path, so rebuilds give identical
            # bytecode; the import system puts the real path in co_filename when loading.
            "-d",
            "lib",
            str(lib),
        ],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=_COMPILE_TIMEOUT_SECONDS,
    )
    if proc.returncode == 0:
        return []
    failed = [
        os.path.relpath(f, lib)
        for f in re.findall(r"\*\*\* Error compiling '([^']+)'", proc.stdout)
    ]
    if not failed:
        raise BuildLibError(
            BuildLibErrorKind.COMPILE_FAILED,
            f"compileall failed (exit {proc.returncode}): {(proc.stdout + proc.stderr)[-500:]}",
        )
    # Such files (e.g. Python 2 era examples) fail just the same at import time, and the
    # import check catches those that inference actually imports.
    shown = ", ".join(failed[:5]) + (f" and {len(failed) - 5} more" if len(failed) > 5 else "")
    return [f"{len(failed)} file(s) do not compile for this Python and have no .pyc: {shown}"]


def import_check(lib: Path, modules: Sequence[str]) -> None:
    """Import ``modules`` in a fresh interpreter whose path is the stdlib plus ``lib`` only.

    ``-I -S`` keeps the build venv's site-packages (and PYTHON* variables) out, so a
    module that strip() removed, or a dependency that pip did not install, fails here and
    not on the Lambda. ``-B`` keeps the check from writing timestamp bytecode into lib.
    """
    if not modules:
        return
    code = (
        "import importlib, json, sys\n"
        f"sys.path.insert(0, {str(lib)!r})\n"
        f"print(json.dumps({{m: getattr(importlib.import_module(m), '__file__', None) "
        f"for m in {list(modules)!r}}}))\n"
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-I", "-S", "-B", "-c", code],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=_IMPORT_TIMEOUT_SECONDS,
        )
    except subprocess.TimeoutExpired:
        raise BuildLibError(
            BuildLibErrorKind.IMPORT_CHECK_FAILED,
            f"importing {', '.join(modules)} from the built lib took over "
            f"{_IMPORT_TIMEOUT_SECONDS} s",
        ) from None
    if proc.returncode != 0:
        last = [line for line in proc.stderr.strip().splitlines() if line.strip()][-1:] or ["?"]
        raise BuildLibError(
            BuildLibErrorKind.IMPORT_CHECK_FAILED,
            f"importing {', '.join(modules)} from the built lib with nothing else on the path "
            f"failed: {last[0].strip()}; if the missing module is a test package that strip() "
            "removed, --keep-tests shows whether that is the cause",
        )
    files: dict[str, str | None] = json.loads(proc.stdout.strip().splitlines()[-1])
    root = lib.resolve()
    outside = [
        m for m, f in files.items() if f is None or not Path(f).resolve().is_relative_to(root)
    ]
    if outside:
        raise BuildLibError(
            BuildLibErrorKind.IMPORT_CHECK_FAILED,
            f"{', '.join(outside)} imported from outside the built lib: "
            + ", ".join(f"{m}={files[m]}" for m in outside),
        )


# --- cache and atomic replace ---------------------------------------------------------------


def report_path(out: Path) -> Path:
    """``<out>.json``: the report and cache record of the lib at ``out``."""
    return out.with_name(out.name + ".json")


def cache_key(
    requirements_text: str,
    resolved_text: str,
    python_version: str,
    machine: str,
    tags: Sequence[str],
    index_url: str | None,
    extra_index_urls: Sequence[str],
    keep_tests: bool,
    installer: str = Installer.PIP,
) -> str:
    """sha256 over everything that decides what lands in lib/."""
    material = {
        "installer": str(installer),
        "requirements": requirements_text,
        "resolved": resolved_text,  # covers files included with -r
        "python_version": python_version,
        "machine": machine,
        "platform_tags": list(tags),
        "index_url": index_url,
        "extra_index_urls": list(extra_index_urls),
        "strip_rules_version": STRIP_RULES_VERSION,
        "checks_version": CHECKS_VERSION,
        "keep_tests": keep_tests,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


@contextmanager
def _locked(out: Path, log: Log | None) -> Iterator[None]:
    # Serialises builds of the same <out>; while it is held, any <out>.tmp-*/<out>.old-*
    # left next to it belongs to a build that died and can go.
    with open(out.with_name(out.name + ".lock"), "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if log is not None:
                log(f"waiting for another build of {out} to finish")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _leftovers(out: Path) -> list[Path]:
    prefixes = (out.name + ".tmp-", out.name + ".old-")
    return [p for p in out.parent.iterdir() if p.name.startswith(prefixes)]


def _load_report(out: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(report_path(out).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _cached(out: Path, key: str, log: Log | None) -> LibReport | None:
    data = _load_report(out)
    if data is None or not out.is_dir() or data.get("cache_key") != key:
        return None
    try:
        report = LibReport.from_json(data, out, cached=True)
    except (KeyError, TypeError, ValueError):
        return None
    files, size = _tree_size(out)
    if (files, size) != (report.files, report.bytes):
        if log is not None:
            log(
                f"{out} changed since it was built ({files} files, {size} bytes instead of "
                f"{report.files}, {report.bytes}); rebuilding"
            )
        return None
    return report


def _looks_like_lib(out: Path) -> bool:
    # A lib restored without its <out>.json (a CI cache of build/lib alone) is rebuilt; a
    # directory pip never installed into (--out pointing at the wrong place) is left alone.
    return out.is_dir() and (not any(out.iterdir()) or any(out.glob("*.dist-info")))


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def _put_in_place(staging: Path, out: Path, report: LibReport) -> None:
    # The lib is swapped first and <out>.json written last, so a crash in between leaves a
    # record whose key or file count no longer matches and the next run rebuilds.
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=out.name + ".old-", dir=out.parent))
        os.replace(out, old / "lib")
    os.replace(staging, out)
    _write_json(report_path(out), report.to_json())
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# --- the step --------------------------------------------------------------------------------


def resolve_target(
    runtime: str | None, python_version: str | None, max_glibc: tuple[int, int] | None
) -> tuple[str, tuple[int, int], LambdaRuntime | None]:
    """(Python version, max glibc, Lambda runtime) from what the caller gave.

    A ``runtime`` (python3.12) sets both from ci/runtime.py LAMBDA_RUNTIMES; a Python version
    given with it must agree, and a max glibc may only be lower than its OS's. Without one,
    the defaults fill in what is not given.
    """
    if runtime is None:
        return (
            python_version or DEFAULT_PYTHON_VERSION,
            max_glibc or DEFAULT_MAX_GLIBC,
            None,
        )
    known = LAMBDA_RUNTIMES.get(runtime)
    if known is None:
        raise BuildLibError(
            BuildLibErrorKind.BAD_INPUT,
            f"unknown runtime {runtime!r}: use one of {', '.join(LAMBDA_RUNTIMES)}",
        )
    if python_version is not None and python_version != known.python_version:
        raise BuildLibError(
            BuildLibErrorKind.BAD_INPUT,
            f"Python {python_version} contradicts {runtime} (Python {known.python_version})",
        )
    if max_glibc is not None and max_glibc > known.glibc:
        raise BuildLibError(
            BuildLibErrorKind.BAD_INPUT,
            f"max glibc {max_glibc[0]}.{max_glibc[1]} is newer than {runtime}'s "
            f"({known.os}: {known.glibc[0]}.{known.glibc[1]})",
        )
    return known.python_version, max_glibc or known.glibc, known


def require_target_here(python: PythonInfo, machine: str) -> None:
    """CANNOT_CHECK unless ``python``/``machine`` are those of the interpreter running this.

    Bytecode is only valid for the Python that compiles it, and the import check loads the
    lib's binaries, so both need the target's interpreter; without them every cold start
    compiles in memory and a broken import shows first on the Lambda.
    """
    here_python, here_machine = _host_python_version(), _host_machine()
    if (python.version, machine) == (here_python, here_machine):
        return
    what = "compiled and import-checked" if python.version != here_python else "import-checked"
    arm = " on an arm resource class" if machine == "aarch64" else ""
    raise BuildLibError(
        BuildLibErrorKind.CANNOT_CHECK,
        f"lib/ for Python {python.version}/{machine} cannot be {what} on Python "
        f"{here_python}/{here_machine}; build on the function's runtime (CircleCI: "
        f"cimg/python:{python.version}{arm}) or pass --allow-unchecked",
    )


def build_lib(
    requirements: Path,
    out: Path,
    python_version: str | None = None,
    architecture: str = DEFAULT_ARCHITECTURE,
    index_url: str | None = None,
    extra_index_urls: Sequence[str] = (),
    use_cache: bool = True,
    *,
    allow_missing: bool = False,
    keep_tests: bool = False,
    max_glibc: tuple[int, int] | None = None,
    runtime: str | None = None,
    allow_unchecked: bool = False,
    installer: str = "auto",
    log: Log | None = None,
) -> LibReport:
    """Build lib/ at ``out`` for the Lambda's Python and architecture; write ``<out>.json``.

    The target is ``runtime`` (a Lambda runtime such as python3.12: its Python and its OS's
    glibc) or ``python_version`` and ``max_glibc`` (defaults: DEFAULT_PYTHON_VERSION,
    DEFAULT_MAX_GLIBC). ``installer`` is ``auto`` (uv where it can name the target, else
    pip), ``uv`` or ``pip``.

    Reuses an existing ``out`` whose ``<out>.json`` has the same cache key (and whose files
    still add up) unless ``use_cache`` is false. The lib is built in ``<out>.tmp-*`` and
    renamed into place, so ``out`` is either the previous lib or the complete new one.
    Raises BuildLibError on an expected failure (bad input, a target other than this
    interpreter without ``allow_unchecked``, pip failure, required package missing without
    ``allow_missing``, a binary needing a newer glibc than the target's, import check
    failure).
    """
    started = time.monotonic()
    python_version, max_glibc, lambda_runtime = resolve_target(runtime, python_version, max_glibc)
    python = _python_info(python_version)
    machine = machine_for(architecture)
    if not allow_unchecked:
        require_target_here(python, machine)
    target = target_description(lambda_runtime, max_glibc)
    tags = platform_tags(machine, max_glibc)
    environment = target_environment(python.version, machine)
    resolved = resolve_requirements(requirements, environment)
    raw = requirements.read_bytes()
    uv = uv_binary()
    chosen, not_uv = choose_installer(installer, max_glibc, uv)
    if not_uv is not None and installer != Installer.PIP and log is not None:
        log(f"installing with pip: {not_uv}")
    key = cache_key(
        raw.decode(errors="replace"),
        resolved,
        python.version,
        machine,
        tags,
        index_url,
        extra_index_urls,
        keep_tests,
        chosen,
    )
    out = out.absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    same_python = python.version == _host_python_version()
    same_machine = machine == _host_machine()

    with _locked(out, log):
        for leftover in _leftovers(out):
            shutil.rmtree(leftover, ignore_errors=True)
        if use_cache:
            hit = _cached(out, key, log)
            if (
                hit is not None
                and not allow_unchecked
                and not (hit.compiled and hit.import_checked)
            ):
                # Built unchecked elsewhere (a restored CI cache): checked this time.
                if log is not None:
                    log(f"{out} was built without bytecode or import check; rebuilding")
                hit = None
            if hit is not None:
                # A lib built with allow_missing records "not-installed"; only a call that
                # allows that too may reuse it.
                versions = {k: v for k, v in hit.packages.as_dict().items() if v != NOT_INSTALLED}
                _packages(versions, allow_missing)
                return hit
        if out.exists() and _load_report(out) is None and not _looks_like_lib(out):
            raise BuildLibError(
                BuildLibErrorKind.OUT_NOT_OURS,
                f"{out} exists, has no readable {report_path(out).name} next to it and holds "
                "no installed distributions, so it was not built by build-lib; refusing to "
                "replace it (delete it or pick another --out)",
            )
        staging = Path(tempfile.mkdtemp(prefix=out.name + ".tmp-", dir=out.parent))
        try:
            report = _build(
                staging,
                out,
                resolved,
                python,
                machine,
                tags,
                index_url,
                extra_index_urls,
                raw,
                key,
                allow_missing=allow_missing,
                keep_tests=keep_tests,
                installer=chosen,
                uv=uv,
                max_glibc=max_glibc,
                target=target,
                compile_pyc=same_python,
                check_imports=same_python and same_machine,
                started=started,
                log=log,
            )
            _put_in_place(staging, out, report)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return report


def _build(
    staging: Path,
    out: Path,
    resolved: str,
    python: PythonInfo,
    machine: str,
    tags: Sequence[str],
    index_url: str | None,
    extra_index_urls: Sequence[str],
    raw: bytes,
    key: str,
    *,
    allow_missing: bool,
    keep_tests: bool,
    installer: Installer,
    uv: str | None,
    max_glibc: tuple[int, int],
    target: str,
    compile_pyc: bool,
    check_imports: bool,
    started: float,
    log: Log | None,
) -> LibReport:
    steps: dict[str, float] = {}
    warnings: list[str] = []

    def step(name: str, since: float) -> float:
        now = time.monotonic()
        steps[name] = round(now - since, 3)
        if log is not None:
            log(f"{name}: {steps[name]:.1f} s")
        return now

    staging.chmod(0o755)  # mkdtemp makes it 0700
    text, no_deps = split_no_deps(resolved)
    with tempfile.TemporaryDirectory(prefix="build-lib-") as tmp:
        resolved_file = Path(tmp) / "requirements.txt"
        resolved_file.write_text(text)
        if installer is Installer.UV:
            assert uv is not None
            settings = pip_config.from_pip().overridden(index_url, extra_index_urls)
            cmd = uv_command(
                uv, staging, resolved_file, python, machine, max_glibc, settings, no_deps=no_deps
            )
        else:
            cmd = pip_command(
                staging, resolved_file, python, tags, index_url, extra_index_urls, no_deps=no_deps
            )
        if log is not None:
            log(f"{installer} install for {python.abi_tag}/{machine} into {staging}")
        _run_installer(cmd, installer, log)
    now = step("install", started)

    versions = read_versions(staging)
    packages = _packages(versions, allow_missing)
    installed_bytes = _tree_size(staging)[1]
    magic = importlib.util.MAGIC_NUMBER if compile_pyc else None
    stripped = strip(staging, keep_tests=keep_tests, pyc_magic=magic)
    now = step("strip", now)
    warnings += glibc_check(staging, max_glibc, target)
    now = step("glibc_check", now)

    if compile_pyc:
        warnings += _compile(staging)
        now = step("compile", now)
    else:
        warnings.append(
            f"bytecode not compiled: this is Python {_host_python_version()}, the target "
            f"{python.version}; every cold start will compile in memory"
        )
    if check_imports:
        modules = [m for name, mods in IMPORT_CHECKS.items() if name in versions for m in mods]
        import_check(staging, modules)
        now = step("import_check", now)
    else:
        warnings.append(
            f"import check skipped: the target ({python.abi_tag}/{machine}) is not this "
            f"interpreter ({_host_python_version()}/{_host_machine()})"
        )

    files, size = _tree_size(staging)
    return LibReport(
        lib=out,
        python=python,
        platform=PlatformInfo(machine=machine, manylinux=required_manylinux(staging, machine)),
        packages=packages,
        requirements_sha256=hashlib.sha256(raw).hexdigest(),
        cache_key=key,
        platform_tags=tuple(tags),
        index_url=_redact(index_url) if index_url else None,
        extra_index_urls=tuple(_redact(u) for u in extra_index_urls),
        installer=str(installer),
        installed_bytes=installed_bytes,
        stripped_bytes=stripped,
        bytes=size,
        files=files,
        build_seconds=round(time.monotonic() - started, 3),
        step_seconds=steps,
        compiled=compile_pyc,
        import_checked=check_imports,
        warnings=tuple(warnings),
    )


# --- CLI -----------------------------------------------------------------------------------


def index_from_env(environ: Mapping[str, str]) -> tuple[str | None, tuple[str, ...]]:
    """(index URL, extra index URLs) from LIB_INDEX_URL and space-separated LIB_EXTRA_INDEX_URL."""
    index_url = environ.get(ENV_INDEX_URL, "").strip() or None
    extra = tuple(environ.get(ENV_EXTRA_INDEX_URL, "").split())
    return index_url, extra


def _glibc(value: str) -> tuple[int, int]:
    m = re.fullmatch(r"([0-9]+)\.([0-9]+)", value)
    if not m:
        raise argparse.ArgumentTypeError(f"{value!r} is not a glibc version like 2.28")
    return int(m.group(1)), int(m.group(2))


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ci.build_lib",
        description="Build the Lambda's lib/ (pip install --target for the Lambda platform, "
        "strip, compile unchecked-hash bytecode) and write <out>.json with its versions.",
    )
    p.add_argument("--out", type=Path, required=True, help="lib directory to build, e.g. build/lib")
    choice = p.add_mutually_exclusive_group()
    choice.add_argument(
        "--requirements", type=Path, default=None, help="default: requirements/lambda.txt"
    )
    choice.add_argument(
        "--model",
        help="take the requirement set this model's format needs (e.g. digits-onnx: "
        "requirements/lambda-onnx.txt)",
    )
    target = p.add_mutually_exclusive_group()
    target.add_argument(
        "--python-version", default=None, help=f"e.g. 3.12 (default {DEFAULT_PYTHON_VERSION})"
    )
    target.add_argument(
        "--runtime",
        choices=list(LAMBDA_RUNTIMES),
        default=None,
        help="a Lambda runtime: its Python and the glibc of its OS (ci/runtime.py)",
    )
    target.add_argument(
        "--from-function",
        action="store_true",
        help="build for the deployed inference function's runtime and architecture "
        "(Terraform outputs, as `make pipeline` does; on the emulator: this machine's "
        "Python and glibc, capped at Amazon Linux 2023's)",
    )
    p.add_argument(
        "--architecture",
        default=None,
        choices=[*ARCHITECTURES, "aarch64"],
        help=f"default {DEFAULT_ARCHITECTURE}",
    )
    p.add_argument(
        "--index-url", default=None, help=f"pip index (default: ${ENV_INDEX_URL} or pip's)"
    )
    p.add_argument(
        "--extra-index-url",
        action="append",
        default=None,
        help=f"repeatable (default: ${ENV_EXTRA_INDEX_URL}, space-separated, or pip's)",
    )
    p.add_argument(
        "--max-glibc",
        type=_glibc,
        default=None,
        help=f"default: the runtime's, else {DEFAULT_MAX_GLIBC[0]}.{DEFAULT_MAX_GLIBC[1]}",
    )
    p.add_argument(
        "--installer",
        choices=["auto", *Installer],
        default="auto",
        help="auto (default): uv where it can name the target, else pip",
    )
    p.add_argument("--no-cache", action="store_true", help="rebuild even if <out> is up to date")
    p.add_argument("--keep-tests", action="store_true", help="do not strip tests/ directories")
    p.add_argument(
        "--allow-missing",
        action="store_true",
        help=f"record required packages the set lacks as {NOT_INSTALLED!r} instead of failing",
    )
    p.add_argument(
        "--allow-unchecked",
        action="store_true",
        help="build for a Python or machine other than this interpreter's, without bytecode "
        "or import check (every cold start then compiles in memory)",
    )
    return p


def _from_function(log: Log) -> tuple[str | None, str | None, tuple[int, int] | None, str]:
    """(runtime, Python version, max glibc, architecture) of the deployed inference function."""
    from ci import runtime as lambda_runtime
    from ci import stack

    try:
        target = lambda_runtime.target_runtime(stack.load())
    except Exception as exc:  # no outputs, no credentials, an unknown runtime: one paragraph
        raise BuildLibError(
            BuildLibErrorKind.BAD_INPUT,
            f"--from-function: cannot read the deployed function's runtime: {exc}",
        ) from None
    log(f"target from the deployed function: {target.describe()}")
    if target.emulated:
        return None, target.python_version, target.max_glibc, target.architecture
    return target.runtime, None, None, target.architecture


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: 0 on success, 1 with a one-paragraph reason on an expected failure."""
    args = _parser().parse_args(argv)
    env_index, env_extra = index_from_env(os.environ)
    index_url = args.index_url or env_index
    extra = tuple(args.extra_index_url) if args.extra_index_url else env_extra

    def log(message: str) -> None:
        print(f"build-lib: {message}", file=sys.stderr, flush=True)

    requirements = args.requirements or (
        requirements_for(args.model) if args.model else DEFAULT_REQUIREMENTS
    )
    runtime, python_version, max_glibc = args.runtime, args.python_version, args.max_glibc
    architecture = args.architecture or DEFAULT_ARCHITECTURE
    try:
        if args.from_function:
            if args.architecture or args.max_glibc:
                raise BuildLibError(
                    BuildLibErrorKind.BAD_INPUT,
                    "--from-function reads the architecture and glibc from the function; "
                    "drop --architecture and --max-glibc",
                )
            runtime, python_version, max_glibc, architecture = _from_function(log)
        report = build_lib(
            requirements,
            args.out,
            python_version=python_version,
            architecture=architecture,
            index_url=index_url,
            extra_index_urls=extra,
            use_cache=not args.no_cache,
            allow_missing=args.allow_missing,
            keep_tests=args.keep_tests,
            max_glibc=max_glibc,
            runtime=runtime,
            allow_unchecked=args.allow_unchecked,
            installer=args.installer,
            log=log,
        )
    except BuildLibError as exc:
        print(f"build-lib: error: {exc}", file=sys.stderr)
        return 1
    if report.cached:
        print(
            f"build-lib: cache hit, {report.lib} is up to date for these inputs "
            f"(built in {report.build_seconds:.0f} s; --no-cache rebuilds it)"
        )
    else:
        print(
            f"build-lib: built {report.lib} in {report.build_seconds:.1f} s: "
            f"{sum(v != NOT_INSTALLED for v in report.packages.as_dict().values())} "
            f"distributions, {report.files} files, "
            f"{_mb(report.bytes)} (strip removed {_mb(report.stripped_bytes)} of "
            f"{_mb(report.installed_bytes)} installed)"
        )
    for warning in report.warnings:
        print(f"build-lib: warning: {warning}", file=sys.stderr)
    print(f"build-lib: {report.platform.manylinux}, {report.python.abi_tag}; {report.report_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
