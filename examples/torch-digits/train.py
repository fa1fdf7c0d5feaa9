"""Train the example: the network in code/digits_mlp.py on scikit-learn's handwritten digits.

    .venv/bin/python examples/torch-digits/train.py

Writes model.pt (the state_dict, saved with torch.save) next to this file. The serving
stack rebuilds DigitsMLP from code/ and loads the state_dict into it (weights_only=True,
so loading the file cannot run code).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "code"))

from digits_mlp import DigitsMLP  # noqa: E402 (the model's own code, as the stack loads it)


def main() -> None:
    """Train for a few seconds on the CPU, report held-out accuracy, save the state_dict."""
    torch.manual_seed(0)
    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data, digits.target, test_size=0.2, stratify=digits.target, random_state=0
    )
    xs = torch.tensor(x_train, dtype=torch.float32)
    ys = torch.tensor(y_train)
    model = DigitsMLP(hidden=64)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(200):
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(xs), ys)
        loss.backward()
        optimiser.step()
    model.eval()
    with torch.no_grad():
        predicted = model(torch.tensor(x_test, dtype=torch.float32)).argmax(dim=1)
    accuracy = (predicted == torch.tensor(y_test)).float().mean().item()
    print(f"held-out accuracy: {accuracy:.3f}")
    torch.save(model.state_dict(), HERE / "model.pt")
    print(f"wrote {HERE / 'model.pt'}")


if __name__ == "__main__":
    main()
