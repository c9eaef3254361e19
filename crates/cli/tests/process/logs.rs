use std::time::{Duration, Instant};

use inference_engine_testkit::EngineProcess;
use serde_json::{Value, json};

use crate::binary;

const SECRET: &str = "log-test-secret-0123456789";
const KEYS: &str = "log-test-secret-0123456789:tenant_a:predict";

/// Log lines (parsed) whose `message` is `request_completed`.
fn access_lines(engine: &EngineProcess) -> Vec<Value> {
    engine
        .stdout_lines()
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|entry| entry["message"] == "request_completed")
        .collect()
}

/// The access lines of the requests `ids`, once the log holds one for each (10 s at most).
async fn access_lines_for<const N: usize>(engine: &EngineProcess, ids: [&str; N]) -> [Value; N] {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines = access_lines(engine);
        let found = ids.map(|id| lines.iter().find(|line| line["request_id"] == id).cloned());
        if found.iter().all(Option::is_some) {
            return found.map(Option::unwrap);
        }
        assert!(Instant::now() < deadline, "access lines missing: {lines:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn every_request_leaves_one_json_access_line_even_when_the_client_gives_up() {
    let dir = tempfile::tempdir().unwrap();
    let engine = EngineProcess::start(binary(), &[("API_KEYS", KEYS)], dir.path()).unwrap();
    let client = reqwest::Client::new();

    let answered = client
        .post(engine.url("/predict"))
        .header("x-api-key", SECRET)
        .header("x-request-id", "answered-1")
        .json(&json!({"model": "echo", "version": "v1", "data": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(answered.status(), 200);
    let abandoned = client
        .post(engine.url("/predict"))
        .header("x-api-key", SECRET)
        .header("x-request-id", "abandoned-1")
        .timeout(Duration::from_millis(100))
        .json(&json!({"model": "sleep", "data": {"ms": 2_000}}))
        .send()
        .await;
    assert!(abandoned.is_err(), "the client gave up first");

    let [done, gone] = access_lines_for(&engine, ["answered-1", "abandoned-1"]).await;
    assert_eq!(done["status"], 200);
    assert_eq!(done["tenant_id"], "tenant_a");
    assert_eq!(done["model"], "echo");
    assert_eq!(done["version"], "v1");
    assert_eq!(done["method"], "POST");
    assert_eq!(done["path"], "/predict");
    assert!(done["job_id"].is_string() && done["latency_ms"].is_number());
    assert_eq!(gone["status"], 499, "client closed request");
    assert!(
        engine
            .stdout_lines()
            .iter()
            .all(|line| !line.contains(SECRET)),
        "keys are never logged"
    );
}

#[tokio::test]
async fn a_grpc_call_leaves_one_access_line_naming_its_request_tenant_and_job() {
    use inference_engine_v2::proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
    use inference_engine_v2::proto::inference::model_infer_request::InferInputTensor;
    use inference_engine_v2::proto::inference::{InferTensorContents, ModelInferRequest};

    let dir = tempfile::tempdir().unwrap();
    let engine = EngineProcess::start(binary(), &[("API_KEYS", KEYS)], dir.path()).unwrap();
    assert!(
        engine
            .wait_for_line("grpc listening", Duration::from_secs(10))
            .await
    );
    let grpc_address = engine
        .stdout_lines()
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|entry| entry["message"] == "grpc listening")
        .and_then(|entry| entry["address"].as_str().map(str::to_owned))
        .expect("the gRPC listener's address");
    let mut client = GrpcInferenceServiceClient::connect(format!("http://{grpc_address}"))
        .await
        .unwrap();
    let infer = |model: &str, request_id: &str| {
        let mut request = tonic::Request::new(ModelInferRequest {
            model_name: model.to_owned(),
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
        });
        let metadata = request.metadata_mut();
        metadata.insert("x-api-key", SECRET.parse().unwrap());
        metadata.insert("x-request-id", request_id.parse().unwrap());
        request
    };
    client
        .model_infer(infer("echo", "grpc-answered-1"))
        .await
        .unwrap();
    let missing = client
        .model_infer(infer("no-such-model", "grpc-missing-1"))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);

    let [done, failed] = access_lines_for(&engine, ["grpc-answered-1", "grpc-missing-1"]).await;
    assert_eq!(done["path"], "/inference.GRPCInferenceService/ModelInfer");
    assert_eq!(done["method"], "POST");
    assert_eq!(done["grpc_code"], "OK");
    assert_eq!(done["status"], 200);
    assert_eq!(done["tenant_id"], "tenant_a");
    assert_eq!(done["model"], "echo");
    assert_eq!(done["version"], "v1");
    assert!(done["job_id"].is_string() && done["latency_ms"].is_number());
    assert_eq!(failed["grpc_code"], "NOT_FOUND");
    assert_eq!(failed["status"], 404);
    assert_eq!(failed["tenant_id"], "tenant_a");
    let access_lines_of = |id: &str| {
        access_lines(&engine)
            .iter()
            .filter(|line| line["request_id"] == id)
            .count()
    };
    assert_eq!(access_lines_of("grpc-answered-1"), 1, "one line per call");
}

#[test]
fn models_inspect_prints_the_signature_and_a_manifest_that_parses() {
    let model = inference_engine_testkit::demo_model("iris/v1").join("model.onnx");
    let report = crate::inspect_report(&model);
    assert!(report.contains("input"), "{report}");
    assert!(report.contains("FP32"), "{report}");
    assert!(report.contains("[-1, 4]"), "{report}");
    assert!(report.contains("[[inputs]]"), "{report}");

    let missing = std::process::Command::new(crate::binary())
        .args(["models", "inspect", "/nonexistent.onnx"])
        .env_clear()
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent.onnx"));
}

/// `models inspect MODEL` with exactly `envs`: its exit status, stdout and stderr.
fn inspect_with(model: &std::path::Path, envs: &[(&str, &str)]) -> (bool, String, String) {
    let output = std::process::Command::new(crate::binary())
        .args(["models", "inspect"])
        .arg(model)
        .env_clear()
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn models_inspect_suggests_a_classifier_template_and_the_fixes_it_recognises() {
    let graph = |model: &str| inference_engine_testkit::demo_model(model).join("model.onnx");
    // A label per example next to one probability per class.
    let report = crate::inspect_report(&graph("iris/v1"));
    let (advice, manifest) = report.split_once("suggested model.toml:\n").unwrap();
    assert!(
        advice.contains(
            "[postprocess]\nkind = \"probabilities\"\ntensor = \"probabilities\"\nlabels = \
             [\"class_0\", \"class_1\", \"class_2\"]\n"
        ),
        "{report}"
    );
    // The manifest itself still serves the graph as it is.
    assert!(manifest.contains("kind = \"raw\""), "{report}");

    // skl2onnx's ZipMap: the option that turns it off; no template for a map of scores.
    let report = crate::inspect_report(&graph("iris_svc/v1"));
    assert!(
        report.contains("output `output_probability` is a sequence of maps")
            && report.contains("options={id(model): {'zipmap': False}}"),
        "{report}"
    );
    assert!(
        !report.contains("the outputs look like a classifier's"),
        "{report}"
    );
    assert!(
        report.contains("SVMClassifier") && report.contains("are scikit-learn's (ONNX-ML"),
        "{report}"
    );

    // On a machine with only tract, a graph tract cannot run is said to be not servable here.
    let (success, report, stderr) =
        inspect_with(&graph("iris_svc/v1"), &[("ONNX_RUNTIME", "tract")]);
    assert!(success, "{stderr}");
    assert!(
        report.contains("fix: this machine has only tract (ONNX_RUNTIME=tract)"),
        "{report}"
    );
    let (_, report, _) = inspect_with(&graph("iris/v1"), &[("ONNX_RUNTIME", "tract")]);
    assert!(
        !report.contains("only tract"),
        "tract runs iris:v1:\n{report}"
    );
}

#[test]
fn models_inspect_into_a_closed_pipe_exits_quietly() {
    // The reader is gone before the command writes a byte: `inspect … | head -0`, without the
    // race of a reader that might still be there.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let output = std::process::Command::new(crate::binary())
        .args(["models", "inspect"])
        .arg(inference_engine_testkit::demo_model("iris/v1").join("model.onnx"))
        .env_clear()
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(output.status.success(), "{:?}: {stderr}", output.status);
}

#[tokio::test]
async fn a_message_that_is_not_valid_protobuf_is_invalid_argument_with_an_access_line() {
    use inference_engine_v2::codec::ProtobufCodec;
    use inference_engine_v2::proto::inference::{ModelInferResponse, ServerLiveResponse};

    let dir = tempfile::tempdir().unwrap();
    let engine = EngineProcess::start(binary(), &[("API_KEYS", KEYS)], dir.path()).unwrap();
    assert!(
        engine
            .wait_for_line("grpc listening", Duration::from_secs(10))
            .await
    );
    let grpc_address = engine
        .stdout_lines()
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|entry| entry["message"] == "grpc listening")
        .and_then(|entry| entry["address"].as_str().map(str::to_owned))
        .expect("the gRPC listener's address");
    let channel = tonic::transport::Channel::from_shared(format!("http://{grpc_address}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    // `ServerLiveResponse { live: true }` is a varint in field 1, where `ModelInferRequest`
    // has its model name (length-delimited): not a message ModelInfer can decode.
    let mut request = tonic::Request::new(ServerLiveResponse { live: true });
    request
        .metadata_mut()
        .insert("x-api-key", SECRET.parse().unwrap());
    request
        .metadata_mut()
        .insert("x-request-id", "grpc-garbled-1".parse().unwrap());
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/inference.GRPCInferenceService/ModelInfer",
    );
    let refused = grpc
        .unary(
            request,
            path,
            ProtobufCodec::<ServerLiveResponse, ModelInferResponse>::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");

    let [line] = access_lines_for(&engine, ["grpc-garbled-1"]).await;
    assert_eq!(line["path"], "/inference.GRPCInferenceService/ModelInfer");
    assert_eq!(line["grpc_code"], "INVALID_ARGUMENT");
}
