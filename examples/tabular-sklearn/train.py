"""Train the example: a scikit-learn pipeline on the wine data set that scikit-learn ships.

    .venv/bin/python examples/tabular-sklearn/train.py

Writes model.joblib next to this file. Stands for your own training script: what the
serving stack needs is only the fitted estimator, persisted with joblib, and model.json.
"""

from __future__ import annotations

from pathlib import Path

import joblib
from sklearn.datasets import load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

HERE = Path(__file__).resolve().parent


def main() -> None:
    """Fit, report held-out accuracy, dump."""
    wine = load_wine()
    x_train, x_test, y_train, y_test = train_test_split(
        wine.data, wine.target, test_size=0.25, stratify=wine.target, random_state=0
    )
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(x_train, y_train)
    print(f"held-out accuracy: {model.score(x_test, y_test):.3f}")
    # Plain ints as classes; model.json maps them to the class names in the same order.
    joblib.dump(model, HERE / "model.joblib", compress=3)
    print(f"wrote {HERE / 'model.joblib'}")


if __name__ == "__main__":
    main()
