//! A dependency that goes away mid-flight: the server keeps answering, says so on `/ready`, and
//! recovers by itself when it comes back.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use inference_engine_testkit::proxy::TcpProxy;
use inference_engine_testkit::reqwest::{self, Url};
use inference_engine_testkit::{PrivateRedis, TestApp, TestPostgres, json_body};
use serde_json::json;

/// `url` (of a database on the test server) with its host and port replaced by `address`.
fn through(url: &str, address: SocketAddr) -> String {
    let mut url = Url::parse(url).unwrap();
    url.set_host(Some(&address.ip().to_string())).unwrap();
    url.set_port(Some(address.port())).unwrap();
    url.to_string()
}

fn upstream_of(url: &str) -> SocketAddr {
    let url = Url::parse(url).unwrap();
    let host = url.host_str().unwrap();
    let host = if host == "localhost" {
        "127.0.0.1"
    } else {
        host
    };
    format!("{host}:{}", url.port().unwrap_or(5432))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_postgres_is_down_ready_answers_at_once_and_requests_fail_with_503() {
    let postgres = TestPostgres::create().await.unwrap();
    let proxy = TcpProxy::start(upstream_of(postgres.url())).await;
    // The default `DATABASE_ACQUIRE_TIMEOUT_MS` (2 s): longer than `/ready` may take.
    let app = TestApp::spawn_with(|settings| {
        settings.database_url = Some(through(postgres.url(), proxy.address));
    })
    .await;
    let echo = json!({"model": "echo", "version": "v1", "data": "x"});
    assert_eq!(
        app.post("/predict", Some("dev-key"), &echo).await.status(),
        200
    );

    proxy.cut();
    // `/ready` must answer within a second (it takes 0.8 s): before, it waited for a pooled
    // connection as long as requests do.
    let ready = reqwest::Client::builder()
        .timeout(Duration::from_millis(1_500))
        .build()
        .unwrap()
        .get(app.url("/ready"))
        .send()
        .await
        .expect("/ready answers within 1.5 s during the outage");
    assert_eq!(ready.status(), 503);
    let ready = json_body(ready).await;
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert_eq!(ready["reason"], "the job store is unreachable", "{ready}");

    // Each request fails once the acquire timeout has passed. Before, the requests that shared
    // a failed batch were retried one after the other, each waiting the timeout again: the
    // sixteenth answered after half a minute.
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_secs(8))
        .build()
        .unwrap();
    let requests: Vec<_> = (0..16)
        .map(|_| {
            let request = impatient
                .post(app.url("/predict"))
                .header("x-api-key", "dev-key")
                .json(&echo);
            tokio::spawn(async move { request.send().await })
        })
        .collect();
    for request in requests {
        let response = request
            .await
            .unwrap()
            .expect("a request during the outage is answered, not held until it ends");
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "1");
        assert_eq!(json_body(response).await["code"], "unavailable");
    }

    proxy.restore().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = app.post("/predict", Some("dev-key"), &echo).await;
        if response.status() == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no recovery after PostgreSQL came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.get("/ready", None).await.status(), 200);
}

/// Polls the async job until it has succeeded, for at most `within`.
async fn succeeds_within(app: &TestApp, job_id: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let job = json_body(
            app.get(&format!("/predict/async/{job_id}"), Some("dev-key"))
                .await,
        )
        .await;
        if job["status"] == "succeeded" {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

async fn submit_echo(app: &TestApp) -> String {
    let echo = json!({"model": "echo", "version": "v1", "data": "x"});
    let response = app.post("/predict/async", Some("dev-key"), &echo).await;
    assert_eq!(response.status(), 202);
    json_body(response).await["job_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_accepted_while_redis_was_down_run_as_soon_as_it_is_back() {
    let mut redis = PrivateRedis::start().await;
    // The defaults: without a prompt re-enqueue these jobs would wait a minute or more.
    let app = TestApp::spawn_distributed_on(&redis.url(), |settings| {
        settings.jobs_reconcile_grace_s = 60;
        settings.jobs_reconcile_interval_s = 30;
    })
    .await;
    let before = submit_echo(&app).await;
    assert!(succeeds_within(&app, &before, Duration::from_secs(15)).await);

    redis.stop();
    // Committed to PostgreSQL, not enqueued: Redis is gone.
    let during = submit_echo(&app).await;
    // Back, empty: every stream and group is gone with it.
    redis.restart().await;
    assert!(
        succeeds_within(&app, &during, Duration::from_secs(20)).await,
        "a job accepted during the Redis outage waited for the reconciler's grace period"
    );
}
