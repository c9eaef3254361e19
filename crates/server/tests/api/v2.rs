//! The Open Inference Protocol (KServe V2) on the real server: the REST routes under `/v2` on
//! the main port (JSON and binary tensors) and the gRPC services on `GRPC_PORT`
//! (`inference.GRPCInferenceService` and `grpc.health.v1.Health`).

use inference_engine_testkit::{ADMIN_KEY, DEV_KEY, TestApp, expected_outputs, json_body, reqwest};
use inference_engine_v2::proto::health::HealthCheckRequest;
use inference_engine_v2::proto::health::health_check_response::ServingStatus;
use inference_engine_v2::proto::health::health_client::HealthClient;
use inference_engine_v2::proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use inference_engine_v2::proto::inference::infer_parameter::ParameterChoice;
use inference_engine_v2::proto::inference::model_infer_request::{
    InferInputTensor, InferRequestedOutputTensor,
};
use inference_engine_v2::proto::inference::{
    InferParameter, InferTensorContents, ModelInferRequest, ModelInferResponse,
    ModelMetadataRequest, RepositoryIndexRequest, RepositoryModelLoadRequest,
    RepositoryModelUnloadRequest, ServerLiveRequest, ServerMetadataRequest, ServerReadyRequest,
};
use serde_json::{Value, json};
use tonic::transport::Channel;

use crate::models::config_file;

const TOLERANCE: f64 = 1e-4;
pub(crate) const HEADER_LENGTH: &str = "inference-header-content-length";
const IRIS_V1_INFER: &str = "/v2/models/iris/versions/v1/infer";
const LABELS: [&str; 3] = ["setosa", "versicolor", "virginica"];

// ---------------------------------------------------------------------------------------------
// Helpers

async fn demo_app() -> TestApp {
    TestApp::spawn_with_demo_models(|_| {}).await
}

/// One reference case of `testdata/expected/iris-v1.json`.
struct IrisCase {
    /// The rows as the reference file writes them (nested arrays).
    nested: Value,
    rows: usize,
    features: Vec<f32>,
    labels: Vec<i64>,
    /// Row-major, 3 per row.
    probabilities: Vec<f64>,
}

fn iris_v1_cases() -> Vec<IrisCase> {
    let reference = expected_outputs("iris", "v1");
    reference["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|case| {
            let rows = case["input"].as_array().unwrap();
            #[expect(clippy::cast_possible_truncation)]
            let features = rows
                .iter()
                .flat_map(|row| row.as_array().unwrap())
                .map(|value| value.as_f64().unwrap() as f32)
                .collect();
            IrisCase {
                nested: case["input"].clone(),
                rows: rows.len(),
                features,
                labels: case["outputs"]["label"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|label| label.as_i64().unwrap())
                    .collect(),
                probabilities: case["outputs"]["probabilities"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .flat_map(|row| row.as_array().unwrap())
                    .map(|p| p.as_f64().unwrap())
                    .collect(),
            }
        })
        .collect()
}

/// The reference case with the most rows.
fn biggest_iris_case() -> IrisCase {
    iris_v1_cases()
        .into_iter()
        .max_by_key(|case| case.rows)
        .unwrap()
}

fn assert_all_close(actual: &[f64], expected: &[f64], context: &str) {
    assert_eq!(actual.len(), expected.len(), "{context}: lengths differ");
    for (index, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!((a - e).abs() <= TOLERANCE, "{context}[{index}]: {a} vs {e}");
    }
}

fn numbers(value: &Value) -> Vec<f64> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|number| number.as_f64().unwrap())
        .collect()
}

fn integers(value: &Value) -> Vec<i64> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|number| number.as_i64().unwrap())
        .collect()
}

/// The output called `name` of a JSON infer response.
fn output<'a>(body: &'a Value, name: &str) -> &'a Value {
    body["outputs"]
        .as_array()
        .unwrap_or_else(|| panic!("no outputs: {body}"))
        .iter()
        .find(|output| output["name"] == name)
        .unwrap_or_else(|| panic!("no output {name}: {body}"))
}

fn f32s(bytes: &[u8]) -> Vec<f64> {
    assert_eq!(bytes.len() % 4, 0, "{} bytes of FP32", bytes.len());
    bytes
        .chunks_exact(4)
        .map(|chunk| f64::from(f32::from_le_bytes(chunk.try_into().unwrap())))
        .collect()
}

fn i64s(bytes: &[u8]) -> Vec<i64> {
    assert_eq!(bytes.len() % 8, 0, "{} bytes of INT64", bytes.len());
    bytes
        .chunks_exact(8)
        .map(|chunk| i64::from_le_bytes(chunk.try_into().unwrap()))
        .collect()
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|value| value.to_le_bytes())
        .collect()
}

fn rows_shape(rows: usize) -> Value {
    json!([rows, 4])
}

/// A JSON infer request for iris with the given rows.
fn iris_request(case: &IrisCase) -> Value {
    json!({
        "inputs": [{"name": "input", "shape": rows_shape(case.rows), "datatype": "FP32", "data": case.nested}]
    })
}

/// Checks a protocol error body: `error` (not `detail`) holding `needle`, `code`,
/// `request_id` equal to the response header.
async fn assert_protocol_error(response: reqwest::Response, status: u16, needle: &str) -> Value {
    assert_eq!(response.status(), status);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body = json_body(response).await;
    let error = body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no `error` sentence: {body}"));
    assert!(error.contains(needle), "{error:?} should name {needle:?}");
    assert!(
        body.get("detail").is_none(),
        "protocol errors use `error`: {body}"
    );
    assert!(body["code"].is_string(), "{body}");
    assert_eq!(body["request_id"], request_id.as_str());
    body
}

pub(crate) async fn grpc(app: &TestApp) -> GrpcInferenceServiceClient<Channel> {
    GrpcInferenceServiceClient::connect(app.grpc_url().await)
        .await
        .unwrap()
}

/// A gRPC request carrying `x-api-key: key`.
pub(crate) fn with_key<T>(message: T, key: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("x-api-key", key.parse().unwrap());
    request
}

fn grpc_iris_input(rows: usize) -> InferInputTensor {
    InferInputTensor {
        name: "input".to_owned(),
        datatype: "FP32".to_owned(),
        shape: vec![i64::try_from(rows).unwrap(), 4],
        ..Default::default()
    }
}

fn raw_iris_request(case: &IrisCase) -> ModelInferRequest {
    ModelInferRequest {
        model_name: "iris".to_owned(),
        model_version: "v1".to_owned(),
        inputs: vec![grpc_iris_input(case.rows)],
        raw_input_contents: vec![f32_bytes(&case.features).into()],
        ..Default::default()
    }
}

/// The raw contents of the gRPC output called `name`.
fn raw_output<'a>(response: &'a ModelInferResponse, name: &str) -> &'a [u8] {
    let index = response
        .outputs
        .iter()
        .position(|output| output.name == name)
        .unwrap_or_else(|| panic!("no output {name}"));
    assert_eq!(
        response.raw_output_contents.len(),
        response.outputs.len(),
        "one raw_output_contents per output"
    );
    &response.raw_output_contents[index]
}

fn assert_grpc_iris_answer(response: &ModelInferResponse, case: &IrisCase, context: &str) {
    assert_eq!(response.model_name, "iris");
    assert_eq!(response.model_version, "v1");
    let label = response
        .outputs
        .iter()
        .find(|output| output.name == "label")
        .unwrap();
    assert_eq!(label.datatype, "INT64");
    assert_eq!(label.shape, vec![i64::try_from(case.rows).unwrap()]);
    let probabilities = response
        .outputs
        .iter()
        .find(|output| output.name == "probabilities")
        .unwrap();
    assert_eq!(probabilities.datatype, "FP32");
    assert_eq!(
        probabilities.shape,
        vec![i64::try_from(case.rows).unwrap(), 3]
    );
    assert_eq!(
        i64s(raw_output(response, "label")),
        case.labels,
        "{context}"
    );
    assert_all_close(
        &f32s(raw_output(response, "probabilities")),
        &case.probabilities,
        context,
    );
}

// ---------------------------------------------------------------------------------------------
// REST: server and model metadata, health

#[tokio::test]
async fn the_server_metadata_names_the_server_its_version_and_extensions() {
    let app = TestApp::spawn().await;
    let response = app.get("/v2", Some(DEV_KEY)).await;
    assert_eq!(response.status(), 200);
    let body = json_body(response).await;
    assert_eq!(body["name"], "inference-engine");
    assert!(!body["version"].as_str().unwrap().is_empty(), "{body}");
    let extensions = body["extensions"].as_array().unwrap();
    for extension in ["binary_tensor_data", "model_repository"] {
        assert!(extensions.contains(&json!(extension)), "{body}");
    }
}

#[tokio::test]
async fn liveness_and_readiness_answer_without_a_key() {
    let app = TestApp::spawn().await;
    let live = app.get("/v2/health/live", None).await;
    assert_eq!(live.status(), 200);
    assert_eq!(json_body(live).await["live"], true);
    let ready = app.get("/v2/health/ready", None).await;
    assert_eq!(ready.status(), 200);
    assert_eq!(json_body(ready).await["ready"], true);
    // Everything else under /v2 needs a key.
    assert_eq!(app.get("/v2", None).await.status(), 401);
}

#[tokio::test]
async fn model_metadata_describes_iris_v1_inputs_outputs_and_all_versions() {
    let app = demo_app().await;
    let response = app.get("/v2/models/iris/versions/v1", Some(DEV_KEY)).await;
    assert_eq!(response.status(), 200);
    let body = json_body(response).await;
    assert_eq!(body["name"], "iris");
    assert_eq!(body["platform"], "onnxruntime_onnx");
    let mut versions: Vec<&str> = body["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|version| version.as_str().unwrap())
        .collect();
    versions.sort_unstable();
    assert_eq!(versions, ["v1", "v2"]);
    assert_eq!(
        body["inputs"],
        json!([{"name": "input", "datatype": "FP32", "shape": [-1, 4]}])
    );
    assert_eq!(
        body["outputs"],
        json!([
            {"name": "label", "datatype": "INT64", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]}
        ])
    );

    let ready = app
        .get("/v2/models/iris/versions/v1/ready", Some(DEV_KEY))
        .await;
    assert_eq!(ready.status(), 200);
    assert_eq!(json_body(ready).await["ready"], true);
}

#[tokio::test]
async fn an_unknown_model_is_404_with_an_error_sentence_naming_it() {
    let app = demo_app().await;
    for path in [
        "/v2/models/no-such-model",
        "/v2/models/no-such-model/versions/v1",
        "/v2/models/no-such-model/ready",
    ] {
        let response = app.get(path, Some(DEV_KEY)).await;
        assert_protocol_error(response, 404, "no-such-model").await;
    }
    let infer = app
        .post(
            "/v2/models/no-such-model/infer",
            Some(DEV_KEY),
            &json!({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}),
        )
        .await;
    assert_protocol_error(infer, 404, "no-such-model").await;

    let version = app.get("/v2/models/iris/versions/v9", Some(DEV_KEY)).await;
    assert_protocol_error(version, 404, "v9").await;
}

// ---------------------------------------------------------------------------------------------
// REST: infer

#[tokio::test]
async fn json_infer_on_iris_v1_matches_the_onnxruntime_references_nested_or_flat() {
    let app = demo_app().await;
    for (index, case) in iris_v1_cases().iter().enumerate() {
        let flat = json!({
            "inputs": [{"name": "input", "shape": rows_shape(case.rows), "datatype": "FP32", "data": case.features}]
        });
        for (form, request) in [("nested", iris_request(case)), ("flat", flat)] {
            let context = format!("case {index} {form}");
            let response = app.post(IRIS_V1_INFER, Some(DEV_KEY), &request).await;
            assert_eq!(response.status(), 200, "{context}");
            assert_eq!(response.headers()["content-type"], "application/json");
            let body = json_body(response).await;
            assert_eq!(body["model_name"], "iris", "{context}");
            assert_eq!(body["model_version"], "v1", "{context}");
            let label = output(&body, "label");
            assert_eq!(label["datatype"], "INT64");
            assert_eq!(label["shape"], json!([case.rows]));
            assert_eq!(integers(&label["data"]), case.labels, "{context}");
            let probabilities = output(&body, "probabilities");
            assert_eq!(probabilities["datatype"], "FP32");
            assert_eq!(probabilities["shape"], json!([case.rows, 3]));
            assert_all_close(
                &numbers(&probabilities["data"]),
                &case.probabilities,
                &context,
            );
        }
    }
}

#[tokio::test]
async fn json_infer_agrees_with_predict_on_the_same_rows() {
    let app = demo_app().await;
    let case = biggest_iris_case();
    let v2 = app.post_ok(IRIS_V1_INFER, &iris_request(&case)).await;
    let predict = app
        .post_ok(
            "/predict",
            &json!({"model": "iris", "version": "v1", "data": case.nested}),
        )
        .await;
    let from_predict: Vec<f64> = predict["result"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| LABELS.map(|label| row[label].as_f64().unwrap()))
        .collect();
    assert_all_close(
        &numbers(&output(&v2, "probabilities")["data"]),
        &from_predict,
        "v2 infer vs /predict",
    );
}

/// A binary infer request: the JSON header, then the raw bytes it announces.
pub(crate) fn binary_body(header: &Value, raw: &[u8]) -> (Vec<u8>, usize) {
    let mut body = header.to_string().into_bytes();
    let length = body.len();
    body.extend_from_slice(raw);
    (body, length)
}

pub(crate) async fn post_binary(
    app: &TestApp,
    path: &str,
    body: Vec<u8>,
    length: usize,
) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .header("x-api-key", DEV_KEY)
        .header("content-type", "application/octet-stream")
        .header(HEADER_LENGTH, length.to_string())
        .body(body)
        .send()
        .await
        .unwrap()
}

/// Splits a binary infer response into its JSON header and the raw bytes of each output.
pub(crate) async fn split_binary_response(
    response: reqwest::Response,
) -> (Value, Vec<(String, Vec<u8>)>) {
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/octet-stream"
    );
    let length: usize = response.headers()[HEADER_LENGTH]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let bytes = response.bytes().await.unwrap();
    assert!(
        length <= bytes.len(),
        "header length {length} > body {}",
        bytes.len()
    );
    let header: Value = serde_json::from_slice(&bytes[..length]).unwrap();
    let mut rest = &bytes[length..];
    let mut raw = Vec::new();
    for output in header["outputs"].as_array().unwrap() {
        let Some(size) = output["parameters"]["binary_data_size"].as_u64() else {
            continue;
        };
        assert!(
            output.get("data").is_none(),
            "binary output also has data: {output}"
        );
        let (mine, others) = rest.split_at(usize::try_from(size).unwrap());
        raw.push((output["name"].as_str().unwrap().to_owned(), mine.to_vec()));
        rest = others;
    }
    assert!(rest.is_empty(), "{} bytes no output claims", rest.len());
    (header, raw)
}

#[tokio::test]
async fn binary_tensors_go_in_and_come_back_out_with_the_same_numbers() {
    let app = demo_app().await;
    let case = biggest_iris_case();
    let raw_input = f32_bytes(&case.features);
    let input = json!({
        "name": "input", "shape": rows_shape(case.rows), "datatype": "FP32",
        "parameters": {"binary_data_size": raw_input.len()}
    });

    // Binary in, JSON out.
    let (body, length) = binary_body(&json!({"inputs": [input]}), &raw_input);
    let response = post_binary(&app, IRIS_V1_INFER, body, length).await;
    assert_eq!(response.status(), 200);
    assert!(!response.headers().contains_key(HEADER_LENGTH));
    let json_answer = json_body(response).await;
    assert_eq!(
        integers(&output(&json_answer, "label")["data"]),
        case.labels
    );

    // Binary in, binary out.
    let (body, length) = binary_body(
        &json!({"inputs": [input], "parameters": {"binary_data_output": true}}),
        &raw_input,
    );
    let (header, raw) =
        split_binary_response(post_binary(&app, IRIS_V1_INFER, body, length).await).await;
    assert_eq!(header["model_name"], "iris");
    assert_eq!(raw.len(), 2, "both outputs raw: {header}");
    for (name, bytes) in &raw {
        match name.as_str() {
            "label" => assert_eq!(i64s(bytes), case.labels),
            "probabilities" => {
                assert_all_close(&f32s(bytes), &case.probabilities, "raw probabilities");
            }
            other => panic!("unexpected output {other}"),
        }
    }
    assert_eq!(output(&header, "label")["shape"], json!([case.rows]));
}

#[tokio::test]
async fn one_output_may_be_asked_for_as_binary_and_the_other_as_json() {
    let app = demo_app().await;
    let case = biggest_iris_case();
    let mut request = iris_request(&case);
    request["outputs"] = json!([
        {"name": "label"},
        {"name": "probabilities", "parameters": {"binary_data": true}}
    ]);
    let response = app.post(IRIS_V1_INFER, Some(DEV_KEY), &request).await;
    let (header, raw) = split_binary_response(response).await;
    assert_eq!(integers(&output(&header, "label")["data"]), case.labels);
    assert_eq!(raw.len(), 1);
    assert_eq!(raw[0].0, "probabilities");
    assert_all_close(&f32s(&raw[0].1), &case.probabilities, "raw probabilities");
}

#[tokio::test]
async fn binary_data_output_applies_to_listed_outputs_that_do_not_say_otherwise() {
    // Triton's binary tensor extension: "If binary_data is specified on an output it
    // overrides this setting"; an output listed without it follows binary_data_output.
    let app = demo_app().await;
    let case = biggest_iris_case();
    let mut request = iris_request(&case);
    request["parameters"] = json!({"binary_data_output": true});
    request["outputs"] = json!([
        {"name": "probabilities"},
        {"name": "label", "parameters": {"binary_data": false}}
    ]);
    let response = app.post(IRIS_V1_INFER, Some(DEV_KEY), &request).await;
    let (header, raw) = split_binary_response(response).await;
    assert_eq!(integers(&output(&header, "label")["data"]), case.labels);
    assert_eq!(raw.len(), 1, "{header}");
    assert_eq!(raw[0].0, "probabilities");
    assert_all_close(&f32s(&raw[0].1), &case.probabilities, "raw probabilities");
}

#[tokio::test]
async fn a_binary_body_whose_sizes_do_not_add_up_is_400() {
    let app = demo_app().await;
    let case = biggest_iris_case();
    let raw_input = f32_bytes(&case.features);
    let header = json!({"inputs": [{
        "name": "input", "shape": rows_shape(case.rows), "datatype": "FP32",
        "parameters": {"binary_data_size": raw_input.len()}
    }]});
    // Four bytes short of what binary_data_size announces.
    let (body, length) = binary_body(&header, &raw_input[..raw_input.len() - 4]);
    let response = post_binary(&app, IRIS_V1_INFER, body, length).await;
    assert_protocol_error(response, 400, "binary_data_size").await;

    // A header length beyond the body.
    let (body, _) = binary_body(&header, &raw_input);
    let beyond = body.len() + 1;
    let response = post_binary(&app, IRIS_V1_INFER, body, beyond).await;
    assert_protocol_error(response, 400, HEADER_LENGTH).await;

    // Bytes after the header that no input claims.
    let json_only = json!({"inputs": [{
        "name": "input", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]
    }]});
    let (body, length) = binary_body(&json_only, &[0, 0, 0, 0]);
    let response = post_binary(&app, IRIS_V1_INFER, body, length).await;
    assert_protocol_error(response, 400, "binary_data_size").await;
}

#[tokio::test]
async fn outputs_can_be_selected_in_the_order_asked_and_an_unknown_output_is_400() {
    let app = demo_app().await;
    let case = biggest_iris_case();
    let mut request = iris_request(&case);
    request["outputs"] = json!([{"name": "probabilities"}]);
    let body = app.post_ok(IRIS_V1_INFER, &request).await;
    let outputs = body["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), 1, "{body}");
    assert_eq!(outputs[0]["name"], "probabilities");

    request["outputs"] = json!([{"name": "probabilities"}, {"name": "label"}]);
    let body = app.post_ok(IRIS_V1_INFER, &request).await;
    let names: Vec<&str> = body["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|output| output["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["probabilities", "label"]);

    request["outputs"] = json!([{"name": "label"}, {"name": "logits"}]);
    let response = app.post(IRIS_V1_INFER, Some(DEV_KEY), &request).await;
    assert_protocol_error(response, 400, "logits").await;
}

#[tokio::test]
async fn an_unknown_output_is_refused_before_the_model_runs_even_without_a_version() {
    let app = demo_app().await;
    // mlp has one version, so the path needs none; the router picks it.
    let request = json!({
        "inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32", "data": vec![0.5; 784]}],
        "outputs": [{"name": "logits"}]
    });
    let response = app
        .post("/v2/models/mlp/infer", Some(DEV_KEY), &request)
        .await;
    let job_id = response
        .headers()
        .get("x-job-id")
        .map(|id| id.to_str().unwrap().to_owned());
    assert_protocol_error(response, 400, "logits").await;
    // A 400 leaves no job that claims to have succeeded.
    if let Some(job_id) = job_id {
        let job = json_body(app.get(&format!("/jobs/{job_id}"), Some(DEV_KEY)).await).await;
        assert_ne!(job["status"], "succeeded", "the client got 400: {job}");
    }
}

#[tokio::test]
async fn a_zero_timeout_parameter_means_no_timeout() {
    // Triton: "The default is 0 which indicates that the request has no timeout." The mlp
    // with 64 rows runs for longer than a timer tick, so a zero deadline would fire first.
    let app = demo_app().await;
    let rows = 64;
    let features = vec![0.5_f32; rows * 784];
    let request = json!({
        "parameters": {"timeout": 0},
        "inputs": [{"name": "input", "shape": [rows, 784], "datatype": "FP32", "data": features}]
    });
    let response = app
        .post("/v2/models/mlp/infer", Some(DEV_KEY), &request)
        .await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());

    let mut client = grpc(&app).await;
    let mut request = ModelInferRequest {
        model_name: "mlp".to_owned(),
        inputs: vec![InferInputTensor {
            name: "input".to_owned(),
            datatype: "FP32".to_owned(),
            shape: vec![i64::try_from(rows).unwrap(), 784],
            ..Default::default()
        }],
        raw_input_contents: vec![f32_bytes(&features).into()],
        ..Default::default()
    };
    request.parameters.insert(
        "timeout".to_owned(),
        InferParameter {
            parameter_choice: Some(ParameterChoice::Int64Param(0)),
        },
    );
    let answer = client.model_infer(with_key(request, DEV_KEY)).await;
    assert!(answer.is_ok(), "{answer:?}");
}

#[tokio::test]
async fn the_request_id_is_echoed_and_defaults_to_the_x_request_id() {
    let app = demo_app().await;
    let case = biggest_iris_case();
    let mut request = iris_request(&case);
    request["id"] = json!("my-request-17");
    let body = app.post_ok(IRIS_V1_INFER, &request).await;
    assert_eq!(body["id"], "my-request-17");

    // No id: the request's X-Request-ID, the client's own...
    let response = app
        .client
        .post(app.url(IRIS_V1_INFER))
        .header("x-api-key", DEV_KEY)
        .header("x-request-id", "trace-v2-42")
        .json(&iris_request(&case))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(json_body(response).await["id"], "trace-v2-42");

    // ...or the generated one the response carries.
    let response = app
        .post(IRIS_V1_INFER, Some(DEV_KEY), &iris_request(&case))
        .await;
    assert_eq!(response.status(), 200);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(!request_id.is_empty());
    assert_eq!(json_body(response).await["id"], request_id.as_str());
}

#[tokio::test]
async fn a_wrong_datatype_is_400_with_a_sentence_naming_both_types() {
    let app = demo_app().await;
    let request = json!({
        "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}]
    });
    let response = app.post(IRIS_V1_INFER, Some(DEV_KEY), &request).await;
    let body = assert_protocol_error(response, 400, "FP64").await;
    assert!(body["error"].as_str().unwrap().contains("FP32"), "{body}");

    let unknown = json!({
        "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FLOAT32", "data": [5.1, 3.5, 1.4, 0.2]}]
    });
    let response = app.post(IRIS_V1_INFER, Some(DEV_KEY), &unknown).await;
    assert_protocol_error(response, 400, "FLOAT32").await;
}

#[tokio::test]
async fn an_element_count_that_does_not_match_the_shape_is_400() {
    let app = demo_app().await;
    let request = json!({
        "inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4]}]
    });
    let response = app.post(IRIS_V1_INFER, Some(DEV_KEY), &request).await;
    let body = assert_protocol_error(response, 400, "input").await;
    let error = body["error"].as_str().unwrap();
    assert!(error.contains('8') && error.contains('3'), "{error}");

    let negative = json!({
        "inputs": [{"name": "input", "shape": [-1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]
    });
    let response = app.post(IRIS_V1_INFER, Some(DEV_KEY), &negative).await;
    assert_protocol_error(response, 400, "negative").await;
}

#[tokio::test]
async fn infer_without_a_key_is_401_with_an_error_key() {
    let app = demo_app().await;
    let response = app
        .post(IRIS_V1_INFER, None, &iris_request(&biggest_iris_case()))
        .await;
    let body = assert_protocol_error(response, 401, "").await;
    assert_eq!(body["code"], "unauthenticated");
    let wrong = app
        .post(
            IRIS_V1_INFER,
            Some("not-a-key"),
            &iris_request(&biggest_iris_case()),
        )
        .await;
    assert_eq!(wrong.status(), 401);
}

const MODELS_ONLY: &str = "v2-models-key-0123456789";
const PREDICT_ONLY: &str = "v2-predict-key-0123456789";

#[tokio::test]
async fn a_key_without_the_predict_scope_is_403_and_metadata_needs_read_models() {
    let app = TestApp::spawn_with_demo_models(|settings| {
        settings.api_keys = Some(format!(
            "{PREDICT_ONLY}:tenant_a:predict;{MODELS_ONLY}:tenant_b:read_models"
        ));
    })
    .await;
    let case = biggest_iris_case();
    let refused = app
        .post(IRIS_V1_INFER, Some(MODELS_ONLY), &iris_request(&case))
        .await;
    let body = assert_protocol_error(refused, 403, "").await;
    assert_eq!(body["code"], "forbidden");
    let allowed = app
        .post(IRIS_V1_INFER, Some(PREDICT_ONLY), &iris_request(&case))
        .await;
    assert_eq!(allowed.status(), 200);

    let metadata = app
        .get("/v2/models/iris/versions/v1", Some(PREDICT_ONLY))
        .await;
    assert_protocol_error(metadata, 403, "").await;
    let metadata = app
        .get("/v2/models/iris/versions/v1", Some(MODELS_ONLY))
        .await;
    assert_eq!(metadata.status(), 200);
}

#[tokio::test]
async fn an_infer_is_recorded_as_a_succeeded_job() {
    let app = demo_app().await;
    let response = app
        .client
        .post(app.url(IRIS_V1_INFER))
        .header("x-api-key", DEV_KEY)
        .header("x-request-id", "trace-v2-job")
        .json(&iris_request(&biggest_iris_case()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-model-version"], "v1");
    let job_id = response.headers()["x-job-id"].to_str().unwrap().to_owned();
    let job = json_body(app.get(&format!("/jobs/{job_id}"), Some(DEV_KEY)).await).await;
    assert_eq!(job["job_id"], job_id.as_str());
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["model"], "iris");
    assert_eq!(job["version"], "v1");
    assert_eq!(job["tenant_id"], "tenant_dev");
    assert_eq!(job["request_id"], "trace-v2-job");
}

#[tokio::test]
async fn echo_returns_bytes_and_int32_tensors_unchanged() {
    let app = TestApp::spawn().await;
    let inputs = json!([
        {"name": "text", "shape": [3], "datatype": "BYTES", "data": ["hello", "", "żółw"]},
        {"name": "numbers", "shape": [2, 2], "datatype": "INT32", "data": [[1, -2], [0, 2_147_483_647]]},
        {"name": "flags", "shape": [2], "datatype": "BOOL", "data": [true, false]},
        {"name": "big", "shape": [2], "datatype": "INT64", "data": [9_007_199_254_740_993_i64, i64::MIN]},
        {"name": "wide", "shape": [1], "datatype": "UINT64", "data": [u64::MAX]}
    ]);
    let body = app
        .post_ok(
            "/v2/models/echo/versions/v1/infer",
            &json!({"id": "echo-1", "inputs": inputs}),
        )
        .await;
    assert_eq!(body["model_name"], "echo");
    assert_eq!(body["model_version"], "v1");
    assert_eq!(body["id"], "echo-1");
    assert_eq!(
        body["outputs"],
        json!([
            {"name": "text", "shape": [3], "datatype": "BYTES", "data": ["hello", "", "żółw"]},
            {"name": "numbers", "shape": [2, 2], "datatype": "INT32", "data": [1, -2, 0, 2_147_483_647]},
            {"name": "flags", "shape": [2], "datatype": "BOOL", "data": [true, false]},
            {"name": "big", "shape": [2], "datatype": "INT64", "data": [9_007_199_254_740_993_i64, i64::MIN]},
            {"name": "wide", "shape": [1], "datatype": "UINT64", "data": [u64::MAX]}
        ])
    );
}

#[tokio::test]
async fn echo_returns_binary_bytes_tensors_length_prefixed() {
    let app = TestApp::spawn().await;
    let raw: Vec<u8> = [&b"ab"[..], b"", b"\x00\xffz"]
        .iter()
        .flat_map(|element| {
            let mut framed = u32::try_from(element.len()).unwrap().to_le_bytes().to_vec();
            framed.extend_from_slice(element);
            framed
        })
        .collect();
    let header = json!({
        "inputs": [{"name": "blob", "shape": [3], "datatype": "BYTES",
                    "parameters": {"binary_data_size": raw.len()}}],
        "parameters": {"binary_data_output": true}
    });
    let (body, length) = binary_body(&header, &raw);
    let (header, outputs) = split_binary_response(
        post_binary(&app, "/v2/models/echo/versions/v2/infer", body, length).await,
    )
    .await;
    assert_eq!(header["model_version"], "v2");
    assert_eq!(output(&header, "blob")["datatype"], "BYTES");
    assert_eq!(outputs, vec![("blob".to_owned(), raw)]);
}

#[tokio::test]
async fn a_model_without_a_version_follows_the_engine_toml_routing() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(
        dir.path(),
        "[routing.iris]\nstrategy = \"static\"\nversion = \"v2\"\n",
    );
    let app = TestApp::spawn_with_demo_models(|settings| {
        settings.config = Some(config);
    })
    .await;
    let case = biggest_iris_case();
    let response = app
        .post("/v2/models/iris/infer", Some(DEV_KEY), &iris_request(&case))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-model-version"], "v2");
    let body = json_body(response).await;
    assert_eq!(body["model_version"], "v2");
    assert_eq!(
        integers(&output(&body, "label")["data"]),
        integers(
            &expected_outputs("iris", "v2")["cases"]
                .as_array()
                .unwrap()
                .iter()
                .find(|reference| reference["input"] == case.nested)
                .unwrap()["outputs"]["label"]
        )
    );
    let metadata = app.get("/v2/models/iris", Some(DEV_KEY)).await;
    assert_eq!(metadata.status(), 200);
    assert_eq!(json_body(metadata).await["name"], "iris");
}

// ---------------------------------------------------------------------------------------------
// gRPC

#[tokio::test]
async fn grpc_server_live_and_ready_answer_true() {
    let app = TestApp::spawn().await;
    let mut client = grpc(&app).await;
    let live = client
        .server_live(ServerLiveRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(live.live);
    let ready = client
        .server_ready(ServerReadyRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(ready.ready);
    let metadata = client
        .server_metadata(with_key(ServerMetadataRequest {}, DEV_KEY))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(metadata.name, "inference-engine");
    assert!(
        metadata
            .extensions
            .contains(&"binary_tensor_data".to_owned())
    );
}

#[tokio::test]
async fn grpc_model_metadata_describes_iris_v1() {
    let app = demo_app().await;
    let mut client = grpc(&app).await;
    let metadata = client
        .model_metadata(with_key(
            ModelMetadataRequest {
                name: "iris".to_owned(),
                version: "v1".to_owned(),
            },
            DEV_KEY,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(metadata.name, "iris");
    assert_eq!(metadata.platform, "onnxruntime_onnx");
    let mut versions = metadata.versions.clone();
    versions.sort_unstable();
    assert_eq!(versions, ["v1", "v2"]);
    assert_eq!(metadata.inputs.len(), 1);
    assert_eq!(metadata.inputs[0].name, "input");
    assert_eq!(metadata.inputs[0].datatype, "FP32");
    assert_eq!(metadata.inputs[0].shape, vec![-1, 4]);
    let outputs: Vec<(&str, &str, &[i64])> = metadata
        .outputs
        .iter()
        .map(|output| {
            (
                output.name.as_str(),
                output.datatype.as_str(),
                output.shape.as_slice(),
            )
        })
        .collect();
    assert_eq!(
        outputs,
        [
            ("label", "INT64", &[-1_i64][..]),
            ("probabilities", "FP32", &[-1, 3][..])
        ]
    );
}

#[tokio::test]
async fn grpc_infer_with_raw_contents_matches_the_references() {
    let app = demo_app().await;
    let mut client = grpc(&app).await;
    for (index, case) in iris_v1_cases().iter().enumerate() {
        let mut request = raw_iris_request(case);
        request.id = format!("grpc-{index}");
        let response = client
            .model_infer(with_key(request, DEV_KEY))
            .await
            .unwrap();
        let job_id = response
            .metadata()
            .get("x-job-id")
            .expect("an x-job-id")
            .to_str()
            .unwrap()
            .to_owned();
        let response = response.into_inner();
        assert_eq!(response.id, format!("grpc-{index}"));
        assert_grpc_iris_answer(&response, case, &format!("case {index}"));

        // Recorded like the HTTP API's requests.
        let job = json_body(app.get(&format!("/jobs/{job_id}"), Some(DEV_KEY)).await).await;
        assert_eq!(job["status"], "succeeded", "{job}");
        assert_eq!(job["version"], "v1");
    }
}

#[tokio::test]
async fn grpc_infer_with_typed_fp32_contents_matches_the_references() {
    let app = demo_app().await;
    let mut client = grpc(&app).await;
    let case = biggest_iris_case();
    let mut input = grpc_iris_input(case.rows);
    input.contents = Some(InferTensorContents {
        fp32_contents: case.features.clone(),
        ..Default::default()
    });
    let request = ModelInferRequest {
        model_name: "iris".to_owned(),
        model_version: "v1".to_owned(),
        inputs: vec![input],
        outputs: vec![InferRequestedOutputTensor {
            name: "probabilities".to_owned(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut request = with_key(request, DEV_KEY);
    request
        .metadata_mut()
        .insert("x-request-id", "grpc-trace-9".parse().unwrap());
    let response = client.model_infer(request).await.unwrap().into_inner();
    assert_eq!(
        response.id, "grpc-trace-9",
        "the id defaults to x-request-id"
    );
    assert_eq!(response.outputs.len(), 1, "only the output asked for");
    assert_eq!(response.outputs[0].name, "probabilities");
    assert_all_close(
        &f32s(raw_output(&response, "probabilities")),
        &case.probabilities,
        "typed contents",
    );
}

#[tokio::test]
async fn grpc_infer_without_a_key_is_unauthenticated_and_a_bearer_key_works() {
    let app = demo_app().await;
    let mut client = grpc(&app).await;
    let case = biggest_iris_case();
    let status = client
        .model_infer(raw_iris_request(&case))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    let status = client
        .model_infer(with_key(raw_iris_request(&case), "not-a-key"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");

    let mut request = tonic::Request::new(raw_iris_request(&case));
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {DEV_KEY}").parse().unwrap(),
    );
    let response = client.model_infer(request).await.unwrap().into_inner();
    assert_grpc_iris_answer(&response, &case, "bearer");
}

#[tokio::test]
async fn grpc_infer_without_the_predict_scope_is_permission_denied() {
    let app = TestApp::spawn_with_demo_models(|settings| {
        settings.api_keys = Some(format!(
            "{PREDICT_ONLY}:tenant_a:predict;{MODELS_ONLY}:tenant_b:read_models"
        ));
    })
    .await;
    let mut client = grpc(&app).await;
    let case = biggest_iris_case();
    let status = client
        .model_infer(with_key(raw_iris_request(&case), MODELS_ONLY))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    client
        .model_infer(with_key(raw_iris_request(&case), PREDICT_ONLY))
        .await
        .unwrap();
}

#[tokio::test]
async fn grpc_unknown_model_is_not_found() {
    let app = demo_app().await;
    let mut client = grpc(&app).await;
    let mut request = raw_iris_request(&biggest_iris_case());
    request.model_name = "no-such-model".to_owned();
    let status = client
        .model_infer(with_key(request, DEV_KEY))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
    assert!(status.message().contains("no-such-model"), "{status:?}");

    let status = client
        .model_metadata(with_key(
            ModelMetadataRequest {
                name: "no-such-model".to_owned(),
                version: String::new(),
            },
            DEV_KEY,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
}

#[tokio::test]
async fn grpc_wrong_element_count_or_datatype_is_invalid_argument() {
    let app = demo_app().await;
    let mut client = grpc(&app).await;
    let case = biggest_iris_case();

    // Raw bytes for one row fewer than the shape says.
    let mut request = raw_iris_request(&case);
    request.raw_input_contents = vec![f32_bytes(&case.features[4..]).into()];
    let status = client
        .model_infer(with_key(request, DEV_KEY))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("input"), "{status:?}");

    // Typed contents with three values for a [1, 4] tensor.
    let mut input = grpc_iris_input(1);
    input.contents = Some(InferTensorContents {
        fp32_contents: vec![5.1, 3.5, 1.4],
        ..Default::default()
    });
    let request = ModelInferRequest {
        model_name: "iris".to_owned(),
        model_version: "v1".to_owned(),
        inputs: vec![input],
        ..Default::default()
    };
    let status = client
        .model_infer(with_key(request, DEV_KEY))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");

    // FP64 for an FP32 model.
    let mut input = grpc_iris_input(1);
    input.datatype = "FP64".to_owned();
    input.contents = Some(InferTensorContents {
        fp64_contents: vec![5.1, 3.5, 1.4, 0.2],
        ..Default::default()
    });
    let request = ModelInferRequest {
        model_name: "iris".to_owned(),
        model_version: "v1".to_owned(),
        inputs: vec![input],
        ..Default::default()
    };
    let status = client
        .model_infer(with_key(request, DEV_KEY))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("FP64"), "{status:?}");
}

#[tokio::test]
async fn grpc_echo_returns_bytes_and_int32_tensors_unchanged() {
    let app = TestApp::spawn().await;
    let mut client = grpc(&app).await;
    let request = ModelInferRequest {
        model_name: "echo".to_owned(),
        model_version: "v1".to_owned(),
        inputs: vec![
            InferInputTensor {
                name: "text".to_owned(),
                datatype: "BYTES".to_owned(),
                shape: vec![2],
                contents: Some(InferTensorContents {
                    bytes_contents: vec![b"hi".to_vec().into(), b"\x00\xff".to_vec().into()],
                    ..Default::default()
                }),
                ..Default::default()
            },
            InferInputTensor {
                name: "numbers".to_owned(),
                datatype: "INT32".to_owned(),
                shape: vec![3],
                contents: Some(InferTensorContents {
                    int_contents: vec![-7, 0, i32::MAX],
                    ..Default::default()
                }),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let response = client
        .model_infer(with_key(request, DEV_KEY))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.outputs[0].name, "text");
    assert_eq!(response.outputs[0].datatype, "BYTES");
    assert_eq!(response.outputs[0].shape, vec![2]);
    assert_eq!(
        raw_output(&response, "text"),
        b"\x02\x00\x00\x00hi\x02\x00\x00\x00\x00\xff"
    );
    assert_eq!(response.outputs[1].name, "numbers");
    assert_eq!(response.outputs[1].datatype, "INT32");
    let numbers: Vec<i32> = raw_output(&response, "numbers")
        .chunks_exact(4)
        .map(|chunk| i32::from_le_bytes(chunk.try_into().unwrap()))
        .collect();
    assert_eq!(numbers, [-7, 0, i32::MAX]);
}

/// A `ModelInfer` of the echo model with one INT32 input.
fn echo_infer() -> ModelInferRequest {
    ModelInferRequest {
        model_name: "echo".to_owned(),
        model_version: "v1".to_owned(),
        inputs: vec![InferInputTensor {
            name: "numbers".to_owned(),
            datatype: "INT32".to_owned(),
            shape: vec![1],
            contents: Some(InferTensorContents {
                int_contents: vec![7],
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn with_request_id<T>(mut request: tonic::Request<T>, id: &str) -> tonic::Request<T> {
    request
        .metadata_mut()
        .insert("x-request-id", id.parse().unwrap());
    request
}

#[tokio::test]
async fn grpc_calls_send_their_request_id_back_even_when_they_fail() {
    let app = TestApp::spawn().await;
    let mut client = grpc(&app).await;
    let request_id = |metadata: &tonic::metadata::MetadataMap| {
        metadata
            .get("x-request-id")
            .map(|value| value.to_str().unwrap().to_owned())
    };

    let answered = client
        .model_infer(with_request_id(
            with_key(echo_infer(), DEV_KEY),
            "grpc-trace-10",
        ))
        .await
        .unwrap();
    assert_eq!(
        request_id(answered.metadata()).as_deref(),
        Some("grpc-trace-10")
    );
    let job_id = answered
        .metadata()
        .get("x-job-id")
        .unwrap()
        .to_str()
        .unwrap();
    let job = json_body(app.get(&format!("/jobs/{job_id}"), Some(DEV_KEY)).await).await;
    assert_eq!(job["request_id"], "grpc-trace-10", "the job records it too");

    let anonymous = client
        .model_infer(with_key(echo_infer(), DEV_KEY))
        .await
        .unwrap();
    let generated = request_id(anonymous.metadata()).expect("a new id when the client sent none");
    assert!(uuid::Uuid::parse_str(&generated).is_ok(), "{generated}");

    let unauthenticated = client
        .model_infer(with_request_id(
            tonic::Request::new(echo_infer()),
            "grpc-trace-11",
        ))
        .await
        .unwrap_err();
    assert_eq!(unauthenticated.code(), tonic::Code::Unauthenticated);
    assert_eq!(
        request_id(unauthenticated.metadata()).as_deref(),
        Some("grpc-trace-11")
    );
    let mut unknown = echo_infer();
    unknown.model_name = "no-such-model".to_owned();
    let not_found = client
        .model_infer(with_request_id(with_key(unknown, DEV_KEY), "grpc-trace-12"))
        .await
        .unwrap_err();
    assert_eq!(not_found.code(), tonic::Code::NotFound);
    assert_eq!(
        request_id(not_found.metadata()).as_deref(),
        Some("grpc-trace-12")
    );
}

#[tokio::test]
async fn grpc_calls_count_in_the_http_request_metrics() {
    let app = TestApp::spawn().await;
    let mut client = grpc(&app).await;
    let route = ("route", "/inference.GRPCInferenceService/ModelInfer");
    let before = crate::metrics::scrape(&app).await;
    client
        .model_infer(with_key(echo_infer(), DEV_KEY))
        .await
        .unwrap();
    let mut unknown = echo_infer();
    unknown.model_name = "no-such-model".to_owned();
    let not_found = client
        .model_infer(with_key(unknown, DEV_KEY))
        .await
        .unwrap_err();
    assert_eq!(not_found.code(), tonic::Code::NotFound);
    let after = crate::metrics::scrape(&app).await;
    let grew = |name: &str, labels: &[(&str, &str)]| {
        crate::metrics::value(&after, name, labels) - crate::metrics::value(&before, name, labels)
    };
    assert!(grew("http_requests_total", &[route, ("status", "200")]) >= 1.0);
    assert!(grew("http_requests_total", &[route, ("status", "404")]) >= 1.0);
    assert!(grew("http_request_duration_seconds_count", &[route]) >= 2.0);
}

/// (name, version, state) of every model in the repository index.
async fn index(
    client: &mut GrpcInferenceServiceClient<Channel>,
    key: &str,
) -> Result<Vec<(String, String, String)>, tonic::Status> {
    let models = client
        .repository_index(with_key(RepositoryIndexRequest::default(), key))
        .await?
        .into_inner()
        .models;
    Ok(models
        .into_iter()
        .map(|model| (model.name, model.version, model.state))
        .collect())
}

fn state_of<'a>(index: &'a [(String, String, String)], name: &str, version: &str) -> &'a str {
    index
        .iter()
        .find(|(n, v, _)| n == name && v == version)
        .map(|(_, _, state)| state.as_str())
        .unwrap_or_else(|| panic!("{name}:{version} not in the index: {index:?}"))
}

#[tokio::test]
async fn grpc_repository_index_needs_the_admin_scope_and_lists_iris_with_states() {
    let app = demo_app().await;
    let mut client = grpc(&app).await;
    let status = index(&mut client, DEV_KEY).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    let status = index(&mut client, "not-a-key").await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");

    // Used once, so certainly in memory.
    client
        .model_infer(with_key(raw_iris_request(&biggest_iris_case()), DEV_KEY))
        .await
        .unwrap();
    let models = index(&mut client, ADMIN_KEY).await.unwrap();
    assert_eq!(state_of(&models, "iris", "v1"), "READY");
    let v2 = state_of(&models, "iris", "v2");
    assert!(["READY", "UNAVAILABLE"].contains(&v2), "{v2}");
}

#[tokio::test]
async fn grpc_repository_unload_leaves_the_model_not_loaded_until_loaded_again() {
    let app = demo_app().await;
    let mut client = grpc(&app).await;
    client
        .model_infer(with_key(raw_iris_request(&biggest_iris_case()), DEV_KEY))
        .await
        .unwrap();
    assert_eq!(
        state_of(&index(&mut client, ADMIN_KEY).await.unwrap(), "iris", "v1"),
        "READY"
    );

    let unload = |key: &str| {
        with_key(
            RepositoryModelUnloadRequest {
                model_name: "iris".to_owned(),
                ..Default::default()
            },
            key,
        )
    };
    let status = client
        .repository_model_unload(unload(DEV_KEY))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    client
        .repository_model_unload(unload(ADMIN_KEY))
        .await
        .unwrap();
    let models = index(&mut client, ADMIN_KEY).await.unwrap();
    assert_eq!(state_of(&models, "iris", "v1"), "UNAVAILABLE");
    assert_eq!(state_of(&models, "iris", "v2"), "UNAVAILABLE");
    // Other models are untouched.
    assert!(models.iter().any(|(name, _, _)| name == "mlp"));

    client
        .repository_model_load(with_key(
            RepositoryModelLoadRequest {
                model_name: "iris".to_owned(),
                ..Default::default()
            },
            ADMIN_KEY,
        ))
        .await
        .unwrap();
    let models = index(&mut client, ADMIN_KEY).await.unwrap();
    assert_eq!(state_of(&models, "iris", "v1"), "READY");

    let status = client
        .repository_model_unload(with_key(
            RepositoryModelUnloadRequest {
                model_name: "no-such-model".to_owned(),
                ..Default::default()
            },
            ADMIN_KEY,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
}

#[tokio::test]
async fn grpc_health_check_is_serving_and_an_unknown_service_is_not_found() {
    let app = TestApp::spawn().await;
    let mut health = HealthClient::connect(app.grpc_url().await).await.unwrap();
    for service in ["", "inference.GRPCInferenceService"] {
        let response = health
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            response.status(),
            ServingStatus::Serving,
            "service {service:?}"
        );
    }
    let status = health
        .check(HealthCheckRequest {
            service: "no.such.Service".to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
}

#[tokio::test]
async fn grpc_infer_past_the_rate_limit_is_resource_exhausted() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(
        dir.path(),
        "[rate_limits]\npredict = { rate = 0.001, burst = 1 }\n",
    );
    let app = TestApp::spawn_with_demo_models(|settings| {
        settings.config = Some(config);
    })
    .await;
    let mut client = grpc(&app).await;
    let case = biggest_iris_case();
    client
        .model_infer(with_key(raw_iris_request(&case), DEV_KEY))
        .await
        .unwrap();
    let status = client
        .model_infer(with_key(raw_iris_request(&case), DEV_KEY))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    // The HTTP routes share the same allowance.
    let response = app
        .post(IRIS_V1_INFER, Some(DEV_KEY), &iris_request(&case))
        .await;
    assert_eq!(response.status(), 429);
}
