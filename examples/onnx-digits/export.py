"""Make the example's ONNX file: a small convolutional network trained on scikit-learn's
digits, exported with torch.onnx. Stands for the .onnx file you bring from anywhere
(PyTorch, TensorFlow via tf2onnx, scikit-learn via skl2onnx): the serving stack only
needs the file, and model.json says what goes in (preprocessing) and what comes out (labels).

    .venv/bin/python examples/onnx-digits/export.py

Writes model.onnx next to this file.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

HERE = Path(__file__).resolve().parent
LABELS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def main() -> None:
    """Train, export to ONNX, check ONNX Runtime gives what torch gives."""
    torch.manual_seed(0)
    digits = load_digits()
    # (N, 1, 8, 8) values 0..1, as model.json's preprocessing gives them (digit-grid, scale 1).
    images = (digits.images / 16.0).astype(np.float32)[:, None]
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=0.2, stratify=digits.target, random_state=0
    )
    network = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(128, 10),
    )
    optimiser = torch.optim.Adam(network.parameters(), lr=0.01)
    xs, ys = torch.from_numpy(x_train), torch.from_numpy(y_train)
    for _ in range(150):
        optimiser.zero_grad()
        loss = nn.functional.cross_entropy(network(xs), ys)
        loss.backward()
        optimiser.step()
    network.eval()
    with torch.no_grad():
        accuracy = (network(torch.from_numpy(x_test)).argmax(1).numpy() == y_test).mean()
    print(f"held-out accuracy: {accuracy:.3f}")
    with warnings.catch_warnings():
        # The TorchScript exporter is the one that needs no onnxscript; its notice is noise.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            network,
            (torch.zeros(1, 1, 8, 8),),
            str(HERE / "model.onnx"),
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    import onnxruntime

    session = onnxruntime.InferenceSession(str(HERE / "model.onnx"))
    with torch.no_grad():
        expected = network(torch.from_numpy(x_test[:16])).numpy()
    got = session.run(None, {"image": x_test[:16]})[0]
    print(f"ONNX Runtime vs torch: max difference {np.abs(got - expected).max():.1e}")
    print(f"wrote {HERE / 'model.onnx'}")


if __name__ == "__main__":
    main()
