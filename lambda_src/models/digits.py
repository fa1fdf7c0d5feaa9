"""A small ResNet that reads a handwritten or rendered digit, trained on scikit-learn's digits.

The network sees what the digits data set is made of: an 8x8 grid of 0..16 ink
counts. `preprocessing.digit_grid` turns a person's image (photo, scan, canvas
export; either polarity) into such a grid, and training augments the 8x8 data
(shifts, rotations, scales, shears, stroke thickness) so that grids coming from
fonts and drawings, not only from the original scans, are read correctly.

Only numpy is imported at module level: unpickling a `DigitsResNetPredictor`
is cheap, torch is imported when the network is first needed.
"""

from __future__ import annotations

import math
import platform
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from . import preprocessing
from .torch_state import StateArrays, TorchStatePredictor, state_to_arrays

if TYPE_CHECKING:
    import torch
    from PIL import Image

LABELS = [str(digit) for digit in range(10)]
PREPROCESSING_DESCRIPTION = (
    "decode (JPEG at reduced scale via Image.draft), apply EXIF orientation, any mode to "
    "8-bit grey (transparency composited, 16-bit stretched), longest side to 256 px; make ink "
    "bright (invert when the border is brighter than the image mean); Gaussian blur, Otsu "
    "threshold, subtract a quadratic background fitted to non-ink pixels, Otsu again; drop "
    "specks and ink connected to the border (unless it is the digit); crop to the ink, scale "
    "keeping aspect ratio to the full height of a 32x32 canvas, centre; thicken or thin "
    "strokes to 31% ink coverage (the data set's median); 4x4 area average to 8x8; scale to 0..16. "
    "Probabilities are averaged over 8 views: digit at 100% and 90% of the height, centred and "
    "shifted by a quarter cell left, right and down"
)


@dataclass(frozen=True)
class TrainingConfig:
    """Hyper-parameters of `train`; recorded in the model's metadata."""

    seed: int = 0
    epochs: int = 40
    batch_size: int = 64
    learning_rate: float = 0.1  # peak of the one-cycle schedule
    weight_decay: float = 5e-4
    label_smoothing: float = 0.05
    test_fraction: float = 0.2
    widths: tuple[int, ...] = (32, 64, 128)
    blocks: tuple[int, ...] = (1, 1, 1)
    threads: int = 2
    # Augmentation, applied on a 32x32 bitmap rebuilt from each 8x8 sample.
    max_rotation_degrees: float = 15.0
    scale_range: tuple[float, float] = (0.9, 1.08)
    x_stretch_range: tuple[float, float] = (0.6, 1.15)
    max_shear: float = 0.3
    max_shift: float = 0.06
    thicken_probability: float = 0.25
    thin_probability: float = 0.2
    clean_probability: float = 0.2
    elastic: float = 0.1


class DigitsResNetPredictor(TorchStatePredictor):
    """Predicts which digit 0-9 an image shows. Satisfies `protocol.ImagePredictor`."""

    input_shape = (1, 8, 8)

    def __init__(
        self,
        config: dict[str, Any],
        state: StateArrays,
        metadata: dict[str, Any],
        mean: float,
        std: float,
        views: tuple[tuple[float, tuple[int, int]], ...] = preprocessing.DIGIT_VIEWS,
    ) -> None:
        super().__init__(config, state, LABELS, metadata)
        self.mean = float(mean)
        self.std = float(std)
        self.views = tuple((float(fill), (int(dx), int(dy))) for fill, (dx, dy) in views)

    def grid(self, image: Image.Image) -> npt.NDArray[np.float32]:
        """The main 8x8 grid (values 0..16) the network sees for `image`; useful for debugging."""
        return preprocessing.digit_grid(image)

    def normalise(self, grids: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """0..16 grids of any leading shape to network input values."""
        return np.asarray((grids / 16.0 - self.mean) / self.std, dtype=np.float32)

    def preprocess(self, image: Image.Image) -> npt.NDArray[np.float32]:
        """The (views, 1, 8, 8) network inputs for `image` (see `preprocessing.DIGIT_VIEWS`)."""
        return self.normalise(preprocessing.digit_grids(image, self.views))[:, None]

    def predict_grids(self, grids: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        """Probabilities (N, 10) for (N, 8, 8) grids of 0..16, e.g. `load_digits().images`."""
        return self.predict_batch(self.normalise(grids.astype(np.float32))[:, None])


def _augment(
    batch: torch.Tensor, config: TrainingConfig, generator: torch.Generator
) -> torch.Tensor:
    """Random plausible variants of (N, 1, 8, 8) grids in 0..1, as ink fractions again."""
    import torch
    import torch.nn.functional as F

    count = batch.shape[0]

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(count, generator=generator)

    # The data set's grids are 4x4 counts of a 32x32 bitmap; rebuild a bitmap
    # of that kind so geometric and stroke changes act on strokes, not blocks.
    bitmap = F.interpolate(batch, scale_factor=4, mode="bicubic", align_corners=False)
    bitmap = (bitmap > 0.5).float()

    angle = uniform(-1.0, 1.0) * math.radians(config.max_rotation_degrees)
    scale = uniform(*config.scale_range)
    stretch = uniform(*config.x_stretch_range)
    shear = uniform(-config.max_shear, config.max_shear)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # Forward map: scale (x stretched separately), shear, then rotate.
    # affine_grid wants the map from output to input coordinates: the inverse.
    forward = torch.zeros(count, 2, 2)
    forward[:, 0, 0] = cos * scale * stretch
    forward[:, 0, 1] = (cos * shear - sin) * scale
    forward[:, 1, 0] = sin * scale * stretch
    forward[:, 1, 1] = (sin * shear + cos) * scale
    theta = torch.zeros(count, 2, 3)
    theta[:, :, :2] = torch.linalg.inv(forward)
    theta[:, 0, 2] = uniform(-config.max_shift, config.max_shift)
    theta[:, 1, 2] = uniform(-config.max_shift, config.max_shift)
    grid = F.affine_grid(theta, list(bitmap.shape), align_corners=False)
    if config.elastic > 0:
        # A smooth random displacement field: handwriting wobbles, fonts differ.
        coarse = torch.randn(count, 2, 4, 4, generator=generator) * config.elastic
        field = F.interpolate(coarse, size=bitmap.shape[-2:], mode="bicubic", align_corners=False)
        grid = grid + field.permute(0, 2, 3, 1)
    warped = F.grid_sample(bitmap, grid, mode="bilinear", align_corners=False)

    choice = torch.rand(count, generator=generator)
    thick = F.max_pool2d(warped, 3, stride=1, padding=1)
    thin = -F.max_pool2d(-warped, 3, stride=1, padding=1)
    thicken = (choice < config.thicken_probability).view(-1, 1, 1, 1)
    thin_mask = (
        (choice >= config.thicken_probability)
        & (choice < config.thicken_probability + config.thin_probability)
    ).view(-1, 1, 1, 1)
    # Thinning can erase a digit drawn with a thin pen; keep those as they were.
    thin_mask &= (thin.sum(dim=(1, 2, 3)) > 0.5 * warped.sum(dim=(1, 2, 3))).view(-1, 1, 1, 1)
    warped = torch.where(thicken, thick, torch.where(thin_mask, thin, warped))
    augmented = F.avg_pool2d(warped, 4)

    keep = (torch.rand(count, generator=generator) < config.clean_probability).view(-1, 1, 1, 1)
    return torch.where(keep, batch, augmented)


def _split(
    seed: int, test_fraction: float
) -> tuple[
    npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.float32], npt.NDArray[np.int64]
]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.asarray(digits.images, dtype=np.float32)
    targets = np.asarray(digits.target, dtype=np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, targets, test_size=test_fraction, stratify=targets, random_state=seed
    )
    return x_train, y_train, x_test, y_test


def train(config: TrainingConfig | None = None, log: bool = False) -> DigitsResNetPredictor:
    """Train a `DigitsResNetPredictor` on an 80/20 stratified split of scikit-learn's digits.

    Deterministic for a given config on a given machine. Held-out accuracy, training time
    and the hyper-parameters are recorded in the returned predictor's metadata.
    """
    import torch
    import torch.nn.functional as F

    from .networks import CompactResNet

    config = config or TrainingConfig()
    started = time.perf_counter()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        torch.manual_seed(config.seed)
        generator = torch.Generator().manual_seed(config.seed)
        x_train, y_train, x_test, y_test = _split(config.seed, config.test_fraction)
        mean = float(x_train.mean() / 16.0)
        std = float(x_train.std() / 16.0)

        arch = {
            "kind": "compact_resnet",
            "in_channels": 1,
            "num_classes": len(LABELS),
            "widths": list(config.widths),
            "blocks": list(config.blocks),
        }
        network = CompactResNet(1, len(LABELS), config.widths, config.blocks)
        inputs = torch.from_numpy(x_train / 16.0)[:, None]
        targets = torch.from_numpy(y_train)
        steps_per_epoch = math.ceil(len(inputs) / config.batch_size)
        optimiser = torch.optim.SGD(
            network.parameters(),
            lr=config.learning_rate,
            momentum=0.9,
            nesterov=True,
            weight_decay=config.weight_decay,
        )
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimiser,
            max_lr=config.learning_rate,
            epochs=config.epochs,
            steps_per_epoch=steps_per_epoch,
        )
        network.train()
        for epoch in range(config.epochs):
            order = torch.randperm(len(inputs), generator=generator)
            total = 0.0
            for start in range(0, len(inputs), config.batch_size):
                index = order[start : start + config.batch_size]
                batch = _augment(inputs[index], config, generator)
                logits = network((batch - mean) / std)
                loss = F.cross_entropy(
                    logits, targets[index], label_smoothing=config.label_smoothing
                )
                optimiser.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                optimiser.step()
                schedule.step()
                total += float(loss.detach()) * len(index)
            if log:
                print(f"epoch {epoch + 1}/{config.epochs} loss {total / len(inputs):.4f}")
        network.eval()
        train_seconds = time.perf_counter() - started

        predictor = DigitsResNetPredictor(arch, state_to_arrays(network), {}, mean, std)
        predicted = predictor.predict_grids(x_test).argmax(axis=1)
        accuracy = float((predicted == y_test).mean())
    finally:
        torch.set_num_threads(previous_threads)

    parameters = sum(int(array.size) for array in predictor.state.values())
    predictor.metadata = {
        "name": "digits-resnet",
        "framework": "torch",
        "architecture": (
            f"CompactResNet (BasicBlocks, torchvision layout) widths={list(config.widths)} "
            f"blocks={list(config.blocks)}, 3x3 stem, no max pool"
        ),
        "parameters": parameters,
        "input_size": [1, 8, 8],
        "normalisation": {
            "scale": "grid / 16",
            "mean": round(mean, 6),
            "std": round(std, 6),
        },
        "preprocessing": PREPROCESSING_DESCRIPTION,
        "test_time_views": [[fill, list(shift)] for fill, shift in predictor.views],
        "labels": LABELS,
        "trained": True,
        "dataset": "sklearn.datasets.load_digits (1797 8x8 images, values 0..16)",
        "split": {
            "method": "stratified train_test_split",
            "test_fraction": config.test_fraction,
            "seed": config.seed,
            "train_samples": len(x_train),
            "test_samples": len(x_test),
        },
        "accuracy": round(accuracy, 6),
        "train_seconds": round(train_seconds, 2),
        "seed": config.seed,
        "training": {**asdict(config), "optimiser": "SGD nesterov + OneCycleLR"},
        "torch_version": str(torch.__version__),
        "python": platform.python_version(),
    }
    return predictor
