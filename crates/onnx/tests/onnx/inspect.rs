//! `inspect` on the demo graphs.

use std::path::PathBuf;

use inference_engine_core::source::{LoadContext, LoadError, ModelSource, TensorSpec};
use inference_engine_onnx::manifest::Runtime;
use inference_engine_onnx::{Manifest, OnnxSource, inspect};
use prost::Message as _;
use tract_onnx::pb;
use tract_onnx::prelude::Framework as _;

use crate::support::{runtimes, version_dir};

fn spec(name: &str, datatype: &str, shape: &[i64]) -> TensorSpec {
    TensorSpec {
        name: name.into(),
        datatype: datatype.into(),
        shape: shape.to_vec(),
    }
}

#[test]
fn inspecting_the_iris_model_reports_its_signature_and_opsets() {
    let inspection = inspect(&version_dir("iris", "v1").join("model.onnx")).unwrap();

    assert_eq!(inspection.inputs, vec![spec("input", "FP32", &[-1, 4])]);
    assert_eq!(
        inspection.outputs,
        vec![
            spec("label", "INT64", &[-1]),
            spec("probabilities", "FP32", &[-1, 3])
        ]
    );
    let opsets = inspection
        .opsets
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>();
    assert!(
        opsets.iter().any(|opset| opset.starts_with("ai.onnx ")),
        "{opsets:?}"
    );
    assert!(
        opsets.iter().any(|opset| opset.starts_with("ai.onnx.ml ")),
        "{opsets:?}"
    );
    assert!(inspection.unsupported_ops.is_empty());
    let report = inspection.report();
    assert!(report.contains("  input: FP32 [-1, 4]\n"), "{report}");
    assert!(report.contains("opset: "), "{report}");
    assert!(report.contains("suggested model.toml:\n"), "{report}");
}

#[test]
fn the_suggested_manifest_parses_back_and_matches_the_graph() {
    for (name, version) in [("iris", "v1"), ("iris", "v2"), ("mlp", "v1")] {
        let inspection = inspect(&version_dir(name, version).join("model.onnx")).unwrap();

        let manifest = Manifest::parse(&inspection.suggested_manifest())
            .unwrap_or_else(|err| panic!("{name}:{version}: {err}\n{}", inspection.report()));

        let description = manifest.to_description();
        assert_eq!(description.inputs, inspection.inputs, "{name}:{version}");
        assert_eq!(description.outputs, inspection.outputs, "{name}:{version}");
        let served = Manifest::from_path(&version_dir(name, version).join("model.toml")).unwrap();
        assert_eq!(
            description.inputs,
            served.to_description().inputs,
            "{name}:{version}"
        );
        assert_eq!(
            description.outputs,
            served.to_description().outputs,
            "{name}:{version}"
        );
    }
}

#[test]
fn the_classifier_template_serves_probabilities_by_label_in_place_of_raw() {
    let dir = tempfile::tempdir().unwrap();
    for (name, version, classes) in [("iris", "v1", 3), ("iris", "v2", 3), ("mlp", "v1", 10)] {
        let graph = version_dir(name, version).join("model.onnx");
        let inspection = inspect(&graph).unwrap();
        let template = inspection.classifier_postprocess().unwrap_or_else(|| {
            panic!("{name}:{version} is a classifier:\n{}", inspection.report())
        });
        let raw = inspection.suggested_manifest();
        let (head, _) = raw.split_once("[postprocess]").unwrap();
        let folder = dir.path().join(format!("{name}-{version}"));
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::copy(&graph, folder.join("model.onnx")).unwrap();
        std::fs::write(folder.join("model.toml"), format!("{head}{template}")).unwrap();

        let model = OnnxSource::open(&folder, &runtimes(Runtime::Onnxruntime))
            .unwrap_or_else(|err| panic!("{name}:{version}: {err}\n{template}"))
            .load(&LoadContext::default())
            .unwrap();
        let features = usize::try_from(inspection.inputs[0].shape[1]).unwrap();
        let data = serde_json::json!([vec![0.5; features]]);
        let result = model.predict(data).unwrap();
        let scores = result[0].as_object().unwrap_or_else(|| panic!("{result}"));
        assert_eq!(scores.len(), classes, "{name}:{version}: {result}");
        assert!(scores.contains_key("class_0"), "{result}");
    }
    // Neither a regression nor an embedding looks like a classifier.
    for (name, version) in [("diabetes_forest", "v1"), ("sentence_embedder", "v1")] {
        let inspection = inspect(&version_dir(name, version).join("model.onnx")).unwrap();
        assert_eq!(inspection.classifier_outputs(), None, "{name}:{version}");
    }
}

#[test]
fn inspecting_a_file_that_is_not_onnx_is_an_error_naming_it() {
    let temp = tempfile::tempdir().unwrap();
    let path = temp.path().join("broken.onnx");
    std::fs::write(&path, b"\x08\x07garbage\xff").unwrap();
    let message = inspect(&path).unwrap_err().to_string();
    assert!(
        message.contains("broken.onnx: not a readable ONNX model"),
        "{message}"
    );
}

/// The iris graph with `edit` applied, written to a temporary folder.
fn edited_iris(edit: impl FnOnce(&mut pb::GraphProto)) -> (tempfile::TempDir, PathBuf) {
    let mut proto = tract_onnx::onnx()
        .proto_model_for_path(version_dir("iris", "v1").join("model.onnx"))
        .unwrap();
    edit(proto.graph.as_mut().unwrap());
    let temp = tempfile::tempdir().unwrap();
    let path = temp.path().join("model.onnx");
    std::fs::write(&path, proto.encode_to_vec()).unwrap();
    (temp, path)
}

#[test]
fn output_shapes_the_file_leaves_out_are_inferred_by_tract() {
    let (_temp, path) = edited_iris(|graph| {
        for output in &mut graph.output {
            if let Some(pb::type_proto::Value::TensorType(tensor)) = output
                .r#type
                .as_mut()
                .and_then(|proto| proto.value.as_mut())
            {
                tensor.shape = None;
            }
        }
    });

    let inspection = inspect(&path).unwrap();

    assert_eq!(
        inspection.outputs,
        vec![
            spec("label", "INT64", &[-1]),
            spec("probabilities", "FP32", &[-1, 3])
        ]
    );
}

#[test]
fn an_unknown_op_keeps_the_declared_outputs_and_fails_to_load_on_either_runtime_naming_it() {
    let (temp, path) = edited_iris(|graph| {
        let node = graph
            .node
            .iter_mut()
            .find(|node| node.op_type == "LinearClassifier")
            .unwrap();
        node.op_type = "NoSuchClassifier".into();
    });

    let inspection = inspect(&path).unwrap();
    assert_eq!(
        inspection.outputs[1],
        spec("probabilities", "FP32", &[-1, 3])
    );
    assert_eq!(
        inspection.unsupported_ops,
        vec!["NoSuchClassifier (node `LinearClassifier`)"]
    );
    assert!(
        inspection
            .report()
            .contains("note: tract cannot run NoSuchClassifier (node `LinearClassifier`)")
    );

    std::fs::copy(
        version_dir("iris", "v1").join("model.toml"),
        temp.path().join("model.toml"),
    )
    .unwrap();
    let on_tract = OnnxSource::open(temp.path(), &runtimes(Runtime::Tract)).unwrap();
    let LoadError(message) = on_tract.load(&LoadContext::default()).unwrap_err();
    assert!(
        message.ends_with(
            "model.onnx: the graph uses operators tract-onnx does not implement: \
             NoSuchClassifier (node `LinearClassifier`) (runtime = \"onnxruntime\" runs them)"
        ),
        "{message}"
    );
    let on_onnxruntime = OnnxSource::open(temp.path(), &runtimes(Runtime::Onnxruntime)).unwrap();
    let LoadError(message) = on_onnxruntime.load(&LoadContext::default()).unwrap_err();
    assert!(
        message.contains("model.onnx: ONNX Runtime cannot load the graph: ")
            && message.contains("NoSuchClassifier"),
        "{message}"
    );
}
