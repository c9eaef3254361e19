//! `infer_batch` runs several requests as one and hands each its own rows.

use inference_engine_core::pipeline::{BatchAnswer, BatchItem, Pipeline, PipelineError};
use inference_engine_core::tensor::{Tensor, TensorData};
use serde_json::{Value, json};

use crate::support::{RUNTIMES, raw_model, raw_pipeline, reference, rows_json};

/// Requests of 1 (a bare example), 3, 1 (a list of one) and 3 rows cut from the references.
fn requests(name: &str, version: &str) -> Vec<Value> {
    let rows = reference(name, version)
        .cases
        .into_iter()
        .flat_map(|case| case.input)
        .collect::<Vec<_>>();
    assert!(
        rows.len() >= 8,
        "{name}:{version} has too few reference rows"
    );
    vec![
        Value::from(rows[0].clone()),
        rows_json(&rows[1..4]),
        rows_json(&rows[4..5]),
        rows_json(&rows[5..8]),
    ]
}

fn one_by_one<P: Pipeline>(pipeline: &P, requests: &[Value]) -> Vec<Value> {
    requests
        .iter()
        .map(|data| {
            let input = pipeline.preprocess(data.clone()).unwrap();
            pipeline
                .postprocess(pipeline.infer(input).unwrap())
                .unwrap()
        })
        .collect()
}

#[test]
fn infer_batch_gives_each_request_exactly_its_own_rows() {
    for (runtime, (name, version)) in RUNTIMES.into_iter().flat_map(|runtime| {
        [("iris", "v1"), ("iris", "v2"), ("mlp", "v1")].map(|model| (runtime, model))
    }) {
        let pipeline = raw_pipeline(name, version, runtime);
        let requests = requests(name, version);
        let inputs = requests
            .iter()
            .map(|data| pipeline.preprocess(data.clone()).unwrap())
            .collect::<Vec<_>>();

        let outputs = pipeline.infer_batch(inputs).unwrap();

        assert_eq!(
            outputs
                .iter()
                .map(|output| output.rows())
                .collect::<Vec<_>>(),
            vec![1, 3, 1, 3]
        );
        let batched = outputs
            .into_iter()
            .map(|output| pipeline.postprocess(output).unwrap())
            .collect::<Vec<_>>();
        assert!(batched[0].is_object(), "a bare example gets a bare result");
        assert_eq!(
            batched[2].as_array().map(Vec::len),
            Some(1),
            "a list of one stays a list"
        );
        // Matrix kernels differ by batch size, so floats may differ in the last bit.
        assert_same_results(&batched, &one_by_one(&pipeline, &requests), "");
    }
}

/// Equal JSON, except that numbers may differ by 1e-6 (a rounding, never another row).
fn assert_same_results(actual: &[Value], expected: &[Value], path: &str) {
    assert_eq!(actual.len(), expected.len(), "length at {path}");
    for (index, (actual, expected)) in actual.iter().zip(expected).enumerate() {
        let here = format!("{path}[{index}]");
        match (actual, expected) {
            (Value::Number(left), Value::Number(right)) if left.is_f64() || right.is_f64() => {
                let (left, right) = (left.as_f64().unwrap(), right.as_f64().unwrap());
                assert!((left - right).abs() <= 1e-6, "{here}: {left} vs {right}");
            }
            (Value::Array(left), Value::Array(right)) => assert_same_results(left, right, &here),
            (Value::Object(left), Value::Object(right)) => {
                assert_eq!(
                    left.keys().collect::<Vec<_>>(),
                    right.keys().collect::<Vec<_>>()
                );
                for (key, value) in left {
                    let key_path = format!("{here}.{key}");
                    assert_same_results(
                        std::slice::from_ref(value),
                        std::slice::from_ref(&right[key]),
                        &key_path,
                    );
                }
            }
            _ => assert_eq!(actual, expected, "{here}"),
        }
    }
}

#[test]
fn run_each_fails_only_the_bad_request_and_answers_tensor_requests_in_tensors() {
    for runtime in RUNTIMES {
        let model = raw_model("iris", "v1", runtime);
        let good = json!([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]);
        let alone = model.predict(good.clone()).unwrap();
        let tensors = vec![
            Tensor::new(
                "input",
                vec![1, 4],
                TensorData::Fp32(vec![6.3, 3.3, 6.0, 2.5]),
            )
            .unwrap(),
        ];
        let tensors_alone = model.infer_tensors(tensors.clone()).unwrap();

        let outcomes = model.run_each(vec![
            BatchItem::Json(good),
            BatchItem::Json(json!([1, 2, 3])),
            BatchItem::Tensors(tensors),
            BatchItem::Json(json!([6.7, 3.0, 5.2, 2.3])),
        ]);

        assert_eq!(outcomes[0], Ok(BatchAnswer::Json(alone.clone())));
        assert_eq!(
            outcomes[1],
            Err(PipelineError::InvalidInput(
                "example 0 has 3 features; the model expects 4".into()
            ))
        );
        // The tensor request shared the run and got exactly its own row, as tensors.
        let Ok(BatchAnswer::Tensors(answer)) = &outcomes[2] else {
            panic!("expected tensors, got {:?}", outcomes[2]);
        };
        assert_eq!(answer[0], tensors_alone[0]);
        assert_eq!(answer[0].shape, vec![1]);
        let (Some(TensorData::Fp32(shared)), Some(TensorData::Fp32(single))) = (
            answer.get(1).map(|t| &t.data),
            tensors_alone.get(1).map(|t| &t.data),
        ) else {
            panic!("probabilities are FP32");
        };
        for (shared, single) in shared.iter().zip(single) {
            assert!((shared - single).abs() < 1e-6, "{shared} vs {single}");
        }
        assert_eq!(outcomes[3], Ok(BatchAnswer::Json(alone[1].clone())));
    }
}
