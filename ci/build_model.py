"""Pipeline step: build a servable model and write DIR/model.joblib and DIR/metadata.json.

    python -m ci.build_model --model digits --out build/model
    python -m ci.build_model --model resnet152 --out build/model [--weights resnet152-394f9c45.pth]
    python -m ci.build_model --model sklearn-digits --out build/model

`model.joblib` holds one object satisfying `lambda_src.models.protocol.ImagePredictor`;
`metadata.json` is that object's metadata plus the artifact's size and sha256 and
the build time. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

MODELS = ("digits", "resnet152", "sklearn-digits", "digits-onnx", "resnet152-onnx")
MODEL_FILE = "model.joblib"
METADATA_FILE = "metadata.json"
# zlib level 3 shrinks the small models' arrays a little at no real cost; the
# ResNet-152's 230 MB of float weights barely compress, and decompressing them
# would slow every cold start, so it is stored raw (joblib can then mmap it).
COMPRESSION = {
    "digits": 3,
    "resnet152": 0,
    "sklearn-digits": 3,
    "digits-onnx": 3,
    "resnet152-onnx": 0,
}


def _build_predictor(model: str, weights: Path | None, seed: int, epochs: int | None) -> Any:
    if model.endswith("-onnx"):
        # The same network, exported and checked against torch, served by ONNX Runtime.
        from lambda_src.models import onnx_runtime

        return onnx_runtime.export(
            _build_predictor(model.removesuffix("-onnx"), weights, seed, epochs), seed=seed
        )
    if model == "digits":
        from lambda_src.models import digits

        config = digits.TrainingConfig(seed=seed)
        if epochs is not None:
            config = digits.TrainingConfig(seed=seed, epochs=epochs)
        return digits.train(config)
    if model == "resnet152":
        from lambda_src.models import resnet152

        return resnet152.build(weights=weights, seed=seed)
    if model == "sklearn-digits":
        return build_sklearn_digits(seed)
    raise ValueError(f"unknown model {model!r}; choose from {', '.join(MODELS)}")


def build_sklearn_digits(seed: int = 0) -> Any:
    """The bring-your-own example: an RBF SVC on scikit-learn's digits, wrapped for serving."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.svm import SVC

    from lambda_src.models.sklearn_adapter import ImagePreprocessing, SklearnImagePredictor

    started = time.perf_counter()
    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data, digits.target, test_size=0.2, stratify=digits.target, random_state=seed
    )
    # gamma/C are the usual good values for these 0..16 features. Probabilities
    # come from sigmoid calibration (SVC(probability=True) is deprecated).
    estimator = CalibratedClassifierCV(SVC(gamma=0.001, C=10.0), ensemble=False)
    estimator.fit(x_train, y_train)
    accuracy = float(estimator.score(x_test, y_test))
    return SklearnImagePredictor(
        estimator,
        ImagePreprocessing(),
        labels=[str(label) for label in estimator.classes_],
        metadata={
            "name": "digits-svc",
            "accuracy": round(accuracy, 6),
            "train_seconds": round(time.perf_counter() - started, 2),
            "seed": seed,
            "dataset": "sklearn.datasets.load_digits, stratified 80/20 split",
        },
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_atomically(target: Path, write: Any) -> None:
    # A half-written model file must never be picked up by a sync step.
    partial = target.with_name(target.name + ".partial")
    write(partial)
    os.replace(partial, target)


def build(
    model: str,
    out_dir: Path,
    weights: Path | None = None,
    seed: int = 0,
    epochs: int | None = None,
) -> dict[str, Any]:
    """Build `model`, write out_dir/model.joblib and out_dir/metadata.json, return the metadata.

    Raises ValueError if the predictor does not satisfy the serving protocol.
    """
    import joblib

    from lambda_src.models.protocol import validate_predictor

    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose from {', '.join(MODELS)}")
    if weights is not None and model not in ("resnet152", "resnet152-onnx"):
        raise ValueError("--weights applies to resnet152 only")
    started = time.perf_counter()
    predictor = _build_predictor(model, weights, seed, epochs)
    problems = validate_predictor(predictor)
    if problems:
        raise ValueError(f"{model} predictor is not servable: {'; '.join(problems)}")
    build_seconds = time.perf_counter() - started

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model_path = out_dir / MODEL_FILE
    dump_started = time.perf_counter()
    _write_atomically(
        model_path, lambda path: joblib.dump(predictor, path, compress=COMPRESSION[model])
    )
    dump_seconds = time.perf_counter() - dump_started

    metadata: dict[str, Any] = dict(predictor.metadata)
    metadata["artifact"] = {
        "file": MODEL_FILE,
        "bytes": model_path.stat().st_size,
        "sha256": _sha256(model_path),
        "class": f"{type(predictor).__module__}.{type(predictor).__qualname__}",
        "joblib_compress": COMPRESSION[model],
        "build_seconds": round(build_seconds, 2),
        "dump_seconds": round(dump_seconds, 2),
    }
    metadata_text = json.dumps(metadata, indent=2, sort_keys=True, allow_nan=False) + "\n"
    _write_atomically(out_dir / METADATA_FILE, lambda path: path.write_text(metadata_text))
    return metadata


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        description="Build a servable model (model.joblib + metadata.json)."
    )
    parser.add_argument("--model", choices=MODELS, required=True)
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--weights", type=Path, help="local torchvision weight file (resnet152)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, help="training epochs (digits; default 40)")
    args = parser.parse_args(argv)
    if args.weights is not None and not args.weights.is_file():
        parser.error(f"--weights {args.weights} is not a file")
    try:
        metadata = build(args.model, args.out, args.weights, args.seed, args.epochs)
    except ValueError as exc:
        print(f"build_model: {exc}", file=sys.stderr)
        return 1
    artifact = metadata["artifact"]
    accuracy = metadata.get("accuracy")
    accuracy_text = "unknown" if accuracy is None else f"{accuracy:.4f}"
    print(f"model:     {metadata['name']} ({artifact['class']})")
    print(
        f"trained:   {metadata['trained']}"
        + (f" ({metadata['note']})" if "note" in metadata else "")
    )
    print(f"accuracy:  {accuracy_text}")
    if "train_seconds" in metadata:
        print(f"train:     {metadata['train_seconds']:.1f} s")
    print(f"build:     {artifact['build_seconds']:.1f} s, dump {artifact['dump_seconds']:.1f} s")
    print(f"artifact:  {args.out / MODEL_FILE} ({artifact['bytes']} bytes)")
    print(f"sha256:    {artifact['sha256']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
