#!/usr/bin/env python3
"""Generate the demo ONNX model repository and its reference outputs (scikit-learn and LightGBM).

Writes, relative to the repository root:

    models/iris/v1/{model.onnx,model.toml}   logistic regression on iris (4 features, 3 classes)
    models/iris/v2/{model.onnx,model.toml}   random forest on iris (10 trees, max depth 5)
    models/mlp/v1/{model.onnx,model.toml}    MLP 784-512-512-10 (relu) on synthetic data
    testdata/expected/iris-v1.json           onnxruntime outputs of the committed model.onnx
    testdata/expected/iris-v2.json           for a few fixed inputs (the engine's tests compare
    testdata/expected/mlp-v1.json            against these)

and the models that need onnxruntime (skl2onnx / onnxmltools graphs with string tensors, ZipMap
outputs and one input per column), in the manifest format with `runtime = "onnxruntime"`:

    models/iris_svc/v1/{model.onnx,model.toml}
        StandardScaler + SVC(probability=True) on iris with string labels; skl2onnx defaults
        (ZipMap kept): input `input` FP32 [N, 4]; outputs `output_label` BYTES [N] and
        `output_probability` MAP (seq(map(string, float)))
    models/diabetes_forest/v1/{model.onnx,model.toml}
        RandomForestRegressor (50 trees, max depth 8) on the (unscaled) diabetes data:
        input `input` FP32 [N, 10]; output `variable` FP32 [N, 1]
    models/census_pipeline/v1/{model.onnx,model.toml}
        ColumnTransformer(StandardScaler on age/hours, OneHotEncoder(handle_unknown="ignore") on
        city/job) + LogisticRegression on a synthetic, seeded census-like table; one ONNX input
        per column: `age`, `hours` FP32 [N, 1], `city`, `job` BYTES [N, 1]; outputs
        `output_label` BYTES [N] ("<=50K" / ">50K") and `output_probability` MAP
    models/lightgbm_classifier/v1/{model.onnx,model.toml}
        LGBMClassifier (30 trees per class, 3 classes) on wine, onnxmltools defaults (ZipMap
        kept): input `input` FP32 [N, 13]; outputs `label` INT64 [N], `probabilities` MAP
        (seq(map(int64, float)))
    testdata/models/forest_digits/v1/{model.onnx,model.toml}   (test-only, not a demo model)
        RandomForestClassifier (50 trees, max depth 8) on sklearn's digits, without ZipMap so
        tract runs it too: `input` FP32 [N, 64] -> `label` INT64 [N], `probabilities` FP32
        [N, 10]; expected outputs in testdata/expected/forest_digits-v1.json (the runtime
        benchmark's tree ensemble)
    testdata/models/element_types/v1/{model.onnx,model.toml}   (test-only, not a demo model)
        One [N, 2] input of each of FP16, FP64, INT32, INT8, UINT8 and BOOL, each passed
        through to an output of its type, and their sum as FP32 [N, 1]; expected outputs in
        testdata/expected/element_types-v1.json
    testdata/models/image_mean/v1/{model.onnx,model.toml}   (test-only, not a demo model)
        The per-channel mean of one 3x224x224 FP32 image (ReduceMean): `image` FP32
        [N, 3, 224, 224] -> `means` FP32 [N, 3]; its manifest sets raw_input = true and
        max_body_bytes = 4000000, for the tests of raw and large request bodies
    testdata/expected/{iris_svc,diabetes_forest,census_pipeline,lightgbm_classifier}-v1.json
        onnxruntime (CPUExecutionProvider) outputs of each committed model.onnx (format in
        scripts/onnx_fixtures.py)

The training data and the scikit-learn classifiers of iris and mlp are defined in
scripts/demo_training.py (no ONNX imports there), which tests/v2/sk_models.py reuses to serve the
same models in MLServer. The torch / transformers models are written by scripts/gen_torch_models.py.

The manifests follow docs/model-repository.md. The iris and mlp graphs take one FP32 input named
`input` with a dynamic batch dimension and give `label` (INT64 [-1]) and `probabilities` (FP32
[-1, C]); they use only ONNX op-set <= 15 and ai.onnx.ml <= 3 ops that tract-onnx 0.23 runs. The
onnxruntime models are written with skl2onnx target op-set 17 / ai.onnx.ml 3 (skl2onnx writes the
lowest versions that suffice) and onnxmltools' default op-set for LightGBM.

Setup and run (from the repository root):

    python3 -m venv /tmp/venv-models
    /tmp/venv-models/bin/pip install -r scripts/requirements-models.txt
    /tmp/venv-models/bin/python scripts/gen_models.py

The outputs are committed, so building and testing the server never needs Python, and this script
never runs in CI; rerun it only to change the models. Every seed is fixed: a rerun with the
pinned versions rewrites the same files. If the optional `tract` Python package (tract==0.23.9)
is installed, the iris and mlp models are also run through tract and compared with onnxruntime.
"""

from __future__ import annotations

import json
import os
import sys
import tomllib
import warnings
from pathlib import Path

import lightgbm
import numpy as np
import onnx
import onnx_fixtures as fx
import onnxmltools
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
from onnxmltools.convert.common.data_types import FloatTensorType as MLFloatTensorType
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType, StringTensorType
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_diabetes, load_digits, load_wine
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import SVC

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
EXPECTED = ROOT / "testdata" / "expected"

# Plain ONNX op-set 15 and ai.onnx.ml 3 at most (skl2onnx picks the lowest versions that suffice).
TARGET_OPSET = {"": 15, "ai.onnx.ml": 3}
# The onnxruntime models: skl2onnx writes the lowest versions <= these that suffice.
ORT_TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
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


# --------------------------------------------------------------------------------------------
# onnxruntime models (manifest with runtime = "onnxruntime"; helpers in onnx_fixtures.py)
# --------------------------------------------------------------------------------------------

SEED_ORT = 0
IRIS_SVC_TOLERANCE = 1e-4
CENSUS_CITIES = ["paris", "rome", "berlin", "madrid", "lisbon"]
CENSUS_JOBS = ["engineer", "teacher", "nurse", "clerk", "artist", "manager"]
CENSUS_LABELS = np.array(["<=50K", ">50K"], dtype=object)


def ort_model(name: str, onx: onnx.ModelProto, description: str) -> tuple[Path, list[Path]]:
    """Write models/<name>/v1 and check the written file; returns (model.onnx, both files)."""
    onx = tidy(onx)
    onx.graph.name = f"{name}_v1"  # skl2onnx names the graph with a random UUID
    written = fx.write_model(MODELS / name / "v1", onx, fx.manifest(onx, description))
    print(f"{name}/v1: {fx.describe(onx)}")
    print("\n".join(fx.io_summary(onx)))
    return written[0], written


def map_probs(maps: list[dict], classes) -> np.ndarray:
    """ZipMap output (one {class: p} per example) as an [N, C] array in `classes` order."""
    return np.array([[m[c] for c in classes] for m in maps], dtype=np.float64)


def case_rows(n: int, rng_seed: int = 0) -> list[np.ndarray]:
    """Row indices of the three expected cases: 1, 5 and 20 examples (fixed, spread out)."""
    rng = np.random.default_rng(rng_seed)
    return [np.array([0]), rng.choice(n, 5, replace=False), rng.choice(n, 20, replace=False)]


def iris_svc_model() -> list[Path]:
    x, y = iris_data()
    x = x.astype(np.float32)
    labels = np.array(IRIS_LABELS, dtype=object)[y]
    clf = Pipeline(
        [("scale", StandardScaler()), ("svc", SVC(probability=True, random_state=SEED_ORT))]
    ).fit(x, labels)
    onx = convert_sklearn(
        clf,
        initial_types=[("input", FloatTensorType([None, 4]))],
        target_opset=ORT_TARGET_OPSET,
    )
    fx.expect_io(
        onx,
        [("input", "FP32", [-1, 4])],
        [("output_label", "BYTES", [-1]), ("output_probability", "MAP", [-1])],
    )
    path, files = ort_model(
        "iris_svc",
        onx,
        "Iris species, StandardScaler + SVC (RBF, Platt probabilities), string labels; "
        "skl2onnx with ZipMap",
    )
    out = dict(fx.ort_run(path, {"input": x}))
    probs = map_probs(out["output_probability"], clf.classes_)
    diff = float(np.max(np.abs(probs - clf.predict_proba(x))))
    agree = float(np.mean(np.asarray(out["output_label"]) == clf.predict(x)))
    print(f"  max |onnxruntime - sklearn predict_proba| = {diff:.3e}; label agreement {agree:.4f}")
    assert diff < IRIS_SVC_TOLERANCE, f"iris_svc: probabilities differ by {diff}"
    assert agree == 1.0, "iris_svc: labels differ"

    rows = [np.array([0]), np.array([0, 50, 100, 25, 125]), np.linspace(0, 149, 20).astype(int)]
    cases = [fx.prepare_inputs(onx, {"input": x[r]}) for r in rows]
    return files + [fx.write_expected("iris_svc", "v1", path, cases)]


def diabetes_forest_model() -> list[Path]:
    # The unscaled data: every feature has at most 4 decimals, so the JSON inputs are exact.
    x, y = load_diabetes(return_X_y=True, scaled=False)
    x = x.astype(np.float32)
    assert np.array_equal(np.round(x.astype(np.float64), 4).astype(np.float32), x)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=SEED_ORT)
    reg = RandomForestRegressor(n_estimators=50, max_depth=8, random_state=SEED_ORT, n_jobs=1)
    reg.fit(x_train, y_train)
    print(f"diabetes_forest/v1: held-out R^2 {reg.score(x_test, y_test):.3f}")
    onx = convert_sklearn(
        reg,
        initial_types=[("input", FloatTensorType([None, 10]))],
        target_opset=ORT_TARGET_OPSET,
    )
    fx.expect_io(onx, [("input", "FP32", [-1, 10])], [("variable", "FP32", [-1, 1])])
    path, files = ort_model(
        "diabetes_forest",
        onx,
        "Diabetes progression (10 unscaled features), random forest regressor "
        "(50 trees, max depth 8)",
    )
    out = dict(fx.ort_run(path, {"input": x_test}))
    ref = reg.predict(x_test)
    diff = float(np.max(np.abs(out["variable"][:, 0] - ref) / np.maximum(np.abs(ref), 1.0)))
    print(f"  max relative |onnxruntime - sklearn predict| = {diff:.3e}")
    assert diff < 1e-4, f"diabetes_forest: predictions differ by {diff}"

    cases = [fx.prepare_inputs(onx, {"input": x_test[r]}) for r in case_rows(len(x_test))]
    return files + [fx.write_expected("diabetes_forest", "v1", path, cases)]


def census_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic census-like table: columns age, hours (numbers), city, job (strings); object array.

    The target (">50K" or "<=50K") is a noisy linear function of all four columns.
    """
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 71, n).astype(np.float64)
    hours = rng.integers(10, 81, n).astype(np.float64)
    city = rng.integers(0, len(CENSUS_CITIES), n)
    job = rng.integers(0, len(CENSUS_JOBS), n)
    city_effect = np.array([0.8, -0.3, 0.4, -0.5, -0.6])
    job_effect = np.array([1.2, -0.4, -0.1, -0.8, -1.0, 1.0])
    logit = (
        0.07 * (age - 42)
        + 0.06 * (hours - 42)
        + city_effect[city]
        + job_effect[job]
        + rng.normal(0.0, 0.8, n)
    )
    x = np.empty((n, 4), dtype=object)
    x[:, 0] = age
    x[:, 1] = hours
    x[:, 2] = np.array(CENSUS_CITIES, dtype=object)[city]
    x[:, 3] = np.array(CENSUS_JOBS, dtype=object)[job]
    return x, CENSUS_LABELS[(logit > 0).astype(int)]


def census_pipeline_model() -> list[Path]:
    x, y = census_data(1200, SEED_ORT)
    x_train, y_train, x_test, y_test = x[:1000], y[:1000], x[1000:], y[1000:]
    # No pandas: the columns are given by position, and skl2onnx maps position i to the i-th
    # ONNX input (each one column wide), so the graph is the one a DataFrame with these column
    # names gives: one input per column.
    clf = Pipeline(
        [
            (
                "columns",
                ColumnTransformer(
                    [
                        ("num", StandardScaler(), [0, 1]),
                        ("cat", OneHotEncoder(handle_unknown="ignore"), [2, 3]),
                    ]
                ),
            ),
            ("logreg", LogisticRegression(max_iter=1000, random_state=SEED_ORT)),
        ]
    ).fit(x_train, y_train)
    print(f"census_pipeline/v1: held-out accuracy {clf.score(x_test, y_test):.3f}")
    onx = convert_sklearn(
        clf,
        initial_types=[
            ("age", FloatTensorType([None, 1])),
            ("hours", FloatTensorType([None, 1])),
            ("city", StringTensorType([None, 1])),
            ("job", StringTensorType([None, 1])),
        ],
        target_opset=ORT_TARGET_OPSET,
    )
    fx.expect_io(
        onx,
        [
            ("age", "FP32", [-1, 1]),
            ("hours", "FP32", [-1, 1]),
            ("city", "BYTES", [-1, 1]),
            ("job", "BYTES", [-1, 1]),
        ],
        [("output_label", "BYTES", [-1]), ("output_probability", "MAP", [-1])],
    )
    path, files = ort_model(
        "census_pipeline",
        onx,
        "Synthetic census-like income class from age, hours, city and job (one input per "
        "column): ColumnTransformer(StandardScaler, OneHotEncoder) + logistic regression",
    )

    def feeds(rows: np.ndarray) -> dict[str, np.ndarray]:
        return fx.prepare_inputs(
            onx,
            {
                "age": rows[:, [0]].astype(np.float64),
                "hours": rows[:, [1]].astype(np.float64),
                "city": rows[:, [2]],
                "job": rows[:, [3]],
            },
        )

    # A city and a job never seen in training (one-hot encoded as all zeros).
    x_unknown = x_test[:20].copy()
    x_unknown[3, 2] = "oslo"
    x_unknown[11, 3] = "pilot"
    x_unknown[17, 2], x_unknown[17, 3] = "oslo", "pilot"
    check = np.concatenate([x_test, x_unknown])
    out = dict(fx.ort_run(path, feeds(check)))
    probs = map_probs(out["output_probability"], clf.classes_)
    diff = float(np.max(np.abs(probs - clf.predict_proba(check))))
    agree = float(np.mean(np.asarray(out["output_label"]) == clf.predict(check)))
    print(f"  max |onnxruntime - sklearn predict_proba| = {diff:.3e}; label agreement {agree:.4f}")
    assert diff < 1e-5, f"census_pipeline: probabilities differ by {diff}"
    assert agree == 1.0, "census_pipeline: labels differ"

    cases = [feeds(x_test[[0]]), feeds(x_test[1:6]), feeds(x_unknown)]
    notes = (
        "The third case has an unseen city ('oslo') in rows 3 and 17 and an unseen job ('pilot') "
        "in rows 11 and 17; OneHotEncoder(handle_unknown='ignore') encodes them as all zeros."
    )
    return files + [fx.write_expected("census_pipeline", "v1", path, cases, notes)]


def lightgbm_classifier_model() -> list[Path]:
    x, y = load_wine(return_X_y=True)
    x = np.round(x, 4).astype(np.float32)  # one value of the data set is 9.899999
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.3, random_state=SEED_ORT, stratify=y
    )
    clf = lightgbm.LGBMClassifier(
        n_estimators=30,
        random_state=SEED_ORT,
        n_jobs=1,
        deterministic=True,
        force_col_wise=True,
        verbose=-1,
    ).fit(x_train, y_train)
    print(f"lightgbm_classifier/v1: held-out accuracy {clf.score(x_test, y_test):.3f}")
    onx = onnxmltools.convert_lightgbm(
        clf, initial_types=[("input", MLFloatTensorType([None, 13]))]
    )
    # onnxmltools 1.16.0 declares `label` as INT64 [1] although it is [N] (onnxruntime warns
    # "Expected shape from model of {1} does not match actual shape" for a batch of more than
    # one): declare its dimension dynamic, as skl2onnx does.
    (label_dim,) = onx.graph.output[0].type.tensor_type.shape.dim
    assert onx.graph.output[0].name == "label" and label_dim.dim_value == 1, onx.graph.output[0]
    label_dim.Clear()
    fx.expect_io(
        onx,
        [("input", "FP32", [-1, 13])],
        [("label", "INT64", [-1]), ("probabilities", "MAP", [-1])],
    )
    path, files = ort_model(
        "lightgbm_classifier",
        onx,
        "Wine cultivar (13 features, classes 0, 1, 2), LightGBM classifier (30 boosting rounds); "
        "onnxmltools with ZipMap",
    )
    out = dict(fx.ort_run(path, {"input": x}))
    probs = map_probs(out["probabilities"], clf.classes_)
    diff = float(np.max(np.abs(probs - clf.predict_proba(x))))
    agree = float(np.mean(out["label"] == clf.predict(x)))
    print(f"  max |onnxruntime - lightgbm predict_proba| = {diff:.3e}; label agreement {agree:.4f}")
    assert diff < 1e-4, f"lightgbm_classifier: probabilities differ by {diff}"
    assert agree == 1.0, "lightgbm_classifier: labels differ"

    cases = [fx.prepare_inputs(onx, {"input": x_test[r]}) for r in case_rows(len(x_test))]
    return files + [fx.write_expected("lightgbm_classifier", "v1", path, cases)]


def forest_digits_model() -> list[Path]:
    """A bigger tree ensemble both runtimes run (no ZipMap): for the runtime benchmark."""
    x, y = load_digits(return_X_y=True)
    x = x.astype(np.float32)
    clf = RandomForestClassifier(n_estimators=50, max_depth=8, random_state=SEED_ORT).fit(x, y)
    onx = tidy(to_onnx(clf, 64))
    onx.graph.name = "forest_digits_v1"
    text = fx.manifest(onx, "Digits (8x8), random forest of 50 trees (max depth 8), no ZipMap")
    files = fx.write_model(ROOT / "testdata" / "models" / "forest_digits" / "v1", onx, text)
    out = dict(fx.ort_run(files[0], {"input": x}))
    diff = float(np.max(np.abs(out["probabilities"] - clf.predict_proba(x))))
    print(f"forest_digits/v1: {fx.describe(onx)}; max |onnxruntime - sklearn| = {diff:.2e}")
    assert diff < 1e-4, diff
    cases = [fx.prepare_inputs(onx, {"input": x[r]}) for r in case_rows(len(x))]
    return files + [fx.write_expected("forest_digits", "v1", files[0], cases)]


def element_types_model() -> list[Path]:
    """One input of each element type users meet; each passes through and is also cast to
    float into one `sum` per example: every type in, every type out."""
    TP = onnx.TensorProto
    types = [
        ("f16", TP.FLOAT16), ("f64", TP.DOUBLE), ("i32", TP.INT32),
        ("i8", TP.INT8), ("u8", TP.UINT8), ("flag", TP.BOOL),
    ]
    inputs = [helper.make_tensor_value_info(n, t, ["N", 2]) for n, t in types]
    outputs = [helper.make_tensor_value_info(f"{n}_out", t, ["N", 2]) for n, t in types]
    outputs.append(helper.make_tensor_value_info("sum", TP.FLOAT, ["N", 1]))
    nodes = [helper.make_node("Identity", [n], [f"{n}_out"]) for n, _ in types]
    nodes += [helper.make_node("Cast", [n], [f"{n}_float"], to=TP.FLOAT) for n, _ in types]
    nodes.append(helper.make_node("Concat", [f"{n}_float" for n, _ in types], ["all"], axis=1))
    nodes.append(helper.make_node("ReduceSum", ["all"], ["sum"], keepdims=1, axes=[1]))
    graph = helper.make_graph(nodes, "element_types_v1", inputs, outputs)
    onx = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)])
    onx.ir_version = 8
    text = fx.manifest(onx, "Every element type through: FP16, FP64, INT32, INT8, UINT8, BOOL")
    files = fx.write_model(ROOT / "testdata" / "models" / "element_types" / "v1", onx, text)
    rng = np.random.default_rng(SEED_ORT)

    def feeds(n: int) -> dict[str, np.ndarray]:
        return fx.prepare_inputs(onx, {
            "f16": rng.integers(-64, 64, (n, 2)) / 8.0,  # exact in half precision
            "f64": rng.normal(size=(n, 2)),
            "i32": rng.integers(-100000, 100000, (n, 2)),
            "i8": rng.integers(-128, 128, (n, 2)),
            "u8": rng.integers(0, 256, (n, 2)),
            "flag": rng.integers(0, 2, (n, 2)).astype(bool),
        })

    print(f"element_types/v1: {fx.describe(onx)}")
    return files + [fx.write_expected("element_types", "v1", files[0], [feeds(1), feeds(5), feeds(20)])]


def image_mean_model() -> list[Path]:
    """A 224x224 RGB image in, its per-channel mean out: big inputs, trivial compute."""
    image = helper.make_tensor_value_info("image", onnx.TensorProto.FLOAT, ["N", 3, 224, 224])
    means = helper.make_tensor_value_info("means", onnx.TensorProto.FLOAT, ["N", 3])
    node = helper.make_node("ReduceMean", ["image"], ["means"], axes=[2, 3], keepdims=0)
    graph = helper.make_graph([node], "image_mean_v1", [image], [means])
    onx = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onx.ir_version = 8
    text = fx.manifest(onx, "Per-channel mean of a 3x224x224 FP32 image (raw and large bodies)")
    # Top-level keys go before the first table.
    text = text.replace(
        'file = "model.onnx"\n', 'file = "model.onnx"\nraw_input = true\nmax_body_bytes = 4000000\n'
    )
    tomllib.loads(text)
    folder = ROOT / "testdata" / "models" / "image_mean" / "v1"
    files = fx.write_model(folder, onx, text)
    out = dict(fx.ort_run(files[0], {"image": np.ones((1, 3, 224, 224), np.float32)}))
    assert np.allclose(out["means"], 1.0), out
    print(f"image_mean/v1: {fx.describe(onx)}")
    return files


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
    files += iris_svc_model()
    files += diabetes_forest_model()
    files += census_pipeline_model()
    files += lightgbm_classifier_model()
    files += forest_digits_model()
    files += element_types_model()
    files += image_mean_model()
    fx.report(files)
    return 0


if __name__ == "__main__":
    sys.exit(main())
