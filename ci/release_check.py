"""Pipeline step: the model built with the dev venv predicts the same with lib/'s packages.

    python -m ci.release_check --lib build/lib --model build/model

The dev venv trains and exports with its own torch (a CUDA build here); lib/ serves with a
CPU-only torch of another version (or with ONNX Runtime). A model that unpickles and runs
in one need not give the same numbers in the other, so before a release is packaged, the
same images are decoded and predicted twice: in this process, and in a fresh interpreter
that sees only the standard library, lib/ and the function code (``-I -S``, as on Lambda).
Every class probability must agree within ``TOLERANCE`` (the ONNX export check's bound) and
the ranking's top label must be the same.

It runs where lib/'s binaries can load (the target's Python and machine are this host's),
like build-lib's import check; elsewhere it says so and passes. A lib/ built with
``--allow-missing`` relies on the running interpreter for what it lacks (small test
releases, whose torch comes from the venv), so the child then keeps site-packages after lib/.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import platform
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-4
MARKER = "release-check.json"
_TIMEOUT_SECONDS = 600

# Runs in the child: nothing but the standard library, lib/ and the function code.
_CHILD = """
import json, sys, warnings
warnings.filterwarnings("ignore", message=".*mmap_mode.*compressed file.*")
lib, code, model_dir, images_file = sys.argv[1:5]
sys.path[:0] = [lib, code]
from pathlib import Path
from ci.release_check import reference_predictions
images = {k: bytes.fromhex(v) for k, v in json.load(open(images_file)).items()}
out = reference_predictions(Path(model_dir), images)
versions = {m: getattr(sys.modules[m], "__version__", "?")
            for m in ("torch", "onnxruntime", "sklearn", "numpy", "PIL") if m in sys.modules}
files = {m: getattr(sys.modules[m], "__file__", None)
         for m in ("torch", "onnxruntime", "sklearn", "numpy", "PIL", "joblib")
         if m in sys.modules}
print(json.dumps({"predictions": out, "versions": versions, "files": files}))
"""


class ReleaseCheckFailed(RuntimeError):
    """The model predicts differently (or not at all) with lib/'s packages."""


@dataclass(frozen=True)
class CheckResult:
    """What the check compared and found."""

    ran: bool
    images: int
    max_difference: float
    lib_versions: Mapping[str, str]
    reason: str = ""  # why it did not run


def reference_images() -> dict[str, bytes]:
    """Deterministic PNGs that exercise the whole decode-and-predict path.

    A drawn digit (what smoke sends), a gradient and seeded noise: any input checks the
    arithmetic, and these three give probabilities far from a tie, so the top label
    must agree too.
    """
    import numpy as np
    from PIL import Image, ImageDraw

    def png(image: Image.Image) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        return buffer.getvalue()

    drawn = Image.new("L", (96, 96), 255)
    pen = ImageDraw.Draw(drawn)
    pen.line([(20, 18), (76, 18), (40, 84)], fill=0, width=9)  # a 7, as ci.smoke draws it
    gradient = Image.linear_gradient("L").resize((80, 60)).convert("RGB")
    noise = Image.fromarray(
        np.random.default_rng(0).integers(0, 256, size=(64, 64, 3), dtype=np.uint8), "RGB"
    )
    return {"drawn-7": png(drawn), "gradient": png(gradient), "noise": png(noise)}


def reference_predictions(
    model_dir: Path, images: Mapping[str, bytes]
) -> dict[str, dict[str, float]]:
    """Every score the model gives for each reference input, loaded as the runtime loads it.

    A model directory's output (model.json) is loaded by the runtime's own loader and
    predicts its manifest's example rows (features) or ``images``; a bare model.joblib is
    an image predictor. Runs in the pipeline's process and in the lib/-only child alike.
    """
    from lambda_src.inference.imaging import open_image
    from lambda_src.models.manifest_models import load_joblib, load_predictor

    manifest = _manifest(model_dir)
    if manifest is not None:
        predictor = load_predictor(manifest, model_dir)
        if manifest.input.kind == "features":
            rows = manifest.input.example or ((0.0,) * (manifest.input.features or 1),)
            answers = predictor.predict_rows(rows, max(1, len(predictor.labels)))
            return {f"row-{i}": _scores(answer) for i, answer in enumerate(answers)}
    else:
        predictor = load_joblib(model_dir / "model.joblib")
    out: dict[str, dict[str, float]] = {}
    for name, data in images.items():
        opened = open_image(data)
        if not hasattr(opened, "image"):
            raise ReleaseCheckFailed(f"reference image {name} does not decode: {opened}")
        out[name] = dict(predictor.predict_image(opened.image, len(predictor.labels)))
    return out


def _scores(answer: Any) -> dict[str, float]:
    # A classifier's row is [(label, score), ...]; a regressor's a number or a list of them.
    if isinstance(answer, list) and answer and isinstance(answer[0], tuple):
        return {str(label): float(score) for label, score in answer}
    values = answer if isinstance(answer, list) else [answer]
    return {f"value[{i}]": float(v) for i, v in enumerate(values)}


def predict_here(model_dir: Path, images: Mapping[str, bytes]) -> dict[str, dict[str, float]]:
    """Every score for each reference input, with this process's packages.

    Whatever the model's own code raises (at import, at load, at prediction) fails the
    check with its message, so a broken model directory is never promoted.
    """
    model_code = _model_code(model_dir)
    if model_code is not None:
        sys.path.insert(0, str(model_code))
    try:
        return reference_predictions(model_dir, images)
    except ReleaseCheckFailed:
        raise
    except Exception as exc:
        raise ReleaseCheckFailed(
            f"the model does not load or predict here: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        if model_code is not None and str(model_code) in sys.path:
            sys.path.remove(str(model_code))


def _manifest(model_dir: Path) -> Any:
    """build-model's model.json, parsed; None for a bare model.joblib + metadata.json."""
    from efs_layout.model_manifest import MANIFEST_FILE, read_manifest

    manifest_file = model_dir / MANIFEST_FILE
    return read_manifest(manifest_file) if manifest_file.is_file() else None


def _model_file(model_dir: Path) -> str:
    manifest = _manifest(model_dir)
    return manifest.file if manifest is not None else "model.joblib"


def _model_code(model_dir: Path) -> Path | None:
    manifest = _manifest(model_dir)
    return model_dir / manifest.code if manifest is not None and manifest.code else None


def predict_with_lib(
    lib: Path, model_dir: Path, images: Mapping[str, bytes], *, isolated: bool = True
) -> dict[str, Any]:
    """The same predictions in a fresh interpreter whose packages come from ``lib`` only."""
    flags = ["-I", "-S", "-B"] if isolated else ["-B"]
    with tempfile.TemporaryDirectory(prefix="release-check-") as tmp:
        images_file = Path(tmp) / "images.json"
        images_file.write_text(json.dumps({name: data.hex() for name, data in images.items()}))
        args = [str(lib), str(REPO_ROOT), str(model_dir), str(images_file)]
        try:
            proc = subprocess.run(
                [sys.executable, *flags, "-c", _CHILD, *args],
                capture_output=True,
                text=True,
                errors="replace",
                timeout=_TIMEOUT_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise ReleaseCheckFailed(
                f"predicting with lib/ took over {_TIMEOUT_SECONDS} s"
            ) from exc
    if proc.returncode != 0:
        last = [line for line in proc.stderr.splitlines() if line.strip()][-1:] or ["no output"]
        raise ReleaseCheckFailed(
            f"the model does not load or predict with lib/'s packages: {last[0].strip()}"
        )
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def compare(
    here: Mapping[str, Mapping[str, float]], there: Mapping[str, Mapping[str, float]]
) -> float:
    """The largest probability difference; ReleaseCheckFailed if labels or top label differ."""
    worst = 0.0
    for name, expected in here.items():
        got = there.get(name)
        if got is None or set(got) != set(expected):
            raise ReleaseCheckFailed(f"{name}: lib/ gives other labels than the dev venv")
        top_here = max(expected, key=lambda label: expected[label])
        top_there = max(got, key=lambda label: got[label])
        if top_here != top_there:
            raise ReleaseCheckFailed(
                f"{name}: top label {top_there!r} with lib/, {top_here!r} with the dev venv"
            )
        worst = max(worst, *(abs(expected[label] - got[label]) for label in expected))
    if worst > TOLERANCE:
        raise ReleaseCheckFailed(
            f"probabilities differ by up to {worst:.2e} between lib/ and the dev venv "
            f"(tolerance {TOLERANCE:.0e})"
        )
    return worst


def runs_here(lib: Path) -> tuple[bool, str]:
    """Whether lib/'s binaries load in this interpreter (its Python and machine), and if not why."""
    report = json.loads(lib.with_name(lib.name + ".json").read_text())
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    machine = {"arm64": "aarch64", "amd64": "x86_64"}.get(platform.machine().lower())
    machine = machine or platform.machine().lower()
    target, target_machine = report["python"]["version"], report["platform"]["machine"]
    if (target, target_machine) != (here, machine):
        return False, (
            f"lib/ is for Python {target} on {target_machine}, this is {here} on {machine}; "
            "run the release check on a host like the target"
        )
    return True, ""


def check(
    lib: Path,
    model_dir: Path,
    *,
    can_run: bool = True,
    isolated: bool = True,
    reason: str = "",
) -> CheckResult:
    """Compare the model's predictions in this venv and with ``lib``; raise on a difference."""
    if not can_run:
        return CheckResult(False, 0, 0.0, {}, reason)
    images = reference_images()
    expected = predict_here(model_dir, images)
    answer = predict_with_lib(lib, model_dir, images, isolated=isolated)
    if isolated:
        outside = [
            module
            for module, file in answer["files"].items()
            if file is None or not Path(file).resolve().is_relative_to(lib.resolve())
        ]
        if outside:
            raise ReleaseCheckFailed(f"{', '.join(outside)} did not come from lib/")
    worst = compare(expected, answer["predictions"])
    return CheckResult(True, len(expected), worst, dict(answer["versions"]))


def cached_check(
    lib: Path, model_dir: Path, marker_dir: Path, *, can_run: bool, isolated: bool, reason: str
) -> CheckResult:
    """check(), skipped when this lib/ and model passed it before (same report and key)."""
    key = hashlib.sha256(
        (lib.with_name(lib.name + ".json")).read_bytes()
        + (model_dir / _model_file(model_dir)).stat().st_size.to_bytes(8, "big")
        + _model_key(model_dir)
        + repr((can_run, isolated)).encode()
    ).hexdigest()
    marker = marker_dir / MARKER
    try:
        recorded = json.loads(marker.read_text())
    except (OSError, ValueError):
        recorded = {}
    if recorded.get("key") == key:
        return CheckResult(
            bool(recorded["ran"]),
            int(recorded["images"]),
            float(recorded["max_difference"]),
            dict(recorded["lib_versions"]),
            str(recorded.get("reason", "")),
        )
    result = check(lib, model_dir, can_run=can_run, isolated=isolated, reason=reason)
    marker.write_text(
        json.dumps(
            {
                "key": key,
                "ran": result.ran,
                "images": result.images,
                "max_difference": result.max_difference,
                "lib_versions": dict(result.lib_versions),
                "reason": result.reason,
            }
        )
    )
    return result


def _model_key(model_dir: Path) -> bytes:
    marker = model_dir / "cache-key"
    if marker.is_file():
        return marker.read_bytes()
    digest = hashlib.sha256()
    with (model_dir / _model_file(model_dir)).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest().encode()


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: 0 when the predictions agree (or the check cannot run here), 1 otherwise."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lib", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True, help="build-model's output dir")
    args = parser.parse_args(argv)
    can_run, reason = runs_here(args.lib)
    try:
        result = check(args.lib, args.model, can_run=can_run, reason=reason)
    except ReleaseCheckFailed as exc:
        print(f"release-check: FAILED: {exc}", file=sys.stderr)
        return 1
    if not result.ran:
        print(f"release-check: not run: {result.reason}")
        return 0
    print(
        f"release-check: {result.images} reference inputs agree within {result.max_difference:.1e} "
        f"(lib/: {', '.join(f'{k} {v}' for k, v in result.lib_versions.items())})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
