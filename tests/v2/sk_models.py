"""Write scikit-learn models as MLServer model folders (run with the MLServer venv's python).

    python tests/v2/sk_models.py iris FOLDER [--name iris-sk] [--version v1]
    python tests/v2/sk_models.py mlp  FOLDER [--name mlp]     [--version v1]

Each writes FOLDER/<name>/model.joblib and FOLDER/<name>/model-settings.json
(implementation `mlserver_sklearn.SKLearnModel`, the given version, and tensor metadata that
describes what MLServer's sklearn runtime really takes and gives, see below), then prints one JSON
line describing the model.

The classifiers and their data come from scripts/demo_training.py, the module behind
scripts/gen_models.py, so they are trained exactly as the demo models in models/ are:

- `iris`: LogisticRegression(max_iter=1000, random_state=0) on sklearn's iris, i.e. iris:v1.
- `mlp`: the MLPClassifier 784-512-512-10 of mlp:v1. Before saving, its predictions are checked
  against testdata/expected/mlp-v1.json (onnxruntime on models/mlp/v1/model.onnx): equal labels
  and probabilities within MLP_TOLERANCE (the ONNX graph computes in float32, sklearn in
  float64); a mismatch exits non-zero, so a drifted retraining never serves as "the same model".

What MLServer 1.7.1's sklearn runtime (mlserver_sklearn.SKLearnModel) accepts and returns, as
checked by tests/v2/test_remote.py:

- exactly one input tensor; its name is ignored; any numeric datatype (FP32 and FP64 both work,
  sklearn casts; the answers differ by float32 rounding of the input) with shape [N, features].
- outputs are chosen by name in the request: `predict` (default when none is asked for),
  `predict_proba`, `transform`; any other name is a 400 (HTTP) / INVALID_ARGUMENT (gRPC).
- `predict` comes back INT64 with shape [N, 1] (MLServer adds the trailing 1 to 1-D results),
  `predict_proba` FP64 [N, classes], whatever the input datatype.
- HTTP: JSON only (the binary tensor extension is not supported); output `data` is flat.
- gRPC: a request with raw_input_contents gets raw_output_contents back; a request with typed
  contents gets typed contents back (int64_contents, fp64_contents).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import joblib
import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

import demo_training as dt  # noqa: E402  (needs the path above)

MLP_TOLERANCE = 1e-4


def tensor(name: str, datatype: str, shape: list[int]) -> dict:
    return {"name": name, "datatype": datatype, "shape": shape}


def write_folder(folder: Path, name: str, version: str, model, features: int, classes: int) -> Path:
    dest = folder / name
    dest.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, dest / "model.joblib")
    settings = {
        "name": name,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib", "version": version},
        # Metadata only (ModelMetadata answers with it); the runtime does not enforce it.
        "inputs": [tensor("input-0", "FP64", [-1, features])],
        "outputs": [
            tensor("predict", "INT64", [-1, 1]),
            tensor("predict_proba", "FP64", [-1, classes]),
        ],
    }
    (dest / "model-settings.json").write_text(json.dumps(settings, indent=2) + "\n")
    return dest


def iris(folder: Path, name: str, version: str) -> dict:
    x, y = dt.iris_data()
    clf = dt.fit_quietly(dt.iris_v1_classifier(), x, y)
    dest = write_folder(folder, name, version, clf, 4, 3)
    return {"model": name, "version": version, "folder": str(dest), "classes": dt.IRIS_LABELS}


def check_mlp(clf) -> float:
    """Compare with testdata/expected/mlp-v1.json; returns the largest probability difference."""
    expected = json.loads((REPO / "testdata" / "expected" / "mlp-v1.json").read_text())
    worst = 0.0
    for i, case in enumerate(expected["cases"]):
        x = np.asarray(case["input"], dtype=np.float32)
        probabilities = clf.predict_proba(x)
        labels = clf.predict(x)
        want_labels = case["outputs"]["label"]
        if labels.tolist() != want_labels:
            raise SystemExit(
                f"mlp: case {i}: sklearn labels {labels.tolist()} != expected {want_labels}: "
                "the retrained MLP is not models/mlp/v1 (numpy/scikit-learn versions?)"
            )
        diff = float(np.max(np.abs(probabilities - np.asarray(case["outputs"]["probabilities"]))))
        worst = max(worst, diff)
    if worst > MLP_TOLERANCE:
        raise SystemExit(
            f"mlp: probabilities differ from testdata/expected/mlp-v1.json by {worst:.3e} "
            f"(> {MLP_TOLERANCE}): the retrained MLP is not models/mlp/v1"
        )
    return worst


def mlp(folder: Path, name: str, version: str) -> dict:
    x_train, y_train, _, _ = dt.mlp_data()
    clf = dt.fit_quietly(dt.mlp_classifier(), x_train, y_train)
    worst = check_mlp(clf)
    dest = write_folder(folder, name, version, clf, dt.MLP_FEATURES, dt.MLP_CLASSES)
    return {
        "model": name,
        "version": version,
        "folder": str(dest),
        "max_abs_diff_vs_expected": worst,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["iris", "mlp"])
    parser.add_argument("folder", type=Path, help="the MLServer model repository folder")
    parser.add_argument("--name", help="model name (default: iris-sk / mlp)")
    parser.add_argument("--version", default="v1")
    args = parser.parse_args()
    name = args.name or {"iris": "iris-sk", "mlp": "mlp"}[args.kind]
    info = (iris if args.kind == "iris" else mlp)(args.folder, name, args.version)
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
