//! Raw text and images in: the text models' answers to strings equal Hugging Face's tokenizer
//! plus onnxruntime in Python (testdata/expected, written by scripts/gen_text_image_models.py),
//! batched runs equal unbatched ones, and the digits convnet answers committed PNGs as Python
//! does.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use inference_engine_core::pipeline::{BatchAnswer, BatchItem, Model, PipelineError};
use inference_engine_core::source::{LoadContext, ModelSource};
use inference_engine_core::tensor::TensorData;
use inference_engine_onnx::manifest::Runtime;
use inference_engine_onnx::{OnnxPipeline, OnnxSource};
use inference_engine_testkit::families::assert_json_close;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::support::{runtimes, version_dir};
use inference_engine_testkit::DEMO_MODELS;

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A demo model's folder, or a test-only one (`testdata/models`).
fn model_dir(name: &str, version: &str) -> PathBuf {
    if DEMO_MODELS.contains(&format!("{name}/{version}").as_str()) {
        return version_dir(name, version);
    }
    repository_root()
        .join("testdata/models")
        .join(name)
        .join(version)
}

fn source(name: &str, version: &str) -> OnnxSource {
    OnnxSource::open(&model_dir(name, version), &runtimes(Runtime::Onnxruntime))
        .unwrap_or_else(|err| panic!("{name}:{version}: {err}"))
}

fn pipeline(name: &str, version: &str) -> OnnxPipeline {
    source(name, version)
        .load_pipeline(&LoadContext::default())
        .unwrap_or_else(|err| panic!("{name}:{version}: {err}"))
}

fn model(name: &str, version: &str) -> Arc<dyn Model> {
    source(name, version)
        .load(&LoadContext::default())
        .unwrap_or_else(|err| panic!("{name}:{version}: {err}"))
}

/// A text model's reference: per case, the client's `data`, the tokenizer's padded tensors
/// and the answer.
#[derive(Debug, Deserialize)]
struct TextReference {
    max_length: usize,
    cases: Vec<TextCase>,
}

#[derive(Debug, Deserialize)]
struct TextCase {
    name: String,
    data: Value,
    input_ids: Vec<Vec<i64>>,
    attention_mask: Vec<Vec<i64>>,
    token_type_ids: Vec<Vec<i64>>,
    result: Value,
}

fn expected<T: serde::de::DeserializeOwned>(file: &str) -> T {
    let path = repository_root().join("testdata/expected").join(file);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// The rows of an INT64 tensor.
fn rows(tensor: &inference_engine_core::tensor::Tensor) -> Vec<Vec<i64>> {
    let TensorData::Int64(values) = &tensor.data else {
        panic!("{} is {}, not INT64", tensor.name, tensor.datatype());
    };
    values
        .chunks(tensor.shape[1].max(1))
        .map(<[i64]>::to_vec)
        .collect()
}

/// The engine's tokens equal `transformers`' for every case (truncation, pairs, padding to the
/// longest, unknown words), and so do its answers.
fn check_text_model(name: &str) {
    let reference: TextReference = expected(&format!("{name}-v1.json"));
    assert_eq!(reference.max_length, 64);
    let typed = pipeline(name, "v1");
    let model = model(name, "v1");
    for case in &reference.cases {
        let what = format!("{name} case {}", case.name);
        let inputs = typed
            .text_inputs(&case.data)
            .unwrap_or_else(|err| panic!("{what}: {err}"));
        let by_name = |wanted: &str| {
            inputs
                .iter()
                .find(|tensor| tensor.name == wanted)
                .unwrap_or_else(|| panic!("{what}: no input {wanted}"))
        };
        assert_eq!(rows(by_name("input_ids")), case.input_ids, "{what}: ids");
        assert_eq!(
            rows(by_name("attention_mask")),
            case.attention_mask,
            "{what}: mask"
        );
        assert_eq!(
            rows(by_name("token_type_ids")),
            case.token_type_ids,
            "{what}: types"
        );
        assert!(
            case.input_ids.iter().all(|row| row.len() <= 64),
            "{what}: truncated to max_length"
        );
        let answer = model
            .predict(case.data.clone())
            .unwrap_or_else(|err| panic!("{what}: {err}"));
        assert_json_close(&answer, &case.result, &what);
    }
}

#[test]
fn the_text_classifier_answers_strings_lists_pairs_and_long_texts_as_python_does() {
    check_text_model("text_classifier");
}

#[test]
fn embeddings_are_the_python_mean_pooled_normalised_vectors() {
    check_text_model("sentence_embedder");
    let model = model("sentence_embedder", "v1");
    let answer = model.predict(json!("the weather was lovely")).unwrap();
    let vector = answer["embedding"].as_array().unwrap();
    assert_eq!(vector.len(), 64);
    let norm: f64 = vector.iter().map(|v| v.as_f64().unwrap().powi(2)).sum();
    assert!((norm - 1.0).abs() < 1e-6, "unit length, got {norm}");
}

#[test]
fn the_token_tagger_gives_labels_offsets_and_entities_as_the_transformers_pipeline() {
    check_text_model("token_tagger");
}

/// Requests stacked into one run (padded to the longest among them) each get exactly the
/// answer they get alone.
#[test]
fn batched_text_requests_equal_unbatched_ones() {
    for name in ["text_classifier", "sentence_embedder", "token_tagger"] {
        let reference: TextReference = expected(&format!("{name}-v1.json"));
        let model = model(name, "v1");
        let items = reference
            .cases
            .iter()
            .map(|case| BatchItem::Json(case.data.clone()))
            .collect::<Vec<_>>();
        let outcomes = model.run_each(items);
        for (case, outcome) in reference.cases.iter().zip(outcomes) {
            let what = format!("{name} case {} in a batch", case.name);
            let Ok(BatchAnswer::Json(answer)) = outcome else {
                panic!("{what}: {outcome:?}");
            };
            assert_json_close(&answer, &case.result, &what);
        }
        // One bad item fails only itself.
        let outcomes = model.run_each(vec![
            BatchItem::Json(json!("fine")),
            BatchItem::Json(json!({"text": 3})),
        ]);
        assert!(outcomes[0].is_ok(), "{name}: {:?}", outcomes[0]);
        assert!(
            matches!(&outcomes[1], Err(PipelineError::InvalidInput(message)) if message.contains("`text` must be a string")),
            "{name}: {:?}",
            outcomes[1]
        );
    }
}

#[test]
fn text_models_still_take_token_ids() {
    let reference: TextReference = expected("text_classifier-v1.json");
    let case = &reference.cases[0];
    let model = model("text_classifier", "v1");
    let answer = model
        .predict(json!({
            "input_ids": case.input_ids,
            "attention_mask": case.attention_mask,
            "token_type_ids": case.token_type_ids,
        }))
        .unwrap();
    // A list of one example (the ids are rows), answered as a list.
    assert_json_close(&answer, &json!([case.result]), "ids");
}

#[derive(Debug, Deserialize)]
struct DigitsReference {
    cases: Vec<DigitCase>,
}

#[derive(Debug, Deserialize)]
struct DigitCase {
    file: String,
    label: String,
    scores: serde_json::Map<String, Value>,
}

fn png(file: &str) -> Vec<u8> {
    let path = repository_root().join("testdata/images/digits").join(file);
    std::fs::read(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

#[test]
fn the_digits_convnet_answers_committed_pngs_with_the_labels_python_gets() {
    let reference: DigitsReference = expected("digits_cnn-v2.json");
    assert!(reference.cases.len() >= 10);
    let typed = pipeline("digits_cnn", "v2");
    let model = model("digits_cnn", "v2");
    let mut all = Vec::new();
    let mut answers = Vec::new();
    for case in &reference.cases {
        let bytes = png(&case.file);
        let score = case.scores[&case.label].clone();
        let wanted = json!({"label": case.label, "score": score, "scores": case.scores});
        let data = json!({"image_base64": BASE64.encode(&bytes)});
        let answer = model.predict(data.clone()).unwrap();
        assert_json_close(&answer, &wanted, &case.file);
        // As a raw body, and as a data URL.
        let raw = typed.read_image(&bytes).unwrap();
        use inference_engine_core::pipeline::Pipeline as _;
        let raw = typed.postprocess(typed.infer(raw).unwrap()).unwrap();
        assert_json_close(&raw, &wanted, &format!("{} raw", case.file));
        let url =
            json!({"image_base64": format!("data:image/png;base64,{}", BASE64.encode(&bytes))});
        assert_json_close(&model.predict(url).unwrap(), &wanted, &case.file);
        all.push(data);
        answers.push(wanted);
    }
    // A list of images, one run.
    let listed = model.predict(Value::Array(all)).unwrap();
    assert_json_close(&listed, &Value::Array(answers), "all digits at once");
}
