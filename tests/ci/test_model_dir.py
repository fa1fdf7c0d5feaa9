"""ci.model_dir: a model directory is validated, built (cached) and laid out for packaging."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from ci import model_dir
from ci.release_check import ReleaseCheckFailed, predict_here, reference_images
from efs_layout.model_manifest import ManifestError, parse_manifest

REPO_ROOT = Path(__file__).resolve().parents[2]
EVERY_MANIFEST = sorted(
    [*REPO_ROOT.glob("models/*/model.json"), *REPO_ROOT.glob("examples/*/model.json")]
)


def features_manifest(**changes: Any) -> dict[str, Any]:
    manifest: dict[str, Any] = {
        "schema_version": 1,
        "name": "tiny",
        "format": "joblib",
        "file": "model.joblib",
        "input": {"kind": "features", "features": 2, "example": [[0.0, 1.0]]},
        "output": {"kind": "probabilities"},
    }
    manifest.update(changes)
    return manifest


def write_dir(
    directory: Path, manifest: dict[str, Any], files: dict[str, str] | None = None
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.json").write_text(json.dumps(manifest))
    for name, text in (files or {}).items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return directory


@pytest.mark.parametrize("path", EVERY_MANIFEST, ids=lambda p: str(p.parent.relative_to(REPO_ROOT)))
def test_every_shipped_model_directory_follows_the_schema(path: Path) -> None:
    doc = json.loads(path.read_text())
    assert model_dir.schema_errors(doc) == []
    parsed = parse_manifest(doc)
    assert parsed.name == doc["name"]
    assert model_dir.LIB_SETS[parsed.lib].is_file()


def test_the_builtin_models_are_model_directories_resolved_by_name() -> None:
    assert set(model_dir.builtin_names()) >= {
        "digits",
        "digits-onnx",
        "resnet152",
        "resnet152-onnx",
        "sklearn-digits",
    }
    assert model_dir.resolve("digits-onnx") == REPO_ROOT / "models" / "digits-onnx"
    loaded = model_dir.load("sklearn-digits")
    assert loaded.builtin and loaded.manifest.lib == "sklearn"
    # sklearn-digits gets a lib/ with scikit-learn in it.
    requirements = model_dir.lib_requirements(loaded, Path("/unused"))
    assert "scikit-learn==" in requirements.read_text()


BAD: list[tuple[str, dict[str, Any], str]] = [
    ("unknown format", features_manifest(format="pickle"), "format: 'pickle' is not one of"),
    (
        "no input",
        {k: v for k, v in features_manifest().items() if k != "input"},
        "'input' is a required",
    ),
    ("bad name", features_manifest(name="My Model"), "name: 'My Model' does not match"),
    (
        "features without example",
        features_manifest(input={"kind": "features", "features": 2}),
        "input:",
    ),
    (
        "torch without code",
        features_manifest(format="torch", torch={"module": "m", "class": "C"}),
        "'code' is a required",
    ),
    (
        "logits without labels",
        features_manifest(output={"kind": "logits"}),
        "'labels' is a required",
    ),
    (
        "path in file",
        features_manifest(file="../model.joblib"),
        "file: '../model.joblib' does not match",
    ),
    ("extra key", features_manifest(colour="blue"), "Additional properties are not allowed"),
    ("future version", features_manifest(schema_version=2), "schema_version: 1 was expected"),
]


@pytest.mark.parametrize(("case", "manifest", "expected"), BAD, ids=[b[0] for b in BAD])
def test_an_invalid_manifest_is_refused_naming_the_field(
    tmp_path: Path, case: str, manifest: dict[str, Any], expected: str
) -> None:
    directory = write_dir(tmp_path / "m", manifest, {"model.joblib": "x"})
    with pytest.raises(model_dir.ModelDirError) as caught:
        model_dir.load(directory)
    assert expected in str(caught.value)
    assert "model.schema.json" in str(caught.value)


def test_missing_files_and_wrong_example_widths_are_named(tmp_path: Path) -> None:
    directory = write_dir(tmp_path / "m", features_manifest(code="code", requirements="req.txt"))
    with pytest.raises(model_dir.ModelDirError, match=r"model\.joblib.*code/.*req\.txt"):
        model_dir.load(directory)
    directory = write_dir(
        tmp_path / "w",
        features_manifest(input={"kind": "features", "features": 3, "example": [[1.0, 2.0]]}),
        {"model.joblib": "x"},
    )
    with pytest.raises(model_dir.ModelDirError, match="must have 3 numbers"):
        model_dir.load(directory)
    with pytest.raises(model_dir.ModelDirError, match="not a model directory"):
        model_dir.load(tmp_path / "nowhere")
    with pytest.raises(ManifestError):
        parse_manifest({"schema_version": 1, "format": "onnx"})


def test_extra_requirements_are_added_to_the_base_set(tmp_path: Path) -> None:
    directory = write_dir(
        tmp_path / "m",
        features_manifest(lib="onnx", requirements="requirements.txt"),
        {"model.joblib": "x", "requirements.txt": "tabulate==0.9.0\n"},
    )
    combined = model_dir.lib_requirements(model_dir.load(directory), tmp_path / "build")
    text = combined.read_text()
    assert "onnxruntime==" in text and text.rstrip().endswith("tabulate==0.9.0")


def test_a_build_command_runs_once_and_its_output_is_cached(tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    script = (
        "import pathlib, sys; out = pathlib.Path(sys.argv[1]); "
        f"c = pathlib.Path({str(counter)!r}); "
        "c.write_text(c.read_text() + 'x' if c.exists() else 'x'); "
        "(out / 'model.joblib').write_text('built ' + sys.argv[2]); "
        "(out / 'metadata.json').write_text('{\"accuracy\": 0.5}')"
    )
    manifest = features_manifest(build={"command": ["{python}", "-c", script, "{out}", "{seed}"]})
    directory = write_dir(tmp_path / "m", manifest)
    out = tmp_path / "build" / "model"
    model_dir.build(directory, out, seed=3, log=lambda _: None)
    assert (out / "model.joblib").read_text() == "built 3"
    metadata = json.loads((out / "metadata.json").read_text())
    assert metadata["accuracy"] == 0.5 and metadata["name"] == "tiny"
    assert metadata["input"]["kind"] == "features"
    model_dir.build(directory, out, seed=3, log=lambda _: None)  # up to date
    (out / "cache-key").unlink()
    model_dir.build(directory, out, seed=3, log=lambda _: None)  # from the cache
    assert counter.read_text() == "x"
    model_dir.build(directory, out, seed=4, log=lambda _: None)  # another seed: built
    assert counter.read_text() == "xx"


def test_a_failing_build_command_says_why_and_leaves_out_untouched(tmp_path: Path) -> None:
    manifest = features_manifest(
        build={"command": ["{python}", "-c", "raise SystemExit('no training data here')"]}
    )
    directory = write_dir(tmp_path / "m", manifest)
    out = tmp_path / "build" / "model"
    out.mkdir(parents=True)
    (out / "keep").write_text("previous build")
    with pytest.raises(model_dir.ModelDirError, match="no training data here"):
        model_dir.build(directory, out, log=lambda _: None)
    assert (out / "keep").read_text() == "previous build"


def test_model_code_that_raises_at_import_fails_the_release_check(tmp_path: Path) -> None:
    import joblib
    from sklearn.linear_model import LogisticRegression

    code = tmp_path / "m" / "code"
    code.mkdir(parents=True)
    (code / "raises_later.py").write_text("class Marker:\n    pass\n")
    sys.path.insert(0, str(code))
    try:
        import raises_later

        model = LogisticRegression().fit([[0.0, 0.0], [1.0, 1.0]], [0, 1])
        model.marker = raises_later.Marker()  # the pickle now names raises_later.Marker
        joblib.dump(model, tmp_path / "m" / "model.joblib")
    finally:
        sys.path.remove(str(code))
        sys.modules.pop("raises_later", None)
    write_dir(tmp_path / "m", features_manifest(code="code"))
    (code / "raises_later.py").write_text("raise RuntimeError('model code is broken')\n")
    out = tmp_path / "build" / "model"
    model_dir.build(tmp_path / "m", out, log=lambda _: None)
    with pytest.raises(ReleaseCheckFailed, match="model code is broken"):
        predict_here(out, reference_images())
    sys.modules.pop("raises_later", None)


def test_a_retrained_model_file_is_a_new_build(tmp_path: Path) -> None:
    directory = write_dir(tmp_path / "m", features_manifest(), {"model.joblib": "first"})
    out = tmp_path / "build" / "model"
    model_dir.build(directory, out, log=lambda _: None)
    assert (out / "model.joblib").read_text() == "first"
    (directory / "model.joblib").unlink()  # a retraining writes a new file
    (directory / "model.joblib").write_text("second")
    model_dir.build(directory, out, log=lambda _: None)
    assert (out / "model.joblib").read_text() == "second"
