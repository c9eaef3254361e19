//! Async jobs through the HTTP API, each case on both backends: SQLite with the in-process
//! queue, and PostgreSQL with Redis and a worker.

use std::time::{Duration, Instant};

use inference_engine_testkit::{ADMIN_KEY, Backend, DEV_KEY, TestApp, json_body};
use serde_json::{Value, json};

/// Runs each case twice: `local` (SQLite, in-process queue) and `postgres_and_redis`.
macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        $(
            mod $case {
                use inference_engine_testkit::Backend;

                #[tokio::test]
                async fn local() {
                    super::$case(Backend::Local).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres_and_redis() {
                    super::$case(Backend::Distributed).await;
                }
            }
        )*
    };
}

on_both_backends!(
    an_async_job_is_accepted_then_runs_to_success,
    an_async_batch_returns_its_results_in_order,
    async_requests_are_validated_and_routed_like_sync_ones,
    the_same_idempotency_key_and_body_return_the_original_job,
    jobs_of_another_tenant_are_404_on_every_job_endpoint,
    a_pending_job_can_be_cancelled_and_never_runs,
    a_running_job_can_be_cancelled_and_its_late_result_is_discarded,
    cancelling_a_running_job_frees_its_worker_for_the_next_job,
    cancelling_a_finished_job_is_409,
    timeouts_are_retried_with_attempts_counted_until_max_attempts,
    model_errors_are_not_retried,
    the_job_list_is_newest_first_filtered_and_paginated,
    admins_list_any_tenants_jobs_and_other_keys_only_their_own,
);

const KEY_A: &str = "tenant-a-key-0123456789";
const KEY_B: &str = "tenant-b-key-0123456789";

/// Polls the job until `done` holds, failing after a deadline.
async fn wait_for(app: &TestApp, key: &str, job_id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let job = json_body(
            app.get(&format!("/predict/async/{job_id}"), Some(key))
                .await,
        )
        .await;
        if done(&job) {
            return job;
        }
        assert!(
            Instant::now() < deadline,
            "job never reached the expected state: {job}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn is_terminal(job: &Value) -> bool {
    matches!(
        job["status"].as_str(),
        Some("succeeded" | "failed" | "cancelled")
    )
}

async fn submit(app: &TestApp, key: &str, body: &Value) -> String {
    let response = app.post("/predict/async", Some(key), body).await;
    assert_eq!(response.status(), 202);
    json_body(response).await["job_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn an_async_job_is_accepted_then_runs_to_success(backend: Backend) {
    let app = TestApp::spawn_on_backend(backend, |_| {}).await;
    let response = app
        .post(
            "/predict/async",
            Some(DEV_KEY),
            &json!({"model": "echo", "version": "v2", "data": {"x": [1, 2]}}),
        )
        .await;
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let body = json_body(response).await;
    let job_id = body["job_id"].as_str().unwrap();
    assert_eq!(body["status"], "pending");
    assert_eq!(location, format!("/predict/async/{job_id}"));

    let job = wait_for(&app, DEV_KEY, job_id, is_terminal).await;
    assert_eq!(job["status"], "succeeded");
    assert_eq!(job["mode"], "async");
    assert_eq!(job["version"], "v2");
    assert_eq!(job["result"], json!({"x": [1, 2]}));
    assert_eq!(job["attempts"], 1);
    assert_eq!(job["max_attempts"], 3);
    assert!(job["started_at"].is_string() && job["finished_at"].is_string());
    // The same job through the generic endpoint.
    let same = json_body(app.get(&format!("/jobs/{job_id}"), Some(DEV_KEY)).await).await;
    assert_eq!(same, job);
}

async fn an_async_batch_returns_its_results_in_order(backend: Backend) {
    let app = TestApp::spawn_on_backend(backend, |_| {}).await;
    let response = app
        .post(
            "/predict/async/batch",
            Some(DEV_KEY),
            &json!({"model": "echo", "version": "v1", "items": [1, "two", {"three": 3}]}),
        )
        .await;
    assert_eq!(response.status(), 202);
    let job_id = json_body(response).await["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let job = wait_for(&app, DEV_KEY, &job_id, is_terminal).await;
    assert_eq!(job["result"], json!([1, "two", {"three": 3}]));
}

async fn async_requests_are_validated_and_routed_like_sync_ones(backend: Backend) {
    let app = TestApp::spawn_on_backend(backend, |_| {}).await;
    let ambiguous = app
        .post(
            "/predict/async",
            Some(DEV_KEY),
            &json!({"model": "echo", "data": 1}),
        )
        .await;
    assert_eq!(ambiguous.status(), 422);
    assert_eq!(json_body(ambiguous).await["code"], "version_required");

    let unknown = app
        .post(
            "/predict/async",
            Some(DEV_KEY),
            &json!({"model": "nope", "data": 1}),
        )
        .await;
    assert_eq!(unknown.status(), 404);

    for attempts in [0, 11] {
        let response = app
            .post(
                "/predict/async",
                Some(DEV_KEY),
                &json!({"model": "sleep", "data": {"ms": 1}, "max_attempts": attempts}),
            )
            .await;
        assert_eq!(response.status(), 422, "max_attempts {attempts}");
    }
    let routed = app
        .post(
            "/predict/async",
            Some(DEV_KEY),
            &json!({"model": "sleep", "data": {"ms": 1}}),
        )
        .await;
    assert_eq!(routed.headers()["x-model-version"], "v1");
}

async fn the_same_idempotency_key_and_body_return_the_original_job(backend: Backend) {
    let app = TestApp::spawn_on_backend(backend, |settings| {
        settings.api_keys = Some(format!("{KEY_A}:tenant_a:predict;{KEY_B}:tenant_b:predict"));
    })
    .await;
    let body = json!({"model": "echo", "version": "v1", "data": "once"});
    let send = |key: &'static str, idempotency: &'static str, body: Value| {
        let request = app
            .client
            .post(app.url("/predict/async"))
            .header("x-api-key", key)
            .header("idempotency-key", idempotency)
            .json(&body);
        async move { request.send().await.unwrap() }
    };

    let first = send(KEY_A, "order-1", body.clone()).await;
    assert_eq!(first.status(), 202);
    let first_id = json_body(first).await["job_id"].clone();
    let replay = send(KEY_A, "order-1", body.clone()).await;
    assert_eq!(replay.status(), 202);
    assert_eq!(json_body(replay).await["job_id"], first_id);

    let conflict = send(
        KEY_A,
        "order-1",
        json!({"model": "echo", "version": "v1", "data": "twice"}),
    )
    .await;
    assert_eq!(conflict.status(), 409);
    assert_eq!(json_body(conflict).await["code"], "idempotency_conflict");

    let other_tenant = send(KEY_B, "order-1", body).await;
    assert_eq!(other_tenant.status(), 202);
    assert_ne!(json_body(other_tenant).await["job_id"], first_id);
}

async fn jobs_of_another_tenant_are_404_on_every_job_endpoint(backend: Backend) {
    let app = TestApp::spawn_on_backend(backend, |settings| {
        settings.api_keys = Some(format!(
            "{KEY_A}:tenant_a:predict;{KEY_B}:tenant_b:predict;{ADMIN_KEY}-0123456789:ops:admin"
        ));
    })
    .await;
    let job_id = submit(
        &app,
        KEY_A,
        &json!({"model": "echo", "version": "v1", "data": 1}),
    )
    .await;
    for path in [
        format!("/predict/async/{job_id}"),
        format!("/jobs/{job_id}"),
    ] {
        let response = app.get(&path, Some(KEY_B)).await;
        assert_eq!(response.status(), 404, "{path}");
        assert_eq!(json_body(response).await["code"], "job_not_found");
    }
    let cancel = app
        .post(&format!("/jobs/{job_id}/cancel"), Some(KEY_B), &json!({}))
        .await;
    assert_eq!(cancel.status(), 404);
    let listed = json_body(app.get("/jobs", Some(KEY_B)).await).await;
    assert_eq!(listed["jobs"], json!([]));
    let admin = app
        .get(
            &format!("/jobs/{job_id}"),
            Some(&format!("{ADMIN_KEY}-0123456789")),
        )
        .await;
    assert_eq!(admin.status(), 200);
}

async fn a_pending_job_can_be_cancelled_and_never_runs(backend: Backend) {
    // One loop taking one job at a time, so the second job waits behind the first.
    let app = TestApp::spawn_on_backend(backend, |settings| {
        settings.worker_concurrency = Some(1);
        settings.worker_batch = 1;
    })
    .await;
    let blocker = submit(
        &app,
        DEV_KEY,
        &json!({"model": "sleep", "data": {"ms": 400}}),
    )
    .await;
    wait_for(&app, DEV_KEY, &blocker, |job| job["status"] == "running").await;
    let queued = submit(
        &app,
        DEV_KEY,
        &json!({"model": "echo", "version": "v1", "data": 1}),
    )
    .await;

    let cancelled = app
        .post(&format!("/jobs/{queued}/cancel"), Some(DEV_KEY), &json!({}))
        .await;
    assert_eq!(cancelled.status(), 200);
    let view = json_body(cancelled).await;
    assert_eq!(view["status"], "cancelled");
    assert_eq!(view["error_type"], "cancelled");

    // Once a later job has run, the single loop has passed the cancelled one.
    let later = submit(
        &app,
        DEV_KEY,
        &json!({"model": "echo", "version": "v1", "data": 2}),
    )
    .await;
    wait_for(&app, DEV_KEY, &later, is_terminal).await;
    let job = json_body(app.get(&format!("/jobs/{queued}"), Some(DEV_KEY)).await).await;
    assert_eq!(job["status"], "cancelled");
    assert_eq!(job["attempts"], 0, "it never ran");
}

async fn a_running_job_can_be_cancelled_and_its_late_result_is_discarded(backend: Backend) {
    let app = TestApp::spawn_on_backend(backend, |settings| {
        settings.worker_concurrency = Some(1);
        settings.worker_batch = 1;
    })
    .await;
    let job_id = submit(
        &app,
        DEV_KEY,
        &json!({"model": "sleep", "data": {"ms": 300}}),
    )
    .await;
    wait_for(&app, DEV_KEY, &job_id, |job| job["status"] == "running").await;
    let cancelled = app
        .post(&format!("/jobs/{job_id}/cancel"), Some(DEV_KEY), &json!({}))
        .await;
    assert_eq!(cancelled.status(), 200);

    let later = submit(
        &app,
        DEV_KEY,
        &json!({"model": "echo", "version": "v1", "data": 2}),
    )
    .await;
    wait_for(&app, DEV_KEY, &later, is_terminal).await;
    let job = json_body(app.get(&format!("/jobs/{job_id}"), Some(DEV_KEY)).await).await;
    assert_eq!(job["status"], "cancelled");
    assert!(job["result"].is_null());
}

async fn cancelling_a_running_job_frees_its_worker_for_the_next_job(backend: Backend) {
    // One loop, one job at a time: the next job can only run once the cancelled one lets go.
    let app = TestApp::spawn_on_backend(backend, |settings| {
        settings.worker_concurrency = Some(1);
        settings.worker_batch = 1;
    })
    .await;
    // The longest sleep there is (60 s), four times `wait_for`'s deadline: the next job
    // finishing within that deadline shows the cancel stopped it.
    let job_id = submit(
        &app,
        DEV_KEY,
        &json!({"model": "sleep", "data": {"ms": 60_000}}),
    )
    .await;
    wait_for(&app, DEV_KEY, &job_id, |job| job["status"] == "running").await;
    let cancelled = app
        .post(&format!("/jobs/{job_id}/cancel"), Some(DEV_KEY), &json!({}))
        .await;
    assert_eq!(cancelled.status(), 200);

    let next = submit(
        &app,
        DEV_KEY,
        &json!({"model": "echo", "version": "v1", "data": 3}),
    )
    .await;
    let next = wait_for(&app, DEV_KEY, &next, is_terminal).await;
    assert_eq!(next["status"], "succeeded", "{next}");
    let job = json_body(app.get(&format!("/jobs/{job_id}"), Some(DEV_KEY)).await).await;
    assert_eq!(job["status"], "cancelled");
    assert_eq!(job["error_type"], "cancelled");
}

async fn cancelling_a_finished_job_is_409(backend: Backend) {
    let app = TestApp::spawn_on_backend(backend, |_| {}).await;
    let job_id = submit(
        &app,
        DEV_KEY,
        &json!({"model": "echo", "version": "v1", "data": 1}),
    )
    .await;
    wait_for(&app, DEV_KEY, &job_id, is_terminal).await;
    let response = app
        .post(&format!("/jobs/{job_id}/cancel"), Some(DEV_KEY), &json!({}))
        .await;
    assert_eq!(response.status(), 409);
    assert_eq!(json_body(response).await["code"], "job_not_cancellable");
}

async fn timeouts_are_retried_with_attempts_counted_until_max_attempts(backend: Backend) {
    let app = TestApp::spawn_on_backend(backend, |settings| settings.jobs_retry_base_ms = 10).await;
    let job_id = submit(
        &app,
        DEV_KEY,
        &json!({"model": "sleep", "data": {"ms": 300}, "timeout_ms": 30, "max_attempts": 2}),
    )
    .await;
    let job = wait_for(&app, DEV_KEY, &job_id, is_terminal).await;
    assert_eq!(job["status"], "failed");
    assert_eq!(job["error_type"], "timeout");
    assert_eq!(job["attempts"], 2);
}

async fn model_errors_are_not_retried(backend: Backend) {
    let app = TestApp::spawn_on_backend(backend, |settings| settings.jobs_retry_base_ms = 10).await;
    let job_id = submit(
        &app,
        DEV_KEY,
        &json!({"model": "sleep", "data": {"ms": "x"}}),
    )
    .await;
    let job = wait_for(&app, DEV_KEY, &job_id, is_terminal).await;
    assert_eq!(job["status"], "failed");
    assert_eq!(job["error_type"], "invalid_input");
    assert_eq!(job["attempts"], 1);
}

async fn the_job_list_is_newest_first_filtered_and_paginated(backend: Backend) {
    let app = TestApp::spawn_on_backend(backend, |_| {}).await;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(
            submit(
                &app,
                DEV_KEY,
                &json!({"model": "echo", "version": "v1", "data": n}),
            )
            .await,
        );
    }
    let failed = submit(
        &app,
        DEV_KEY,
        &json!({"model": "sleep", "data": {"ms": "x"}}),
    )
    .await;
    for id in ids.iter().chain([&failed]) {
        wait_for(&app, DEV_KEY, id, is_terminal).await;
    }

    let page = json_body(app.get("/jobs?model=echo&limit=3", Some(DEV_KEY)).await).await;
    let listed: Vec<&str> = page["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|job| job["job_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [&ids[4], &ids[3], &ids[2]]);
    let cursor = page["next_cursor"].as_str().unwrap();
    let rest = json_body(
        app.get(
            &format!("/jobs?model=echo&limit=3&cursor={cursor}"),
            Some(DEV_KEY),
        )
        .await,
    )
    .await;
    let listed: Vec<&str> = rest["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|job| job["job_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [&ids[1], &ids[0]]);
    assert!(rest["next_cursor"].is_null());

    let failures = json_body(app.get("/jobs?status=failed", Some(DEV_KEY)).await).await;
    assert_eq!(failures["jobs"][0]["job_id"], failed);
    assert_eq!(failures["jobs"].as_array().unwrap().len(), 1);

    for bad in [
        "/jobs?status=done",
        "/jobs?limit=0",
        "/jobs?cursor=nope",
        "/jobs?colour=red",
    ] {
        assert_eq!(app.get(bad, Some(DEV_KEY)).await.status(), 422, "{bad}");
    }
}

/// A job as a crashed process leaves it: committed but never enqueued, or claimed and running.
fn left_behind(status: inference_engine_core::job::JobStatus) -> inference_engine_core::job::Job {
    use inference_engine_core::auth::TenantId;
    use inference_engine_core::job::{Job, JobMode, Payload, RequestId};
    use inference_engine_core::model::{ModelName, ModelVersion};
    let now = chrono::Utc::now();
    let running = status == inference_engine_core::job::JobStatus::Running;
    Job {
        status,
        version: Some(ModelVersion::parse("v1").unwrap()),
        input: Some(Payload::Single(json!("survivor"))),
        attempts: u32::from(running),
        max_attempts: 3,
        started_at: running.then_some(now),
        heartbeat_at: running.then_some(now),
        ..Job::new(
            JobMode::Async,
            TenantId::parse("tenant_dev").unwrap(),
            RequestId::parse("before-the-crash").unwrap(),
            ModelName::parse("echo").unwrap(),
            now,
        )
    }
}

#[tokio::test]
async fn jobs_left_pending_or_running_by_a_previous_process_are_resumed_at_start() {
    use inference_engine_core::job::JobStatus;
    let app = TestApp::spawn().await;
    let pending = left_behind(JobStatus::Pending);
    let running = left_behind(JobStatus::Running);
    // Written straight to the store, as if the process died before enqueueing / finishing.
    app.ctx
        .jobs
        .insert(vec![pending.clone(), running.clone()])
        .await
        .unwrap();
    let (settings, dir) = app.stop().await;

    let restarted = TestApp::spawn_on(settings).await;
    for job in [&pending, &running] {
        let view = wait_for(&restarted, DEV_KEY, &job.id.to_string(), is_terminal).await;
        assert_eq!(view["status"], "succeeded");
        assert_eq!(view["result"], json!("survivor"));
    }
    let resumed = json_body(
        restarted
            .get(&format!("/jobs/{}", running.id), Some(DEV_KEY))
            .await,
    )
    .await;
    assert_eq!(resumed["attempts"], 2, "the lost attempt is counted");
    drop(restarted);
    drop(dir);
}

async fn admins_list_any_tenants_jobs_and_other_keys_only_their_own(backend: Backend) {
    const ADMIN: &str = "ops-admin-key-0123456789";
    let app = TestApp::spawn_on_backend(backend, |settings| {
        settings.api_keys = Some(format!(
            "{KEY_A}:tenant_a:predict;{KEY_B}:tenant_b:predict;{ADMIN}:ops:admin"
        ));
    })
    .await;
    let mut ids = Vec::new();
    for key in [KEY_A, KEY_B, KEY_A] {
        let id = submit(
            &app,
            key,
            &json!({"model": "echo", "version": "v1", "data": 1}),
        )
        .await;
        wait_for(&app, key, &id, is_terminal).await;
        ids.push(id);
    }
    let listed = |body: &Value| -> Vec<(String, String)> {
        body["jobs"]
            .as_array()
            .unwrap_or_else(|| panic!("{body}"))
            .iter()
            .map(|job| {
                (
                    job["job_id"].as_str().unwrap().to_owned(),
                    job["tenant_id"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let get = |path: &'static str, key: &'static str| {
        let request = app.get(path, Some(key));
        async move {
            let response = request.await;
            (response.status().as_u16(), json_body(response).await)
        }
    };
    let a = |index: usize| (ids[index].clone(), "tenant_a".to_owned());
    let b = (ids[1].clone(), "tenant_b".to_owned());

    let (status, body) = get("/jobs?tenant=tenant_a", ADMIN).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(listed(&body), [a(2), a(0)]);
    let (status, body) = get("/jobs?tenant=*", ADMIN).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(listed(&body), [a(2), b.clone(), a(0)]);
    // Without `tenant`, an admin key lists its own tenant, as before.
    let (_, body) = get("/jobs", ADMIN).await;
    assert_eq!(listed(&body), []);

    // Other keys: their own tenant, named or not; any other is 403.
    let (_, body) = get("/jobs", KEY_B).await;
    assert_eq!(listed(&body), std::slice::from_ref(&b));
    let (status, body) = get("/jobs?tenant=tenant_b", KEY_B).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(listed(&body), [b]);
    for path in ["/jobs?tenant=tenant_a", "/jobs?tenant=*"] {
        let (status, body) = get(path, KEY_B).await;
        assert_eq!(status, 403, "{path}: {body}");
        assert_eq!(body["code"], "forbidden", "{path}: {body}");
        assert!(body["request_id"].is_string(), "{body}");
        assert!(
            body["detail"].as_str().unwrap().contains("\"admin\" scope"),
            "{body}"
        );
    }
    let (status, body) = get("/jobs?tenant=no%20such", ADMIN).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("invalid_request")),
        "{body}"
    );
}
