//! The binary's ONNX runtimes as an operator meets them: `models inspect` on every model
//! family (the manifest it prints serves the model as it is), a machine without the ONNX
//! Runtime library, and `ONNX_RUNTIME=tract`.

use inference_engine_testkit::families::{
    FAMILIES, assert_predict_rows, family_dir, family_reference,
};
use inference_engine_testkit::{DEV_KEY, EngineProcess, copy_demo_models};
use serde_json::{Value, json};

use crate::{binary, inspect_report};

/// The `model.toml` part of `models inspect`'s report.
fn inspected_manifest(model: &std::path::Path) -> String {
    let report = inspect_report(model);
    let (_, manifest) = report
        .split_once("suggested model.toml:\n")
        .unwrap_or_else(|| panic!("no manifest in the report:\n{report}"));
    manifest.to_owned()
}

#[tokio::test]
async fn every_family_serves_with_the_manifest_models_inspect_prints() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    for name in FAMILIES {
        let version = models.join(name).join("v1");
        std::fs::create_dir_all(&version).unwrap();
        let graph = family_dir(name).join("model.onnx");
        std::fs::copy(&graph, version.join("model.onnx")).unwrap();
        std::fs::write(version.join("model.toml"), inspected_manifest(&graph)).unwrap();
    }
    let engine = EngineProcess::start(
        binary(),
        &[
            ("MODELS_DIR", models.to_str().unwrap()),
            (
                "SQLITE_DB_PATH",
                dir.path().join("jobs.db").to_str().unwrap(),
            ),
        ],
        dir.path(),
    )
    .unwrap();
    let client = reqwest::Client::new();
    for name in FAMILIES {
        let reference = family_reference(name);
        let case = &reference["cases"][1];
        let response = client
            .post(engine.url("/predict"))
            .header("x-api-key", DEV_KEY)
            .json(&json!({"model": name, "version": "v1", "data": case["data"]}))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(status, 200, "{name}: {body}");
        assert_predict_rows(
            &body["result"],
            case,
            &format!("{name} served by the binary"),
        );
    }
}

/// `serve` on the demo repository with `envs`, in a fresh folder.
fn demo_engine(envs: &[(&str, &str)]) -> (EngineProcess, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("jobs.db");
    let models = dir.path().join("models");
    copy_demo_models(&models);
    let mut all = vec![
        ("MODELS_DIR", models.to_str().unwrap()),
        ("SQLITE_DB_PATH", db.to_str().unwrap()),
    ];
    all.extend_from_slice(envs);
    let engine = EngineProcess::start(binary(), &all, dir.path()).unwrap();
    (engine, dir)
}

async fn post(engine: &EngineProcess, body: &Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(engine.url("/predict"))
        .header("x-api-key", DEV_KEY)
        .json(body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// Waits (up to 60 s) until `GET /ready` says 200: warm-up has tried every model.
async fn wait_until_ready(engine: &EngineProcess) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let ready = reqwest::Client::new()
            .get(engine.url("/ready"))
            .send()
            .await;
        if ready.is_ok_and(|response| response.status() == 200) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not ready within 60 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn get(engine: &EngineProcess, path: &str) -> Value {
    reqwest::Client::new()
        .get(engine.url(path))
        .header("x-api-key", DEV_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn without_the_library_onnx_runtime_models_are_not_ready_saying_how_to_install_it_and_the_rest_serve()
 {
    // An empty ORT_DYLIB_PATH is unset: the default places, which a fresh folder lacks.
    let (engine, _dir) = demo_engine(&[("ORT_DYLIB_PATH", "")]);
    wait_until_ready(&engine).await;
    assert!(
        engine
            .stdout_lines()
            .iter()
            .any(|line| line.contains("run scripts/install-onnxruntime.sh")),
        "one warning at start says how to install it"
    );
    let models = get(&engine, "/models").await;
    let iris = models["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|model| model["name"] == "iris" && model["version"] == "v1")
        .unwrap();
    assert_eq!(iris["ready"], false, "{iris}");
    assert!(
        iris["error"]
            .as_str()
            .unwrap()
            .contains("ONNX Runtime is not installed"),
        "{iris}"
    );
    let (status, body) = post(
        &engine,
        &json!({"model": "iris", "version": "v1", "data": [5.1, 3.5, 1.4, 0.2]}),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("not_ready")),
        "{body}"
    );
    let (status, _) = post(
        &engine,
        &json!({"model": "echo", "version": "v1", "data": 1}),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn with_onnx_runtime_tract_the_models_tract_runs_serve_on_tract() {
    let (engine, _dir) = demo_engine(&[("ONNX_RUNTIME", "tract"), ("ORT_DYLIB_PATH", "")]);
    wait_until_ready(&engine).await;
    let details = get(&engine, "/models/iris/v1").await;
    assert_eq!(details["runtime"], "tract", "{details}");
    let (status, body) = post(
        &engine,
        &json!({"model": "iris", "version": "v1", "data": [5.1, 3.5, 1.4, 0.2]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["result"]["setosa"].as_f64().unwrap() > 0.9, "{body}");
    // A graph tract cannot run is not ready, naming the operators.
    let (status, body) = post(
        &engine,
        &json!({"model": "iris_svc", "version": "v1", "data": [5.1, 3.5, 1.4, 0.2]}),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("SVMClassifier"),
        "{body}"
    );
}
