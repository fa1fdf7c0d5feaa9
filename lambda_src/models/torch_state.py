"""Base class for predictors whose network is stored as plain arrays and rebuilt on demand.

A pickled `nn.Module` ties the file to the torch version that wrote it and makes
unpickling import torch and run module constructors. These predictors pickle an
architecture config plus the state_dict as numpy arrays instead: loading needs
numpy only, works across torch versions (the Lambda's aarch64 build differs from
the x86_64 one) and lets joblib memory-map the weights. The network is rebuilt
on the first prediction (or in `warmup`).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from .protocol import rank

if TYPE_CHECKING:
    import torch
    from PIL import Image
    from torch import nn

StateArrays = dict[str, npt.NDArray[Any]]


def state_to_arrays(module: nn.Module) -> StateArrays:
    """A module's state_dict as contiguous numpy arrays (copies, detached from the module)."""
    return {
        name: np.ascontiguousarray(tensor.detach().cpu().numpy()).copy()
        for name, tensor in module.state_dict().items()
    }


def rebuild_network(config: dict[str, Any], state: StateArrays) -> nn.Module:
    """Build the network `config` describes and give it `state`'s weights, in eval mode.

    The module is created on the meta device, so no time is spent initialising
    weights that are overwritten at once, and the parameters then share memory
    with the arrays (no second copy of a 230 MB ResNet-152).
    """
    import torch

    from .networks import build_network

    with torch.device("meta"):
        module = build_network(config)
    tensors = {}
    with warnings.catch_warnings():
        # Memory-mapped arrays are read-only; inference never writes to weights.
        warnings.filterwarnings("ignore", message=".*not writable.*")
        for name, array in state.items():
            tensors[name] = torch.from_numpy(np.asarray(array))
    try:
        module.load_state_dict(tensors, strict=True, assign=True)
    except RuntimeError as exc:
        raise ValueError(f"weights do not fit {config.get('name', config['kind'])}: {exc}") from exc
    leftovers = [name for name, t in module.state_dict().items() if t.is_meta]
    if leftovers:
        raise ValueError(f"state lacks tensors for {', '.join(leftovers[:5])}")
    return module.eval()


class ViewAveragingPredictor:
    """Ranking shared by the network predictors, whatever runs the network.

    Subclasses set `input_shape` (C, H, W) and `labels`, and implement `preprocess`
    (an image to its views) and `predict_batch` (views to probabilities).
    """

    input_shape: tuple[int, int, int] = (1, 8, 8)
    labels: list[str]

    def preprocess(self, image: Image.Image) -> npt.NDArray[np.float32]:
        """Network inputs for one image, shaped (views, *input_shape).

        Predictions are averaged over the views (test-time augmentation); one
        view is the usual case.
        """
        raise NotImplementedError

    def predict_batch(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        """Class probabilities (N, len(labels)) for preprocessed inputs (N, *input_shape)."""
        raise NotImplementedError

    def predict_proba(self, image: Image.Image) -> npt.NDArray[np.float64]:
        """Probabilities for every label, in `labels` order, averaged over the views."""
        probabilities = self.predict_batch(self.preprocess(image)).mean(axis=0)
        return np.asarray(probabilities / probabilities.sum(), dtype=np.float64)

    def predict_image(self, image: Image.Image, top_k: int = 5) -> list[tuple[str, float]]:
        """The top_k (label, probability) pairs for `image`, most probable first."""
        return rank(self.predict_proba(image).tolist(), self.labels, top_k)

    def warmup(self) -> None:
        """Build whatever runs the network and run it once, so the first request is fast."""
        self.predict_batch(np.zeros((1, *self.input_shape), dtype=np.float32))


class TorchStatePredictor(ViewAveragingPredictor):
    """Shared storage and lazy rebuilding for the torch predictors."""

    def __init__(
        self,
        config: dict[str, Any],
        state: StateArrays,
        labels: list[str],
        metadata: dict[str, Any],
    ) -> None:
        self.config = dict(config)
        self.state = state
        self.labels = list(labels)
        self.metadata = dict(metadata)
        self._network: nn.Module | None = None

    def __getstate__(self) -> dict[str, Any]:
        """Pickle everything but the rebuilt network."""
        state = self.__dict__.copy()
        state["_network"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore from a pickle; the network is rebuilt when first needed."""
        self.__dict__.update(state)
        self._network = None

    def network(self) -> nn.Module:
        """The torch module, rebuilt from the stored arrays on first use."""
        if self._network is None:
            self._network = rebuild_network(self.config, self.state)
        return self._network

    def prepare(self) -> None:
        """Rebuild the network now (no forward pass), so loading is timed apart from inference."""
        self.network()

    def predict_batch(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        """Class probabilities (N, len(labels)) for preprocessed inputs (N, *input_shape)."""
        import torch

        network = self.network()
        with torch.inference_mode():
            logits: torch.Tensor = network(torch.from_numpy(np.ascontiguousarray(batch)))
            probabilities = torch.softmax(logits.double(), dim=1)
        return np.asarray(probabilities.numpy(), dtype=np.float64)
