"""ci/runtime.py: what lib/ is built for, read from the deployed function (no emulator)."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest

from ci import aws, stack
from ci import build_lib as bl
from ci import runtime as rt

REPO_ROOT = Path(__file__).resolve().parents[2]
NAMES = stack.Stack("bucket", "mlserve-inference", "mlserve-syncer", "https://api.example.com")
HOST_PYTHON = f"python{sys.version_info.major}.{sys.version_info.minor}"


class FakeLambda:
    """get_function_configuration of one function."""

    def __init__(self, runtime: str, architectures: list[str] | None = None) -> None:
        self.config: dict[str, Any] = {"Runtime": runtime}
        if architectures is not None:
            self.config["Architectures"] = architectures

    def get_function_configuration(self, FunctionName: str) -> dict[str, Any]:
        assert FunctionName == NAMES.inference_function
        return self.config


def _deployed(monkeypatch: pytest.MonkeyPatch, function: FakeLambda, *, emulator: bool) -> None:
    monkeypatch.setattr(aws, "client", lambda service: function)
    if emulator:
        monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    else:
        monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)


def test_on_aws_the_runtime_gives_python_and_the_glibc_of_its_os(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _deployed(monkeypatch, FakeLambda("python3.13", ["arm64"]), emulator=False)
    target = rt.target_runtime(NAMES)
    assert target == rt.TargetRuntime("3.13", "arm64", (2, 34), "python3.13")
    assert "Amazon Linux 2023, glibc 2.34" in target.describe()


@pytest.mark.parametrize("runtime", ["python3.11", "python3.9", "nodejs20.x"])
def test_on_aws_a_runtime_the_code_cannot_run_on_is_refused(
    monkeypatch: pytest.MonkeyPatch, runtime: str
) -> None:
    _deployed(monkeypatch, FakeLambda(runtime), emulator=False)
    with pytest.raises(RuntimeError, match=f"mlserve-inference: the function runs {runtime}"):
        rt.target_runtime(NAMES)


def test_on_the_emulator_lib_is_for_this_python_and_glibc_capped_at_al2023s(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _deployed(monkeypatch, FakeLambda(HOST_PYTHON), emulator=True)
    monkeypatch.setattr(rt, "host_glibc", lambda: (2, 36))
    target = rt.target_runtime(NAMES)
    assert target.python_version == HOST_PYTHON.removeprefix("python")
    assert target.architecture == "x86_64" and target.emulated
    assert target.max_glibc == (2, 34) == rt.EMULATOR_GLIBC_CAP
    monkeypatch.setattr(rt, "host_glibc", lambda: (2, 31))
    assert rt.target_runtime(NAMES).max_glibc == (2, 31)
    # uv can name the capped glibc, so the local lib/ is installed as CircleCI's is.
    assert bl.choose_installer("auto", rt.EMULATOR_GLIBC_CAP, "/bin/uv")[0] is bl.Installer.UV


def test_host_glibc_is_this_machines() -> None:
    found = rt.host_glibc()
    if found is None:
        pytest.skip("no glibc here")
    assert found[0] == 2 and found[1] >= 17


def test_terraform_allows_exactly_the_runtimes_the_code_runs_on() -> None:
    text = (REPO_ROOT / "terraform" / "variables.tf").read_text()
    block = re.search(r'variable "lambda_runtime" \{(.*?)\n\}', text, re.S)
    assert block
    condition = re.search(r"condition\s+=\s+contains\(\[([^\]]*)\]", block.group(1))
    assert condition
    allowed = tuple(re.findall(r'"(python[0-9.]+)"', condition.group(1)))
    assert allowed == rt.AWS_RUNTIMES
    for name in allowed:
        assert rt.LAMBDA_RUNTIMES[name].glibc >= (2, 28), name  # torch's manylinux_2_28


def test_build_lib_from_function_builds_for_the_deployed_runtime(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[dict[str, Any]] = []

    def fake_build_lib(requirements: Path, out: Path, **kwargs: Any) -> bl.LibReport:
        calls.append(kwargs)
        raise bl.BuildLibError(bl.BuildLibErrorKind.BAD_INPUT, "stop here")

    monkeypatch.setattr(stack, "load", lambda: NAMES)
    monkeypatch.setattr(bl, "build_lib", fake_build_lib)
    argv = ["--out", str(tmp_path / "lib"), "--from-function"]

    _deployed(monkeypatch, FakeLambda("python3.12"), emulator=False)
    assert bl.main(argv) == 1
    assert calls[-1]["runtime"] == "python3.12" and calls[-1]["architecture"] == "x86_64"
    assert calls[-1]["python_version"] is None and calls[-1]["max_glibc"] is None

    _deployed(monkeypatch, FakeLambda(HOST_PYTHON), emulator=True)
    monkeypatch.setattr(rt, "host_glibc", lambda: (2, 36))
    assert bl.main(argv) == 1
    assert calls[-1]["runtime"] is None
    assert calls[-1]["python_version"] == HOST_PYTHON.removeprefix("python")
    assert calls[-1]["max_glibc"] == (2, 34)
    assert "target from the deployed function: " in capsys.readouterr().err

    # What it reads from the function, nobody may also give.
    assert bl.main([*argv, "--architecture", "arm64"]) == 1
    assert "--from-function reads the architecture" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bl.main([*argv, "--python-version", "3.12"])


def test_from_function_on_a_function_of_another_python_fails_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """CircleCI's executor and the function's runtime disagree: the job fails, and says why."""
    other = "python3.13" if HOST_PYTHON == "python3.12" else "python3.12"
    monkeypatch.setattr(stack, "load", lambda: NAMES)
    _deployed(monkeypatch, FakeLambda(other), emulator=False)
    assert bl.main(["--out", str(tmp_path / "lib"), "--from-function"]) == 1
    err = capsys.readouterr().err
    python = other.removeprefix("python")
    assert f"lib/ for Python {python}/" in err
    assert f"build on the function's runtime (CircleCI: cimg/python:{python})" in err
    assert not (tmp_path / "lib").exists()


def test_the_runtime_step_writes_the_cache_key_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(stack, "load", lambda: NAMES)
    _deployed(monkeypatch, FakeLambda("python3.12"), emulator=False)
    out = tmp_path / "build" / "runtime.txt"
    assert rt.main(["--out", str(out)]) == 0
    assert out.read_text() == ("python3.12 (Python 3.12, x86_64; Amazon Linux 2023, glibc 2.34)\n")
    _deployed(monkeypatch, FakeLambda("python3.11"), emulator=False)
    assert rt.main(["--out", str(out)]) == 1
