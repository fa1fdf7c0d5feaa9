"""The README's quick start and its AWS section, run as written, the emulator standing for AWS.

Run in a copy of the work tree (what a clone holds), with the session's venvs linked in so
`make setup` finds them current. The commands come from the README's own sh blocks, so the
README cannot drift from what works. Where the copy's environment differs from a user's,
it is on purpose and said here:

- ports: the emulator and the endpoint get free ports (EMULATOR_PORT, PORT), and the
  README's 127.0.0.1:8080 is read as that port, so a developer's own `make up` is untouched;
- the model: the copy's build cache is given the digits-onnx model made from the session's
  trained digits network (ci.build_model's own export), instead of 50 s of training that
  tests/models covers;
- AWS: AWS_ENDPOINT_URL points at the emulator with its test credentials (for
  `export AWS_PROFILE=...`); the stack gets a name of its own (-var name=...) and the
  emulator's runtime (python3.11, local_emulator=true) through TF_EXTRA_VARS;
  TF_STATE_BUCKET is left out (the S3 backend against moto needs path-style settings a
  user on AWS never sets), so state is the local default; LIB_EXTRA_INDEX_URL is empty
  (no internet: this machine's pip finds the same wheels); PIPELINE_ARGS=--skip-checks
  (the lint and type checks are tests of their own); MODEL=path/to/model-dir is the
  tabular example.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import joblib
import pytest

from ci import model_dir
from local.emulator import process

REPO_ROOT = Path(__file__).resolve().parents[1]
README = (REPO_ROOT / "README.md").read_text()


def sh_block(heading: str) -> list[str]:
    """The command lines (comments dropped) of the first sh block under ``heading``."""
    section = README.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    lines = []
    for line in block.splitlines():
        command = line.split("  #", 1)[0].strip()
        if command:
            lines.append(command)
    return lines


def copy_work_tree(dst: Path) -> Path:
    """What a clone of the work tree holds (tracked and new files), mtimes kept."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for raw in listed:
        if not raw:
            continue
        rel = raw.decode()
        src = REPO_ROOT / rel
        if not src.is_file():
            continue  # deleted in the work tree, not yet in git
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
    for venv in (".venv", ".venv-checkov"):
        (dst / venv).symlink_to(REPO_ROOT / venv)
    return dst


def seed_default_model(clone: Path, digits_model_dir: Path) -> None:
    """The copy's build cache holds digits-onnx, exported from the session's digits network."""
    from lambda_src.models import onnx_runtime

    key = model_dir.cache_key(model_dir.load("digits-onnx"), 0)
    entry = clone / "build" / "model-cache" / key[:32]
    entry.mkdir(parents=True)
    predictor = onnx_runtime.export(joblib.load(digits_model_dir / "model.joblib"), seed=0)
    joblib.dump(predictor, entry / "model.joblib", compress=3)
    (entry / "metadata.json").write_text(json.dumps(predictor.metadata))
    (entry / "cache-key").write_text(key)


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory, digits_model_dir: Path) -> Iterator[Path]:
    root = copy_work_tree(tmp_path_factory.mktemp("readme") / "clone")
    seed_default_model(root, digits_model_dir)
    yield root
    # Whatever a failed test left running: the endpoint, then the emulator.
    env = _env(root, {})
    subprocess.run(["make", "down"], cwd=root, env=env, capture_output=True, timeout=120)


def _env(root: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "TF_", "LOCAL_", "BUILD_DIR", "PYTEST"))
    }
    env.pop("PYTHONPATH", None)
    env.update(extra)
    return env


def make(root: Path, command: str, env: dict[str, str], timeout: float = 1200) -> str:
    """Run one README line with bash in the copy; fail with its output if it fails."""
    proc = subprocess.run(
        ["bash", "-c", command],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, f"{command}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


def curl(command: str, port: int, root: Path) -> dict[str, object]:
    """Send what a README curl line sends, to the endpoint on ``port``."""
    argv = shlex.split(command)
    headers, body, url = {}, b"", ""
    args = iter(argv[1:])
    for arg in args:
        if arg == "-H":
            name, value = next(args).split(":", 1)
            headers[name.strip()] = value.strip()
        elif arg in ("-d", "--data-binary"):
            data = next(args)
            body = (root / data[1:]).read_bytes() if data.startswith("@") else data.encode()
        elif arg.startswith("http://127.0.0.1:8080/"):
            url = arg.replace(":8080", f":{port}")
        else:
            assert arg == "-s", arg
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=120) as response:
        assert response.status == 200
        return dict(json.loads(response.read()))


def test_the_quick_start_and_the_aws_section_run_as_written(clone: Path) -> None:
    quick = sh_block("Run it on this machine: two commands")
    assert quick[0] == "make up" and quick[1] == "make test"
    try_it = sh_block("Try it")
    aws = sh_block("Deploy to AWS and tear down")
    port, emulator_port = process.free_port(), process.free_port()
    local = _env(clone, {"PORT": str(port), "EMULATOR_PORT": str(emulator_port)})

    # The two commands: `make up` as written (`make test` is what runs this test).
    out = make(clone, quick[0], local)
    assert f"http://127.0.0.1:{port}" in out
    assert "up in" in out

    for line in try_it:
        if line.startswith("curl"):
            answer = curl(line, port, clone)
            predictions = answer["predictions"]
            assert isinstance(predictions, list) and predictions[0]["label"] == "7", answer
        else:
            # xdg-open needs a desktop; MODEL=digits (torch) is covered by the pipeline
            # tests; `make down` comes last, after the AWS section has used the emulator.
            assert line.startswith(("xdg-open", "make up MODEL=digits", "make down")), line

    # The AWS section, against the same emulator standing for AWS.
    python = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    emulated_aws = _env(
        clone,
        {
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{emulator_port}",
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_EC2_METADATA_DISABLED": "true",
            "TF_EXTRA_VARS": f"-var name=readme-aws -var lambda_runtime={python} "
            "-var local_emulator=true",
            "LIB_EXTRA_INDEX_URL": "",
            "PIPELINE_ARGS": "--skip-checks",
            "EMULATOR_PORT": str(emulator_port),
        },
    )
    ran = []
    for line in aws:
        if line.startswith("export AWS_PROFILE="):
            continue  # the emulator's test credentials stand for the profile
        match = re.fullmatch(r"export (\w+)=(.*)", line)
        if match:
            value = match.group(2).replace("$AWS_REGION", emulated_aws.get("AWS_REGION", ""))
            emulated_aws[match.group(1)] = value
            continue
        command = re.sub(r" TF_STATE_BUCKET=\S+", "", line)
        command = command.replace("MODEL=path/to/model-dir", "MODEL=examples/tabular-sklearn")
        if "examples/tabular-sklearn" in command:
            make(clone, ".venv/bin/python examples/tabular-sklearn/train.py", emulated_aws)
        out = make(clone, command, emulated_aws)
        ran.append(command)
        if command.startswith("make deploy"):
            assert "is live" in out, out[-2000:]
    assert ran == [
        "make deploy TARGET=aws",
        "make deploy TARGET=aws MODEL=examples/tabular-sklearn",
        "make rollback TARGET=aws",
        "make destroy TARGET=aws",
    ]
    state = json.loads((clone / "terraform" / "terraform.tfstate").read_text())
    assert state["resources"] == [], "make destroy left resources in the state"

    make(clone, "make down", local)
    assert not (clone / ".state" / "emulator" / "terraform.tfstate").exists()
