"""Servable models: the predictor protocol and the predictors this project ships.

Pickled predictors name their classes by module path (for example
``lambda_src.models.digits.DigitsResNetPredictor``), so this package is part of
the inference function's code zip. Only `protocol` is imported here: it needs
the standard library alone. The submodules import numpy, Pillow, torch and
scikit-learn, which come from lib/ on EFS, so they are imported only once lib/
is on sys.path (joblib.load imports them as needed).
"""

from .protocol import ImagePredictor, SupportsWarmup, validate_predictor, warmup

__all__ = ["ImagePredictor", "SupportsWarmup", "validate_predictor", "warmup"]
