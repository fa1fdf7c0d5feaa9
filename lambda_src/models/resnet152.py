"""torchvision's ResNet-152 as a servable predictor, with ImageNet weights from a local file.

Nothing is downloaded: pass torchvision's own weight file (e.g.
``resnet152-394f9c45.pth`` or ``resnet152-f82ba261.pth``) to use trained
weights; without one the network is randomly initialised, which is only good
for load-time and latency benchmarks (metadata says ``trained: false``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from . import preprocessing
from .torch_state import StateArrays, TorchStatePredictor, rebuild_network, state_to_arrays

if TYPE_CHECKING:
    from PIL import Image

ARCHITECTURE = "resnet152"
UNTRAINED_NOTE = "untrained: for benchmarks only"


class ImageNetResNetPredictor(TorchStatePredictor):
    """ImageNet classification with a torchvision ResNet. Satisfies `protocol.ImagePredictor`."""

    input_shape = (3, 224, 224)

    def __init__(
        self,
        config: dict[str, Any],
        state: StateArrays,
        labels: list[str],
        metadata: dict[str, Any],
        resize: int = 256,
        crop: int = 224,
        mean: tuple[float, float, float] = preprocessing.IMAGENET_MEAN,
        std: tuple[float, float, float] = preprocessing.IMAGENET_STD,
    ) -> None:
        super().__init__(config, state, labels, metadata)
        self.resize = int(resize)
        self.crop = int(crop)
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self.input_shape = (3, self.crop, self.crop)

    def preprocess(self, image: Image.Image) -> npt.NDArray[np.float32]:
        """(1, 3, crop, crop): shorter side to `resize`, centre crop, ImageNet normalisation."""
        return preprocessing.imagenet_array(image, self.resize, self.crop, self.mean, self.std)[
            None
        ]


def imagenet_labels(count: int = 1000) -> list[str]:
    """ImageNet-1K class names from torchvision's bundled metadata, or class_<i> without it."""
    try:
        from torchvision.models import ResNet152_Weights

        categories = [str(name) for name in ResNet152_Weights.IMAGENET1K_V1.meta["categories"]]
    except (ImportError, AttributeError, KeyError):
        categories = []
    if len(categories) == count:
        return categories
    return [f"class_{index}" for index in range(count)]


def _known_weights(path: Path, sha256: str) -> dict[str, Any] | None:
    """torchvision's record for a weight file named like one of its own, if the hash agrees."""
    try:
        from torchvision.models import ResNet152_Weights
    except ImportError:
        return None
    for weights in ResNet152_Weights:
        filename = weights.url.rsplit("/", 1)[-1]
        if path.name != filename:
            continue
        # torchvision names its files <arch>-<first 8 hex digits of sha256>.pth.
        prefix = filename.rsplit("-", 1)[-1].split(".", 1)[0]
        metrics = weights.meta.get("_metrics", {}).get("ImageNet-1K", {})
        transforms = weights.transforms()
        return {
            "weights": f"ResNet152_Weights.{weights.name}",
            "hash_matches": sha256.startswith(prefix),
            "acc@1": metrics.get("acc@1"),
            "acc@5": metrics.get("acc@5"),
            "resize": int(transforms.resize_size[0]),
            "crop": int(transforms.crop_size[0]),
        }
    return None


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _unwrap_state(loaded: object) -> Mapping[str, Any]:
    # Checkpoints from training scripts often wrap the state_dict and prefix
    # keys with "module." (DataParallel); torchvision's files are plain.
    if isinstance(loaded, Mapping):
        for key in ("state_dict", "model_state_dict", "model"):
            inner = loaded.get(key)
            if isinstance(inner, Mapping):
                loaded = inner
                break
    if not isinstance(loaded, Mapping):
        raise ValueError("weights file does not hold a state_dict")
    return {
        (str(name)[len("module.") :] if str(name).startswith("module.") else str(name)): value
        for name, value in loaded.items()
    }


def build(
    weights: Path | None = None,
    seed: int = 0,
    labels: list[str] | None = None,
) -> ImageNetResNetPredictor:
    """A ResNet-152 predictor: weights from a local torchvision-format file, else random init.

    The state_dict is checked against the architecture here (strict loading), so
    a wrong file fails the build, not the first request.
    """
    import torch
    from torchvision.models import resnet152

    sha256: str | None = None
    known: dict[str, Any] | None = None
    if weights is not None:
        weights = Path(weights)
        loaded = torch.load(weights, map_location="cpu", weights_only=True)
        tensors = _unwrap_state(loaded)
        state: StateArrays = {
            name: np.ascontiguousarray(tensor.detach().cpu().numpy())
            for name, tensor in tensors.items()
        }
        sha256 = _file_sha256(weights)
        known = _known_weights(weights, sha256)
    else:
        torch.manual_seed(seed)
        state = state_to_arrays(resnet152(weights=None))

    num_classes = int(state["fc.weight"].shape[0]) if "fc.weight" in state else 1000
    config = {"kind": "torchvision", "name": ARCHITECTURE, "num_classes": num_classes}
    rebuild_network(config, state)
    if labels is None:
        labels = imagenet_labels(num_classes)
    elif len(labels) != num_classes:
        raise ValueError(f"{len(labels)} labels for a {num_classes}-class network")

    resize = int(known["resize"]) if known else 256
    crop = int(known["crop"]) if known else 224
    trained = weights is not None
    metadata: dict[str, Any] = {
        "name": "resnet152-imagenet" if trained else "resnet152-untrained",
        "framework": "torch",
        "architecture": f"torchvision.models.{ARCHITECTURE}",
        "parameters": sum(
            int(array.size)
            for name, array in state.items()
            if not name.endswith(("running_mean", "running_var", "num_batches_tracked"))
        ),
        "input_size": [3, crop, crop],
        "normalisation": {
            "scale": "pixel / 255",
            "mean": list(preprocessing.IMAGENET_MEAN),
            "std": list(preprocessing.IMAGENET_STD),
        },
        "preprocessing": (
            f"decode (JPEG at reduced scale via Image.draft), EXIF orientation, RGB "
            f"(transparency composited), shorter side to {resize} px (bilinear), centre crop "
            f"{crop}, normalise with ImageNet mean/std"
        ),
        "labels": labels,
        "trained": trained,
        "seed": None if trained else seed,
        "torch_version": str(torch.__version__),
    }
    if trained and weights is not None:
        metadata["weights_file"] = weights.name
        metadata["weights_sha256"] = sha256
        if known is not None and known["hash_matches"]:
            metadata["weights"] = known["weights"]
            metadata["accuracy"] = known["acc@1"] / 100.0
            metadata["accuracy_top5"] = known["acc@5"] / 100.0
            metadata["accuracy_source"] = "torchvision documentation, ImageNet-1K validation"
        else:
            metadata["accuracy"] = None
            metadata["note"] = "weights not recognised as torchvision's; accuracy unknown"
    else:
        metadata["accuracy"] = None
        metadata["note"] = UNTRAINED_NOTE
    return ImageNetResNetPredictor(config, state, labels, metadata, resize=resize, crop=crop)
