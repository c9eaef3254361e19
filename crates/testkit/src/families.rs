//! The model families users bring (`scripts/gen_models.py`, `scripts/gen_torch_models.py`):
//! where their graphs are, a repository serving each with the manifest `models inspect`
//! writes, their onnxruntime reference outputs, and a tolerant JSON comparison.

use std::path::{Path, PathBuf};

use inference_engine_core::tensor::{DataType, Tensor};
use inference_engine_v2::wire;
use serde_json::Value;

/// Every family with reference outputs: the demo repository's six, then the test-only ones
/// in `testdata/models/`.
pub const FAMILIES: [&str; 12] = [
    "iris_svc",
    "diabetes_forest",
    "census_pipeline",
    "lightgbm_classifier",
    "digits_cnn",
    "bert_tiny",
    "lstm_text",
    "gru_text",
    "conv1d_signal",
    "distilbert_tiny",
    "forest_digits",
    "element_types",
];

/// How far an answer may be from onnxruntime-in-Python's (relative above 1).
pub const TOLERANCE: f64 = 1e-4;

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The version folder of a family: in the demo repository, or in `testdata/models/`.
pub fn family_dir(name: &str) -> PathBuf {
    let demo = format!("{name}/v1");
    if crate::DEMO_MODELS.contains(&demo.as_str()) {
        return crate::demo_model(&demo);
    }
    repository_root()
        .join("testdata/models")
        .join(name)
        .join("v1")
}

/// Fills `root` with every family as `<name>/v1/{model.onnx, model.toml}`, the manifest being
/// the one `inference-engine models inspect` suggests for the graph.
pub fn inspected_repository(root: &Path) {
    for name in FAMILIES {
        let source = family_dir(name).join("model.onnx");
        let target = root.join(name).join("v1");
        std::fs::create_dir_all(&target).unwrap();
        std::fs::copy(&source, target.join("model.onnx")).unwrap();
        let inspection = inference_engine_onnx::inspect(&source)
            .unwrap_or_else(|err| panic!("{}: {err}", source.display()));
        std::fs::write(target.join("model.toml"), inspection.suggested_manifest()).unwrap();
    }
}

/// `testdata/expected/<name>-v1.json`: `cases`, each with `data` (what `/predict` takes),
/// `tensors` (the same as protocol tensors) and `outputs` (name → datatype, shape, flat data;
/// a `MAP` output's data is one object per example).
pub fn family_reference(name: &str) -> Value {
    crate::expected_outputs(name, "v1")
}

/// A reference case's protocol tensor (`{name, datatype, shape, data}`) as a core tensor.
pub fn reference_tensor(tensor: &Value) -> Tensor {
    let name = tensor["name"].as_str().unwrap();
    let datatype = DataType::parse(tensor["datatype"].as_str().unwrap()).unwrap();
    let shape = tensor["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|dim| usize::try_from(dim.as_u64().unwrap()).unwrap())
        .collect();
    let data = wire::data_from_json(name, datatype, &tensor["data"]).unwrap();
    Tensor::new(name, shape, data).unwrap()
}

/// A case's input tensors.
pub fn case_tensors(case: &Value) -> Vec<Tensor> {
    case["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(reference_tensor)
        .collect()
}

/// Row `row` of a reference output, flat (a map output: its one object).
pub fn reference_row(output: &Value, row: usize) -> Vec<Value> {
    let data = output["data"].as_array().unwrap();
    if output["datatype"] == "MAP" {
        return vec![data[row].clone()];
    }
    let per_row: usize = output["shape"].as_array().unwrap()[1..]
        .iter()
        .map(|dim| usize::try_from(dim.as_u64().unwrap()).unwrap())
        .product();
    data[row * per_row..(row + 1) * per_row].to_vec()
}

/// A JSON value's leaves in order (a nested row as the reference's flat row).
pub fn flatten(value: &Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items.iter().flat_map(flatten).collect(),
        other => vec![other.clone()],
    }
}

/// Equal JSON, except that numbers may differ by [`TOLERANCE`] (relative above 1) and object
/// keys may come in any order.
pub fn assert_json_close(actual: &Value, expected: &Value, what: &str) {
    match (actual, expected) {
        (Value::Number(left), Value::Number(right)) => {
            let (left, right) = (left.as_f64().unwrap(), right.as_f64().unwrap());
            assert!(
                (left - right).abs() <= TOLERANCE * right.abs().max(1.0),
                "{what}: {left} vs onnxruntime's {right}"
            );
        }
        (Value::Array(left), Value::Array(right)) => {
            assert_eq!(left.len(), right.len(), "{what}: {actual} vs {expected}");
            for (index, (left, right)) in left.iter().zip(right).enumerate() {
                assert_json_close(left, right, &format!("{what}[{index}]"));
            }
        }
        (Value::Object(left), Value::Object(right)) => {
            let mut left_keys = left.keys().collect::<Vec<_>>();
            let mut right_keys = right.keys().collect::<Vec<_>>();
            left_keys.sort();
            right_keys.sort();
            assert_eq!(left_keys, right_keys, "{what}: keys");
            for (key, value) in left {
                assert_json_close(value, &right[key], &format!("{what}.{key}"));
            }
        }
        _ => assert_eq!(actual, expected, "{what}"),
    }
}

/// `/predict`'s raw results for a case (a list, one object per example) against its
/// reference rows.
pub fn assert_predict_rows(result: &Value, case: &Value, what: &str) {
    let rows = result
        .as_array()
        .unwrap_or_else(|| panic!("{what}: not a list: {result}"));
    for (row, result) in rows.iter().enumerate() {
        for (name, expected) in case["outputs"].as_object().unwrap() {
            assert_json_close(
                &Value::Array(flatten(&result[name])),
                &Value::Array(reference_row(expected, row)),
                &format!("{what} row {row} `{name}`"),
            );
        }
    }
}
