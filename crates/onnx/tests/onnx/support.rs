//! Paths to the demo repository, reference outputs and helpers shared by the tests.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use inference_engine_core::pipeline::Model;
use inference_engine_core::source::ModelSource;
use inference_engine_onnx::manifest::PostprocessManifest;
use inference_engine_onnx::{Manifest, OnnxPipeline, OnnxSource, scan_repository};
use serde::Deserialize;
use serde_json::Value;

pub(crate) const TOLERANCE: f64 = 1e-4;

pub(crate) fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models")
}

pub(crate) fn version_dir(name: &str, version: &str) -> PathBuf {
    models_dir().join(name).join(version)
}

/// `testdata/expected/<name>-<version>.json`.
#[derive(Debug, Deserialize)]
pub(crate) struct Reference {
    pub(crate) model: String,
    pub(crate) version: String,
    pub(crate) cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Case {
    pub(crate) input: Vec<Vec<f64>>,
    pub(crate) outputs: Outputs,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Outputs {
    pub(crate) label: Vec<i64>,
    pub(crate) probabilities: Vec<Vec<f64>>,
}

pub(crate) fn reference(name: &str, version: &str) -> Reference {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/expected")
        .join(format!("{name}-{version}.json"));
    let text = std::fs::read_to_string(&path).unwrap();
    let reference: Reference = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (reference.model.as_str(), reference.version.as_str()),
        (name, version)
    );
    reference
}

/// The model as the repository scan serves it (its manifest's postprocessing).
pub(crate) fn scanned_model(name: &str, version: &str) -> Arc<dyn Model> {
    let scanned = scan_repository(&models_dir()).unwrap();
    let model = scanned
        .iter()
        .find(|model| model.key.name.as_str() == name && model.key.version.as_str() == version)
        .unwrap_or_else(|| panic!("{name}:{version} is not in the repository"));
    let source = model.source.as_ref().unwrap();
    source.load().unwrap()
}

/// The manifest of a demo model with `[postprocess]` reset to raw, so results carry every
/// output tensor.
pub(crate) fn raw_manifest(name: &str, version: &str) -> Manifest {
    let mut manifest = Manifest::from_path(&version_dir(name, version).join("model.toml")).unwrap();
    manifest.postprocess = PostprocessManifest::default();
    manifest
}

pub(crate) fn raw_model(name: &str, version: &str) -> Arc<dyn Model> {
    OnnxSource::new(&version_dir(name, version), raw_manifest(name, version))
        .unwrap()
        .load()
        .unwrap()
}

pub(crate) fn raw_pipeline(name: &str, version: &str) -> OnnxPipeline {
    let manifest = raw_manifest(name, version);
    OnnxPipeline::load(&version_dir(name, version).join(&manifest.file), &manifest).unwrap()
}

pub(crate) fn rows_json(rows: &[Vec<f64>]) -> Value {
    serde_json::to_value(rows).unwrap()
}

/// Asserts one raw result (`{"label": .., "probabilities": [..]}`) equals a reference row.
pub(crate) fn assert_raw_row(result: &Value, label: i64, probabilities: &[f64], what: &str) {
    assert_eq!(result["label"], Value::from(label), "{what}: label");
    let actual = result["probabilities"].as_array().unwrap();
    assert_eq!(
        actual.len(),
        probabilities.len(),
        "{what}: probabilities length"
    );
    for (index, (actual, expected)) in actual.iter().zip(probabilities).enumerate() {
        let actual = actual.as_f64().unwrap();
        assert!(
            (actual - expected).abs() <= TOLERANCE,
            "{what}: probabilities[{index}] is {actual}, onnxruntime says {expected}"
        );
    }
}
