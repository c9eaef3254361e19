"""Training data and classifiers of the demo models (numpy and scikit-learn only).

`scripts/gen_models.py` converts these classifiers to ONNX for `models/`; `tests/v2/sk_models.py`
saves the very same classifiers with joblib for MLServer (the remote-backend test and the MLServer
side of the V2 benchmark). Keeping the training here, free of any ONNX import, lets both share it
instead of copying it. Every seed is fixed: with the pinned numpy and scikit-learn
(scripts/requirements-models.txt) a rerun trains the same models.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.datasets import load_iris, make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier

SEED = 0
IRIS_LABELS = ["setosa", "versicolor", "virginica"]
MLP_FEATURES = 784
MLP_CLASSES = 10
MLP_TRAIN_ROWS = 1600


def iris_data() -> tuple[np.ndarray, np.ndarray]:
    """sklearn's iris (150 x 4 features, 3 classes), features rounded to 4 decimals."""
    x, y = load_iris(return_X_y=True)
    return np.round(x, 4), y


def iris_v1_classifier() -> LogisticRegression:
    """iris:v1, unfitted."""
    return LogisticRegression(max_iter=1000, random_state=SEED)


def iris_v2_classifier() -> RandomForestClassifier:
    """iris:v2, unfitted."""
    return RandomForestClassifier(n_estimators=10, max_depth=5, random_state=SEED)


def mlp_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The synthetic 784-feature, 10-class data of mlp:v1: (x_train, y_train, x_test, y_test)."""
    x, y = make_classification(
        n_samples=2000,
        n_features=MLP_FEATURES,
        n_informative=64,
        n_classes=MLP_CLASSES,
        random_state=SEED,
    )
    x = np.round(x, 4)
    n = MLP_TRAIN_ROWS
    return x[:n], y[:n], x[n:], y[n:]


def mlp_classifier() -> MLPClassifier:
    """mlp:v1 (784-512-512-10, relu), unfitted."""
    return MLPClassifier(
        hidden_layer_sizes=(512, 512), activation="relu", max_iter=8, random_state=SEED
    )


def fit_quietly(clf, x: np.ndarray, y: np.ndarray):
    """clf.fit(x, y) without the ConvergenceWarning of the deliberately short MLP training."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        return clf.fit(x, y)
