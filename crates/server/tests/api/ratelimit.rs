//! Rate limits per tenant and route group: in one process, across processes sharing Redis, and
//! failing open when Redis goes away.

use std::time::Instant;

use inference_engine_testkit::{
    ADMIN_KEY, DEV_KEY, PrivateRedis, RedisPrefix, TestApp, json_body, test_redis_url,
};
use serde_json::json;

use crate::models::config_file;

const RATE: f64 = 20.0;
const BURST: u32 = 10;

fn limits() -> String {
    format!(
        "[rate_limits]\npredict = {{ rate = {RATE}, burst = {BURST} }}\n\
         [rate_limits.tenants.tenant_admin]\npredict = {{ rate = 1000, burst = 1000 }}\n"
    )
}

/// Fires `count` echo requests at once at each app; returns (successes, 429s, seconds taken).
async fn burst(apps: &[&TestApp], count: usize) -> (u32, u32, f64) {
    let started = Instant::now();
    let requests: Vec<_> = apps
        .iter()
        .flat_map(|app| {
            (0..count).map(|_| {
                let request = app
                    .client
                    .post(app.url("/predict"))
                    .header("x-api-key", DEV_KEY)
                    .json(&json!({"model": "echo", "version": "v1", "data": 1}));
                tokio::spawn(async move {
                    let response = request.send().await.unwrap();
                    let status = response.status().as_u16();
                    if status == 429 {
                        let retry_after: u64 = response.headers()["retry-after"]
                            .to_str()
                            .unwrap()
                            .parse()
                            .unwrap();
                        assert!(retry_after >= 1);
                        assert!(response.headers().contains_key("ratelimit-remaining"));
                        assert_eq!(json_body(response).await["code"], "rate_limited");
                    }
                    status
                })
            })
        })
        .collect();
    let (mut ok, mut limited) = (0, 0);
    for request in requests {
        match request.await.unwrap() {
            200 => ok += 1,
            429 => limited += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    (ok, limited, started.elapsed().as_secs_f64())
}

/// What GCRA may let through in `seconds`: the burst, then the rate.
fn allowance(seconds: f64) -> u32 {
    #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let refilled = (RATE * seconds).ceil() as u32;
    BURST + refilled
}

#[tokio::test]
async fn the_in_process_limiter_holds_the_limit_and_answers_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), &limits());
    let app = TestApp::spawn_with(|settings| settings.config = Some(config)).await;

    let (ok, limited, seconds) = burst(&[&app], 200).await;
    assert!(ok >= BURST, "the burst passes: {ok}");
    assert!(ok <= allowance(seconds), "{ok} passed in {seconds:.2} s");
    assert!(limited >= 200 - allowance(seconds));

    // Headers on successes too; other tenants and groups have their own allowance.
    let response = app.get("/models", Some(DEV_KEY)).await;
    assert_eq!(response.status(), 200);
    assert!(
        !response.headers().contains_key("ratelimit-limit"),
        "models is not limited here"
    );
    let admin = app
        .post(
            "/predict",
            Some(ADMIN_KEY),
            &json!({"model": "echo", "version": "v1", "data": 1}),
        )
        .await;
    assert_eq!(admin.status(), 200);
    assert_eq!(admin.headers()["ratelimit-limit"], "1000");
    assert_eq!(admin.headers()["x-ratelimit-mode"], "local");
}

#[tokio::test]
async fn a_batch_costs_its_items() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), &limits());
    let app = TestApp::spawn_with(|settings| settings.config = Some(config)).await;
    let items: Vec<_> = (0..8).map(|n| json!(n)).collect();
    let first = app
        .post(
            "/predict/batch",
            Some(DEV_KEY),
            &json!({"model": "echo", "version": "v1", "items": items}),
        )
        .await;
    assert_eq!(first.status(), 200);
    let remaining: u32 = first.headers()["ratelimit-remaining"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(remaining <= BURST - 8, "8 items cost 8: {remaining} left");
    let second = app
        .post(
            "/predict/batch",
            Some(DEV_KEY),
            &json!({"model": "echo", "version": "v1", "items": items}),
        )
        .await;
    assert_eq!(second.status(), 429);
}

#[tokio::test]
async fn two_processes_sharing_redis_share_one_limit() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), &limits());
    let prefix = RedisPrefix::new();
    let spawn = || {
        let config = config.clone();
        let prefix = prefix.prefix.clone();
        TestApp::spawn_with(move |settings| {
            settings.config = Some(config);
            settings.redis_url = Some(test_redis_url());
            settings.redis_key_prefix = prefix;
        })
    };
    let (first, second) = (spawn().await, spawn().await);

    let (ok, limited, seconds) = burst(&[&first, &second], 100).await;
    assert!(ok >= BURST, "{ok}");
    assert!(
        ok <= allowance(seconds),
        "{ok} passed across both servers in {seconds:.2} s"
    );
    assert!(limited > 0);
    let response = first
        .post(
            "/predict",
            Some(ADMIN_KEY),
            &json!({"model": "echo", "version": "v1", "data": 1}),
        )
        .await;
    assert_eq!(response.headers()["x-ratelimit-mode"], "distributed");
}

#[tokio::test]
async fn a_redis_outage_lets_requests_through_and_counts_it() {
    let mut redis = PrivateRedis::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), &limits());
    let app = TestApp::spawn_with(|settings| {
        settings.config = Some(config);
        settings.redis_url = Some(redis.url());
    })
    .await;
    let failures = |text: &str| -> f64 {
        text.lines()
            .find(|line| line.starts_with("rate_limiter_failures_total "))
            .and_then(|line| line.rsplit_once(' '))
            .map_or(0.0, |(_, value)| value.parse().unwrap())
    };
    let before = failures(
        &app.get("/metrics", Some(ADMIN_KEY))
            .await
            .text()
            .await
            .unwrap(),
    );

    redis.stop();
    let (ok, limited, _) = burst(&[&app], 40).await;
    assert_eq!((ok, limited), (40, 0), "fail open: nothing is limited");
    let after = failures(
        &app.get("/metrics", Some(ADMIN_KEY))
            .await
            .text()
            .await
            .unwrap(),
    );
    assert!(
        after - before >= 40.0,
        "outages counted: {before} → {after}"
    );
}
