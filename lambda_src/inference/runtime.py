"""One execution environment's state: which release it serves and the model it loaded.

Nothing from a release's lib/ is imported, and no pickle is opened, until
efs_layout.check_release() says the release fits this interpreter.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from efs_layout.layout import add_lib_to_path, is_valid_release_id, release_path
from efs_layout.model_manifest import MANIFEST_FILE, InputSpec, ModelManifest, read_manifest
from efs_layout.verify import Verdict, check_release
from lambda_src.inference.http import HttpError

# What a release without model.json (built before model directories) takes.
IMAGE_INPUT = InputSpec(kind="image")
# The module each stamp framework needs before its first prediction.
FRAMEWORK_MODULES = {
    "torch": "torch",
    "sklearn": "sklearn",
    "scikit-learn": "sklearn",
    "onnxruntime": "onnxruntime",
}


@dataclass(frozen=True)
class Config:
    """Where the release lives, from the function's environment (set by Terraform/pipeline)."""

    mount_path: Path
    release_id: str

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Config:
        """Read EFS_MOUNT_PATH and RELEASE_ID."""
        env = os.environ if environ is None else environ
        return cls(
            mount_path=Path(env.get("EFS_MOUNT_PATH", "/mnt/ml")),
            release_id=env.get("RELEASE_ID", "none"),
        )


@dataclass
class Loaded:
    """A release whose model is in memory."""

    release_id: str
    stamp: Any
    predictor: Any
    input: InputSpec
    timings_ms: dict[str, float]


@dataclass
class Runtime:
    """Loads the configured release once per execution environment and serves from it."""

    config: Config
    loaded: Loaded | None = None
    invocations: int = 0
    last_verdict: Verdict | None = None
    _started: float = field(default_factory=time.perf_counter)

    def next_invocation(self) -> bool:
        """Count an invocation; True for the first one of this environment (a cold start)."""
        self.invocations += 1
        return self.invocations == 1

    def ensure_loaded(self, warm: bool = True) -> Loaded | HttpError:
        """Check the release and load its model, once; a refused release is re-checked later.

        With ``warm`` a whole prediction of a synthetic image runs too (`_rehearse`); a
        prediction passes False because it warms the model itself, and a rehearsal would
        add a second forward pass to its cold start.
        """
        if self.loaded is not None:
            return self.loaded
        if self.config.release_id in ("", "none"):
            return HttpError(503, "no_release", "no release has been promoted to this function yet")
        t0 = time.perf_counter()
        verdict = check_release(self.config.mount_path, self.config.release_id)
        self.last_verdict = verdict
        t1 = time.perf_counter()
        if not verdict.ok or verdict.stamp is None:
            return HttpError(
                503,
                f"release_{verdict.code.value}",
                f"release {self.config.release_id} is not served: {verdict.message}",
            )
        add_lib_to_path(self.config.mount_path, self.config.release_id)
        try:
            # joblib and Pillow from the release's lib/, now that the stamp fits.
            importlib.import_module("joblib")
            from PIL import Image

            # Pillow imports its format plugins on the first decode; import them now, so
            # a warm environment can decode even if its release's lib/ goes away.
            Image.init()

            # The framework is imported here, not inside the first forward pass, so the
            # cold-start figures say which part is imports and which is the model.
            framework = FRAMEWORK_MODULES.get(verdict.stamp.model.framework)
            if framework is not None:
                importlib.import_module(framework)
        except ImportError as exc:
            return HttpError(
                503,
                "release_import_failed",
                f"release {self.config.release_id} is not served: its lib/ failed to import "
                f"({exc})",
            )
        t2 = time.perf_counter()
        release_dir = release_path(self.config.mount_path, self.config.release_id)
        try:
            predictor, manifest = load_release_model(release_dir, verdict.stamp)
        except Exception as exc:
            # The model's own code runs here (unpickling, imports, a constructor), so any
            # exception is possible. The stamp covers these files, so this is a model the
            # pipeline's release check (the same loader) should have refused: say so.
            return HttpError(
                503,
                "release_model_failed",
                f"release {self.config.release_id} is not served: its model failed to load "
                f"({type(exc).__name__}: {exc})",
            )
        t3 = time.perf_counter()
        if warm:
            _rehearse(predictor, manifest)
        t4 = time.perf_counter()
        self.loaded = Loaded(
            release_id=self.config.release_id,
            stamp=verdict.stamp,
            predictor=predictor,
            input=manifest.input if manifest is not None else IMAGE_INPUT,
            timings_ms={
                "stamp_check": (t1 - t0) * 1000,
                "imports": (t2 - t1) * 1000,
                "model_load": (t3 - t2) * 1000,
                "warmup": (t4 - t3) * 1000,
                "init": (t4 - t0) * 1000,
            },
        )
        return self.loaded

    def health(self) -> dict[str, Any]:
        """What /health reports: release, stamp summary, loaded or not, and on disk or not."""
        release_id = self.config.release_id
        on_disk = (
            is_valid_release_id(release_id)
            and release_path(self.config.mount_path, release_id).is_dir()
        )
        body: dict[str, Any] = {
            "release": self.config.release_id,
            "loaded": self.loaded is not None,
            "release_on_disk": on_disk,
        }
        stamp = self.loaded.stamp if self.loaded else None
        if stamp is None and self.last_verdict is not None:
            stamp = self.last_verdict.stamp
            body["verdict"] = self.last_verdict.code.value
        if stamp is not None:
            body["stamp"] = {
                "created_at": stamp.created_at,
                "git_commit": stamp.git_commit,
                "python": stamp.python.abi_tag,
                "machine": stamp.platform.machine,
                "packages": stamp.packages.as_dict(),
                "model": {"name": stamp.model.name, "framework": stamp.model.framework},
                "files": len(stamp.manifest),
            }
        if self.loaded is not None:
            body["input"] = self.loaded.input.public()
            # The version this environment really imported, and from where: the stamp says
            # what lib/ holds, this says that lib/'s copy is what serves.
            module = sys.modules.get(FRAMEWORK_MODULES.get(self.loaded.stamp.model.framework, ""))
            if module is not None:
                body["framework"] = {
                    "module": module.__name__,
                    "version": str(getattr(module, "__version__", "unknown")),
                    "from_release": _from_release(module, self.config),
                }
        return body


def _from_release(module: Any, config: Config) -> bool:
    """Whether ``module`` was imported from the release's lib/ (not the runtime's own path)."""
    file = getattr(module, "__file__", None)
    if not file:
        return False
    lib = release_path(config.mount_path, config.release_id) / "lib"
    return os.path.abspath(str(file)).startswith(os.path.abspath(lib) + os.sep)


def load_release_model(release_dir: Path, stamp: Any) -> tuple[Any, ModelManifest | None]:
    """The release's model, loaded as its manifest says (legacy: a bare predictor joblib).

    Call only after check_release() said ok and lib/ is on sys.path. The pipeline's release
    check loads models with the same loaders, so it predicts with the object the runtime serves.
    """
    model_dir = release_dir / "model"
    manifest_entry = f"model/{MANIFEST_FILE}"
    if any(entry.path == manifest_entry for entry in stamp.manifest):
        manifest = read_manifest(model_dir / MANIFEST_FILE)
        from lambda_src.models.manifest_models import load_predictor

        return load_predictor(manifest, model_dir), manifest
    from lambda_src.models.manifest_models import load_joblib

    return load_joblib(release_dir / stamp.model.file), None


def _rehearse(predictor: Any, manifest: ModelManifest | None) -> None:
    """Decode and predict a small synthetic PNG, as a request would.

    A warm-up must touch everything a prediction uses: Pillow's plugins, numpy's lazily
    imported submodules (np.median imports numpy.ma), the network's first forward pass. All
    of them load from the release's lib/ on first use, so an environment warmed only
    halfway fails if its release goes away, and its first real request is slow.
    """
    if manifest is not None and manifest.input.kind == "features":
        predictor.rehearse()
        return
    import io

    from PIL import Image

    from lambda_src.inference.imaging import open_image

    buffer = io.BytesIO()
    gradient = Image.linear_gradient("L").resize((64, 64)).convert("RGB")
    gradient.save(buffer, "PNG")
    opened = open_image(buffer.getvalue())
    if isinstance(opened, HttpError):  # cannot happen for this image; never fail a load on it
        return
    predictor.predict_image(opened.image, 1)
