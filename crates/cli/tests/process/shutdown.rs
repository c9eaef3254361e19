use std::sync::Arc;
use std::time::Duration;

use inference_engine_core::job::JobId;
use inference_engine_core::ports::JobStore;
use inference_engine_store::SqliteJobStore;
use inference_engine_testkit::EngineProcess;
use serde_json::json;
use tokio::sync::Mutex;

use crate::binary;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_requests_and_every_answered_job_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("jobs.db");
    let mut engine = EngineProcess::start(
        binary(),
        &[("SQLITE_DB_PATH", db.to_str().unwrap())],
        dir.path(),
    )
    .unwrap();
    let client = reqwest::Client::new();
    let answered: Arc<Mutex<Vec<String>>> = Arc::default();

    // A slow request that is still running when SIGTERM arrives.
    let slow = {
        let request = client
            .post(engine.url("/predict"))
            .header("x-api-key", "dev-key")
            .json(&json!({"model": "sleep", "data": {"ms": 700}}));
        tokio::spawn(async move { request.send().await })
    };
    // Steady load from 16 clients until the server stops answering.
    let load: Vec<_> = (0..16)
        .map(|_| {
            let client = client.clone();
            let url = engine.url("/predict");
            let answered = Arc::clone(&answered);
            tokio::spawn(async move {
                loop {
                    let sent = client
                        .post(&url)
                        .header("x-api-key", "dev-key")
                        .json(&json!({"model": "echo", "version": "v1", "data": "x"}))
                        .send()
                        .await;
                    let Ok(response) = sent else { break };
                    if response.status() != 200 {
                        break;
                    }
                    let Ok(body) = response.json::<serde_json::Value>().await else {
                        break;
                    };
                    answered
                        .lock()
                        .await
                        .push(body["job_id"].as_str().unwrap_or_default().to_owned());
                }
            })
        })
        .collect();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while answered.lock().await.len() < 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "load never got going"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    engine.terminate().unwrap();

    let slow = slow
        .await
        .unwrap()
        .expect("the in-flight request is answered");
    assert_eq!(
        slow.status(),
        200,
        "in-flight requests finish during shutdown"
    );
    let slow_job = slow.json::<serde_json::Value>().await.unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    for client in load {
        client.await.unwrap();
    }
    let status = tokio::task::spawn_blocking(move || engine.wait(Duration::from_secs(30)))
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "exit code 0 after SIGTERM, got {status}");

    let store = SqliteJobStore::open(&db).await.unwrap();
    let mut answered = answered.lock().await.clone();
    answered.push(slow_job);
    assert!(answered.len() > 200);
    for job_id in answered {
        let id: JobId = job_id.parse().unwrap();
        assert!(
            store.get(id).await.unwrap().is_some(),
            "answered job {job_id} is missing from the store"
        );
    }
}

/// The version `echo` is routed to (no version in the request).
async fn routed_echo_version(client: &reqwest::Client, engine: &EngineProcess) -> String {
    let response = client
        .post(engine.url("/predict"))
        .header("x-api-key", "dev-key")
        .json(&json!({"model": "echo", "data": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.headers()["x-model-version"]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_engine_toml_and_an_invalid_file_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("engine.toml");
    let routing =
        |version: &str| format!("[routing.echo]\nstrategy = \"static\"\nversion = \"{version}\"\n");
    std::fs::write(&config, routing("v2")).unwrap();
    let db = dir.path().join("jobs.db");
    let mut engine = EngineProcess::start(
        binary(),
        &[("SQLITE_DB_PATH", db.to_str().unwrap())],
        dir.path(),
    )
    .unwrap();
    let client = reqwest::Client::new();
    assert_eq!(routed_echo_version(&client, &engine).await, "v2");

    // An invalid file is logged and ignored: routing stays on v2.
    std::fs::write(&config, "[routing.echo]\nstrategy = \"sideways\"\n").unwrap();
    engine.hang_up().unwrap();
    assert!(
        engine
            .wait_for_line("configuration reload rejected", Duration::from_secs(10))
            .await,
        "the rejection was never logged"
    );
    assert_eq!(routed_echo_version(&client, &engine).await, "v2");

    std::fs::write(&config, routing("v1")).unwrap();
    engine.hang_up().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while routed_echo_version(&client, &engine).await != "v1" {
        assert!(
            std::time::Instant::now() < deadline,
            "SIGHUP did not reload"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    engine.terminate().unwrap();
    assert!(engine.wait(Duration::from_secs(30)).unwrap().success());
}

/// `SHUTDOWN_TIMEOUT_S` bounds the whole drain, not each of its steps: a request still in
/// flight, the prediction of a client that left and a running async job, each of which would
/// outlast it, still end within it (a supervisor's stop timeout set a little above it holds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_timeout_bounds_the_whole_drain() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("jobs.db");
    let mut engine = EngineProcess::start(
        binary(),
        &[
            ("SQLITE_DB_PATH", db.to_str().unwrap()),
            ("SHUTDOWN_TIMEOUT_S", "2"),
            ("CPU_EXECUTOR_WORKERS", "4"),
        ],
        dir.path(),
    )
    .unwrap();
    let client = reqwest::Client::new();
    let sleep = json!({"model": "sleep", "data": {"ms": 20_000}});
    let in_flight = {
        let request = client
            .post(engine.url("/predict"))
            .header("x-api-key", "dev-key")
            .json(&sleep);
        tokio::spawn(async move { request.send().await })
    };
    let left = client
        .post(engine.url("/predict"))
        .header("x-api-key", "dev-key")
        .timeout(Duration::from_millis(300))
        .json(&sleep)
        .send()
        .await;
    assert!(left.is_err(), "the client gave up: {left:?}");
    let submitted = client
        .post(engine.url("/predict/async"))
        .header("x-api-key", "dev-key")
        .json(&sleep)
        .send()
        .await
        .unwrap();
    assert_eq!(submitted.status(), 202);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = client
            .get(engine.url("/metrics"))
            .header("x-api-key", "admin-key")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if metrics.contains("executor_inflight{device=\"cpu\"} 3") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the three runs never started:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    engine.terminate().unwrap();
    let signalled = std::time::Instant::now();
    let status = tokio::task::spawn_blocking(move || engine.wait(Duration::from_secs(30)))
        .await
        .unwrap()
        .unwrap();
    let drained_in = signalled.elapsed();
    assert!(status.success(), "exit code 0 after SIGTERM, got {status}");
    assert!(
        drained_in < Duration::from_millis(3_500),
        "the drain took {drained_in:?} with SHUTDOWN_TIMEOUT_S=2"
    );
    in_flight.abort();
}
