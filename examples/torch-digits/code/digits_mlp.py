"""The example's own network: a two-layer perceptron on 8x8 digit images.

This module ships inside the release (model.json "code": "code"), next to the weights and
under the same stamp, so the class that the weights are loaded into is always the one
they were trained with.
"""

from __future__ import annotations

import torch
from torch import nn


class DigitsMLP(nn.Module):
    """64 pixel values (0..16) in, 10 logits out."""

    def __init__(self, hidden: int = 64) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of (N, 64) or (N, 1, 8, 8) inputs scaled 0..16."""
        return self.layers(x / 16.0)
