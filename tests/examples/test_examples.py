"""Each example's README recipe, run as written, ends in a prediction through the endpoint.

The recipe's commands are read from the README's first ```sh block, so the recipe cannot
drift from what is tested. Each is run as it is, except two that stand for what the test
session already has: `make setup` (the session runs in the set-up venv) and
`make up MODEL=<dir>`, which here is the pipeline `make up` runs (`ci.pipeline --model
<dir>`) against the session's emulator stack, instead of a second emulator and stack on
port 4566. The curl line is sent, with its headers and body, to a local endpoint of that
stack.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO_ROOT, Deployed, endpoint_process

EXAMPLES = REPO_ROOT / "examples"
# torch-digits: lib/ is the small set with torch taken from the venv (--allow-missing),
# as in every other pipeline test; a real CPU-torch lib/ is built and served by
# tests/ci/test_torch_lib.py. The other two get their real lib/ (scikit-learn, ONNX Runtime).
SMALL_LIB_FOR = {"torch-digits"}


def recipe(example: str) -> list[list[str]]:
    """The commands of the example README's first sh block, split as a shell would."""
    text = (EXAMPLES / example / "README.md").read_text()
    block = text.split("```sh\n", 1)[1].split("```", 1)[0]
    return [shlex.split(line) for line in block.splitlines() if line.strip()]


def _curl_request(argv: list[str], base_url: str) -> urllib.request.Request:
    headers: dict[str, str] = {}
    body = b""
    url = ""
    args = iter(argv[1:])
    for arg in args:
        if arg == "-H":
            name, value = next(args).split(":", 1)
            headers[name.strip()] = value.strip()
        elif arg in ("-d", "--data", "--data-binary"):
            data = next(args)
            body = (REPO_ROOT / data[1:]).read_bytes() if data.startswith("@") else data.encode()
        elif arg.startswith("http"):
            url = arg
        else:
            assert arg in ("-s",), f"the test does not understand curl's {arg}"
    assert url.startswith("http://127.0.0.1:8080/"), url
    target = base_url + url.removeprefix("http://127.0.0.1:8080")
    return urllib.request.Request(target, data=body, headers=headers, method="POST")


def run_pipeline(deployed: Deployed, *flags: str) -> subprocess.CompletedProcess[str]:
    """`python -m ci.pipeline` with ``flags`` against the session's stack."""
    return subprocess.run(
        [sys.executable, "-m", "ci.pipeline", *flags],
        cwd=REPO_ROOT,
        env=deployed.env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )


@pytest.fixture(scope="module")
def restore_live(deployed: Deployed) -> Iterator[None]:
    """The examples replace live on the shared stack; put the test model back afterwards."""
    yield
    proc = deployed.pipeline()
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("example", ["tabular-sklearn", "torch-digits", "onnx-digits"])
def test_the_readme_recipe_ends_in_a_prediction(
    example: str, deployed: Deployed, restore_live: None, tmp_path: Path
) -> None:
    commands = recipe(example)
    assert commands[0] == ["make", "setup"]
    curl = [c for c in commands if c[0] == "curl"]
    assert len(curl) == 1, "a recipe ends in one curl"
    for command in commands[1:]:
        if command[0].endswith("python"):
            assert command[0] == ".venv/bin/python"
            done = subprocess.run(
                [sys.executable, *command[1:]],
                cwd=REPO_ROOT,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            assert done.returncode == 0, done.stdout + done.stderr
        elif command[:2] == ["make", "up"]:
            model = dict(arg.split("=", 1) for arg in command[2:])["MODEL"]
            assert model == f"examples/{example}"
            flags = ["--skip-checks", "--model", model]
            if example in SMALL_LIB_FOR:
                flags += [
                    "--allow-missing-packages",
                    "--lib-requirements",
                    str(deployed.requirements),
                ]
            proc = run_pipeline(deployed, *flags)
            assert proc.returncode == 0, proc.stdout + proc.stderr
            assert "smoke done" in proc.stdout
        elif command[0] == "curl":
            with endpoint_process(deployed, tmp_path / "endpoint") as endpoint:
                request = _curl_request(command, endpoint.url)
                try:
                    with urllib.request.urlopen(request, timeout=120) as response:
                        status, body = response.status, json.loads(response.read())
                except urllib.error.HTTPError as exc:
                    status, body = exc.code, json.loads(exc.read())
            assert status == 200, body
            manifest = json.loads((EXAMPLES / example / "model.json").read_text())
            assert body["model"] == manifest["name"]
            predictions = body["predictions"]
            if manifest["input"]["kind"] == "features":
                sent = json.loads(request.data or b"{}")["instances"]  # type: ignore[arg-type]
                assert len(predictions) == len(sent)
                labels = manifest["output"]["labels"]
                # The example rows are the data set's first (class_0) and 131st (class_2).
                assert [row[0]["label"] for row in predictions] == [labels[0], labels[2]]
            else:
                # docs/seven.png is a drawn 7, the digit every digits model must read.
                assert predictions[0]["label"] in ("7", "seven"), predictions
        else:
            raise AssertionError(f"the test does not know how to run {command}")


def _tiny_features_dir(directory: Path, **changes: Any) -> Path:
    """A two-feature scikit-learn model directory (valid unless ``changes`` break it)."""
    import joblib
    from sklearn.linear_model import LogisticRegression

    directory.mkdir(parents=True)
    joblib.dump(
        LogisticRegression().fit([[0.0, 0.0], [1.0, 1.0]], [0, 1]), directory / "model.joblib"
    )
    manifest: dict[str, Any] = {
        "schema_version": 1,
        "name": "tiny",
        "format": "joblib",
        "file": "model.joblib",
        "input": {"kind": "features", "features": 2, "example": [[0.0, 1.0]]},
        "output": {"kind": "probabilities", "labels": ["no", "yes"]},
        **changes,
    }
    (directory / "model.json").write_text(json.dumps(manifest))
    return directory


def _code_raising_at_import(directory: Path) -> Path:
    """A model whose pickle names a class in code/, whose module raises when imported."""
    import joblib

    _tiny_features_dir(directory, code="code")
    code = directory / "code"
    code.mkdir()
    (code / "brittle.py").write_text("class Marker:\n    pass\n")
    sys.path.insert(0, str(code))
    try:
        import brittle

        model = joblib.load(directory / "model.joblib")
        model.marker = brittle.Marker()
        joblib.dump(model, directory / "model.joblib")
    finally:
        sys.path.remove(str(code))
        sys.modules.pop("brittle", None)
    (code / "brittle.py").write_text("raise RuntimeError('model code is broken')\n")
    return directory


def _uninstallable(directory: Path) -> Path:
    _tiny_features_dir(directory, requirements="requirements.txt")
    (directory / "requirements.txt").write_text("no-such-package-for-model-dir-tests==1.0\n")
    return directory


BROKEN: dict[str, tuple[Any, str]] = {
    "invalid manifest": (
        lambda d: _tiny_features_dir(d, format="pickle"),
        "does not follow efs_layout/model.schema.json",
    ),
    "code raising at import": (_code_raising_at_import, "model code is broken"),
    "requirements that cannot be installed": (
        _uninstallable,
        "no-such-package-for-model-dir-tests",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_model_directory_fails_at_build_and_live_keeps_serving(
    case: str, deployed: Deployed, aws_env: Deployed, restore_live: None, tmp_path: Path
) -> None:
    from ci import promote, stack

    names = stack.load()
    before = promote.live_state(names)
    make_dir, expected = BROKEN[case]
    directory = make_dir(tmp_path / "broken")
    proc = run_pipeline(deployed, "--skip-checks", "--model", str(directory))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert expected in proc.stderr, proc.stderr
    assert "package ..." not in proc.stdout  # stopped before anything was packaged
    assert promote.live_state(names) == before
