//! Request errors have the documented sentences.

use inference_engine_core::pipeline::PipelineError;
use serde_json::{Value, json};

use inference_engine_onnx::manifest::Runtime;

use crate::support::scanned_model;

fn invalid(data: Value) -> String {
    match scanned_model("iris", "v1", Runtime::Onnxruntime).predict(data) {
        Err(PipelineError::InvalidInput(message)) => message,
        other => panic!("expected invalid input, got {other:?}"),
    }
}

#[test]
fn a_short_example_is_rejected_naming_the_example_and_the_feature_count() {
    assert_eq!(
        invalid(json!([[5.1, 3.5, 1.4, 0.2], [5.1, 3.5, 1.4]])),
        "example 1 has 3 features; the model expects 4"
    );
}

#[test]
fn a_string_among_the_numbers_is_rejected_naming_its_position() {
    assert_eq!(
        invalid(json!([[5.1, 3.5, "1.4", 0.2]])),
        "expected a list of numbers, found a string at [0][2]"
    );
}

#[test]
fn a_value_above_the_manifest_maximum_is_rejected_naming_feature_and_example() {
    assert_eq!(
        invalid(json!([5.1, 3.5, 120.0, 0.2])),
        "feature 2 of example 0 is 120.0, above the maximum 100.0"
    );
    assert_eq!(
        invalid(json!([[5.1, 3.5, 1.4, 0.2], [5.1, -1.0, 1.4, 0.2]])),
        "feature 1 of example 1 is -1.0, below the minimum 0.0"
    );
}

#[test]
fn data_of_the_wrong_shape_is_rejected_with_a_sentence() {
    assert_eq!(
        invalid(json!({"input": [5.1, 3.5, 1.4, 0.2]})),
        "expected one example of shape [4] or a list of them, found an object"
    );
    assert_eq!(
        invalid(json!([])),
        "data is an empty list; send one example or a list of examples"
    );
}
