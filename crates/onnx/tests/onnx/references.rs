//! iris and mlp, on both runtimes, agree with onnxruntime-in-Python's reference outputs.

use inference_engine_testkit::families::TOLERANCE;
use serde_json::Value;

use crate::support::{RUNTIMES, assert_raw_row, raw_model, reference, rows_json, scanned_model};

const DEMO_MODELS: [(&str, &str); 3] = [("iris", "v1"), ("iris", "v2"), ("mlp", "v1")];

#[test]
fn every_demo_model_gives_onnxruntimes_raw_outputs_for_each_reference_case() {
    for (runtime, (name, version)) in RUNTIMES
        .into_iter()
        .flat_map(|runtime| DEMO_MODELS.map(|model| (runtime, model)))
    {
        let model = raw_model(name, version, runtime);
        for (case_index, case) in reference(name, version).cases.iter().enumerate() {
            let results = model.predict(rows_json(&case.input)).unwrap();
            let results = results.as_array().unwrap();
            assert_eq!(results.len(), case.input.len());
            for (row, result) in results.iter().enumerate() {
                assert_raw_row(
                    result,
                    case.outputs.label[row],
                    &case.outputs.probabilities[row],
                    &format!("{name}:{version} on {runtime} case {case_index} row {row}"),
                );
            }
        }
    }
}

#[test]
fn a_single_example_gives_one_result_equal_to_onnxruntimes_first_row() {
    for (runtime, (name, version)) in RUNTIMES
        .into_iter()
        .flat_map(|runtime| DEMO_MODELS.map(|model| (runtime, model)))
    {
        let model = raw_model(name, version, runtime);
        for case in &reference(name, version).cases {
            let result = model.predict(Value::from(case.input[0].clone())).unwrap();
            assert!(result.is_object(), "{name}:{version}: {result}");
            assert_raw_row(
                &result,
                case.outputs.label[0],
                &case.outputs.probabilities[0],
                &format!("{name}:{version} on {runtime} single example"),
            );
        }
    }
}

#[test]
fn the_scanned_mlp_serves_raw_outputs_as_its_manifest_says() {
    for runtime in RUNTIMES {
        let model = scanned_model("mlp", "v1", runtime);
        let case = &reference("mlp", "v1").cases[1];
        let results = model.predict(rows_json(&case.input)).unwrap();
        for (row, result) in results.as_array().unwrap().iter().enumerate() {
            assert_raw_row(
                result,
                case.outputs.label[row],
                &case.outputs.probabilities[row],
                &format!("mlp:v1 on {runtime} row {row}"),
            );
        }
    }
}

#[test]
fn probabilities_postprocessing_maps_each_label_to_onnxruntimes_probability() {
    let labels = ["setosa", "versicolor", "virginica"];
    for runtime in RUNTIMES {
        let model = scanned_model("iris", "v1", runtime);
        for case in &reference("iris", "v1").cases {
            let results = model.predict(rows_json(&case.input)).unwrap();
            let results = results.as_array().unwrap();
            assert_eq!(results.len(), case.input.len());
            for (result, expected) in results.iter().zip(&case.outputs.probabilities) {
                let map = result.as_object().unwrap();
                assert_eq!(map.len(), labels.len(), "{result}");
                for (label, expected) in labels.iter().zip(expected) {
                    let actual = map[*label].as_f64().unwrap();
                    assert!(
                        (actual - expected).abs() <= TOLERANCE,
                        "{label}: {actual} vs {expected}"
                    );
                }
            }
        }
        let single = model
            .predict(serde_json::json!([5.1, 3.5, 1.4, 0.2]))
            .unwrap();
        assert!(
            single.as_object().unwrap().contains_key("setosa"),
            "{single}"
        );
    }
}

#[test]
fn argmax_postprocessing_gives_the_label_onnxruntime_predicts() {
    let labels = ["setosa", "versicolor", "virginica"];
    for runtime in RUNTIMES {
        let model = scanned_model("iris", "v2", runtime);
        for case in &reference("iris", "v2").cases {
            let results = model.predict(rows_json(&case.input)).unwrap();
            let expected = case
                .outputs
                .label
                .iter()
                .map(|&label| Value::from(labels[usize::try_from(label).unwrap()]))
                .collect::<Vec<_>>();
            assert_eq!(results, Value::Array(expected));
        }
        let single = model
            .predict(serde_json::json!([5.1, 3.5, 1.4, 0.2]))
            .unwrap();
        assert_eq!(single, Value::from("setosa"));
    }
}
