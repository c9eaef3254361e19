//! The model families users bring, each served with the manifest `models inspect` writes, on
//! ONNX Runtime: `/predict`, `/predict/batch`, V2 REST (JSON and binary tensors) and V2 gRPC
//! all answer as onnxruntime-in-Python did.

use inference_engine_core::tensor::DataType;
use inference_engine_testkit::families::{
    FAMILIES, assert_json_close, assert_predict_rows, case_tensors, family_reference,
    inspected_repository,
};
use inference_engine_testkit::{DEV_KEY, TestApp, json_body};
use inference_engine_v2::proto::inference::ModelInferRequest;
use inference_engine_v2::proto::inference::model_infer_request::InferInputTensor;
use inference_engine_v2::wire;
use serde_json::{Value, json};

use crate::v2::{binary_body, grpc, post_binary, split_binary_response, with_key};

/// A server whose repository holds every family with its inspected manifest.
async fn families_app() -> (TestApp, tempfile::TempDir) {
    let repository = tempfile::tempdir().unwrap();
    inspected_repository(repository.path());
    let models = repository.path().to_owned();
    let app = TestApp::spawn_with(|settings| settings.models_dir = models).await;
    (app, repository)
}

fn cases(reference: &Value) -> &[Value] {
    reference["cases"].as_array().unwrap()
}

/// A protocol answer's output (JSON `data`, or decoded raw bytes) against the reference: a
/// map output is `BYTES`, one JSON object's text per example.
fn assert_protocol_output(
    name: &str,
    datatype: &str,
    shape: &Value,
    values: Vec<Value>,
    case: &Value,
    what: &str,
) {
    let expected = &case["outputs"][name];
    assert_eq!(shape, &expected["shape"], "{what} `{name}` shape");
    let values = if expected["datatype"] == "MAP" {
        assert_eq!(datatype, "BYTES", "{what} `{name}`");
        values
            .iter()
            .map(|text| serde_json::from_str(text.as_str().unwrap()).unwrap())
            .collect()
    } else {
        assert_eq!(datatype, expected["datatype"], "{what} `{name}`");
        values
    };
    assert_json_close(
        &Value::Array(values),
        &expected["data"],
        &format!("{what} `{name}`"),
    );
}

#[tokio::test]
async fn every_family_answers_predict_and_predict_batch_as_onnxruntime_in_python() {
    let (app, _repository) = families_app().await;
    for name in FAMILIES {
        let reference = family_reference(name);
        let mut items = Vec::new();
        for (index, case) in cases(&reference).iter().enumerate() {
            let body = json!({"model": name, "version": "v1", "data": case["data"]});
            let answer = app.post_ok("/predict", &body).await;
            assert_predict_rows(
                &answer["result"],
                case,
                &format!("{name} /predict case {index}"),
            );
            items.push(case["data"].clone());
        }
        let body = json!({"model": name, "version": "v1", "items": items});
        let answer = app.post_ok("/predict/batch", &body).await;
        let results = answer["results"].as_array().unwrap();
        assert_eq!(results.len(), cases(&reference).len(), "{name}: {answer}");
        for (index, (result, case)) in results.iter().zip(cases(&reference)).enumerate() {
            assert_predict_rows(result, case, &format!("{name} /predict/batch item {index}"));
        }
    }
}

#[tokio::test]
async fn every_family_answers_v2_rest_json_and_binary_tensors_as_onnxruntime_in_python() {
    let (app, _repository) = families_app().await;
    for name in FAMILIES {
        let path = format!("/v2/models/{name}/versions/v1/infer");
        for (index, case) in cases(&family_reference(name)).iter().enumerate() {
            // JSON tensors both ways.
            let body = json!({"inputs": case["tensors"]});
            let response = app.post(&path, Some(DEV_KEY), &body).await;
            assert_eq!(response.status(), 200, "{name} case {index}");
            let answer = json_body(response).await;
            for output in answer["outputs"].as_array().unwrap() {
                assert_protocol_output(
                    output["name"].as_str().unwrap(),
                    output["datatype"].as_str().unwrap(),
                    &output["shape"],
                    output["data"].as_array().unwrap().clone(),
                    case,
                    &format!("{name} V2 JSON case {index}"),
                );
            }

            // Binary tensors both ways (strings length-prefixed).
            let mut raw = Vec::new();
            let mut inputs = Vec::new();
            for tensor in case_tensors(case) {
                let bytes = wire::to_raw(&tensor.data);
                inputs.push(json!({
                    "name": tensor.name, "datatype": tensor.datatype().as_str(),
                    "shape": tensor.shape, "parameters": {"binary_data_size": bytes.len()},
                }));
                raw.extend_from_slice(&bytes);
            }
            let header = json!({"inputs": inputs, "parameters": {"binary_data_output": true}});
            let (body, length) = binary_body(&header, &raw);
            let (header, outputs) =
                split_binary_response(post_binary(&app, &path, body, length).await).await;
            assert_eq!(
                outputs.len(),
                case["outputs"].as_object().unwrap().len(),
                "{header}"
            );
            for (output_name, bytes) in outputs {
                let declared = header["outputs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|output| output["name"] == output_name.as_str())
                    .unwrap();
                let datatype = declared["datatype"].as_str().unwrap();
                let data =
                    wire::data_from_raw(&output_name, DataType::parse(datatype).unwrap(), &bytes)
                        .unwrap();
                assert_protocol_output(
                    &output_name,
                    datatype,
                    &declared["shape"],
                    data.to_json_values(),
                    case,
                    &format!("{name} V2 binary case {index}"),
                );
            }
        }
    }
}

#[tokio::test]
async fn every_family_answers_v2_grpc_with_raw_contents_as_onnxruntime_in_python() {
    let (app, _repository) = families_app().await;
    let mut client = grpc(&app).await;
    for name in FAMILIES {
        for (index, case) in cases(&family_reference(name)).iter().enumerate() {
            let tensors = case_tensors(case);
            let request = ModelInferRequest {
                model_name: name.to_owned(),
                model_version: "v1".to_owned(),
                inputs: tensors
                    .iter()
                    .map(|tensor| InferInputTensor {
                        name: tensor.name.clone(),
                        datatype: tensor.datatype().as_str().to_owned(),
                        shape: wire::wire_shape(&tensor.shape),
                        ..Default::default()
                    })
                    .collect(),
                raw_input_contents: tensors
                    .iter()
                    .map(|tensor| wire::to_raw(&tensor.data).into())
                    .collect(),
                ..Default::default()
            };
            let response = client
                .model_infer(with_key(request, DEV_KEY))
                .await
                .unwrap_or_else(|status| panic!("{name} case {index}: {status}"))
                .into_inner();
            for (output, bytes) in response.outputs.iter().zip(&response.raw_output_contents) {
                let data = wire::data_from_raw(
                    &output.name,
                    DataType::parse(&output.datatype).unwrap(),
                    bytes,
                )
                .unwrap();
                assert_protocol_output(
                    &output.name,
                    &output.datatype,
                    &Value::from(output.shape.clone()),
                    data.to_json_values(),
                    case,
                    &format!("{name} gRPC case {index}"),
                );
            }
            assert_eq!(
                response.outputs.len(),
                case["outputs"].as_object().unwrap().len()
            );
        }
    }
}

#[tokio::test]
async fn model_details_and_v2_metadata_say_onnx_runtime_serves_the_model_and_maps_travel_as_bytes()
{
    let (app, _repository) = families_app().await;
    let details = json_body(app.get("/models/iris_svc/v1", Some(DEV_KEY)).await).await;
    assert_eq!(details["runtime"], "onnxruntime", "{details}");
    assert_eq!(details["outputs"][1]["datatype"], "MAP", "{details}");
    let metadata = json_body(
        app.get("/v2/models/iris_svc/versions/v1", Some(DEV_KEY))
            .await,
    )
    .await;
    assert_eq!(metadata["platform"], "onnxruntime_onnx", "{metadata}");
    assert_eq!(metadata["outputs"][1]["datatype"], "BYTES", "{metadata}");
    let bert = json_body(app.get("/models/bert_tiny/v1", Some(DEV_KEY)).await).await;
    assert_eq!(bert["inputs"][0]["shape"], json!([-1, -1]), "{bert}");
}

#[tokio::test]
async fn concurrent_bert_requests_of_mixed_sequence_lengths_share_runs_and_each_gets_its_own_answer()
 {
    let repository = crate::models::Repository::new();
    // A long delay so the requests share runs however slowly they arrive.
    repository.copy(
        "bert_tiny/v1",
        "bert_batched/v1",
        "[batching]\nmax_batch_size = 32\nmax_delay_ms = 300\n",
    );
    let app = TestApp::spawn_with(|settings| settings.models_dir = repository.path()).await;
    let reference = family_reference("bert_tiny");
    // Every row of every case (sequence lengths 8, 16 and 128) as a request of its own.
    let mut requests = Vec::new();
    for case in cases(&reference) {
        let rows = case["tensors"][0]["shape"][0].as_u64().unwrap();
        for row in 0..usize::try_from(rows).unwrap() {
            let data = case["data"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(input, examples)| (input.clone(), json!([examples[row]])))
                .collect::<serde_json::Map<_, _>>();
            let body = json!({"model": "bert_batched", "version": "v1", "data": data});
            requests.push((app.spawn_post("/predict", DEV_KEY, &body), case, row));
        }
    }
    let count = requests.len();
    for (request, case, row) in requests {
        let (status, body) = request.await.unwrap();
        assert_eq!(status, 200, "{body}");
        let expected = &case["outputs"]["logits"]["data"];
        let expected = json!([&expected.as_array().unwrap()[row * 2..row * 2 + 2]]);
        assert_json_close(
            &body["result"][0]["logits"].clone(),
            &expected[0],
            &format!("row {row}"),
        );
    }
    #[allow(clippy::cast_precision_loss)]
    let count = count as f64;
    let metrics = app
        .get("/metrics", Some(inference_engine_testkit::ADMIN_KEY))
        .await
        .text()
        .await
        .unwrap();
    let runs: f64 = metrics
        .lines()
        .filter(|line| line.starts_with("batch_size_count{") && line.contains("bert_batched"))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    // The batcher counts one batch per group it collects (inside it, one run per sequence
    // length): fewer batches than requests means they were stacked.
    assert!(
        runs >= 1.0 && runs < count,
        "{runs} batches for {count} requests"
    );
}
