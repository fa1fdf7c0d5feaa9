"""build-lib: a stripped, precompiled lib/ for the Lambda's platform, cached and atomic.

The real builds here install joblib, pillow and a tiny local wheel full of things strip()
must remove; torch is never built in tests.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from ci import build_lib as bl
from efs_layout import stamp

REPO_ROOT = Path(__file__).resolve().parents[2]
SMALL_SET = "joblib==1.6.0\npillow==13.0.0\n"

# The local wheel: what strip() removes, and what it must keep.
FAKE_FILES = {
    "stripme/__init__.py": "from stripme import core, native, testing\n",
    "stripme/core.py": "VALUE = 42\n",
    "stripme/core.pyi": "VALUE: int\n",
    "stripme/legacy.py": "OLD = 1\n",
    "stripme/legacy.pyc": "not bytecode, and shadowed by legacy.py anyway\n",
    "stripme/__pycache__/core.cpython-39.pyc": "bytecode of another Python\n",
    "stripme/testing/__init__.py": "HELPER = 'imported by stripme'\n",
    "stripme/tests/__init__.py": "",
    "stripme/tests/test_core.py": "def test_it() -> None: ...\n",
    "stripme/test/data.txt": "fixture\n",
    "stripme/include/stripme.h": "int stripme(void);\n",
    "stripme/native/__init__.py": "KERNELS = 1\n",
    "stripme/native/kernel.cuh": "__global__ void k();\n",
    "stripme/native/api.hpp": "namespace s {}\n",
    "stripme-1.0.data/scripts/stripme-tool": "#!python\nprint('tool')\n",
    "stripme-1.0.data/headers/stripme_api.h": "int api(void);\n",
}


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def make_fake_wheel(directory: Path) -> Path:
    """stripme-1.0-py3-none-any.whl in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {name: text.encode() for name, text in FAKE_FILES.items()}
    files["stripme-1.0.dist-info/METADATA"] = (
        b"Metadata-Version: 2.1\nName: StripMe\nVersion: 1.0\n"
    )
    files["stripme-1.0.dist-info/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    record = [_record_line(n, d) for n, d in files.items()] + ["stripme-1.0.dist-info/RECORD,,"]
    files["stripme-1.0.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = directory / "stripme-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return wheel


@dataclass(frozen=True)
class Built:
    requirements: Path
    out: Path
    report: bl.LibReport


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """joblib + pillow + the local stripme wheel, built for this machine."""
    root = tmp_path_factory.mktemp("build-lib")
    wheels = make_fake_wheel(root / "wheels").parent
    requirements = root / "requirements.txt"
    requirements.write_text(SMALL_SET + f"--find-links {wheels}\nstripme==1.0\n")
    out = root / "build" / "lib"
    report = bl.build_lib(requirements, out, allow_missing=True)
    return Built(requirements, out, report)


def _leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.glob(f"{out.name}.*") if p.is_dir())


def _files(lib: Path) -> list[str]:
    return sorted(p.relative_to(lib).as_posix() for p in lib.rglob("*") if p.is_file())


# --- the real build -------------------------------------------------------------------------


def test_build_records_versions_for_the_stamp(built: Built) -> None:
    report = built.report
    assert not report.cached
    assert report.lib == built.out.absolute()
    assert report.packages.joblib == "1.6.0"
    assert report.packages.pillow == "13.0.0"
    assert report.packages.numpy == bl.NOT_INSTALLED
    assert report.packages.get("torch") is None  # not in the set, so not in the stamp
    assert report.installer == "uv"
    assert report.packages.extra["stripme"] == "1.0"  # canonical name of "StripMe"
    assert report.python == stamp.PythonInfo(abi_tag="cp311", version="3.11")
    assert report.platform.os == "linux"
    assert report.platform.machine == "x86_64"
    # pillow 13 wheels need glibc 2.27 at least; joblib and stripme are pure Python.
    assert report.platform.manylinux == "manylinux_2_27_x86_64"
    assert re.search(stamp.MANYLINUX_PATTERN, report.platform.manylinux)
    expected_sha = hashlib.sha256(built.requirements.read_bytes()).hexdigest()
    assert report.requirements_sha256 == expected_sha
    assert report.compiled and report.import_checked and report.warnings == ()
    assert report.stripped_bytes > 0
    assert set(report.step_seconds) == {
        "install",
        "strip",
        "glibc_check",
        "compile",
        "import_check",
    }
    files = [p for p in built.out.rglob("*") if p.is_file()]
    assert report.files == len(files)
    assert report.bytes == sum(p.stat().st_size for p in files)


def test_report_json_sits_next_to_the_lib(built: Built) -> None:
    path = built.out.with_name("lib.json")
    assert built.report.report_path == path
    data = json.loads(path.read_text())
    assert data == built.report.to_json()
    assert set(data["packages"]) == {*stamp.REQUIRED_PACKAGES, "extra"}
    assert data["packages"]["extra"] == {"cloudpickle": "3.1.3", "stripme": "1.0"}
    assert data["platform"] == {
        "os": "linux",
        "machine": "x86_64",
        "manylinux": "manylinux_2_27_x86_64",
    }
    assert bl.LibReport.from_json(data, built.out, cached=False) == built.report


def test_every_module_has_unchecked_hash_bytecode(built: Built) -> None:
    sources = sorted(built.out.rglob("*.py"))
    assert len(sources) > 50
    for source in sources:
        pyc = source.parent / "__pycache__" / f"{source.stem}.cpython-311.pyc"
        header = pyc.read_bytes()[:16]
        assert header[:4] == importlib.util.MAGIC_NUMBER, pyc
        # PEP 552 flags: bit 0 = hash-based, bit 1 = check_source; 0b01 = unchecked hash.
        assert int.from_bytes(header[4:8], "little") == 0b01, pyc


def test_strip_removed_tests_headers_stubs_scripts_and_foreign_bytecode(built: Built) -> None:
    files = _files(built.out)
    assert not [f for f in files if f.startswith(("bin/", "include/"))]
    assert not [f for f in files if f.endswith((".h", ".hpp", ".cuh", ".pyi"))]
    assert not [f for f in files if "/tests/" in f or "/test/" in f]
    assert not [f for f in files if f.endswith(".pyc") and ".cpython-311." not in f]
    assert "joblib/test/__init__.py" not in files  # joblib's own test suite
    assert "stripme/legacy.pyc" not in files
    for kept in (
        "stripme/testing/__init__.py",  # "testing" packages are imported, e.g. torch.testing
        "stripme/native/__init__.py",
        "stripme/legacy.py",
        "joblib/__init__.py",
        "PIL/Image.py",
        "stripme-1.0.dist-info/METADATA",
    ):
        assert kept in files
    assert any(re.fullmatch(r"PIL/_imaging\.cpython-311-x86_64-linux-gnu\.so", f) for f in files)


def test_lib_imports_with_nothing_else_on_the_path(built: Built) -> None:
    code = (
        "import sys, json\n"
        f"sys.path.insert(0, {str(built.out)!r})\n"
        "import joblib, PIL.Image, stripme\n"
        "assert stripme.core.VALUE == 42 and stripme.testing.HELPER\n"
        "print(json.dumps([joblib.__file__, PIL.Image.__file__, stripme.__file__]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-B", "-c", code], capture_output=True, text=True, check=True
    )
    for file in json.loads(proc.stdout):
        assert Path(file).is_relative_to(built.out)


def test_same_inputs_again_are_a_cache_hit(built: Built) -> None:
    inode = built.out.stat().st_ino
    started = time.monotonic()
    again = bl.build_lib(built.requirements, built.out, allow_missing=True)
    assert time.monotonic() - started < 2
    assert again.cached
    assert again.cache_key == built.report.cache_key
    assert again.packages == built.report.packages
    assert built.out.stat().st_ino == inode
    assert _leftovers(built.out) == []


def test_a_cached_lib_with_missing_packages_needs_allow_missing(built: Built) -> None:
    with pytest.raises(bl.BuildLibError) as caught:
        bl.build_lib(built.requirements, built.out)
    assert caught.value.kind is bl.BuildLibErrorKind.MISSING_PACKAGES
    assert built.out.is_dir()


def test_cli_says_cache_hit(built: Built, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--out", str(built.out), "--requirements", str(built.requirements), "--allow-missing"]
    assert bl.main(argv) == 0
    out = capsys.readouterr().out
    assert "cache hit" in out and "manylinux_2_27_x86_64" in out


# --- rebuilds and failures ------------------------------------------------------------------


def test_changes_rebuild_and_a_failed_rebuild_keeps_the_old_lib(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("joblib==1.6.0\n")
    out = tmp_path / "lib"
    first = bl.build_lib(requirements, out, allow_missing=True)
    pyc = out / "joblib" / "__pycache__" / "__init__.cpython-311.pyc"
    first_pyc = pyc.read_bytes()

    requirements.write_text("# the same set, another file\njoblib==1.6.0\n")
    second = bl.build_lib(requirements, out, allow_missing=True)
    assert not second.cached and second.cache_key != first.cache_key
    assert pyc.read_bytes() == first_pyc  # bytecode does not depend on the staging path

    assert bl.build_lib(requirements, out, allow_missing=True).cached
    assert not bl.build_lib(requirements, out, allow_missing=True, use_cache=False).cached
    assert not bl.build_lib(requirements, out, allow_missing=True, keep_tests=True).cached
    assert (out / "joblib" / "test").is_dir()

    (out / "joblib" / "parallel.py").unlink()  # a lib damaged after the build is not reused
    assert not bl.build_lib(requirements, out, allow_missing=True, keep_tests=True).cached
    assert (out / "joblib" / "parallel.py").is_file()

    out.with_name("lib.json").unlink()  # e.g. a CI cache that restored build/lib alone
    assert not bl.build_lib(requirements, out, allow_missing=True, keep_tests=True).cached
    assert out.with_name("lib.json").is_file()

    before = _files(out)
    requirements.write_text("joblib==1.6.0\nno-such-package-for-build-lib-tests==1.0\n")
    with pytest.raises(bl.BuildLibError):
        bl.build_lib(requirements, out, allow_missing=True)
    assert _files(out) == before
    assert json.loads(out.with_name("lib.json").read_text())["packages"]["joblib"] == "1.6.0"
    assert _leftovers(out) == []


def test_missing_required_packages_fail_and_leave_nothing(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("joblib==1.6.0\n")
    out = tmp_path / "build" / "lib"
    with pytest.raises(bl.BuildLibError) as caught:
        bl.build_lib(requirements, out)
    assert caught.value.kind is bl.BuildLibErrorKind.MISSING_PACKAGES
    message = str(caught.value)
    assert "pillow, numpy" in message and "--allow-missing" in message and "joblib" in message
    assert not out.exists() and not out.with_name("lib.json").exists()
    assert _leftovers(out) == []


def test_an_unknown_package_fails_and_leaves_nothing(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("no-such-package-for-build-lib-tests==1.0\n")
    out = tmp_path / "build" / "lib"
    with pytest.raises(bl.BuildLibError) as caught:
        bl.build_lib(requirements, out, allow_missing=True)
    assert caught.value.kind is bl.BuildLibErrorKind.PIP_FAILED
    assert "no-such-package-for-build-lib-tests" in str(caught.value)
    assert "\n" not in str(caught.value)
    assert not out.exists() and not out.with_name("lib.json").exists()
    assert _leftovers(out) == []


def test_cli_failure_is_one_paragraph(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--out", str(tmp_path / "lib"), "--requirements", str(tmp_path / "nope.txt")]
    assert bl.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("build-lib: error: cannot read requirements file")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_an_out_dir_build_lib_did_not_make_is_not_replaced(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("joblib==1.6.0\n")
    out = tmp_path / "lib"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(bl.BuildLibError) as caught:
        bl.build_lib(requirements, out, allow_missing=True)
    assert caught.value.kind is bl.BuildLibErrorKind.OUT_NOT_OURS
    assert (out / "precious.txt").read_text() == "keep me"


def test_arm64_build_of_pure_joblib_and_aarch64_pillow(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(SMALL_SET)
    out = tmp_path / "lib"
    try:
        report = bl.build_lib(
            requirements, out, architecture="arm64", allow_missing=True, allow_unchecked=True
        )
    except bl.BuildLibError as exc:
        if "pillow" in str(exc) and "No matching distribution" in str(exc):
            pytest.skip(f"the configured indexes have no aarch64 pillow wheel: {exc}")
        raise
    assert report.platform.machine == "aarch64"
    assert report.platform.manylinux.endswith("_aarch64")
    assert report.packages.pillow == "13.0.0" and report.packages.joblib == "1.6.0"
    assert report.compiled and not report.import_checked
    assert any("import check skipped" in w for w in report.warnings)
    extensions = [f for f in _files(out) if f.endswith(".so")]
    assert any(f.startswith("PIL/_imaging.cpython-311-aarch64") for f in extensions)
    assert not [f for f in extensions if "x86_64" in f]
    assert (out / "joblib" / "__pycache__" / "__init__.cpython-311.pyc").is_file()


# --- the parts ------------------------------------------------------------------------------


def test_platform_tags_for_both_architectures() -> None:
    intel = bl.platform_tags("x86_64")
    assert intel[0] == "manylinux_2_28_x86_64"
    assert intel[-1] == "manylinux1_x86_64"
    for tag in ("manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"):
        assert tag in intel
    assert intel.index("manylinux_2_17_x86_64") + 1 == intel.index("manylinux2014_x86_64")
    assert intel.index("manylinux_2_12_x86_64") + 1 == intel.index("manylinux2010_x86_64")

    arm = bl.platform_tags("arm64")
    assert arm == bl.platform_tags("aarch64")
    assert arm[0] == "manylinux_2_28_aarch64" and arm[-1] == "manylinux2014_aarch64"
    assert all(t.endswith("_aarch64") for t in arm)
    assert not [t for t in arm if t.startswith(("manylinux1", "manylinux2010"))]

    assert bl.platform_tags("x86_64", max_glibc=(2, 26))[0] == "manylinux_2_26_x86_64"
    with pytest.raises(bl.BuildLibError):
        bl.platform_tags("riscv64")


def test_markers_are_evaluated_for_the_target_not_the_build_host() -> None:
    # dev.txt carries the machine markers (lambda.txt is one CPU build for both machines).
    dev_txt = REPO_ROOT / "requirements" / "dev.txt"
    arm = bl.resolve_requirements(dev_txt, bl.target_environment("3.11", "aarch64"))
    intel = bl.resolve_requirements(dev_txt, bl.target_environment("3.11", "x86_64"))
    active = [[ln for ln in text.splitlines() if not ln.startswith("#")] for text in (arm, intel)]
    assert "torch==2.9.1" in active[0] and "torchvision==0.24.1" in active[0]
    assert "torch==2.14.1" in active[1] and "torchvision==0.29.1" in active[1]
    for lines in active:
        assert {"joblib==1.6.0", "pillow==13.0.0", "numpy==2.4.6"} <= set(lines)
        assert not [ln for ln in lines if ";" in ln]


def test_includes_constraints_and_options_survive_resolution(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "base.txt").write_text(
        'numpy==2.4.6 ; python_version >= "3.12"\njoblib==1.6.0 \\\n  --hash=sha256:abc\n'
    )
    (tmp_path / "constraints.txt").write_text("pillow<14\n")
    main = tmp_path / "requirements.txt"
    main.write_text(
        "-r sub/base.txt  # shared pins\n-c constraints.txt\n--pre\n"
        'pillow==13.0.0; sys_platform == "linux"\n'
    )
    text = bl.resolve_requirements(main, bl.target_environment("3.11", "x86_64"))
    lines = [ln for ln in text.splitlines() if not ln.startswith("#")]
    assert lines == [
        "joblib==1.6.0 --hash=sha256:abc",
        f"-c {tmp_path / 'constraints.txt'}",
        "--pre",
        "pillow==13.0.0",
    ]
    assert '# not for this target: numpy==2.4.6 ; python_version >= "3.12"' in text
    py312 = bl.resolve_requirements(main, bl.target_environment("3.12", "x86_64"))
    assert "\nnumpy==2.4.6\n" in py312


def test_strip_counts_what_it_removes(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    files = {
        "bin/tool": "x" * 10,
        "include/python3.11/pkg/api.h": "x" * 20,
        "pkg/__init__.py": "",
        "pkg/mod.pyi": "x" * 30,
        "pkg/__pycache__/mod.cpython-312.pyc": "x" * 40,
        "pkg/tests/test_mod.py": "x" * 50,
        "pkg/sub/test/conftest.py": "x" * 60,
        "pkg/testing/__init__.py": "kept",
        "pkg/include/__init__.py": "an include package with Python in it is kept",
        "pkg/include/x.h": "x" * 70,
        "pkg/sourceless.pyc": "",
        "tests/__init__.py": "a top-level package called tests is not inside a package",
    }
    for name, text in files.items():
        (lib / name).parent.mkdir(parents=True, exist_ok=True)
        (lib / name).write_text(text)
    (lib / "pkg" / "sourceless.pyc").write_bytes(b"\x00\x00\r\n" + bytes(12))
    (lib / "pkg" / "current.pyc").write_bytes(importlib.util.MAGIC_NUMBER + bytes(12))

    kept_tests = tmp_path / "kept"
    kept_tests_lib = kept_tests / "lib"
    kept_tests.mkdir()
    subprocess.run(["cp", "-a", str(lib), str(kept_tests_lib)], check=True)

    removed = bl.strip(lib, pyc_magic=importlib.util.MAGIC_NUMBER)
    assert removed == 10 + 20 + 30 + 40 + 50 + 60 + 70 + 16
    assert _files(lib) == [
        "pkg/__init__.py",
        "pkg/current.pyc",
        "pkg/include/__init__.py",
        "pkg/testing/__init__.py",
        "tests/__init__.py",
    ]
    assert bl.strip(kept_tests_lib, keep_tests=True) == 10 + 20 + 30 + 40 + 70
    assert "pkg/tests/test_mod.py" in _files(kept_tests_lib)
    assert "pkg/sourceless.pyc" in _files(kept_tests_lib)  # no magic given: kept


def test_read_versions_uses_canonical_names(tmp_path: Path) -> None:
    for dist, name, version in (
        ("Pillow-13.0.0.dist-info", "Pillow", "13.0.0"),
        ("typing_extensions-4.15.0.dist-info", "typing_extensions", "4.15.0"),
    ):
        (tmp_path / dist).mkdir()
        (tmp_path / dist / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\nLong: description\n"
        )
    (tmp_path / "broken-1.0.dist-info").mkdir()  # no METADATA: not a distribution
    assert bl.read_versions(tmp_path) == {"pillow": "13.0.0", "typing-extensions": "4.15.0"}


def test_index_settings_reach_pip_and_the_cache_key() -> None:
    assert bl.index_from_env({}) == (None, ())
    assert bl.index_from_env(
        {"LIB_INDEX_URL": " https://download.pytorch.org/whl/cpu ", "LIB_EXTRA_INDEX_URL": "a b"}
    ) == ("https://download.pytorch.org/whl/cpu", ("a", "b"))
    python = stamp.PythonInfo(abi_tag="cp311", version="3.11")
    cmd = bl.pip_command(
        Path("/s"), Path("/r.txt"), python, bl.platform_tags("x86_64"), "https://i", ["https://e"]
    )
    joined = " ".join(cmd)
    assert "--target /s" in joined and "--platform manylinux2014_x86_64" in joined
    assert "--python-version 3.11 --implementation cp --abi cp311" in joined
    assert "--only-binary=:all: --no-compile" in joined
    assert "--index-url https://i --extra-index-url https://e" in joined
    assert cmd[:3] == [sys.executable, "-m", "pip"] and cmd[-2:] == ["-r", "/r.txt"]

    def key(index_url: str | None, arch: str = "x86_64") -> str:
        tags = bl.platform_tags(arch)
        return bl.cache_key("r", "r", "3.11", arch, tags, index_url, (), keep_tests=False)

    assert key(None) == key(None)
    assert len({key(None), key("https://i"), key(None, "aarch64")}) == 3


# --- installers ------------------------------------------------------------------------------


def _tree_hashes(lib: Path) -> dict[str, str]:
    return {
        p.relative_to(lib).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in lib.rglob("*")
        if p.is_file()
    }


def test_uv_and_pip_build_the_same_tree(built: Built, tmp_path: Path) -> None:
    # The built fixture used uv (the default); pip from the same file must give the very
    # same files, byte for byte, or the choice of installer would change the release.
    assert built.report.installer == "uv"
    out = tmp_path / "lib"
    with_pip = bl.build_lib(built.requirements, out, allow_missing=True, installer="pip")
    assert with_pip.installer == "pip"
    assert with_pip.cache_key != built.report.cache_key
    assert _tree_hashes(out) == _tree_hashes(built.out)
    # The installers' own records are stripped; they are what differed.
    names = {Path(f).name for f in _files(out)}
    assert not names & {"INSTALLER", "REQUESTED", "RECORD", "direct_url.json", "uv_cache.json"}
    assert not (out / ".lock").exists()


def test_a_no_deps_line_installs_the_file_alone(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    # joblib 1.6 imports cloudpickle: a "complete" set that forgets it fails the import check.
    requirements.write_text("--no-deps\njoblib==1.6.0\npillow==13.0.0\nnumpy==2.4.6\n")
    with pytest.raises(bl.BuildLibError) as caught:
        bl.build_lib(requirements, tmp_path / "lib")
    assert caught.value.kind is bl.BuildLibErrorKind.IMPORT_CHECK_FAILED
    assert "cloudpickle" in str(caught.value)
    requirements.write_text(requirements.read_text() + "cloudpickle==3.1.3\n")
    report = bl.build_lib(requirements, tmp_path / "lib")
    assert report.packages.as_dict() == {
        "joblib": "1.6.0",
        "pillow": "13.0.0",
        "numpy": "2.4.6",
        "cloudpickle": "3.1.3",
    }
    assert bl.split_no_deps("--no-deps\njoblib==1.6.0\n") == ("joblib==1.6.0\n", True)
    assert bl.split_no_deps("joblib==1.6.0\n") == ("joblib==1.6.0\n", False)


def test_the_torch_set_is_cpu_only_and_complete_without_its_declared_dependencies() -> None:
    lambda_txt = REPO_ROOT / "requirements" / "lambda.txt"
    resolved = bl.resolve_requirements(lambda_txt, bl.target_environment("3.12", "x86_64"))
    text, no_deps = bl.split_no_deps(resolved)
    pins = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert no_deps
    assert "torch==2.13.0+cpu" in pins
    assert not [p for p in pins if p.startswith(("torchvision", "nvidia", "triton", "sympy"))]


def test_uv_is_chosen_where_it_can_name_the_target() -> None:
    assert bl.choose_installer("auto", (2, 28), "/bin/uv") == (bl.Installer.UV, None)
    assert bl.choose_installer("uv", (2, 17), "/bin/uv") == (bl.Installer.UV, None)
    installer, why = bl.choose_installer("auto", (2, 26), "/bin/uv")
    assert installer is bl.Installer.PIP and why is not None and "2.26" in why
    installer, why = bl.choose_installer("auto", (2, 28), None)
    assert installer is bl.Installer.PIP and why is not None and "not installed" in why
    assert bl.choose_installer("pip", (2, 28), "/bin/uv")[0] is bl.Installer.PIP
    with pytest.raises(bl.BuildLibError) as caught:
        bl.choose_installer("uv", (2, 26), "/bin/uv")
    assert caught.value.kind is bl.BuildLibErrorKind.BAD_INPUT


def test_uv_gets_the_target_and_pips_index_settings() -> None:
    from ci.pip_config import IndexSettings

    settings = IndexSettings(
        extra_index_urls=("file:///mirror/simple",), find_links=("/wheels",)
    ).overridden(None, ["https://download.pytorch.org/whl/cpu"])
    python = stamp.PythonInfo(abi_tag="cp312", version="3.12")
    cmd = bl.uv_command(
        "/bin/uv", Path("/s"), Path("/r.txt"), python, "aarch64", (2, 28), settings, no_deps=True
    )
    joined = " ".join(cmd)
    assert cmd[:3] == ["/bin/uv", "pip", "install"] and cmd[-2:] == ["-r", "/r.txt"]
    assert "--target /s" in joined and "--python-platform aarch64-manylinux_2_28" in joined
    assert "--python-version 3.12 --only-binary :all: --link-mode copy" in joined
    assert "--index-strategy unsafe-best-match" in joined
    # An explicit extra index replaces the configured ones, as it does for pip.
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in joined
    assert "file:///mirror/simple" not in joined
    assert "--find-links /wheels" in joined and "--no-deps" in cmd


# --- the target: a Lambda runtime, and only this interpreter's unless told -----------------

HOST_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
OTHER_PYTHON = "3.13" if HOST_PYTHON == "3.12" else "3.12"


def test_a_runtime_sets_python_and_glibc_together() -> None:
    assert bl.resolve_target("python3.12", None, None)[:2] == ("3.12", (2, 34))
    assert bl.resolve_target("python3.13", None, None)[:2] == ("3.13", (2, 34))
    assert bl.resolve_target("python3.11", None, None)[:2] == ("3.11", (2, 26))
    # A lower glibc than the runtime's OS is a stricter target, so it is allowed.
    assert bl.resolve_target("python3.12", "3.12", (2, 28))[:2] == ("3.12", (2, 28))
    assert bl.resolve_target(None, None, None)[:2] == (
        bl.DEFAULT_PYTHON_VERSION,
        bl.DEFAULT_MAX_GLIBC,
    )
    for runtime, python, glibc in [
        ("python3.12", "3.11", None),
        ("python3.12", None, (2, 35)),
        ("python2.7", None, None),
    ]:
        with pytest.raises(bl.BuildLibError) as caught:
            bl.resolve_target(runtime, python, glibc)
        assert caught.value.kind is bl.BuildLibErrorKind.BAD_INPUT


def test_a_cross_build_without_allow_unchecked_fails_before_installing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_install(*args: object) -> None:
        raise AssertionError("the installer ran")

    monkeypatch.setattr(bl, "_run_installer", no_install)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("joblib==1.6.0\n")
    out = tmp_path / "lib"
    machine = bl._host_machine()
    with pytest.raises(bl.BuildLibError) as caught:
        bl.build_lib(requirements, out, python_version=OTHER_PYTHON, allow_missing=True)
    assert caught.value.kind is bl.BuildLibErrorKind.CANNOT_CHECK
    assert str(caught.value) == (
        f"lib/ for Python {OTHER_PYTHON}/{machine} cannot be compiled and import-checked on "
        f"Python {HOST_PYTHON}/{machine}; build on the function's runtime (CircleCI: "
        f"cimg/python:{OTHER_PYTHON}) or pass --allow-unchecked"
    )
    other_machine = "arm64" if machine == "x86_64" else "x86_64"
    with pytest.raises(bl.BuildLibError) as caught:
        bl.build_lib(requirements, out, architecture=other_machine, allow_missing=True)
    assert caught.value.kind is bl.BuildLibErrorKind.CANNOT_CHECK
    assert "cannot be import-checked on" in str(caught.value)
    assert not out.exists() and not out.with_name("lib.json").exists()

    argv = ["--out", str(out), "--requirements", str(requirements), "--allow-missing"]
    assert bl.main([*argv, "--runtime", f"python{OTHER_PYTHON}"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("build-lib: error: lib/ for Python") and "--allow-unchecked" in err


def test_a_strict_build_does_not_reuse_a_lib_built_unchecked(built: Built, tmp_path: Path) -> None:
    out = tmp_path / "lib"
    shutil.copytree(built.out, out, symlinks=True)
    record = json.loads(built.out.with_name("lib.json").read_text())
    record.update(compiled=False, import_checked=False)
    out.with_name("lib.json").write_text(json.dumps(record))
    assert bl.build_lib(built.requirements, out, allow_missing=True, allow_unchecked=True).cached
    rebuilt = bl.build_lib(built.requirements, out, allow_missing=True)
    assert not rebuilt.cached and rebuilt.compiled and rebuilt.import_checked


# --- the glibc check ------------------------------------------------------------------------


def _readelf_needs(path: Path) -> dict[str, frozenset[str]]:
    """`readelf -V`'s "Version needs" of path, as elf_version_needs() gives them."""
    out = subprocess.run(
        ["readelf", "-V", "-W", str(path)], capture_output=True, text=True, check=True
    ).stdout
    needs: dict[str, set[str]] = {}
    current: set[str] | None = None
    section = out.split(".gnu.version_r", 1)[1] if ".gnu.version_r" in out else ""
    for line in section.splitlines():
        file = re.search(r"File: (\S+)", line)
        name = re.search(r"Name: (\S+)", line)
        if file:
            current = needs.setdefault(file.group(1), set())
        elif name and current is not None:
            current.add(name.group(1))
    return {k: frozenset(v) for k, v in needs.items()}


@pytest.fixture(scope="module")
def elf_sample() -> tuple[Path, tuple[int, int]]:
    """The smallest of numpy's extension modules here that needs a glibc newer than 2.17."""
    spec = importlib.util.find_spec("numpy")
    assert spec is not None and spec.origin is not None
    candidates = []
    for path in Path(spec.origin).parent.rglob("*.so"):
        needs = bl.elf_version_needs(path)
        needed = bl.glibc_needed(set().union(*needs.values())) if needs else None
        if needed is not None and needed > (2, 17):
            candidates.append((path.stat().st_size, path, needed))
    assert candidates, "no numpy extension module needs a glibc newer than 2.17"
    _size, path, needed = min(candidates)
    return path, needed


def test_the_version_needs_of_a_known_file(elf_sample: tuple[Path, tuple[int, int]]) -> None:
    path, needed = elf_sample
    needs = bl.elf_version_needs(path)
    assert needs is not None
    assert any(v.startswith("GLIBC_2.") for v in needs.get("libc.so.6", ()))
    from_libc = bl.glibc_needed(needs["libc.so.6"])
    assert from_libc is not None and from_libc <= needed
    if shutil.which("readelf"):
        assert needs == _readelf_needs(path)
    assert bl.elf_version_needs(Path(bl.__file__)) is None  # not ELF
    versions = ["GLIBC_2.2.5", "GLIBC_2.28", "GLIBCXX_3.4.30", "GLIBC_PRIVATE"]
    assert bl.glibc_needed(versions) == (2, 28)
    assert bl.glibc_needed(["GLIBC_ABI_DT_RELR"]) == (2, 36)


def test_glibc_check_names_the_file_and_both_versions(
    elf_sample: tuple[Path, tuple[int, int]], tmp_path: Path
) -> None:
    path, needed = elf_sample
    lib = tmp_path / "lib"
    (lib / "pkg").mkdir(parents=True)
    shutil.copy(path, lib / "pkg" / "_native.so")
    (lib / "pkg" / "__init__.py").write_text("")
    assert bl.glibc_check(lib, (2, 34), "the python3.12 runtime (Amazon Linux 2023)") == []
    with pytest.raises(bl.BuildLibError) as caught:
        bl.glibc_check(lib, (2, 2), "the python3.12 runtime (Amazon Linux 2023)")
    assert caught.value.kind is bl.BuildLibErrorKind.GLIBC_TOO_NEW
    assert (
        f"pkg/_native.so needs GLIBC_{needed[0]}.{needed[1]}, and the python3.12 runtime "
        "(Amazon Linux 2023) has glibc 2.2"
    ) in str(caught.value)


def test_a_build_whose_binary_needs_a_newer_glibc_fails(
    elf_sample: tuple[Path, tuple[int, int]], tmp_path: Path
) -> None:
    # A wheel tagged for any platform that carries a binary: the installer cannot tell.
    path, needed = elf_sample
    files = {
        "elfpkg/__init__.py": b"",
        "elfpkg/_native.so": path.read_bytes(),
        "elfpkg-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: elfpkg\nVersion: 1.0\n",
        "elfpkg-1.0.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = [_record_line(n, d) for n, d in files.items()] + ["elfpkg-1.0.dist-info/RECORD,,"]
    files["elfpkg-1.0.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    with zipfile.ZipFile(wheels / "elfpkg-1.0-py3-none-any.whl", "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(f"--find-links {wheels}\nelfpkg==1.0\n")
    out = tmp_path / "lib"
    with pytest.raises(bl.BuildLibError) as caught:
        bl.build_lib(requirements, out, allow_missing=True, max_glibc=(2, 17))
    assert caught.value.kind is bl.BuildLibErrorKind.GLIBC_TOO_NEW
    assert f"elfpkg/_native.so needs GLIBC_{needed[0]}.{needed[1]}" in str(caught.value)
    assert "the target has glibc 2.17" in str(caught.value)
    assert not out.exists() and _leftovers(out) == []
    assert not bl.build_lib(requirements, out, allow_missing=True, max_glibc=(2, 34)).cached
