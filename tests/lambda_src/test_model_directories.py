"""Model directories served by the real handler from a folder standing for EFS.

Each release is assembled from `ci.model_dir.build`'s output the way the pipeline packages
it (model.json, the model file and code/ under model/, covered by the stamp). What is
checked: rows of JSON features get one answer each; hostile features get clean 4xx and
leave the environment serving; the wrong input kind is a 415; the model's own code ships
in the release and is imported from there; a code file changed on EFS is refused (503).
"""

from __future__ import annotations

import json
import math
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import pytest

from ci import model_dir
from efs_layout import assemble_release
from efs_layout.layout import release_path
from lambda_src.inference import handler
from lambda_src.inference.runtime import Config, Runtime
from tests.lambda_src import releases
from tests.lambda_src.test_inference_http import event
from tests.models.conftest import hand_drawn

REPO_ROOT = Path(__file__).resolve().parents[2]
RID = "20261202T120000Z-abcdef1"
WINE_MANIFEST = REPO_ROOT / "examples" / "tabular-sklearn" / "model.json"

# A transformer of the user's own: the pickle names `wine_features.Log1p`, which only
# the model directory's code/ provides.
USER_CODE = '''
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin


class Log1p(BaseEstimator, TransformerMixin):
    """log(1 + x) of every feature."""

    def fit(self, x, y=None):
        return self

    def transform(self, x):
        return np.log1p(np.asarray(x, dtype=float))
'''


def _wine_dir(directory: Path, *, with_code: bool) -> Path:
    """A features model directory: the example's manifest, a model trained here."""
    from sklearn.datasets import load_wine
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    directory.mkdir(parents=True)
    manifest = json.loads(WINE_MANIFEST.read_text())
    wine = load_wine()
    steps: list[Any] = [StandardScaler(), LogisticRegression(max_iter=1000)]
    if with_code:
        (directory / "code").mkdir()
        (directory / "code" / "wine_features.py").write_text(USER_CODE)
        manifest["code"] = "code"
        sys.path.insert(0, str(directory / "code"))
        try:
            import wine_features

            steps.insert(0, wine_features.Log1p())
            model = make_pipeline(*steps).fit(wine.data, wine.target)
            joblib.dump(model, directory / "model.joblib")
        finally:
            sys.path.remove(str(directory / "code"))
            sys.modules.pop("wine_features", None)
    else:
        model = make_pipeline(*steps).fit(wine.data, wine.target)
        joblib.dump(model, directory / "model.joblib")
    manifest["input"]["max_rows"] = 50
    (directory / "model.json").write_text(json.dumps(manifest))
    return directory


def _release(tmp_path: Path, source_dir: Path) -> Path:
    """Build the directory as the pipeline does and assemble it as a release on 'EFS'."""
    built = tmp_path / "build" / "model"
    model_dir.build(source_dir, built, log=lambda _: None)
    tree = tmp_path / "src"
    shutil.copytree(
        built, tree / "model", ignore=shutil.ignore_patterns("metadata.json", "cache-key")
    )
    (tree / "lib").mkdir()
    (tree / "lib" / "README.txt").write_text("dependencies of the release\n")
    fields = releases.fields(name="wine-classifier", framework="sklearn")
    root = tmp_path / "efs"
    assemble_release(root, RID, tree, fields)
    return root


@pytest.fixture()
def serve(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    saved_path, saved_modules = list(sys.path), set(sys.modules)

    def start(root: Path) -> None:
        monkeypatch.setattr(handler, "RUNTIME", Runtime(Config(root, RID)))

    yield start
    sys.path[:] = saved_path
    for name in set(sys.modules) - saved_modules:
        if name == "wine_features":
            del sys.modules[name]


def call(e: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = handler.handle(e, None)
    return response["statusCode"], json.loads(response["body"])


def features(body: Any, **kwargs: Any) -> dict[str, Any]:
    raw = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return event(raw, content_type="application/json", **kwargs)


EXAMPLE = json.loads(WINE_MANIFEST.read_text())["input"]["example"]


def test_rows_of_features_get_one_ranked_answer_each(tmp_path: Path, serve: Any) -> None:
    serve(_release(tmp_path, _wine_dir(tmp_path / "wine", with_code=False)))
    status, warm = call(event("", method="POST", path="/warmup", content_type=None))
    assert status == 200, warm
    assert warm["input"]["kind"] == "features" and warm["input"]["features"] == 13
    status, body = call(features({"instances": EXAMPLE}, query={"top_k": "2"}))
    assert status == 200, body
    assert body["model"] == "wine-classifier"
    assert [len(row) for row in body["predictions"]] == [2, 2]
    assert [row[0]["label"] for row in body["predictions"]] == ["class_0", "class_2"]
    assert all(0.0 <= p["score"] <= 1.0 for row in body["predictions"] for p in row)
    status, health = call(event(None, method="GET", path="/health"))
    assert status == 200 and health["input"]["kind"] == "features"


HOSTILE: list[tuple[str, Any, int, str]] = [
    ("nested", {"instances": [[[1.0] * 13]]}, 422, "non_numeric_value"),
    ("strings", {"instances": [["1"] * 13]}, 422, "non_numeric_value"),
    ("booleans", {"instances": [[True] * 13]}, 422, "non_numeric_value"),
    ("nulls", {"instances": [[None] * 13]}, 422, "non_numeric_value"),
    ("nan", '{"instances": [[' + ", ".join(["NaN"] * 13) + "]]}", 422, "non_finite_value"),
    (
        "infinity",
        '{"instances": [[' + ", ".join(["Infinity"] * 13) + "]]}",
        422,
        "non_finite_value",
    ),
    ("overflow", '{"instances": [[' + ", ".join(["1e400"] * 13) + "]]}", 422, "non_finite_value"),
    ("ragged", {"instances": [[1.0] * 13, [1.0] * 12]}, 422, "ragged_instances"),
    ("narrow", {"instances": [[1.0] * 12]}, 422, "ragged_instances"),
    ("empty", {"instances": []}, 422, "empty_instances"),
    ("no instances", {"rows": [[1.0] * 13]}, 400, "missing_field"),
    ("over the manifest's max_rows", {"instances": [[1.0] * 13] * 51}, 413, "too_many_rows"),
    ("a million rows", '{"instances": [' + ",".join(["[1]"] * 10**6) + "]}", 413, "too_many_rows"),
    ("deep", '{"instances": ' + "[" * 100_000 + "]" * 100_000 + "}", 413, "too_many_rows"),
    ("not json", "{instances: [[1]]", 400, "bad_json"),
    ("huge", '{"instances": [[' + "1," * 4_000_000 + "1]]}", 413, "payload_too_large"),
]


@pytest.mark.parametrize(("case", "body", "status", "code"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_features_get_a_clean_4xx_and_the_environment_keeps_serving(
    tmp_path: Path, serve: Any, case: str, body: Any, status: int, code: str
) -> None:
    serve(_release(tmp_path, _wine_dir(tmp_path / "wine", with_code=False)))
    got, answer = call(features(body))
    assert (got, answer["error"]["code"]) == (status, code), answer
    assert answer["error"]["message"]
    got, answer = call(features({"instances": EXAMPLE}))
    assert got == 200 and len(answer["predictions"]) == 2


def test_the_wrong_input_kind_is_a_415_that_names_the_right_one(tmp_path: Path, serve: Any) -> None:
    serve(_release(tmp_path, _wine_dir(tmp_path / "wine", with_code=False)))
    status, body = call(event(hand_drawn(3), content_type="image/png"))
    assert status == 415 and body["error"]["code"] == "unsupported_media_type"
    assert "JSON features" in body["error"]["message"] and "13" in body["error"]["message"]


def test_the_models_own_code_ships_in_the_release_and_serves_from_there(
    tmp_path: Path, serve: Any
) -> None:
    root = _release(tmp_path, _wine_dir(tmp_path / "wine", with_code=True))
    shipped = release_path(root, RID) / "model" / "code" / "wine_features.py"
    assert shipped.is_file()
    stamp = json.loads((release_path(root, RID) / "STAMP.json").read_text())
    assert "model/code/wine_features.py" in {entry["path"] for entry in stamp["manifest"]}
    serve(root)
    status, body = call(features({"instances": EXAMPLE}))
    assert status == 200, body
    assert sys.modules["wine_features"].__file__ == str(shipped)
    assert math.isclose(sum(p["score"] for p in body["predictions"][0]), 1.0, rel_tol=1e-6)


def test_model_code_changed_on_efs_after_publishing_is_refused(tmp_path: Path, serve: Any) -> None:
    root = _release(tmp_path, _wine_dir(tmp_path / "wine", with_code=True))
    code_file = release_path(root, RID) / "model" / "code" / "wine_features.py"
    releases.make_writable(code_file)
    code_file.write_text(code_file.read_text() + "\nprint('not what was published')\n")
    serve(root)
    status, body = call(features({"instances": EXAMPLE}))
    assert status == 503, body
    assert body["error"]["code"] == "release_manifest_mismatch"
    assert "wine_features" not in sys.modules
