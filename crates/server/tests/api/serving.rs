//! How requests are served under `engine.toml`: routing, SLA timeouts, execution
//! pools, dynamic batching, and reloading the configuration.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use inference_engine_app::settings::OnnxRuntimeChoice;
use inference_engine_testkit::{ADMIN_KEY, DEV_KEY, TestApp, demo_model, json_body};
use serde_json::json;

use crate::models::{Repository, config_file};

async fn app_with_config(text: &str) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), text);
    let app = TestApp::spawn_with_demo_models(|settings| {
        settings.config = Some(config);
    })
    .await;
    (app, dir)
}

/// The version the router picks for `echo`, with the given `X-Request-ID` if any.
async fn routed_version(app: &TestApp, request_id: Option<&str>) -> String {
    let mut request = app
        .client
        .post(app.url("/predict"))
        .header("x-api-key", DEV_KEY)
        .json(&json!({"model": "echo", "data": 1}));
    if let Some(id) = request_id {
        request = request.header("x-request-id", id);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    let header = response.headers()["x-model-version"]
        .to_str()
        .unwrap()
        .to_owned();
    let body = json_body(response).await;
    assert_eq!(body["version"], header.as_str());
    header
}

#[tokio::test]
async fn ab_routing_is_sticky_per_request_id_and_follows_the_weights() {
    let (app, _dir) =
        app_with_config("[routing.echo]\nstrategy = \"ab\"\nvariants = { v1 = 70, v2 = 30 }\n")
            .await;
    let mut counts: HashMap<String, u32> = HashMap::new();
    for _ in 0..2_000 {
        let id = uuid_like();
        let version = routed_version(&app, Some(&id)).await;
        *counts.entry(version).or_default() += 1;
    }
    let v1 = f64::from(counts["v1"]) / 20.0;
    assert!(
        (65.0..=75.0).contains(&v1),
        "v1 got {v1}% of 2,000: {counts:?}"
    );

    for id in ["user-1", "user-2", "a-much-longer-request-id-0123456789"] {
        let first = routed_version(&app, Some(id)).await;
        for _ in 0..5 {
            assert_eq!(routed_version(&app, Some(id)).await, first, "{id} moved");
        }
    }
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("req-{nanos:x}-{}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

#[tokio::test]
async fn canary_percent_10_sends_10_percent_to_the_canary() {
    let (app, _dir) = app_with_config(
        "[routing.echo]\nstrategy = \"canary\"\nprimary = \"v1\"\ncanary = \"v2\"\ncanary_percent = 10\n",
    )
    .await;
    let mut canary = 0u32;
    for _ in 0..2_000 {
        // No X-Request-ID: the split is random.
        if routed_version(&app, None).await == "v2" {
            canary += 1;
        }
    }
    let percent = f64::from(canary) / 20.0;
    assert!((7.0..=13.0).contains(&percent), "canary got {percent}%");
}

#[tokio::test]
async fn static_routing_and_async_requests_follow_the_same_rules() {
    let (app, _dir) =
        app_with_config("[routing.echo]\nstrategy = \"static\"\nversion = \"v2\"\n").await;
    assert_eq!(routed_version(&app, None).await, "v2");
    let response = app
        .post(
            "/predict/async",
            Some(DEV_KEY),
            &json!({"model": "echo", "data": 1}),
        )
        .await;
    assert_eq!(response.status(), 202);
    let job_id = json_body(response).await["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let job = json_body(app.get(&format!("/jobs/{job_id}"), Some(DEV_KEY)).await).await;
    assert_eq!(job["version"], "v2");
}

#[tokio::test]
async fn routing_never_picks_a_version_that_failed_to_load() {
    let repository = tempfile::tempdir().unwrap();
    for version in ["v1", "v2"] {
        let target = repository.path().join("iris").join(version);
        std::fs::create_dir_all(&target).unwrap();
        let source = demo_model(&format!("iris/{version}"));
        std::fs::copy(source.join("model.toml"), target.join("model.toml")).unwrap();
        std::fs::copy(source.join("model.onnx"), target.join("model.onnx")).unwrap();
    }
    std::fs::write(repository.path().join("iris/v2/model.onnx"), b"garbage").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(
        dir.path(),
        "[routing.iris]\nstrategy = \"ab\"\nvariants = { v1 = 50, v2 = 50 }\n",
    );
    let app = TestApp::spawn_with(|settings| {
        settings.models_dir = repository.path().to_owned();
        settings.config = Some(config);
    })
    .await;
    for _ in 0..40 {
        let response = app
            .post(
                "/predict",
                Some(DEV_KEY),
                &json!({"model": "iris", "data": [5.1, 3.5, 1.4, 0.2]}),
            )
            .await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-model-version"], "v1");
    }
}

#[tokio::test]
async fn an_sla_of_200_ms_releases_the_caller_at_the_deadline_with_504() {
    let (app, _dir) = app_with_config("[sla.timeouts]\n\"sleep:v1\" = 0.2\n").await;
    let started = Instant::now();
    let response = app
        .post(
            "/predict",
            Some(DEV_KEY),
            // A longer timeout_ms cannot extend the SLA.
            &json!({"model": "sleep", "data": {"ms": 5_000}, "timeout_ms": 10_000}),
        )
        .await;
    let elapsed = started.elapsed();
    assert_eq!(response.status(), 504);
    // Released at the deadline, not when the 5 s run ends; which limit applied is in the
    // message (a tight wall-clock bound fails on a loaded machine).
    assert!(
        elapsed < Duration::from_secs(4),
        "answered after {elapsed:?}"
    );
    let job_id = response.headers()["x-job-id"].to_str().unwrap().to_owned();
    let body = json_body(response).await;
    assert_eq!(body["code"], "inference_timeout");
    assert_eq!(body["detail"], "inference did not finish within 200 ms");
    let job = json_body(app.get(&format!("/jobs/{job_id}"), Some(DEV_KEY)).await).await;
    assert_eq!(job["status"], "failed");
    assert_eq!(job["error_type"], "timeout");

    // A shorter timeout_ms does shorten it.
    let started = Instant::now();
    let response = app
        .post(
            "/predict",
            Some(DEV_KEY),
            &json!({"model": "sleep", "data": {"ms": 5_000}, "timeout_ms": 50}),
        )
        .await;
    assert_eq!(response.status(), 504);
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(
        json_body(response).await["detail"],
        "inference did not finish within 50 ms"
    );
}

#[tokio::test]
async fn a_model_runs_on_the_pool_its_policy_names() {
    // `sleep` gets a pool of one thread and no spare queue room; `echo` stays on `cpu`.
    let (app, _dir) = app_with_config(
        "[execution]\npools = { slow = 1 }\n[execution.policy]\n\"sleep:v1\" = \"slow\"\n",
    )
    .await;
    let serving = app.ctx.registry.serving();
    let slow = serving
        .executors
        .pools()
        .find(|pool| pool.name() == "slow")
        .unwrap()
        .clone();
    assert_eq!(slow.threads(), 1);
    let busy = app.spawn_post(
        "/predict",
        DEV_KEY,
        &json!({"model": "sleep", "data": {"ms": 1_000}}),
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while slow.in_flight() == 0 {
        assert!(
            Instant::now() < deadline,
            "sleep never ran on the slow pool"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The cpu pool is free: echo answers while sleep holds the slow pool.
    let echo = app
        .post(
            "/predict",
            Some(DEV_KEY),
            &json!({"model": "echo", "version": "v1", "data": 1}),
        )
        .await;
    assert_eq!(echo.status(), 200);
    assert_eq!(busy.await.unwrap().0, 200);
}

#[tokio::test]
async fn batched_answers_are_identical_to_unbatched_ones_on_onnx_runtime() {
    batched_answers_are_identical_to_unbatched_ones(OnnxRuntimeChoice::Manifest).await;
}

#[tokio::test]
async fn batched_answers_are_identical_to_unbatched_ones_on_tract() {
    batched_answers_are_identical_to_unbatched_ones(OnnxRuntimeChoice::Tract).await;
}

async fn batched_answers_are_identical_to_unbatched_ones(runtime: OnnxRuntimeChoice) {
    // The same MLP twice: batching (max 32 rows) and not.
    let repository = Repository::new();
    repository
        // A long delay so the 48 concurrent requests share runs however slowly they arrive.
        .copy(
            "mlp/v1",
            "mlp_batched/v1",
            "[batching]\nmax_batch_size = 32\nmax_delay_ms = 500\n",
        )
        .copy("mlp/v1", "mlp_single/v1", "unbatched");
    let app = TestApp::spawn_with(|settings| {
        settings.models_dir = repository.path();
        settings.onnx_runtime = runtime;
    })
    .await;
    let expected_runtime = match runtime {
        OnnxRuntimeChoice::Manifest => "onnxruntime",
        OnnxRuntimeChoice::Tract => "tract",
    };
    let details = app.get("/models/mlp_batched/v1", Some(DEV_KEY)).await;
    assert_eq!(json_body(details).await["runtime"], expected_runtime);
    let inputs: Vec<Vec<f64>> = (0..48)
        .map(|row| {
            (0..784)
                .map(|column| f64::from((row * 31 + column * 7) % 97) / 97.0 - 0.5)
                .collect()
        })
        .collect();
    // Unbatched: one request at a time, each its own model run.
    let mut unbatched = Vec::new();
    for input in &inputs {
        let body = json!({"model": "mlp_single", "version": "v1", "data": input});
        unbatched.push(app.post_ok("/predict", &body).await["result"].clone());
    }
    let runs_before = batch_runs(&app).await;

    // Batched: concurrent single requests go through the batcher.
    let requests: Vec<_> = inputs
        .iter()
        .map(|input| {
            app.spawn_post(
                "/predict",
                DEV_KEY,
                &json!({"model": "mlp_batched", "version": "v1", "data": input}),
            )
        })
        .collect();
    for (row, request) in requests.into_iter().enumerate() {
        let (status, body) = request.await.unwrap();
        assert_eq!(status, 200, "{body}");
        let batched = &body["result"];
        assert_eq!(batched["label"], unbatched[row]["label"], "row {row}");
        let (a, b) = (
            batched["probabilities"].as_array().unwrap(),
            unbatched[row]["probabilities"].as_array().unwrap(),
        );
        for (x, y) in a.iter().zip(b) {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!((x - y).abs() <= 1e-6, "row {row}: {x} vs {y}");
        }
    }
    // The 48 concurrent requests really shared runs.
    let runs = batch_runs(&app).await - runs_before;
    assert!((2.0..48.0).contains(&runs), "{runs} runs for 48 requests");
}

/// Model runs of `mlp_batched` so far (the count of its `batch_size` histogram).
async fn batch_runs(app: &TestApp) -> f64 {
    let text = app
        .get("/metrics", Some(ADMIN_KEY))
        .await
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|line| {
            line.starts_with("batch_size_count{") && line.contains(r#"model="mlp_batched""#)
        })
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn reload_rejects_an_invalid_engine_toml_and_keeps_the_running_configuration() {
    let (app, dir) =
        app_with_config("[routing.echo]\nstrategy = \"static\"\nversion = \"v2\"\n").await;
    let path = dir.path().join("engine.toml");

    std::fs::write(
        &path,
        "[routing.echo]\nstrategy = \"ab\"\nvariants = { v1 = 60, v2 = 30 }\n",
    )
    .unwrap();
    let response = app.post("/admin/reload", Some(ADMIN_KEY), &json!({})).await;
    assert_eq!(response.status(), 400);
    let body = json_body(response).await;
    assert_eq!(body["code"], "invalid_configuration");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("routing.echo.variants"),
        "{body}"
    );
    assert_eq!(routed_version(&app, None).await, "v2");

    std::fs::write(&path, "[execution.policy]\n\"echo:v1\" = \"tpu\"\n").unwrap();
    let response = app.post("/admin/reload", Some(ADMIN_KEY), &json!({})).await;
    assert_eq!(response.status(), 400);
    let detail = json_body(response).await["detail"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(detail.contains("tpu"), "{detail}");
    assert_eq!(routed_version(&app, None).await, "v2");

    std::fs::write(
        &path,
        "[routing.echo]\nstrategy = \"static\"\nversion = \"v1\"\n",
    )
    .unwrap();
    let response = app.post("/admin/reload", Some(ADMIN_KEY), &json!({})).await;
    assert_eq!(response.status(), 200);
    assert_eq!(json_body(response).await["reloaded"], true);
    assert_eq!(routed_version(&app, None).await, "v1");
}
