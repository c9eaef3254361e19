//! Paths to the demo repository and iris' and mlp's reference outputs, the two runtimes, and
//! helpers shared by the tests (the other families' fixtures are in the testkit).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use inference_engine_core::pipeline::Model;
use inference_engine_core::source::{LoadContext, ModelSource};
use inference_engine_onnx::manifest::{PostprocessManifest, Runtime};
use inference_engine_onnx::{
    Manifest, OnnxPipeline, OnnxRuntime, OnnxSource, Runtimes, scan_repository,
};
use inference_engine_testkit::families::assert_json_close;
use inference_engine_testkit::{demo_model, demo_models_dir, onnxruntime_library};
use serde::Deserialize;
use serde_json::Value;

/// Both runtimes, for the tests that hold on each.
pub(crate) const RUNTIMES: [Runtime; 2] = [Runtime::Onnxruntime, Runtime::Tract];

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A demo model's folder in the checkout (read only: tests that scan or break models use a
/// copy, `testkit::demo_models_dir`).
pub(crate) fn version_dir(name: &str, version: &str) -> PathBuf {
    demo_model(&format!("{name}/{version}"))
}

/// What the tests run models on: ONNX Runtime (loaded once per test process), or tract only.
pub(crate) fn runtimes(runtime: Runtime) -> Runtimes {
    match runtime {
        Runtime::Onnxruntime => {
            let library = OnnxRuntime::load(Some(&onnxruntime_library()))
                .unwrap_or_else(|err| panic!("{err}"));
            Runtimes::new(Ok(library), false)
        }
        Runtime::Tract => Runtimes::tract_only(),
    }
}

/// `testdata/expected/<name>-<version>.json` of iris and mlp: rows in, `label` and
/// `probabilities` out.
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

fn expected_text(name: &str, version: &str) -> String {
    let path = repository_root()
        .join("testdata/expected")
        .join(format!("{name}-{version}.json"));
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

pub(crate) fn reference(name: &str, version: &str) -> Reference {
    let reference: Reference = serde_json::from_str(&expected_text(name, version)).unwrap();
    assert_eq!(
        (reference.model.as_str(), reference.version.as_str()),
        (name, version)
    );
    reference
}

/// The model as the repository scan serves it (its manifest's postprocessing).
pub(crate) fn scanned_model(name: &str, version: &str, runtime: Runtime) -> Arc<dyn Model> {
    let repository = demo_models_dir();
    let scanned = scan_repository(repository.path(), &runtimes(runtime)).unwrap();
    let model = scanned
        .iter()
        .find(|model| model.key.name.as_str() == name && model.key.version.as_str() == version)
        .unwrap_or_else(|| panic!("{name}:{version} is not in the repository"));
    let source = model.source.as_ref().unwrap();
    source.load(&LoadContext::default()).unwrap()
}

/// The manifest of a demo model with `[postprocess]` reset to raw, so results carry every
/// output tensor.
pub(crate) fn raw_manifest(name: &str, version: &str) -> Manifest {
    let mut manifest = Manifest::from_path(&version_dir(name, version).join("model.toml")).unwrap();
    manifest.postprocess = PostprocessManifest::default();
    manifest
}

pub(crate) fn raw_model(name: &str, version: &str, runtime: Runtime) -> Arc<dyn Model> {
    OnnxSource::new(
        &version_dir(name, version),
        raw_manifest(name, version),
        &runtimes(runtime),
    )
    .unwrap()
    .load(&LoadContext::default())
    .unwrap()
}

pub(crate) fn raw_pipeline(name: &str, version: &str, runtime: Runtime) -> OnnxPipeline {
    let manifest = raw_manifest(name, version);
    let dir = version_dir(name, version);
    OnnxPipeline::load(
        &dir,
        &dir.join(&manifest.file),
        &manifest,
        &runtimes(runtime),
        &LoadContext::default(),
    )
    .unwrap()
}

pub(crate) fn rows_json(rows: &[Vec<f64>]) -> Value {
    serde_json::to_value(rows).unwrap()
}

/// Asserts one raw result (`{"label": .., "probabilities": [..]}`) equals a reference row.
pub(crate) fn assert_raw_row(result: &Value, label: i64, probabilities: &[f64], what: &str) {
    assert_eq!(result["label"], Value::from(label), "{what}: label");
    let expected = probabilities
        .iter()
        .map(|&p| Value::from(p))
        .collect::<Vec<_>>();
    assert_json_close(&result["probabilities"], &Value::Array(expected), what);
}
