//! `serve` and `worker` processes sharing PostgreSQL and Redis, including the faults the
//! product promises to survive: a worker killed mid-job and Redis dropping every connection.

use std::sync::Arc;
use std::time::{Duration, Instant};

use inference_engine_core::job::{JobId, JobStatus};
use inference_engine_core::ports::{JobFilter, JobStore};
use inference_engine_store::PostgresJobStore;
use inference_engine_store::testing::TestPostgres;
use inference_engine_testkit::EngineProcess;
use serde_json::{Value, json};

use crate::binary;

fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A Postgres database and a Redis key prefix of this test's own.
struct Cluster {
    database: TestPostgres,
    prefix: String,
    dir: tempfile::TempDir,
}

impl Cluster {
    async fn new() -> Self {
        Self {
            database: TestPostgres::create().await.expect("a fresh test database"),
            prefix: format!("ie_test_{}:", uuid::Uuid::new_v4().simple()),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn envs<'a>(&'a self, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut envs = vec![
            ("DATABASE_URL", self.database.url()),
            ("REDIS_KEY_PREFIX", self.prefix.as_str()),
            ("LOG_LEVEL", "info"),
        ];
        envs.extend_from_slice(extra);
        envs
    }

    fn serve(&self, redis: &str, extra: &[(&str, &str)]) -> EngineProcess {
        let mut envs = self.envs(extra);
        envs.push(("REDIS_URL", redis));
        EngineProcess::start(binary(), &envs, self.dir.path()).unwrap()
    }

    fn worker(&self, redis: &str, extra: &[(&str, &str)]) -> EngineProcess {
        let mut envs = self.envs(extra);
        envs.push(("REDIS_URL", redis));
        EngineProcess::start_worker(binary(), &envs, self.dir.path()).unwrap()
    }

    async fn store(&self) -> PostgresJobStore {
        PostgresJobStore::connect(self.database.url())
            .await
            .unwrap()
    }

    /// Closes every Redis connection of this test's processes (by their connection names).
    async fn kill_redis_connections(&self) -> usize {
        let client = redis::Client::open(redis_url()).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query_async(&mut connection)
            .await
            .unwrap();
        let ids: Vec<String> = list
            .lines()
            .filter(|line| line.contains(&format!("name={}", self.prefix)))
            .filter_map(|line| {
                line.split_whitespace()
                    .find_map(|field| field.strip_prefix("id="))
            })
            .map(str::to_owned)
            .collect();
        for id in &ids {
            let _: redis::RedisResult<()> = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("ID")
                .arg(id)
                .query_async(&mut connection)
                .await;
        }
        ids.len()
    }

    async fn purge_redis(&self) {
        let Ok(client) = redis::Client::open(redis_url()) else {
            return;
        };
        let Ok(mut connection) = client.get_multiplexed_async_connection().await else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.prefix))
            .query_async(&mut connection)
            .await
            .unwrap_or_default();
        for key in keys {
            let _: redis::RedisResult<()> = redis::cmd("DEL")
                .arg(key)
                .query_async(&mut connection)
                .await;
        }
    }
}

async fn submit(client: &reqwest::Client, server: &EngineProcess, body: &Value) -> JobId {
    let response = client
        .post(server.url("/predict/async"))
        .header("x-api-key", "dev-key")
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    body["job_id"].as_str().unwrap().parse().unwrap()
}

/// Polls the store until every job is terminal (or the deadline passes).
async fn wait_until_terminal(store: &PostgresJobStore, ids: &[JobId], deadline: Duration) {
    let started = Instant::now();
    loop {
        let mut unfinished = 0;
        for id in ids {
            let job = store
                .get(*id)
                .await
                .unwrap()
                .expect("an accepted job exists");
            if !job.status.is_terminal() {
                unfinished += 1;
            }
        }
        if unfinished == 0 {
            return;
        }
        assert!(
            started.elapsed() < deadline,
            "{unfinished} jobs never finished"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn all_jobs(store: &PostgresJobStore) -> Vec<inference_engine_core::job::Job> {
    store
        .list(&JobFilter {
            tenant: None,
            status: None,
            model: None,
            before: None,
            limit: 100_000,
        })
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_submitted_to_the_api_are_run_by_worker_processes() {
    let cluster = Cluster::new().await;
    let redis = redis_url();
    let server = cluster.serve(&redis, &[]);
    let _worker = cluster.worker(&redis, &[("JOBS_RETRY_BASE_MS", "10")]);
    let client = reqwest::Client::new();

    let echo = submit(
        &client,
        &server,
        &json!({"model": "echo", "version": "v1", "data": "far"}),
    )
    .await;
    let retried = submit(
        &client,
        &server,
        &json!({"model": "sleep", "data": {"ms": 200}, "timeout_ms": 20, "max_attempts": 2}),
    )
    .await;
    let store = cluster.store().await;
    wait_until_terminal(&store, &[echo, retried], Duration::from_secs(30)).await;

    let echo = store.get(echo).await.unwrap().unwrap();
    assert_eq!(echo.status, JobStatus::Succeeded);
    assert_eq!(echo.result, Some(json!("far")));
    let retried = store.get(retried).await.unwrap().unwrap();
    assert_eq!(retried.status, JobStatus::Failed);
    assert_eq!(retried.attempts, 2);
    assert_eq!(retried.failure.unwrap().error_type, "timeout");
    cluster.purge_redis().await;
}

/// A worker runs async jobs under engine.toml's SLA, so it must reload it on SIGHUP as the server
/// does (and survive the signal, which would otherwise end the process).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_reloads_engine_toml_on_sighup_and_keeps_running() {
    let cluster = Cluster::new().await;
    let config = cluster.dir.path().join("engine.toml");
    let sla = |seconds: &str| format!("[sla.timeouts]\n\"sleep:v1\" = {seconds}\n");
    std::fs::write(&config, sla("0.1")).unwrap();
    let redis = redis_url();
    let server = cluster.serve(&redis, &[]);
    let worker = cluster.worker(&redis, &[]);
    let client = reqwest::Client::new();
    let store = cluster.store().await;
    let sleep_job = || json!({"model": "sleep", "data": {"ms": 400}, "max_attempts": 1});
    let run = async |body: Value| {
        let id = submit(&client, &server, &body).await;
        wait_until_terminal(&store, &[id], Duration::from_secs(30)).await;
        store.get(id).await.unwrap().unwrap()
    };

    let timed_out = run(sleep_job()).await;
    assert_eq!(timed_out.status, JobStatus::Failed);
    assert_eq!(timed_out.failure.unwrap().error_type, "timeout");

    // An invalid file is logged and changes nothing: the 100 ms SLA still holds.
    std::fs::write(&config, "[sla]\ndefault_timeout_s = \"soon\"\n").unwrap();
    worker.hang_up().unwrap();
    assert!(
        worker
            .wait_for_line("configuration reload rejected", Duration::from_secs(10))
            .await,
        "the worker never logged the rejected reload"
    );
    let still_timed_out = run(sleep_job()).await;
    assert_eq!(still_timed_out.status, JobStatus::Failed);

    std::fs::write(&config, sla("10.0")).unwrap();
    worker.hang_up().unwrap();
    assert!(
        worker
            .wait_for_line("configuration reloaded", Duration::from_secs(10))
            .await,
        "the worker never reloaded"
    );
    let finished = run(sleep_job()).await;
    assert_eq!(finished.status, JobStatus::Succeeded, "{finished:?}");
    assert_eq!(finished.result, Some(json!({"ms": 400})));
    cluster.purge_redis().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_job_is_replaced_and_the_job_succeeds_exactly_once() {
    let cluster = Cluster::new().await;
    let redis = redis_url();
    // A short visibility timeout so the lost delivery is reclaimed quickly; the slow job runs
    // longer than it, so the surviving worker must keep its own delivery alive.
    let fast_reclaim = [("JOBS_VISIBILITY_TIMEOUT_S", "2")];
    let server = cluster.serve(&redis, &fast_reclaim);
    let mut doomed = cluster.worker(&redis, &fast_reclaim);
    let client = reqwest::Client::new();
    let store = cluster.store().await;

    let slow = submit(
        &client,
        &server,
        &json!({"model": "sleep", "data": {"ms": 3_000}}),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while store.get(slow).await.unwrap().unwrap().status != JobStatus::Running {
        assert!(Instant::now() < deadline, "the job never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    doomed.kill_hard().unwrap();

    let _survivor = cluster.worker(&redis, &fast_reclaim);
    let mut others = Vec::new();
    for n in 0..50 {
        others.push(
            submit(
                &client,
                &server,
                &json!({"model": "echo", "version": "v1", "data": n}),
            )
            .await,
        );
    }
    let mut everything = others.clone();
    everything.push(slow);
    wait_until_terminal(&store, &everything, Duration::from_secs(60)).await;

    let slow = store.get(slow).await.unwrap().unwrap();
    assert_eq!(slow.status, JobStatus::Succeeded);
    assert_eq!(slow.attempts, 2, "the lost attempt is counted");
    assert_eq!(slow.result, Some(json!({"ms": 3_000})));
    let jobs = all_jobs(&store).await;
    assert_eq!(jobs.len(), 51, "no job lost or duplicated");
    for (n, id) in others.iter().enumerate() {
        let job = store.get(*id).await.unwrap().unwrap();
        assert_eq!(job.status, JobStatus::Succeeded);
        assert_eq!(job.attempts, 1);
        assert_eq!(job.result, Some(json!(n)));
    }
    cluster.purge_redis().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_job_finishes_when_redis_drops_all_connections_mid_run() {
    let cluster = Cluster::new().await;
    let redis = redis_url();
    let recovery = [
        ("JOBS_RECONCILE_INTERVAL_S", "1"),
        ("JOBS_RECONCILE_GRACE_S", "2"),
        ("JOBS_VISIBILITY_TIMEOUT_S", "3"),
    ];
    let server = Arc::new(cluster.serve(&redis, &recovery));
    let _workers = [
        cluster.worker(&redis, &recovery),
        cluster.worker(&redis, &recovery),
    ];
    let client = reqwest::Client::new();

    let submitters: Vec<_> = (0..8)
        .map(|lane| {
            let client = client.clone();
            let server = Arc::clone(&server);
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for n in 0..125 {
                    let data = json!({"lane": lane, "n": n});
                    ids.push(
                        submit(
                            &client,
                            &server,
                            &json!({"model": "echo", "version": "v1", "data": data}),
                        )
                        .await,
                    );
                }
                ids
            })
        })
        .collect();
    // Drop every connection while submissions are flowing.
    let store = cluster.store().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while all_jobs(&store).await.len() < 300 {
        assert!(Instant::now() < deadline, "submissions never got going");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let killed = cluster.kill_redis_connections().await;
    assert!(
        killed >= 3,
        "expected the server's and workers' connections, killed {killed}"
    );

    let mut ids = Vec::new();
    for submitter in submitters {
        ids.extend(submitter.await.unwrap());
    }
    assert_eq!(ids.len(), 1_000);
    wait_until_terminal(&store, &ids, Duration::from_secs(90)).await;
    let jobs = all_jobs(&store).await;
    assert_eq!(jobs.len(), 1_000, "no job lost or duplicated");
    assert!(jobs.iter().all(|job| job.status == JobStatus::Succeeded));
    cluster.purge_redis().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stopped_with_sigterm_finishes_its_job_and_exits_0() {
    let cluster = Cluster::new().await;
    let redis = redis_url();
    let server = cluster.serve(&redis, &[]);
    let mut worker = cluster.worker(&redis, &[]);
    let client = reqwest::Client::new();
    let store = cluster.store().await;

    let job = submit(
        &client,
        &server,
        &json!({"model": "sleep", "data": {"ms": 800}}),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while store.get(job).await.unwrap().unwrap().status != JobStatus::Running {
        assert!(Instant::now() < deadline, "the job never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    worker.terminate().unwrap();
    let status = tokio::task::spawn_blocking(move || worker.wait(Duration::from_secs(30)))
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "exit code 0 after SIGTERM, got {status}");
    let finished = store.get(job).await.unwrap().unwrap();
    assert_eq!(
        finished.status,
        JobStatus::Succeeded,
        "the running job was finished, not dropped"
    );
    assert_eq!(finished.attempts, 1);
    cluster.purge_redis().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_process_exports_the_metrics_of_the_jobs_it_runs() {
    let cluster = Cluster::new().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let admin = format!("127.0.0.1:{port}");
    let redis = redis_url();
    let server = cluster.serve(&redis, &[]);
    let mut worker = cluster.worker(&redis, &[("ADMIN_LISTEN_ADDR", admin.as_str())]);
    let client = reqwest::Client::new();
    let ids = vec![
        submit(
            &client,
            &server,
            &json!({"model": "echo", "version": "v1", "data": "from a worker"}),
        )
        .await,
        submit(
            &client,
            &server,
            &json!({"model": "sleep", "version": "v1", "data": {"ms": "bad"}}),
        )
        .await,
    ];
    wait_until_terminal(&cluster.store().await, &ids, Duration::from_secs(30)).await;

    let metrics = client
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let has = |needle: &str| metrics.lines().any(|line| line.starts_with(needle));
    assert!(
        has(r#"jobs_total{status="succeeded",mode="async"} 1"#),
        "{metrics}"
    );
    assert!(
        has(r#"jobs_total{status="failed",mode="async"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with("inference_requests_total{")
                && line.contains(r#"model="echo""#)
                && line.ends_with(" 1")),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with("inference_errors_total{")
                && line.contains(r#"error_type="invalid_input""#)),
        "{metrics}"
    );
    worker.terminate().unwrap();
    assert!(worker.wait(Duration::from_secs(30)).unwrap().success());
    cluster.purge_redis().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_server_processes_sharing_redis_hold_one_rate_limit() {
    const RATE: f64 = 20.0;
    const BURST: u32 = 10;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("engine.toml"),
        format!("[rate_limits]\npredict = {{ rate = {RATE}, burst = {BURST} }}\n"),
    )
    .unwrap();
    let prefix = format!("ie_test_{}:", uuid::Uuid::new_v4().simple());
    let redis = redis_url();
    let start = |db: &str| {
        let db = dir.path().join(db);
        EngineProcess::start(
            binary(),
            &[
                ("REDIS_URL", redis.as_str()),
                ("REDIS_KEY_PREFIX", prefix.as_str()),
                ("SQLITE_DB_PATH", db.to_str().unwrap()),
            ],
            dir.path(),
        )
        .unwrap()
    };
    let servers = [start("a.db"), start("b.db")];
    let client = reqwest::Client::new();

    // 200 requests at once, split across both processes. GCRA lets through at most the burst
    // plus the rate times the elapsed time (well under a second here), whatever the split.
    let started = Instant::now();
    let requests: Vec<_> = (0..200)
        .map(|index| {
            let request = client
                .post(servers[index % 2].url("/predict"))
                .header("x-api-key", "dev-key")
                .json(&json!({"model": "echo", "version": "v1", "data": index}));
            tokio::spawn(async move {
                let response = request.send().await.unwrap();
                let retry_after = response.headers().get("retry-after").cloned();
                (response.status().as_u16(), retry_after)
            })
        })
        .collect();
    let (mut ok, mut limited) = (0u32, 0u32);
    for request in requests {
        match request.await.unwrap() {
            (200, _) => ok += 1,
            (429, retry_after) => {
                assert!(retry_after.is_some(), "a 429 without Retry-After");
                limited += 1;
            }
            (other, _) => panic!("unexpected status {other}"),
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let allowance = BURST + (RATE * seconds).ceil() as u32;
    assert!(
        ok <= allowance,
        "{ok} passed across both processes in {seconds:.2} s"
    );
    assert!(
        ok >= BURST && limited >= 200 - allowance,
        "{ok} passed, {limited} limited"
    );

    for server in &servers {
        server.terminate().unwrap();
    }
    let purge = redis::Client::open(redis.as_str()).unwrap();
    let mut connection = purge.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut connection)
        .await
        .unwrap();
    for key in keys {
        let _: redis::RedisResult<()> = redis::cmd("DEL")
            .arg(key)
            .query_async(&mut connection)
            .await;
    }
}
