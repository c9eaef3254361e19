#!/usr/bin/env python3
"""Generate the demo ONNX model repository and its reference outputs.

Writes, relative to the repository root:

    models/iris/v1/{model.onnx,model.toml}   logistic regression on iris (4 features, 3 classes)
    models/iris/v2/{model.onnx,model.toml}   random forest on iris (10 trees, max depth 5)
    models/mlp/v1/{model.onnx,model.toml}    MLP 784-512-512-10 (relu) on synthetic data
    testdata/expected/iris-v1.json           onnxruntime outputs of the committed model.onnx
    testdata/expected/iris-v2.json           for a few fixed inputs (the engine's tests compare
    testdata/expected/mlp-v1.json            against these)

The training data and the scikit-learn classifiers are defined in scripts/demo_training.py (no
ONNX imports there), which tests/v2/sk_models.py reuses to serve the same models in MLServer.

The manifests follow docs/model-repository.md. All graphs take one FP32 input named `input` with a
dynamic batch dimension and give `label` (INT64 [-1]) and `probabilities` (FP32 [-1, C]); they use
only ONNX op-set <= 15 and ai.onnx.ml <= 3 ops that tract-onnx 0.23 runs.

Setup and run (from the repository root):

    pip install -r scripts/requirements-models.txt
    python3 scripts/gen_models.py

The outputs are committed, so building and testing the server never needs Python; rerun this
script only to change the models. Every seed is fixed: a rerun with the pinned versions rewrites
the same files. If the optional `tract` Python package (tract==0.23.9) is installed, every model
is also run through tract and compared with onnxruntime.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tomllib
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from demo_training import (
    IRIS_LABELS,
    MLP_CLASSES,
    MLP_FEATURES,
    fit_quietly,
    iris_data,
    iris_v1_classifier,
    iris_v2_classifier,
    mlp_classifier,
    mlp_data,
)
from onnx import helper
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.exceptions import ConvergenceWarning

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
EXPECTED = ROOT / "testdata" / "expected"

# Plain ONNX op-set 15 and ai.onnx.ml 3 at most (skl2onnx picks the lowest versions that suffice).
TARGET_OPSET = {"": 15, "ai.onnx.ml": 3}
MLP_MAX_BYTES = 4 * 1024 * 1024
IRIS_TOLERANCE = 1e-4

warnings.filterwarnings("ignore", category=ConvergenceWarning)


# --------------------------------------------------------------------------------------------
# Conversion
# --------------------------------------------------------------------------------------------


def to_onnx(model, n_features: int) -> onnx.ModelProto:
    """skl2onnx conversion: input `input` FP32 [None, F], no ZipMap (plain tensors out)."""
    onx = convert_sklearn(
        model,
        initial_types=[("input", FloatTensorType([None, n_features]))],
        options={id(model): {"zipmap": False}},
        target_opset=TARGET_OPSET,
    )
    return tidy(onx)


def tidy(onx: onnx.ModelProto) -> onnx.ModelProto:
    """Drop duplicate / unused opset imports (skl2onnx may list the default domain twice)."""
    used = {n.domain for n in onx.graph.node}
    seen: dict[str, int] = {}
    for imp in onx.opset_import:
        if imp.domain == "" or imp.domain in used:
            seen[imp.domain] = max(seen.get(imp.domain, 0), imp.version)
    del onx.opset_import[:]
    for domain in sorted(seen):
        onx.opset_import.append(helper.make_opsetid(domain, seen[domain]))
    return onx


def simplify_mlp_label(onx: onnx.ModelProto, n_classes: int) -> onnx.ModelProto:
    """Replace skl2onnx's label head with a single ArgMax.

    skl2onnx maps ArgMax through ai.onnx.ml ArrayFeatureExtractor(classes) + Reshape + Cast.
    With classes 0..C-1 that mapping is the identity, and tract types the resulting label as a
    symbolic-dimension tensor instead of INT64, so the label becomes ArgMax(axis=1, keepdims=0)
    directly (INT64 [N]). The input Cast (float32 to float32) is dropped as well.
    """
    g = onx.graph
    inits = {i.name: i for i in g.initializer}
    classes = onnx.numpy_helper.to_array(inits["classes"])
    assert np.array_equal(classes, np.arange(n_classes)), classes
    producers = {o: n for n in g.node for o in n.output}

    label_cast = producers["label"]
    reshape = producers[label_cast.input[0]]
    afe = producers[reshape.input[0]]
    argmax = producers[afe.input[1]]
    assert (label_cast.op_type, reshape.op_type, afe.op_type, argmax.op_type) == (
        "Cast",
        "Reshape",
        "ArrayFeatureExtractor",
        "ArgMax",
    ), "unexpected skl2onnx MLP graph layout"
    drop = {id(label_cast), id(reshape), id(afe)}

    new_argmax = helper.make_node(
        "ArgMax", [argmax.input[0]], ["label"], name=argmax.name, axis=1, keepdims=0
    )
    nodes = []
    rename = {}
    for n in g.node:
        if id(n) in drop:
            continue
        if n is argmax:
            nodes.append(new_argmax)
            continue
        if n.op_type == "Cast" and list(n.input) == ["input"]:
            to = helper.get_attribute_value(n.attribute[0])
            assert to == onnx.TensorProto.FLOAT
            rename[n.output[0]] = "input"
            continue
        nodes.append(n)
    for n in nodes:
        for i, name in enumerate(n.input):
            if name in rename:
                n.input[i] = rename[name]
    del g.node[:]
    g.node.extend(nodes)

    used = {i for n in g.node for i in n.input}
    keep = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    return tidy(onx)


def check_graph(onx: onnx.ModelProto, n_features: int, n_classes: int) -> None:
    onnx.checker.check_model(onx, full_check=True)
    g = onx.graph
    assert [i.name for i in g.input] == ["input"], [i.name for i in g.input]
    dims = g.input[0].type.tensor_type.shape.dim
    assert g.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert not dims[0].HasField("dim_value") and dims[1].dim_value == n_features
    outs = {o.name: o.type.tensor_type for o in g.output}
    assert set(outs) == {"label", "probabilities"}, set(outs)
    assert outs["label"].elem_type == onnx.TensorProto.INT64
    assert outs["probabilities"].elem_type == onnx.TensorProto.FLOAT
    assert outs["probabilities"].shape.dim[1].dim_value == n_classes
    for imp in onx.opset_import:
        limit = TARGET_OPSET[imp.domain]
        assert imp.version <= limit, (imp.domain, imp.version)


# --------------------------------------------------------------------------------------------
# Manifests
# --------------------------------------------------------------------------------------------


def toml_str(s: str) -> str:
    return json.dumps(s)  # a JSON string of plain text is a valid TOML basic string


def manifest(
    description: str,
    n_features: int,
    n_classes: int,
    postprocess: dict,
    validation: dict,
    batching: dict | None = None,
) -> str:
    lines = [
        'backend = "onnx"',
        'file = "model.onnx"',
        f"description = {toml_str(description)}",
        "",
        "[[inputs]]",
        'name = "input"',
        'datatype = "FP32"',
        f"shape = [-1, {n_features}]",
        "",
        "[[outputs]]",
        'name = "label"',
        'datatype = "INT64"',
        "shape = [-1]",
        "",
        "[[outputs]]",
        'name = "probabilities"',
        'datatype = "FP32"',
        f"shape = [-1, {n_classes}]",
        "",
        "[validation]",
        f"features = {validation['features']}",
    ]
    if "min" in validation:
        lines.append(f"min = {float(validation['min'])!r}")
    if "max" in validation:
        lines.append(f"max = {float(validation['max'])!r}")
    lines += ["", "[postprocess]", f"kind = {toml_str(postprocess['kind'])}"]
    if "tensor" in postprocess:
        lines.append(f"tensor = {toml_str(postprocess['tensor'])}")
    if "labels" in postprocess:
        lines.append("labels = [" + ", ".join(toml_str(l) for l in postprocess["labels"]) + "]")
    if batching:
        lines += [
            "",
            "[batching]",
            f"max_batch_size = {batching['max_batch_size']}",
            f"max_delay_ms = {batching['max_delay_ms']}",
        ]
    text = "\n".join(lines) + "\n"
    tomllib.loads(text)  # must parse
    return text


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------


def ort_run(path: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, {"input": x.astype(np.float32)})))


def tract_check(path: Path, x: np.ndarray, ref: dict[str, np.ndarray]) -> str:
    """Run the model in tract (if the optional package is installed) and compare with onnxruntime."""
    try:
        import tract  # type: ignore
    except ImportError:
        return "tract not installed, skipped"
    im = tract.onnx().load(str(path))
    im.set_input_fact(0, f"N,{x.shape[1]},f32")
    model = im.into_model()
    # tract renames outputs after the nodes that compute them; the order is the graph's.
    names = [o.name for o in onnx.load(str(path)).graph.output]
    assert model.output_count() == len(names)
    runnable = model.into_runnable()
    outs = runnable.run([x.astype(np.float32)])
    got = {n: t.to_numpy() for n, t in zip(names, outs)}
    assert got["label"].dtype == np.int64, got["label"].dtype
    assert np.array_equal(got["label"], ref["label"]), "tract labels differ from onnxruntime"
    diff = float(np.max(np.abs(got["probabilities"] - ref["probabilities"])))
    assert diff < 1e-4, f"tract probabilities differ from onnxruntime by {diff}"
    return f"tract {tract.version()} agrees (max |dp| {diff:.2e})"


def write_model(name: str, version: str, onx: onnx.ModelProto, toml_text: str) -> Path:
    onx.graph.name = f"{name}_{version}"  # skl2onnx names the graph with a random UUID
    folder = MODELS / name / version
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    path.write_bytes(onx.SerializeToString())
    (folder / "model.toml").write_text(toml_text)
    extra = sorted(set(os.listdir(folder)) - {"model.onnx", "model.toml"})
    assert not extra, f"{folder} must hold only model.onnx and model.toml, found also {extra}"
    return path


def write_expected(name: str, version: str, path: Path, inputs: list[np.ndarray]) -> Path:
    cases = []
    for x in inputs:
        out = ort_run(path, x)
        cases.append(
            {
                # inputs are already rounded to 4 decimals: the JSON number parses to this float32
                "input": [[round(float(v), 4) for v in row] for row in x],
                "outputs": {
                    "label": [int(v) for v in out["label"]],
                    "probabilities": [[float(v) for v in row] for row in out["probabilities"]],
                },
            }
        )
    EXPECTED.mkdir(parents=True, exist_ok=True)
    dest = EXPECTED / f"{name}-{version}.json"
    doc = {"model": name, "version": version, "cases": cases}
    dest.write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    return dest


def describe(onx: onnx.ModelProto) -> str:
    ops = sorted({(n.domain or "ai.onnx") + ":" + n.op_type for n in onx.graph.node})
    opsets = ", ".join(f"{i.domain or 'ai.onnx'}={i.version}" for i in onx.opset_import)
    return f"opsets [{opsets}] ops {ops}"


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


def iris_model(version: str, clf, kind: str, description: str, x, y) -> list[Path]:
    clf.fit(x, y)
    onx = to_onnx(clf, 4)
    check_graph(onx, 4, 3)
    toml_text = manifest(
        description,
        4,
        3,
        postprocess={"kind": kind, "tensor": "probabilities", "labels": IRIS_LABELS},
        validation={"features": 4, "min": 0.0, "max": 100.0},
    )
    path = write_model("iris", version, onx, toml_text)

    # onnxruntime on the written file must match sklearn.
    x32 = x.astype(np.float32)
    ref = ort_run(path, x32)
    diff = float(np.max(np.abs(ref["probabilities"] - clf.predict_proba(x32.astype(np.float64)))))
    print(f"iris/{version}: {describe(onx)}")
    print(f"  max |onnxruntime - sklearn predict_proba| = {diff:.3e}")
    assert diff < IRIS_TOLERANCE, f"iris/{version}: probabilities differ by {diff}"
    assert np.array_equal(ref["label"], clf.predict(x32)), f"iris/{version}: labels differ"
    print("  " + tract_check(path, x32, ref))

    rows = np.linspace(0, len(x) - 1, 20).astype(int)
    cases = [x[[0]], x[[0, 50, 100, 25, 125]], x[rows]]
    cases = [np.round(c, 4).astype(np.float32) for c in cases]
    return [path, path.with_name("model.toml"), write_expected("iris", version, path, cases)]


def mlp_model() -> list[Path]:
    # The data and the classifier are in demo_training.py (shared with tests/v2/sk_models.py).
    x_train, y_train, x_test, y_test = mlp_data()
    clf = fit_quietly(mlp_classifier(), x_train, y_train)
    print(
        f"mlp/v1: train accuracy {clf.score(x_train, y_train):.3f}, "
        f"held-out accuracy {clf.score(x_test, y_test):.3f}"
    )
    onx = simplify_mlp_label(to_onnx(clf, MLP_FEATURES), MLP_CLASSES)
    check_graph(onx, MLP_FEATURES, MLP_CLASSES)
    toml_text = manifest(
        "Synthetic 784-feature, 10-class MLP (784-512-512-10, relu) for demos and benchmarks",
        MLP_FEATURES,
        MLP_CLASSES,
        postprocess={"kind": "raw"},
        validation={"features": MLP_FEATURES},
        batching={"max_batch_size": 32, "max_delay_ms": 2},
    )
    path = write_model("mlp", "v1", onx, toml_text)
    size = path.stat().st_size
    assert size < MLP_MAX_BYTES, f"mlp model.onnx is {size} bytes"

    x32 = x_test.astype(np.float32)
    ref = ort_run(path, x32)
    diff = float(np.max(np.abs(ref["probabilities"] - clf.predict_proba(x32.astype(np.float64)))))
    agree = float(np.mean(ref["label"] == clf.predict(x32.astype(np.float64))))
    print(f"mlp/v1: {describe(onx)}")
    print(
        f"  max |onnxruntime - sklearn predict_proba| = {diff:.3e} (float32 drift, not asserted); "
        f"label agreement {agree:.4f}"
    )
    print("  " + tract_check(path, x32, ref))

    cases = [x_test[[0]], x_test[1:9]]
    cases = [np.round(c, 4).astype(np.float32) for c in cases]
    return [path, path.with_name("model.toml"), write_expected("mlp", "v1", path, cases)]


def main() -> int:
    x, y = iris_data()
    files = []
    files += iris_model(
        "v1",
        iris_v1_classifier(),
        "probabilities",
        "Iris species, logistic regression",
        x,
        y,
    )
    files += iris_model(
        "v2",
        iris_v2_classifier(),
        "argmax",
        "Iris species, random forest (10 trees, max depth 5)",
        x,
        y,
    )
    files += mlp_model()

    print("\nwritten:")
    for f in files:
        digest = hashlib.sha256(f.read_bytes()).hexdigest()[:12]
        print(f"  {f.stat().st_size:>9} B  {f.relative_to(ROOT)}  sha256:{digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
