//! The repository scan on copies of the demo repository, some of them broken on purpose.

use std::fs;
use std::path::Path;

use inference_engine_core::source::{Backend, LoadContext, LoadError};
use inference_engine_onnx::manifest::Runtime;
use inference_engine_onnx::{ScannedModel, scan_repository};
use tempfile::TempDir;

use crate::support::runtimes;
use inference_engine_testkit::{DEMO_MODELS, demo_models_dir};

/// Every model of the demo repository, sorted, as `name:version`.
fn demo_keys() -> Vec<String> {
    DEMO_MODELS
        .iter()
        .map(|model| model.replace('/', ":"))
        .collect()
}

fn scan(dir: &Path) -> Vec<ScannedModel> {
    scan_repository(dir, &runtimes(Runtime::Onnxruntime)).unwrap()
}

/// A private copy of the demo repository to break.
fn copy_of_models() -> TempDir {
    demo_models_dir()
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn keys(models: &[ScannedModel]) -> Vec<String> {
    models.iter().map(|model| model.key.to_string()).collect()
}

fn find<'a>(models: &'a [ScannedModel], key: &str) -> &'a ScannedModel {
    models
        .iter()
        .find(|model| model.key.to_string() == key)
        .unwrap_or_else(|| panic!("{key} not scanned"))
}

fn manifest_error(models: &[ScannedModel], key: &str) -> String {
    match &find(models, key).source {
        Err(LoadError(message)) => message.clone(),
        Ok(source) => panic!("{key} has a source: {source:?}"),
    }
}

#[test]
fn the_demo_repository_lists_every_model_sorted_and_each_one_loads() {
    let repository = demo_models_dir();
    let models = scan(repository.path());
    assert_eq!(keys(&models), demo_keys());
    for model in &models {
        let source = model.source.as_ref().unwrap();
        source
            .load(&LoadContext::default())
            .unwrap_or_else(|err| panic!("{}: {err}", model.key));
        // A pipeline of models runs its steps' runtimes, none of its own.
        let runtime = (source.description().backend != Backend::Pipeline).then_some("onnxruntime");
        assert_eq!(source.description().runtime, runtime, "{}", model.key);
    }
    let mlp = find(&models, "mlp:v1").source.as_ref().unwrap();
    let batching = mlp.description().batching.unwrap();
    assert_eq!(batching.max_batch_size, 32);
}

#[test]
fn a_corrupt_model_file_is_not_ready_at_the_scan_and_the_others_still_load() {
    let repo = copy_of_models();
    let iris_v1 = repo.path().join("iris/v1/model.onnx");
    fs::write(&iris_v1, b"this is not a protobuf \xff\xfe\x00\x01 garbage").unwrap();
    let iris_v2 = repo.path().join("iris/v2/model.onnx");
    let bytes = fs::read(&iris_v2).unwrap();
    fs::write(&iris_v2, &bytes[..bytes.len() / 2]).unwrap();

    let models = scan(repo.path());

    assert_eq!(keys(&models), demo_keys());
    // The scan reads each graph's signature, so neither waits for a first request to fail.
    for key in ["iris:v1", "iris:v2"] {
        let message = manifest_error(&models, key);
        assert!(
            message.contains("model.onnx: not a readable ONNX model: "),
            "{message}"
        );
    }
    find(&models, "mlp:v1")
        .source
        .as_ref()
        .unwrap()
        .load(&LoadContext::default())
        .unwrap();
}

#[test]
fn a_broken_manifest_lists_the_model_as_not_ready_with_the_reason() {
    let repo = copy_of_models();
    let manifest = repo.path().join("iris/v1/model.toml");
    let text = fs::read_to_string(&manifest).unwrap();
    fs::write(&manifest, format!("warmup = true\n{text}")).unwrap();
    let manifest = repo.path().join("iris/v2/model.toml");
    let text = fs::read_to_string(&manifest).unwrap();
    fs::write(
        &manifest,
        text.replace("file = \"model.onnx\"", "file = \"gone.onnx\""),
    )
    .unwrap();

    let models = scan(repo.path());

    assert_eq!(keys(&models), demo_keys());
    let message = manifest_error(&models, "iris:v1");
    assert!(message.contains("iris/v1/model.toml: "), "{message}");
    assert!(message.contains("unknown field `warmup`"), "{message}");
    let message = manifest_error(&models, "iris:v2");
    assert!(
        message.contains("iris/v2/gone.onnx: no such file"),
        "{message}"
    );
    assert!(find(&models, "mlp:v1").source.is_ok());
}

#[test]
fn folders_that_are_not_models_are_skipped() {
    let repo = copy_of_models();
    fs::create_dir_all(repo.path().join("iris/v3")).unwrap();
    fs::create_dir_all(repo.path().join("bad name/v1")).unwrap();
    fs::copy(
        repo.path().join("iris/v1/model.toml"),
        repo.path().join("bad name/v1/model.toml"),
    )
    .unwrap();
    fs::create_dir_all(repo.path().join(".git/v1")).unwrap();
    fs::write(repo.path().join("README.md"), "demo models").unwrap();
    copy_tree(&repo.path().join("iris/v1"), &repo.path().join("iris/v 4"));

    let models = scan(repo.path());

    assert_eq!(keys(&models), demo_keys());
}

#[test]
fn a_missing_repository_is_empty() {
    let temp = tempfile::tempdir().unwrap();
    let models = scan(&temp.path().join("nowhere"));
    assert!(models.is_empty());
}

#[test]
fn a_manifest_that_does_not_match_the_graph_is_not_ready_at_the_scan_naming_the_mismatch() {
    let repo = copy_of_models();
    let manifest = repo.path().join("iris/v1/model.toml");
    let text = fs::read_to_string(&manifest).unwrap();
    fs::write(
        &manifest,
        text.replace("name = \"label\"", "name = \"output_label\""),
    )
    .unwrap();
    let manifest = repo.path().join("iris/v2/model.toml");
    let text = fs::read_to_string(&manifest).unwrap();
    fs::write(
        &manifest,
        text.replace(
            "datatype = \"FP32\"\nshape = [-1, 3]",
            "datatype = \"FP64\"\nshape = [-1, 3]",
        ),
    )
    .unwrap();
    let manifest = repo.path().join("mlp/v1/model.toml");
    let text = fs::read_to_string(&manifest).unwrap();
    fs::write(
        &manifest,
        text.replace("name = \"input\"", "name = \"pixels\""),
    )
    .unwrap();

    // The scan checks each graph's declared signature: no load, no first request needed.
    let models = scan(repo.path());

    assert_eq!(
        manifest_error(&models, "iris:v1")
            .split_once(": ")
            .unwrap()
            .1,
        "output `output_label` is not an output of the graph (graph outputs: `label`, \
         `probabilities`)"
    );
    assert_eq!(
        manifest_error(&models, "iris:v2")
            .split_once(": ")
            .unwrap()
            .1,
        "output `probabilities` is FP32 [-1, 3] in the graph but model.toml says FP64 [-1, 3]"
    );
    assert_eq!(
        manifest_error(&models, "mlp:v1")
            .split_once(": ")
            .unwrap()
            .1,
        "input `pixels` is not an input of the graph (graph inputs: `input`)"
    );
}
