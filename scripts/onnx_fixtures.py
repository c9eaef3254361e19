"""Shared helpers of scripts/gen_models.py and scripts/gen_torch_models.py (onnx, onnxruntime and
numpy only; no scikit-learn or torch import here).

For a model of the onnxruntime-backed repository format, they write

    <folder>/model.onnx    one self-contained file (every tensor inline, no external data)
    <folder>/model.toml    the manifest (`runtime = "onnxruntime"`), with one [[inputs]] and one
                           [[outputs]] per graph input and output, in graph order, derived from
                           the graph itself
    testdata/expected/<name>-<version>.json
                           onnxruntime (CPUExecutionProvider) outputs of the written model.onnx
                           for a few fixed inputs

Datatypes of the manifest and of the expected JSON: FP32 FP64 FP16 INT64 INT32 INT8 UINT8 BOOL,
BYTES for an ONNX string tensor, MAP for seq(map(string|int64, float)) as ZipMap produces it (one
map per example). Shapes: the first -1 is the batch, a later -1 a dynamic dimension.

Expected JSON (compact, one line): {"model", "version", "cases": [{"data", "tensors", "outputs"}]}
where `data` is what a client sends as /predict "data" (a list of examples for a one-input model,
an object keyed by input name otherwise), `tensors` the same inputs as V2 tensors (flat row-major
`data`), and `outputs` every graph output as {"datatype", "shape", "data"} (flat row-major for
tensors; a list of {key: probability} objects, keys as strings, for MAP).
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

ROOT = Path(__file__).resolve().parent.parent
EXPECTED = ROOT / "testdata" / "expected"

TP = onnx.TensorProto
# ONNX tensor element type -> (manifest datatype, numpy dtype of the values a client sends)
DATATYPES = {
    TP.FLOAT: ("FP32", np.float32),
    TP.DOUBLE: ("FP64", np.float64),
    TP.FLOAT16: ("FP16", np.float16),
    TP.INT64: ("INT64", np.int64),
    TP.INT32: ("INT32", np.int32),
    TP.INT8: ("INT8", np.int8),
    TP.UINT8: ("UINT8", np.uint8),
    TP.BOOL: ("BOOL", np.bool_),
    TP.STRING: ("BYTES", object),
}
ELEM_OF = {name: elem for elem, (name, _) in DATATYPES.items()}
FLOAT_DECIMALS = 4


# --------------------------------------------------------------------------------------------
# Graph inputs and outputs
# --------------------------------------------------------------------------------------------


def io_spec(vi: onnx.ValueInfoProto) -> dict:
    """{"name", "datatype", "shape" (manifest form), "dims" (graph form, for reports)}."""
    t = vi.type
    kind = t.WhichOneof("value")
    if kind == "tensor_type":
        elem = t.tensor_type.elem_type
        if elem not in DATATYPES:
            raise ValueError(f"{vi.name}: unsupported element type {TP.DataType.Name(elem)}")
        if not t.tensor_type.HasField("shape"):
            raise ValueError(f"{vi.name}: the graph gives no shape (unknown rank)")
        dims = []
        for d in t.tensor_type.shape.dim:
            if d.HasField("dim_value"):
                dims.append(d.dim_value)
            elif d.HasField("dim_param"):
                dims.append(d.dim_param)
            else:
                dims.append(None)
        shape = [d if isinstance(d, int) and d > 0 else -1 for d in dims]
        graph = f"{TP.DataType.Name(elem)} {dims}"
        return {"name": vi.name, "datatype": DATATYPES[elem][0], "shape": shape, "graph": graph}
    if kind == "sequence_type":
        m = t.sequence_type.elem_type
        assert m.WhichOneof("value") == "map_type", f"{vi.name}: sequence of non-maps"
        key = m.map_type.key_type
        val = m.map_type.value_type.tensor_type.elem_type
        assert key in (TP.STRING, TP.INT64) and val == TP.FLOAT, (vi.name, key, val)
        graph = f"seq(map({TP.DataType.Name(key)}, tensor({TP.DataType.Name(val)})))"
        return {"name": vi.name, "datatype": "MAP", "shape": [-1], "graph": graph}
    raise ValueError(f"{vi.name}: unsupported ONNX type {kind}")


def graph_io(onx: onnx.ModelProto) -> tuple[list[dict], list[dict]]:
    init = {i.name for i in onx.graph.initializer}
    inputs = [io_spec(i) for i in onx.graph.input if i.name not in init]
    outputs = [io_spec(o) for o in onx.graph.output]
    for spec in inputs + outputs:
        if spec["datatype"] != "MAP":
            assert spec["shape"] and spec["shape"][0] == -1, f"{spec['name']}: batch is not dynamic"
    return inputs, outputs


def expect_io(onx: onnx.ModelProto, inputs: list[tuple], outputs: list[tuple]) -> None:
    """Assert the graph's inputs and outputs are exactly these (name, datatype, shape)."""
    got_in, got_out = graph_io(onx)
    got = ([(s["name"], s["datatype"], s["shape"]) for s in got_in],
           [(s["name"], s["datatype"], s["shape"]) for s in got_out])
    want = ([(n, d, list(s)) for n, d, s in inputs], [(n, d, list(s)) for n, d, s in outputs])
    assert got == want, f"graph inputs/outputs\n  got  {got}\n  want {want}"


def io_summary(onx: onnx.ModelProto) -> list[str]:
    got_in, got_out = graph_io(onx)
    return [f"  in  {s['name']}: {s['graph']}" for s in got_in] + [
        f"  out {s['name']}: {s['graph']}" for s in got_out
    ]


def describe(onx: onnx.ModelProto) -> str:
    ops = sorted({(n.domain or "ai.onnx") + ":" + n.op_type for n in onx.graph.node})
    opsets = ", ".join(f"{i.domain or 'ai.onnx'}={i.version}" for i in onx.opset_import)
    return f"opsets [{opsets}] ops {ops}"


# --------------------------------------------------------------------------------------------
# Manifest
# --------------------------------------------------------------------------------------------


def toml_str(s: str) -> str:
    return json.dumps(s)  # a JSON string of plain text is a valid TOML basic string


def manifest(onx: onnx.ModelProto, description: str, batching: dict | None = None) -> str:
    inputs, outputs = graph_io(onx)
    lines = [
        'backend = "onnx"',
        'runtime = "onnxruntime"',
        'file = "model.onnx"',
        f"description = {toml_str(description)}",
    ]
    for table, specs in (("inputs", inputs), ("outputs", outputs)):
        for s in specs:
            lines += [
                "",
                f"[[{table}]]",
                f"name = {toml_str(s['name'])}",
                f"datatype = {toml_str(s['datatype'])}",
                "shape = [" + ", ".join(str(d) for d in s["shape"]) + "]",
            ]
    lines += ["", "[postprocess]", 'kind = "raw"']
    if batching:
        lines += [
            "",
            "[batching]",
            f"max_batch_size = {batching['max_batch_size']}",
            f"max_delay_ms = {batching['max_delay_ms']}",
        ]
    text = "\n".join(lines) + "\n"
    doc = tomllib.loads(text)  # must parse
    assert [i["name"] for i in doc["inputs"]] == [s["name"] for s in inputs]
    assert [o["name"] for o in doc["outputs"]] == [s["name"] for s in outputs]
    return text


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def write_model(folder: Path, onx: onnx.ModelProto, toml_text: str) -> list[Path]:
    """Write model.onnx (every tensor inline) and model.toml; check the file as written."""
    for t in list(onx.graph.initializer):
        assert t.data_location != TP.EXTERNAL, f"{t.name} is external data"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    path.write_bytes(onx.SerializeToString())
    (folder / "model.toml").write_text(toml_text)
    extra = sorted(set(os.listdir(folder)) - {"model.onnx", "model.toml"})
    assert not extra, f"{folder} must hold only model.onnx and model.toml, found also {extra}"
    check_file(path)
    return [path, folder / "model.toml"]


def check_file(path: Path) -> None:
    """onnx.checker (full check) on the file, and no external data reference anywhere in it."""
    onnx.checker.check_model(str(path), full_check=True)
    onx = onnx.load(str(path), load_external_data=False)
    for t in onnx.external_data_helper._get_all_tensors(onx):
        assert t.data_location != TP.EXTERNAL, f"{path}: tensor {t.name} refers to external data"


def session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def ort_run(path: Path, feeds: dict[str, np.ndarray]) -> list[tuple[str, object]]:
    """Outputs of the file at `path` for `feeds`, as (name, value) in graph output order."""
    sess = session(path)
    names = [o.name for o in sess.get_outputs()]
    assert sorted(feeds) == sorted(i.name for i in sess.get_inputs()), sorted(feeds)
    return list(zip(names, sess.run(names, feeds)))


def _json_scalar(v, datatype: str):
    if datatype == "BYTES":
        return v.decode() if isinstance(v, bytes) else str(v)
    if datatype == "BOOL":
        return bool(v)
    if datatype.startswith("FP"):
        return float(v)
    return int(v)


def _input_values(arr: np.ndarray, datatype: str) -> list:
    """Flat row-major JSON values of an input; floats with 4 decimals (checked to round-trip)."""
    flat = arr.reshape(-1)
    if datatype.startswith("FP"):
        vals = [round(float(v), FLOAT_DECIMALS) for v in flat]
        back = np.array(vals, dtype=np.float64).astype(arr.dtype)
        assert np.array_equal(back, flat), "an input float does not round-trip through 4 decimals"
        return vals
    return [_json_scalar(v, datatype) for v in flat]


def _nest(flat: list, shape: tuple[int, ...]) -> list:
    if len(shape) == 1:
        return list(flat)
    step = len(flat) // shape[0]
    return [_nest(flat[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0])]


def output_json(value, spec: dict) -> dict:
    if spec["datatype"] == "MAP":
        assert isinstance(value, list), type(value)
        data = [{str(k): float(p) for k, p in m.items()} for m in value]
        return {"datatype": "MAP", "shape": [len(data)], "data": data}
    arr = np.asarray(value)
    datatype = spec["datatype"]
    want = DATATYPES[ELEM_OF[datatype]][1]
    assert arr.dtype == want or (want is object and arr.dtype.kind in "OUS"), (arr.dtype, datatype)
    return {
        "datatype": datatype,
        "shape": list(arr.shape),
        "data": [_json_scalar(v, datatype) for v in arr.reshape(-1)],
    }


def prepare_inputs(onx: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Cast each feed to its graph datatype; float inputs rounded to 4 decimals first."""
    inputs, _ = graph_io(onx)
    out = {}
    for s in inputs:
        dtype = DATATYPES[ELEM_OF[s["datatype"]]][1]
        x = np.asarray(feeds[s["name"]])
        if s["datatype"].startswith("FP"):
            x = np.round(x.astype(np.float64), FLOAT_DECIMALS)
        out[s["name"]] = x.astype(dtype)
    assert sorted(out) == sorted(feeds), (sorted(out), sorted(feeds))
    return out


def expected_case(path: Path, feeds: dict[str, np.ndarray]) -> dict:
    """One case of the expected JSON: run the written file on `feeds` (already prepared)."""
    onx = onnx.load(str(path))
    inputs, outputs = graph_io(onx)
    tensors = []
    data = {}
    for s in inputs:
        x = feeds[s["name"]]
        flat = _input_values(x, s["datatype"])
        tensors.append(
            {"name": s["name"], "datatype": s["datatype"], "shape": list(x.shape), "data": flat}
        )
        data[s["name"]] = _nest(flat, x.shape)
    ran = ort_run(path, feeds)
    assert [n for n, _ in ran] == [s["name"] for s in outputs]
    outs = {s["name"]: output_json(v, s) for s, (_, v) in zip(outputs, ran)}
    return {
        "data": data[inputs[0]["name"]] if len(inputs) == 1 else data,
        "tensors": tensors,
        "outputs": outs,
    }


def write_expected(
    name: str,
    version: str,
    path: Path,
    cases: list[dict[str, np.ndarray]],
    notes: str | None = None,
) -> Path:
    doc = {"model": name, "version": version}
    if notes:
        doc["notes"] = notes
    doc["cases"] = [expected_case(path, feeds) for feeds in cases]
    EXPECTED.mkdir(parents=True, exist_ok=True)
    dest = EXPECTED / f"{name}-{version}.json"
    dest.write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    return dest


def report(files: list[Path]) -> None:
    print("\nwritten:")
    total = 0
    for f in files:
        size = f.stat().st_size
        total += size
        digest = hashlib.sha256(f.read_bytes()).hexdigest()[:12]
        print(f"  {size:>9} B  {f.relative_to(ROOT)}  sha256:{digest}")
    print(f"  {total:>9} B  total")
