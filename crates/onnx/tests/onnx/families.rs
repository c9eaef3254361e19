//! The model families users bring (scikit-learn with ZipMap, tree ensembles, pipelines with
//! string columns, LightGBM, PyTorch's dynamo exports, BERT with dynamic batch and sequence
//! axes, recurrent nets), each served with the manifest `inspect` writes, answer as
//! onnxruntime-in-Python did: as JSON `data`, as tensors, and batched together.

use std::path::Path;
use std::sync::Arc;

use inference_engine_core::pipeline::{BatchAnswer, BatchItem, Model, PipelineError};
use inference_engine_core::source::{LoadContext, ModelSource};
use inference_engine_core::tensor::Tensor;
use inference_engine_onnx::manifest::{ExecutionProvider, OptimizationLevel, OrtOptions, Runtime};
use inference_engine_onnx::{Manifest, OnnxSource, inspect};
use inference_engine_testkit::families::{
    FAMILIES, assert_json_close, assert_predict_rows, case_tensors, family_dir, family_reference,
};
use serde_json::Value;

use crate::support::runtimes;

/// The families tract can also run; the others use operators it does not implement, or
/// (the dynamo-exported transformers) load but fail in tract's evaluation. The test below
/// fails when this list is no longer true, either way.
const ON_TRACT: [&str; 6] = [
    "digits_cnn",
    "lstm_text",
    "gru_text",
    "conv1d_signal",
    "forest_digits",
    "element_types",
];

/// The model served with the manifest `inspect` suggests for its file, on `runtime`.
fn inspected_model(name: &str, runtime: Runtime) -> Result<Arc<dyn Model>, String> {
    let dir = family_dir(name);
    let manifest = inspected_manifest(&dir);
    let source = OnnxSource::new(&dir, manifest, &runtimes(runtime)).map_err(|err| err.0)?;
    source
        .load(&LoadContext {
            executor_threads: 2,
        })
        .map_err(|err| err.0)
}

fn inspected_manifest(dir: &Path) -> Manifest {
    let inspection = inspect(&dir.join("model.onnx")).unwrap();
    Manifest::parse(&inspection.suggested_manifest())
        .unwrap_or_else(|err| panic!("{}: {err}\n{}", dir.display(), inspection.report()))
}

/// The tensor path's answer against the case's reference tensors (a map output travels as
/// one JSON text per example).
fn assert_tensors(answer: &[Tensor], case: &Value, what: &str) {
    let outputs = case["outputs"].as_object().unwrap();
    assert_eq!(answer.len(), outputs.len(), "{what}: outputs");
    for tensor in answer {
        let expected = &outputs[&tensor.name];
        assert_eq!(
            Value::from(tensor.shape.clone()),
            expected["shape"],
            "{what} `{}` shape",
            tensor.name
        );
        let values = tensor.data.to_json_values();
        let values = if expected["datatype"] == "MAP" {
            assert_eq!(tensor.datatype().as_str(), "BYTES");
            values
                .iter()
                .map(|text| serde_json::from_str(text.as_str().unwrap()).unwrap())
                .collect()
        } else {
            assert_eq!(tensor.datatype().as_str(), expected["datatype"], "{what}");
            values
        };
        assert_json_close(
            &Value::Array(values),
            &expected["data"],
            &format!("{what} `{}`", tensor.name),
        );
    }
}

fn cases(reference: &Value) -> &[Value] {
    reference["cases"].as_array().unwrap()
}

fn check_family(name: &str, runtime: Runtime, reference: &Value) {
    let model = inspected_model(name, runtime).unwrap_or_else(|err| panic!("{name}: {err}"));
    for (index, case) in cases(reference).iter().enumerate() {
        let what = format!("{name} on {runtime} case {index}");
        let result = model
            .predict(case["data"].clone())
            .unwrap_or_else(|err| panic!("{what}: {err}"));
        assert_predict_rows(&result, case, &what);
        let tensors = case_tensors(case);
        let answer = model
            .infer_tensors(tensors)
            .unwrap_or_else(|err| panic!("{what} (tensors): {err}"));
        assert_tensors(&answer, case, &format!("{what} (tensors)"));
    }
    // Every case in one dynamic batch, JSON and tensor requests mixed: each still gets exactly
    // its own answer (cases of different sequence lengths run in runs of their own).
    let items = cases(reference)
        .iter()
        .enumerate()
        .map(|(index, case)| {
            if index % 2 == 0 {
                BatchItem::Json(case["data"].clone())
            } else {
                BatchItem::Tensors(case_tensors(case))
            }
        })
        .collect();
    for (index, (outcome, case)) in model
        .run_each(items)
        .into_iter()
        .zip(cases(reference))
        .enumerate()
    {
        let what = format!("{name} on {runtime} batched case {index}");
        match outcome.unwrap_or_else(|err| panic!("{what}: {err}")) {
            BatchAnswer::Json(result) => assert_predict_rows(&result, case, &what),
            BatchAnswer::Tensors(answer) => assert_tensors(&answer, case, &what),
        }
    }
}

#[test]
fn every_family_served_with_the_inspected_manifest_answers_as_onnxruntime_in_python() {
    for name in FAMILIES {
        check_family(name, Runtime::Onnxruntime, &family_reference(name));
    }
}

#[test]
fn the_families_tract_runs_answer_the_same_on_tract_and_the_others_fail_with_an_error() {
    for name in FAMILIES {
        let reference = family_reference(name);
        match inspected_model(name, Runtime::Tract) {
            Ok(_) if ON_TRACT.contains(&name) => check_family(name, Runtime::Tract, &reference),
            Ok(model) => {
                let outcome = model.predict(cases(&reference)[0]["data"].clone());
                assert!(
                    matches!(outcome, Err(PipelineError::Inference(_))),
                    "{name} now runs on tract: check its answers and add it to ON_TRACT \
                     ({outcome:?})"
                );
            }
            Err(message) if ON_TRACT.contains(&name) => panic!("{name} on tract: {message}"),
            Err(message) => assert!(
                message.contains("model.onnx: "),
                "{name}: the error names the file: {message}"
            ),
        }
    }
}

#[test]
fn asking_for_cuda_without_it_is_a_load_error_and_the_session_knobs_load() {
    let dir = family_dir("iris_svc");
    let mut manifest = inspected_manifest(&dir);
    manifest.onnxruntime = Some(OrtOptions {
        execution_provider: ExecutionProvider::Cuda,
        ..OrtOptions::default()
    });
    let source = OnnxSource::new(&dir, manifest.clone(), &runtimes(Runtime::Onnxruntime)).unwrap();
    let message = source.load(&LoadContext::default()).unwrap_err().0;
    assert!(
        message.contains("execution_provider = \"cuda\": ONNX Runtime ")
            && message.contains("has no CUDA execution provider"),
        "{message}"
    );

    manifest.onnxruntime = Some(OrtOptions {
        intra_op_threads: Some(2),
        sessions: Some(1),
        graph_optimization_level: OptimizationLevel::Disabled,
        execution_provider: ExecutionProvider::Cpu,
    });
    let source = OnnxSource::new(&dir, manifest, &runtimes(Runtime::Onnxruntime)).unwrap();
    let model = source
        .load(&LoadContext {
            executor_threads: 4,
        })
        .unwrap();
    let reference = family_reference("iris_svc");
    let case = &cases(&reference)[1];
    assert_predict_rows(&model.predict(case["data"].clone()).unwrap(), case, "knobs");
}

#[test]
fn a_single_example_gets_a_single_result() {
    let model = inspected_model("iris_svc", Runtime::Onnxruntime).unwrap();
    let reference = family_reference("iris_svc");
    let case = &cases(&reference)[0];
    let result = model.predict(case["data"][0].clone()).unwrap();
    assert_eq!(
        result["output_label"],
        case["outputs"]["output_label"]["data"][0]
    );
    assert_json_close(
        &result["output_probability"],
        &case["outputs"]["output_probability"]["data"][0],
        "iris_svc single example",
    );
}

#[test]
fn sequences_of_another_length_in_the_same_request_are_refused_with_a_sentence() {
    let model = inspected_model("bert_tiny", Runtime::Onnxruntime).unwrap();
    let data = serde_json::json!({
        "input_ids": [[1, 2, 3], [4, 5]],
        "attention_mask": [[1, 1, 1], [1, 1]],
        "token_type_ids": [[0, 0, 0], [0, 0]],
    });
    let message = model.predict(data).unwrap_err().to_string();
    assert_eq!(
        message,
        "input `input_ids`: example 1 has 2 entries at [1]; the first example has 3 there \
         (dimension 1 is dynamic, but every example of a request must have the same shape)"
    );
}

#[test]
fn the_wrong_element_type_in_a_string_column_is_named() {
    let model = inspected_model("census_pipeline", Runtime::Onnxruntime).unwrap();
    let mut data = cases(&family_reference("census_pipeline"))[0]["data"].clone();
    data["city"] = serde_json::json!([[3]]);
    let message = model.predict(data).unwrap_err().to_string();
    assert_eq!(
        message,
        "input `city`: expected a list of strings, found 3 at [0][0]"
    );
}
