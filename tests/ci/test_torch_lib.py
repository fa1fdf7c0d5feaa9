"""lib/ for the torch format is the CPU build, and the model served from it predicts as the
dev venv's CUDA build of torch does.

The lib is built for real from requirements/lambda.txt (CPU torch from the local wheel, the
CPU index on AWS), once per clone: it lives in build/test-cache/ and build-lib's own cache
key decides when it is rebuilt. The release is served by one real execution environment
(the local data plane's runner and the inference zip), so what answers is the handler as
deployed, importing torch from the release's lib/.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ci import build_lib, release_check
from ci.package_release import stamp_fields
from efs_layout import assemble_release
from efs_layout.stamp import ModelInfo, StampFields
from local.dataplane.environment import ExecutionEnvironment
from tests.conftest import inference_environment
from tests.lambda_src.hostile_corpus import api_event

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE = REPO_ROOT / "build" / "test-cache"
RID = "20261129T120000Z-cafe123"
# What a CUDA build of torch brings and a CPU build must not.
CUDA_DISTRIBUTIONS = ("nvidia-", "triton", "cuda-")
CUDA_FILES = (
    "libcudnn",
    "libcublas",
    "libcufft",
    "libcurand",
    "libcusparse",
    "libnccl",
    "libcudart",
    "libtorch_cuda",
    "libnvrtc",
    "libnvjitlink",
)


@pytest.fixture(scope="session")
def torch_lib() -> build_lib.LibReport:
    """requirements/lambda.txt built for this interpreter (cached across runs of a clone)."""
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    return build_lib.build_lib(
        REPO_ROOT / "requirements" / "lambda.txt", CACHE / "torch-lib", python_version=here
    )


def test_the_torch_lib_holds_no_cuda(torch_lib: build_lib.LibReport) -> None:
    versions = torch_lib.packages.as_dict()
    assert versions["torch"].endswith("+cpu")
    assert "torchvision" not in versions  # serving rebuilds the ResNets without it
    assert not [name for name in versions if name.startswith(CUDA_DISTRIBUTIONS)]
    cuda = [
        p.relative_to(torch_lib.lib).as_posix()
        for p in torch_lib.lib.rglob("*.so*")
        if p.name.startswith(CUDA_FILES)
    ]
    assert cuda == []
    # A CUDA build's lib/ was 5.6 GB in 10,379 files; this one is a seventh of that.
    assert torch_lib.bytes < 900e6, torch_lib.bytes
    assert set(versions) == {
        "torch",
        "typing-extensions",
        "joblib",
        "cloudpickle",
        "pillow",
        "numpy",
    }


@dataclass
class Served:
    environment: ExecutionEnvironment
    model_dir: Path


@pytest.fixture(scope="module")
def served(
    torch_lib: build_lib.LibReport,
    digits_model_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Served]:
    work = tmp_path_factory.mktemp("torch-lib-served")
    efs = work / "efs"
    report = json.loads(torch_lib.report_path.read_text())
    meta = json.loads((digits_model_dir / "metadata.json").read_text())
    fields = stamp_fields(report, meta, "0123456789abcdef0123456789abcdef01234567")
    fields = StampFields(
        git_commit=fields.git_commit,
        python=fields.python,
        platform=fields.platform,
        packages=fields.packages,
        model=ModelInfo(
            framework=fields.model.framework,
            name=fields.model.name,
            file="model/model.joblib",
            metadata=fields.model.metadata,
        ),
    )
    files = {
        f"lib/{p.relative_to(torch_lib.lib).as_posix()}": p
        for p in torch_lib.lib.rglob("*")
        if p.is_file()
    }
    files["model/model.joblib"] = digits_model_dir / "model.joblib"
    assemble_release(efs, RID, files, fields)
    with inference_environment(work, efs, RID, "torch-lib-inference") as (environment, _spec):
        yield Served(environment, digits_model_dir)


def _body(payload: dict[str, Any]) -> dict[str, Any]:
    assert payload["statusCode"] == 200, payload
    return dict(json.loads(payload["body"]))


def test_the_served_model_predicts_as_the_dev_venv_does(served: Served) -> None:
    import torch

    images = release_check.reference_images()
    expected = release_check.predict_here(served.model_dir, images)
    for name, data in images.items():
        outcome = served.environment.invoke(api_event(data, query={"top_k": "10"}))
        assert outcome.error is None, outcome.error
        got = {p["label"]: p["score"] for p in _body(outcome.payload)["predictions"]}
        assert set(got) == set(expected[name]), name
        worst = max(abs(got[label] - expected[name][label]) for label in got)
        assert worst <= release_check.TOLERANCE, (name, worst)
    # And what served them was lib/'s CPU torch, not this venv's CUDA build.
    health = _body(
        served.environment.invoke(api_event(None, None, method="GET", path="/health")).payload
    )
    assert health["framework"]["module"] == "torch"
    assert health["framework"]["version"] == "2.13.0+cpu"
    assert health["framework"]["from_release"] is True
    assert torch.__version__ != health["framework"]["version"]


def test_the_release_check_runs_isolated_and_agrees(
    torch_lib: build_lib.LibReport, digits_model_dir: Path
) -> None:
    result = release_check.check(torch_lib.lib, digits_model_dir)
    assert result.ran and result.images == 3
    assert result.max_difference <= release_check.TOLERANCE
    assert result.lib_versions["torch"] == "2.13.0+cpu"


def test_the_onnx_lib_serves_the_exported_model_without_torch(
    digits_model_dir: Path, tmp_path: Path
) -> None:
    import joblib

    from lambda_src.models import onnx_runtime

    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    lib = build_lib.build_lib(
        REPO_ROOT / "requirements" / "lambda-onnx.txt", CACHE / "onnx-lib", python_version=here
    )
    versions = lib.packages.as_dict()
    assert "onnxruntime" in versions and "torch" not in versions
    assert lib.bytes < 250e6, lib.bytes
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    exported = onnx_runtime.export(joblib.load(digits_model_dir / "model.joblib"))
    joblib.dump(exported, model_dir / "model.joblib", compress=3)
    result = release_check.check(lib.lib, model_dir)
    assert result.ran and result.max_difference <= release_check.TOLERANCE
    assert "torch" not in result.lib_versions and result.lib_versions["onnxruntime"] == "1.32.0"
