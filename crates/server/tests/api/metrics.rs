//! `/metrics`: who may read it, and each metric family moving when its event happens.
//!
//! The recorder is process-wide and tests run in parallel, so every assertion compares a value
//! before and after the event (counters only grow).

use std::time::{Duration, Instant};

use inference_engine_testkit::{
    ADMIN_KEY, DEV_KEY, RedisPrefix, TestApp, json_body, test_redis_url,
};
use serde_json::json;

use crate::models::config_file;

pub(crate) async fn scrape(app: &TestApp) -> String {
    let response = app.get("/metrics", Some(ADMIN_KEY)).await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    response.text().await.unwrap()
}

/// The sum of the samples of `name` whose labels include every `labels` pair.
pub(crate) fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, sample) = line.rsplit_once(' ')?;
            let (metric, label_text) = match series.split_once('{') {
                Some((metric, rest)) => (metric, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if metric != name {
                return None;
            }
            let all = labels
                .iter()
                .all(|(key, want)| label_text.contains(&format!("{key}=\"{want}\"")));
            all.then(|| sample.parse::<f64>().ok()).flatten()
        })
        .sum()
}

#[tokio::test]
async fn metrics_need_the_admin_scope_on_the_public_listener() {
    let app = TestApp::spawn().await;
    let response = app.get("/metrics", Some(DEV_KEY)).await;
    assert_eq!(response.status(), 403);
    assert_eq!(json_body(response).await["code"], "forbidden");
    assert_eq!(app.get("/metrics", None).await.status(), 401);
}

#[tokio::test]
async fn the_internal_listener_serves_metrics_and_debug_without_a_key() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let address: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let app = TestApp::spawn_with(|settings| settings.admin_listen_addr = Some(address)).await;
    let client = app.client.clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    let response = loop {
        match client.get(format!("http://{address}/metrics")).send().await {
            Ok(response) => break response,
            Err(err) => {
                assert!(
                    Instant::now() < deadline,
                    "internal listener never answered: {err}"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    assert_eq!(response.status(), 200);
    let debug = client
        .get(format!("http://{address}/debug/models/loaded"))
        .send()
        .await
        .unwrap();
    assert_eq!(debug.status(), 200);
    // Only /metrics and /debug live there.
    let other = client
        .post(format!("http://{address}/predict"))
        .json(&json!({"model": "echo", "version": "v1", "data": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
    drop(app);
}

#[tokio::test]
async fn inference_http_job_and_store_metrics_move_with_each_request() {
    let app = TestApp::spawn().await;
    let model = [
        ("model", "echo"),
        ("version", "v2"),
        ("tenant", "tenant_dev"),
    ];
    let before = scrape(&app).await;
    for data in [json!(1), json!(2)] {
        app.post_ok(
            "/predict",
            &json!({"model": "echo", "version": "v2", "data": data}),
        )
        .await;
    }
    let failed = app
        .post(
            "/predict",
            Some(DEV_KEY),
            &json!({"model": "sleep", "data": {"ms": "x"}}),
        )
        .await;
    assert_eq!(failed.status(), 422);
    let after = scrape(&app).await;

    let grew = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };
    assert!(grew("inference_requests_total", &model) >= 2.0);
    assert!(grew("inference_latency_seconds_count", &model) >= 2.0);
    assert!(
        grew(
            "inference_errors_total",
            &[("model", "sleep"), ("error_type", "invalid_input")]
        ) >= 1.0
    );
    assert!(
        grew(
            "http_requests_total",
            &[("route", "/predict"), ("status", "200")]
        ) >= 2.0
    );
    assert!(
        grew(
            "http_request_duration_seconds_count",
            &[("route", "/predict")]
        ) >= 3.0
    );
    assert!(grew("jobs_total", &[("status", "succeeded"), ("mode", "sync")]) >= 2.0);
    assert!(grew("jobs_total", &[("status", "failed"), ("mode", "sync")]) >= 1.0);
    assert!(grew("job_store_write_seconds_count", &[]) >= 1.0);
}

#[tokio::test]
async fn async_jobs_count_in_jobs_total_and_inference_metrics() {
    let app = TestApp::spawn().await;
    let before = scrape(&app).await;
    let response = app
        .post(
            "/predict/async",
            Some(DEV_KEY),
            &json!({"model": "echo", "version": "v1", "data": "later"}),
        )
        .await;
    assert_eq!(response.status(), 202);
    let job_id = json_body(response).await["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let job = json_body(app.get(&format!("/jobs/{job_id}"), Some(DEV_KEY)).await).await;
        if job["status"] == "succeeded" {
            break;
        }
        assert!(Instant::now() < deadline, "job never finished: {job}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let after = scrape(&app).await;
    let labels = [("status", "succeeded"), ("mode", "async")];
    assert!(value(&after, "jobs_total", &labels) - value(&before, "jobs_total", &labels) >= 1.0);
    let model = [("model", "echo"), ("version", "v1")];
    assert!(
        value(&after, "inference_requests_total", &model)
            - value(&before, "inference_requests_total", &model)
            >= 1.0
    );
}

#[tokio::test]
async fn executor_metrics_show_work_in_flight_and_timeouts() {
    let app = TestApp::spawn().await;
    let before = scrape(&app).await;
    let slow = app.spawn_post(
        "/predict",
        DEV_KEY,
        &json!({"model": "sleep", "data": {"ms": 600}}),
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while value(
        &scrape(&app).await,
        "executor_inflight",
        &[("device", "cpu")],
    ) < 1.0
    {
        assert!(Instant::now() < deadline, "executor_inflight never rose");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(slow.await.unwrap().0, 200);

    let timed_out = app
        .post(
            "/predict",
            Some(DEV_KEY),
            &json!({"model": "sleep", "data": {"ms": 2_000}, "timeout_ms": 20}),
        )
        .await;
    assert_eq!(timed_out.status(), 504);
    let after = scrape(&app).await;
    let labels = [("device", "cpu")];
    assert!(
        value(&after, "executor_timeouts_total", &labels)
            - value(&before, "executor_timeouts_total", &labels)
            >= 1.0
    );
}

#[tokio::test]
async fn registry_and_batching_metrics_move_with_loads_evictions_and_batches() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), "[registry]\nwarmup = false\nmax_loaded = 1\n");
    let app = TestApp::spawn_with_demo_models(|settings| {
        settings.config = Some(config);
    })
    .await;
    let before = scrape(&app).await;
    for version in ["v1", "v2"] {
        app.post_ok(
            "/predict",
            &json!({"model": "iris", "version": version, "data": [5.1, 3.5, 1.4, 0.2]}),
        )
        .await;
    }
    app.post_ok(
        "/predict",
        &json!({"model": "mlp", "version": "v1", "data": vec![0.25; 784]}),
    )
    .await;
    let after = scrape(&app).await;
    let grew = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };
    assert!(grew("model_load_seconds_count", &[("model", "iris")]) >= 2.0);
    assert!(grew("model_evictions_total", &[]) >= 2.0);
    assert!(grew("batch_size_count", &[("model", "mlp"), ("version", "v1")]) >= 1.0);
    // `models_loaded` and `models_loaded_bytes` are gauges each registry sets; one process
    // serves one registry, but this test binary runs many, so only their presence is checked.
    assert!(
        after.contains("\nmodels_loaded "),
        "models_loaded is exported"
    );
    assert!(
        after.contains("\nmodels_loaded_bytes "),
        "models_loaded_bytes is exported"
    );
}

#[tokio::test]
async fn job_queue_depth_counts_pending_jobs_from_the_store_and_drops_to_zero_when_drained() {
    // With Redis configured, `serve` runs no job loops (workers would), so submitted jobs stay
    // pending for as long as the test needs. Its store is its own SQLite file, so the count is
    // exact. No other test of this binary leaves echo:v1 jobs pending while it scrapes, so the
    // process-wide gauge is this test's alone.
    let prefix = RedisPrefix::new();
    let app = TestApp::spawn_with(|settings| {
        settings.redis_url = Some(test_redis_url());
        settings.redis_key_prefix = prefix.prefix.clone();
    })
    .await;
    let mut job_ids = Vec::new();
    for data in 0..3 {
        let response = app
            .post(
                "/predict/async",
                Some(DEV_KEY),
                &json!({"model": "echo", "version": "v1", "data": data}),
            )
            .await;
        assert_eq!(response.status(), 202);
        job_ids.push(
            json_body(response).await["job_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let echo_v1 = [("model", "echo"), ("version", "v1")];

    let queued = scrape(&app).await;

    assert_eq!(value(&queued, "job_queue_depth", &echo_v1), 3.0, "{queued}");

    for job_id in &job_ids {
        let cancelled = app
            .post(&format!("/jobs/{job_id}/cancel"), Some(DEV_KEY), &json!({}))
            .await;
        assert_eq!(cancelled.status(), 200);
    }

    let drained = scrape(&app).await;

    let series = drained
        .lines()
        .filter(|line| line.starts_with("job_queue_depth{"))
        .filter(|line| line.contains("model=\"echo\"") && line.contains("version=\"v1\""))
        .count();
    assert_eq!(
        series, 1,
        "the drained series stays exported, at 0: {drained}"
    );
    assert_eq!(
        value(&drained, "job_queue_depth", &echo_v1),
        0.0,
        "{drained}"
    );
}
