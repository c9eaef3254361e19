use std::time::{Duration, Instant};

use inference_engine_core::job::{Job, JobStatus};
use inference_engine_core::ports::JobFilter;
use inference_engine_testkit::{ADMIN_KEY, DEV_KEY, TestApp, json_body};
use serde_json::json;

const KEY_A: &str = "tenant-a-key-0123456789";
const KEY_B: &str = "tenant-b-key-0123456789";

async fn predict_echo(app: &TestApp, key: &str) -> String {
    let response = app
        .post(
            "/predict",
            Some(key),
            &json!({"model": "echo", "version": "v1", "data": [1, 2]}),
        )
        .await;
    assert_eq!(response.status(), 200);
    json_body(response).await["job_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn every_sync_request_is_readable_as_a_succeeded_job() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .post(app.url("/predict"))
        .header("x-api-key", DEV_KEY)
        .header("x-request-id", "trace-7")
        .json(&json!({"model": "echo", "version": "v1", "data": [1, 2]}))
        .send()
        .await
        .unwrap();
    let job_id = json_body(response).await["job_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let job = json_body(app.get(&format!("/jobs/{job_id}"), Some(DEV_KEY)).await).await;
    assert_eq!(job["job_id"], job_id);
    assert_eq!(job["status"], "succeeded");
    assert_eq!(job["mode"], "sync");
    assert_eq!(job["model"], "echo");
    assert_eq!(job["version"], "v1");
    assert_eq!(job["tenant_id"], "tenant_dev");
    assert_eq!(job["request_id"], "trace-7");
    assert_eq!(job["result"], json!([1, 2]));
    assert_eq!(job["attempts"], 1);
    assert_eq!(job["max_attempts"], 1);
    assert!(job["error_type"].is_null());
    for field in ["created_at", "started_at", "finished_at"] {
        let at = job[field].as_str().unwrap();
        assert!(at.ends_with('Z'), "{field} = {at}");
        assert!(chrono_like(at), "{field} = {at}");
    }
}

/// RFC 3339 shape: `YYYY-MM-DDTHH:MM:SS(.frac)Z`.
fn chrono_like(at: &str) -> bool {
    at.len() >= 20 && &at[4..5] == "-" && &at[10..11] == "T" && &at[13..14] == ":"
}

#[tokio::test]
async fn failed_requests_are_recorded_with_their_error() {
    let app = TestApp::spawn().await;
    let response = app
        .post(
            "/predict",
            Some(DEV_KEY),
            &json!({"model": "sleep", "data": {"ms": "x"}}),
        )
        .await;
    assert_eq!(response.status(), 422);
    let job_id = response.headers()["x-job-id"].to_str().unwrap().to_owned();
    let job = json_body(app.get(&format!("/jobs/{job_id}"), Some(DEV_KEY)).await).await;
    assert_eq!(job["status"], "failed");
    assert_eq!(job["error_type"], "invalid_input");
    assert!(job["error_message"].as_str().unwrap().contains("ms"));
    assert!(job["result"].is_null());
}

#[tokio::test]
async fn jobs_are_isolated_between_tenants_and_visible_to_admins() {
    let app = TestApp::spawn_with(|settings| {
        settings.api_keys = Some(format!(
            "{KEY_A}:tenant_a:predict;{KEY_B}:tenant_b:predict;admin-key-0123456789:ops:admin"
        ));
    })
    .await;
    let job_id = predict_echo(&app, KEY_A).await;
    let path = format!("/jobs/{job_id}");

    assert_eq!(app.get(&path, Some(KEY_A)).await.status(), 200);
    let other = app.get(&path, Some(KEY_B)).await;
    assert_eq!(other.status(), 404, "existence is not revealed");
    assert_eq!(json_body(other).await["code"], "job_not_found");
    let admin = json_body(app.get(&path, Some("admin-key-0123456789")).await).await;
    assert_eq!(admin["tenant_id"], "tenant_a");
}

#[tokio::test]
async fn unknown_job_ids_are_404_and_malformed_ones_422() {
    let app = TestApp::spawn().await;
    let unknown = app
        .get(
            "/jobs/01890a5d-ac96-774b-bcce-b302099a8057",
            Some(ADMIN_KEY),
        )
        .await;
    assert_eq!(unknown.status(), 404);
    assert_eq!(json_body(unknown).await["code"], "job_not_found");
    let malformed = app.get("/jobs/not-a-uuid", Some(DEV_KEY)).await;
    assert_eq!(malformed.status(), 422);
    assert_eq!(json_body(malformed).await["code"], "invalid_request");
}

#[tokio::test]
async fn jobs_survive_a_restart_on_the_same_database() {
    let app = TestApp::spawn().await;
    let job_id = predict_echo(&app, DEV_KEY).await;
    let (settings, dir) = app.stop().await;

    let restarted = TestApp::spawn_on(settings).await;
    let job = restarted
        .get(&format!("/jobs/{job_id}"), Some(DEV_KEY))
        .await;
    assert_eq!(job.status(), 200);
    assert_eq!(json_body(job).await["result"], json!([1, 2]));
    drop(restarted);
    drop(dir);
}

/// Sends a 600 ms `sleep` predict with `request_id` and stops waiting after 100 ms, as a client
/// with a short timeout does: the server sees the connection close mid-request.
async fn abandon_a_slow_predict(app: &TestApp, request_id: &str) {
    let outcome = app
        .client
        .post(app.url("/predict"))
        .header("x-api-key", DEV_KEY)
        .header("x-request-id", request_id)
        .timeout(Duration::from_millis(100))
        .json(&json!({"model": "sleep", "version": "v1", "data": {"ms": 600}}))
        .send()
        .await;
    assert!(
        outcome.as_ref().is_err_and(|err| err.is_timeout()),
        "the client should have given up first: {outcome:?}"
    );
}

async fn job_with_request_id(app: &TestApp, request_id: &str) -> Option<Job> {
    let jobs = app
        .ctx
        .jobs
        .list(&JobFilter {
            tenant: None,
            status: None,
            model: None,
            before: None,
            limit: 100,
        })
        .await
        .unwrap();
    jobs.into_iter()
        .find(|job| job.request_id.as_str() == request_id)
}

fn assert_recorded_in_full(job: &Job) {
    assert_eq!(job.status, JobStatus::Succeeded, "{job:?}");
    assert_eq!(job.result, Some(json!({"ms": 600})));
    assert!(job.finished_at.is_some());
}

#[tokio::test]
async fn a_request_whose_client_left_is_still_recorded_once_its_model_finishes() {
    let app = TestApp::spawn().await;
    abandon_a_slow_predict(&app, "left-early-1").await;

    let deadline = Instant::now() + Duration::from_secs(10);
    let job = loop {
        if let Some(job) = job_with_request_id(&app, "left-early-1").await {
            break job;
        }
        assert!(
            Instant::now() < deadline,
            "the abandoned request never got its job record"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_recorded_in_full(&job);
}

#[tokio::test]
async fn shutdown_waits_for_the_model_runs_of_requests_whose_clients_left() {
    let app = TestApp::spawn().await;
    abandon_a_slow_predict(&app, "left-early-2").await;
    let (settings, dir) = app.stop().await;

    let restarted = TestApp::spawn_on(settings).await;
    let job = job_with_request_id(&restarted, "left-early-2")
        .await
        .expect("the job record was committed before the store closed");
    assert_recorded_in_full(&job);
    drop(restarted);
    drop(dir);
}
