use inference_engine_testkit::{DEV_KEY, TestApp, json_body};
use serde_json::json;

#[tokio::test]
async fn echo_returns_its_input_with_model_version_and_job_id() {
    let app = TestApp::spawn().await;
    let response = app
        .post(
            "/predict",
            Some(DEV_KEY),
            &json!({"model": "echo", "version": "v1", "data": "hello"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["x-model-version"], "v1");
    assert!(headers.contains_key("x-inference-time-ms"));
    assert!(headers.contains_key("x-queue-time-ms"));
    assert!(headers.contains_key("x-request-id"));
    let body = json_body(response).await;
    let job_id = body["job_id"].as_str().expect("job_id");
    assert_eq!(
        body,
        json!({"result": "hello", "model": "echo", "version": "v1", "job_id": job_id})
    );
    assert_eq!(headers["x-job-id"], job_id);
}

#[tokio::test]
async fn echo_v2_and_arbitrary_json_round_trip() {
    let app = TestApp::spawn().await;
    let data = json!({"nested": [1, 2.5, null, true, {"k": "v"}], "unicode": "żółw"});
    let body = json_body(
        app.post(
            "/predict",
            Some(DEV_KEY),
            &json!({"model": "echo", "version": "v2", "data": data}),
        )
        .await,
    )
    .await;
    assert_eq!(body["result"], data);
    assert_eq!(body["version"], "v2");
}

#[tokio::test]
async fn a_model_with_one_version_needs_none_and_several_versions_ask_for_one() {
    let app = TestApp::spawn().await;
    let sleep = app
        .post(
            "/predict",
            Some(DEV_KEY),
            &json!({"model": "sleep", "data": {"ms": 1}}),
        )
        .await;
    assert_eq!(sleep.status(), 200);
    assert_eq!(json_body(sleep).await["version"], "v1");

    for version in [json!(null), json!("")] {
        let echo = app
            .post(
                "/predict",
                Some(DEV_KEY),
                &json!({"model": "echo", "version": version, "data": 1}),
            )
            .await;
        assert_eq!(echo.status(), 422);
        let body = json_body(echo).await;
        assert_eq!(body["code"], "version_required");
        assert!(body["detail"].as_str().unwrap().contains("v1, v2"));
    }
}

#[tokio::test]
async fn batch_results_come_back_in_request_order() {
    let app = TestApp::spawn().await;
    let items: Vec<_> = (0..256).map(|n| json!({"n": n})).collect();
    let response = app
        .post(
            "/predict/batch",
            Some(DEV_KEY),
            &json!({"model": "echo", "version": "v1", "items": items}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let body = json_body(response).await;
    assert_eq!(body["results"], json!(items));
    assert_eq!(body["model"], "echo");
    assert_eq!(body["version"], "v1");
    assert!(body["job_id"].is_string());
}

#[tokio::test]
async fn batches_must_hold_1_to_256_items() {
    let app = TestApp::spawn().await;
    for count in [0, 257] {
        let items: Vec<_> = (0..count).map(|n| json!(n)).collect();
        let response = app
            .post(
                "/predict/batch",
                Some(DEV_KEY),
                &json!({"model": "echo", "version": "v1", "items": items}),
            )
            .await;
        assert_eq!(response.status(), 422, "{count} items");
        assert_eq!(json_body(response).await["code"], "invalid_request");
    }
}

#[tokio::test]
async fn a_bad_batch_item_is_named_and_the_batch_fails_as_one() {
    let app = TestApp::spawn().await;
    let response = app
        .post(
            "/predict/batch",
            Some(DEV_KEY),
            &json!({"model": "sleep", "items": [{"ms": 1}, {"ms": "x"}]}),
        )
        .await;
    assert_eq!(response.status(), 422);
    let body = json_body(response).await;
    assert_eq!(body["code"], "invalid_input");
    assert!(body["detail"].as_str().unwrap().starts_with("items[1]:"));
}

#[tokio::test]
async fn a_deadline_releases_the_caller_with_504_and_records_a_timeout() {
    let app = TestApp::spawn().await;
    let started = std::time::Instant::now();
    let response = app
        .post(
            "/predict",
            Some(DEV_KEY),
            &json!({"model": "sleep", "data": {"ms": 5_000}, "timeout_ms": 200}),
        )
        .await;
    assert_eq!(response.status(), 504);
    // Released at the deadline, not when the model finally returns.
    assert!(started.elapsed() < std::time::Duration::from_millis(4_000));
    let job_id = response.headers()["x-job-id"].to_str().unwrap().to_owned();
    assert_eq!(json_body(response).await["code"], "inference_timeout");
    let job = json_body(app.get(&format!("/jobs/{job_id}"), Some(DEV_KEY)).await).await;
    assert_eq!(job["status"], "failed");
    assert_eq!(job["error_type"], "timeout");
}

#[tokio::test]
async fn a_full_executor_queue_answers_503_overloaded_with_retry_after() {
    let app = TestApp::spawn_with(|settings| {
        settings.cpu_executor_workers = Some(1);
        settings.executor_queue_capacity = 1;
    })
    .await;
    // One request occupies the only thread, a second fills the only queue slot.
    let busy: Vec<_> = (0..2)
        .map(|_| {
            app.spawn_post(
                "/predict",
                DEV_KEY,
                &json!({"model": "sleep", "data": {"ms": 1_500}}),
            )
        })
        .collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let serving = app.ctx.registry.serving();
    let cpu = serving
        .executors
        .pools()
        .find(|pool| pool.name() == "cpu")
        .unwrap();
    while cpu.in_flight() + cpu.queued() < 2 {
        assert!(std::time::Instant::now() < deadline, "pool never filled");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let refused = app
        .post(
            "/predict",
            Some(DEV_KEY),
            &json!({"model": "echo", "version": "v1", "data": 1}),
        )
        .await;
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_eq!(json_body(refused).await["code"], "overloaded");
    for request in busy {
        assert_eq!(request.await.unwrap().0, 200);
    }
}

#[tokio::test]
async fn an_invalid_input_is_422_at_once_however_busy_the_model_and_short_the_deadline() {
    let app = TestApp::spawn_with_demo_models(|settings| {
        settings.cpu_executor_workers = Some(1);
    })
    .await;
    // The only thread sleeps; anything queued now waits far longer than its 50 ms deadline.
    let busy = app.spawn_post(
        "/predict",
        DEV_KEY,
        &json!({"model": "sleep", "data": {"ms": 3_000}}),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let serving = app.ctx.registry.serving();
    let cpu = serving
        .executors
        .pools()
        .find(|pool| pool.name() == "cpu")
        .unwrap();
    while cpu.in_flight() < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the sleep never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    for (body, says) in [
        (
            json!({"model": "sleep", "data": {"ms": -1}, "timeout_ms": 50}),
            "sleep expects",
        ),
        (
            json!({"model": "iris", "version": "v1", "data": [5.1, 3.5], "timeout_ms": 50}),
            "4",
        ),
        (
            json!({"model": "iris", "version": "v1", "data": [[5.1, 3.5, 1.4, 0.2], "x"], "timeout_ms": 50}),
            "",
        ),
    ] {
        let response = app.post("/predict", Some(DEV_KEY), &body).await;
        assert_eq!(response.status(), 422, "{body}");
        let error = json_body(response).await;
        assert_eq!(error["code"], "invalid_input", "{error}");
        assert!(error["detail"].as_str().unwrap().contains(says), "{error}");
    }
    // A valid input still waits its turn, and times out.
    let queued = app
        .post(
            "/predict",
            Some(DEV_KEY),
            &json!({"model": "iris", "version": "v1", "data": [5.1, 3.5, 1.4, 0.2], "timeout_ms": 50}),
        )
        .await;
    assert_eq!(queued.status(), 504);
    assert_eq!(busy.await.unwrap().0, 200);
}
