//! Test support, used only as a dev-dependency: start the real server on port 0 against a fresh
//! SQLite file ([`TestApp`]), or the real binary as a child process ([`EngineProcess`]).
//!
//! Layout: [`TestApp`] (in-process server and an HTTP client bound to it), [`EngineProcess`]
//! (the `inference-engine` binary, its address read from its `listening` log line),
//! [`families`] (the model families' fixtures, reference outputs and a tolerant comparison).

// Test support: failing loudly at the line that broke is the point.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use inference_engine_app::job_loops::{self, JobLoops};
use inference_engine_app::{AppContext, Role, Settings};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub mod families;
pub mod proxy;

pub use inference_engine_store::testing::TestPostgres;
pub use reqwest;

/// The dev key with `predict` and `read_models` (tenant `tenant_dev`).
pub const DEV_KEY: &str = "dev-key";
/// The dev key with every scope (tenant `tenant_admin`).
pub const ADMIN_KEY: &str = "admin-key";

/// Which adapters a [`TestApp`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A fresh SQLite file and the in-process queue: the zero-setup default.
    Local,
    /// A fresh PostgreSQL database (`TEST_DATABASE_URL`) and a unique Redis key prefix
    /// (`TEST_REDIS_URL`), with job loops in this process playing the worker.
    Distributed,
}

/// The Redis the tests use.
pub fn test_redis_url() -> String {
    std::env::var("TEST_REDIS_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
        .unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned())
}

/// A Redis key prefix of one test's own; its keys are deleted when this is dropped.
#[derive(Debug)]
pub struct RedisPrefix {
    pub prefix: String,
}

impl RedisPrefix {
    pub fn new() -> Self {
        Self {
            prefix: format!("ie_test_{}:", uuid::Uuid::new_v4().simple()),
        }
    }
}

impl Default for RedisPrefix {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for RedisPrefix {
    fn drop(&mut self) {
        let pattern = format!("{}*", self.prefix);
        let deleted = redis::Client::open(test_redis_url())
            .and_then(|client| client.get_connection())
            .and_then(|mut connection| {
                let keys: Vec<String> = redis::cmd("KEYS").arg(&pattern).query(&mut connection)?;
                if keys.is_empty() {
                    return Ok(());
                }
                redis::cmd("DEL").arg(keys).query::<()>(&mut connection)
            });
        if let Err(err) = deleted {
            eprintln!("warning: Redis keys {pattern} not deleted: {err}");
        }
    }
}

/// A `redis-server` of the test's own (nothing on disk, like production here), so a test can
/// stop and restart it without disturbing anyone else using the shared Redis.
#[derive(Debug)]
pub struct PrivateRedis {
    pub port: u16,
    dir: tempfile::TempDir,
    server: Option<Child>,
}

impl PrivateRedis {
    pub async fn start() -> Self {
        // Port 0 is not an option for redis-server: borrow a free port from the OS.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let mut private = Self {
            port,
            dir: tempfile::tempdir().expect("temp dir"),
            server: None,
        };
        private.restart().await;
        private
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops the server and waits for it to be gone: every client connection drops and, with
    /// no persistence, every key, stream and group is lost.
    pub fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
    }

    /// Starts the server (again) on the same port and waits (up to 10 s) until it answers.
    pub async fn restart(&mut self) {
        self.stop();
        let server = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                panic!("cannot start redis-server ({err}); install it (ARCHITECTURE.md §5)")
            });
        self.server = Some(server);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let answered = async {
                let client = redis::Client::open(self.url()).ok()?;
                let mut conn = client.get_multiplexed_async_connection().await.ok()?;
                redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .ok()
            }
            .await;
            if answered.is_some() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the private Redis never answered"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A server running in this process on an ephemeral port, with its own store.
#[derive(Debug)]
pub struct TestApp {
    pub address: SocketAddr,
    pub client: reqwest::Client,
    pub ctx: Arc<AppContext>,
    pub db_path: PathBuf,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
    /// The in-process worker of a [`Backend::Distributed`] app.
    worker: Option<JobLoops>,
    // Dropped after the server: the database and keys it used.
    _postgres: Option<TestPostgres>,
    _redis: Option<RedisPrefix>,
    // Dropped last: removes the SQLite file.
    _dir: Option<tempfile::TempDir>,
}

impl TestApp {
    /// Development settings, dev keys, a fresh SQLite file.
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Like [`TestApp::spawn`], after `configure` adjusts the settings. The model repository
    /// is an empty folder unless `configure` points `models_dir` elsewhere (see
    /// [`TestApp::spawn_with_demo_models`]). Returns once warm-up has loaded the models.
    pub async fn spawn_with(configure: impl FnOnce(&mut Settings)) -> Self {
        let app = Self::spawn_warming_up(configure).await;
        app.wait_until_warm().await;
        app
    }

    /// Like [`TestApp::spawn_with`], serving a copy of the demo models of the app's own
    /// ([`copy_demo_models`]; `settings.models_dir` points at it when `configure` runs).
    pub async fn spawn_with_demo_models(configure: impl FnOnce(&mut Settings)) -> Self {
        let app = Self::spawn_in(true, configure).await;
        app.wait_until_warm().await;
        app
    }

    /// Like [`TestApp::spawn_with`], but returns as soon as the server listens, while warm-up
    /// may still be loading models.
    pub async fn spawn_warming_up(configure: impl FnOnce(&mut Settings)) -> Self {
        Self::spawn_in(false, configure).await
    }

    async fn spawn_in(demo_models: bool, configure: impl FnOnce(&mut Settings)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let db_path = dir.path().join("jobs.db");
        let mut settings = Settings::for_tests(db_path.clone());
        settings.models_dir = dir.path().join("models");
        if demo_models {
            copy_demo_models(&settings.models_dir);
        }
        settings.ort_dylib_path = Some(onnxruntime_library());
        configure(&mut settings);
        Self::start(settings, Some(dir)).await
    }

    /// Waits (up to 60 s) until warm-up has finished.
    pub async fn wait_until_warm(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.ctx.lifecycle.is_loading() {
            assert!(Instant::now() < deadline, "warm-up did not finish in 60 s");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// On the given backend, after `configure` adjusts the settings.
    pub async fn spawn_on_backend(backend: Backend, configure: impl FnOnce(&mut Settings)) -> Self {
        match backend {
            Backend::Local => Self::spawn_with(configure).await,
            Backend::Distributed => Self::spawn_distributed_on(&test_redis_url(), configure).await,
        }
    }

    /// [`Backend::Distributed`] on the Redis at `redis_url` (a [`PrivateRedis`], for a test
    /// that stops it).
    pub async fn spawn_distributed_on(
        redis_url: &str,
        configure: impl FnOnce(&mut Settings),
    ) -> Self {
        let postgres = TestPostgres::create().await.expect("a fresh test database");
        let redis = RedisPrefix::new();
        let mut app = Self::spawn_with(|settings| {
            settings.database_url = Some(postgres.url().to_owned());
            settings.redis_url = Some(redis_url.to_owned());
            settings.redis_key_prefix = redis.prefix.clone();
            configure(settings);
        })
        .await;
        app.worker = Some(job_loops::start_for(&app.ctx));
        app._postgres = Some(postgres);
        app._redis = Some(redis);
        app
    }

    /// Starts on an existing settings value (e.g. the same SQLite file as a stopped app).
    pub async fn spawn_on(settings: Settings) -> Self {
        let app = Self::start(settings, None).await;
        app.wait_until_warm().await;
        app
    }

    async fn start(settings: Settings, dir: Option<tempfile::TempDir>) -> Self {
        let ctx = Arc::new(
            AppContext::build(&settings, Role::Server)
                .await
                .expect("app builds"),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind port 0");
        let address = listener.local_addr().expect("local address");
        let (shutdown, shutdown_requested) = oneshot::channel::<()>();
        let server = tokio::spawn(inference_engine_server::serve(
            listener,
            Arc::clone(&ctx),
            async move {
                let _ = shutdown_requested.await;
            },
        ));
        Self {
            address,
            client: reqwest::Client::new(),
            ctx,
            db_path: settings.sqlite_db_path,
            shutdown: Some(shutdown),
            server: Some(server),
            worker: None,
            _postgres: None,
            _redis: None,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// `http://host:port` of the gRPC listener (on a free port in tests), once it is bound.
    pub async fn grpc_url(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(address) = self.ctx.grpc_address.get() {
                return format!("http://{address}");
            }
            assert!(
                Instant::now() < deadline,
                "the gRPC listener did not start in 10 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// `POST path` with a JSON body and, if given, `X-API-Key`.
    pub async fn post(&self, path: &str, key: Option<&str>, body: &Value) -> reqwest::Response {
        let mut request = self.client.post(self.url(path)).json(body);
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        request.send().await.expect("request sent")
    }

    /// `POST path` with the dev key; fails the test unless the answer is 200, and returns its
    /// JSON body.
    pub async fn post_ok(&self, path: &str, body: &Value) -> Value {
        let response = self.post(path, Some(DEV_KEY), body).await;
        let status = response.status();
        let body = json_body(response).await;
        assert_eq!(status, 200, "POST {path}: {body}");
        body
    }

    /// `POST path` with `X-API-Key: key` on a task of its own, so that several requests can be
    /// in flight at once. The task yields the status and the JSON body (`null` if not JSON).
    pub fn spawn_post(&self, path: &str, key: &str, body: &Value) -> JoinHandle<(u16, Value)> {
        let request = self
            .client
            .post(self.url(path))
            .header("x-api-key", key)
            .json(body);
        tokio::spawn(async move {
            let response = request.send().await.expect("request sent");
            let status = response.status().as_u16();
            let text = response.text().await.expect("body");
            (status, serde_json::from_str(&text).unwrap_or(Value::Null))
        })
    }

    /// `GET path` with, if given, `X-API-Key`.
    pub async fn get(&self, path: &str, key: Option<&str>) -> reqwest::Response {
        let mut request = self.client.get(self.url(path));
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        request.send().await.expect("request sent")
    }

    /// Graceful shutdown: stop accepting, finish in-flight requests, flush job records. Returns
    /// the settings so a new app can start on the same database.
    pub async fn stop(mut self) -> (Settings, Option<tempfile::TempDir>) {
        if let Some(worker) = self.worker.take() {
            worker
                .stop(tokio::time::Instant::now() + Duration::from_secs(10))
                .await;
        }
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server ran");
        }
        (self.ctx.settings.clone(), self._dir.take())
    }
}

/// Every model version of the demo repository (`models/` of this checkout, generated by the
/// `scripts/gen_*.py` scripts), sorted: the one list of what the tests may expect there.
pub const DEMO_MODELS: [&str; 14] = [
    "bert_tiny/v1",
    "census_pipeline/v1",
    "diabetes_forest/v1",
    "digits_cnn/v1",
    "digits_cnn/v2",
    "iris/v1",
    "iris/v2",
    "iris_svc/v1",
    "lightgbm_classifier/v1",
    "mlp/v1",
    "sentence_embedder/v1",
    "text_classifier/v1",
    "text_topic/v1",
    "topic_classifier/v1",
];

/// A fresh copy of exactly the demo models ([`DEMO_MODELS`]), removed when dropped: tests serve
/// and scan this, never `models/` itself, so a model a user adds there changes no test.
pub fn demo_models_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_demo_models(dir.path());
    dir
}

/// Copies every demo model version ([`DEMO_MODELS`]) into `root`, as `<name>/<version>/`.
pub fn copy_demo_models(root: &Path) {
    for model in DEMO_MODELS {
        copy_folder(&demo_model(model), &root.join(model));
    }
}

/// The folder of one demo model version (`"iris/v1"`) in this checkout, to read or copy files
/// from.
pub fn demo_model(model: &str) -> PathBuf {
    assert!(
        DEMO_MODELS.contains(&model),
        "{model} is not a demo model (testkit::DEMO_MODELS)"
    );
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../models")
        .join(model)
}

fn copy_folder(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|err| panic!("{}: {err}", to.display()));
    let entries = std::fs::read_dir(from).unwrap_or_else(|err| panic!("{}: {err}", from.display()));
    for entry in entries {
        let entry = entry.expect("directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_folder(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target)
                .unwrap_or_else(|err| panic!("{}: {err}", entry.path().display()));
        }
    }
}

/// The ONNX Runtime library the tests load: `ORT_DYLIB_PATH` when set, else the one
/// `scripts/install-onnxruntime.sh` installs in this checkout (`onnxruntime/`). A missing
/// library fails the test, saying how to install it. Child engines get it as
/// `ORT_DYLIB_PATH` unless a test passes its own.
pub fn onnxruntime_library() -> PathBuf {
    let path = std::env::var_os("ORT_DYLIB_PATH").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../onnxruntime/libonnxruntime.so"),
        PathBuf::from,
    );
    assert!(
        path.exists(),
        "ONNX Runtime is not installed at {}: run scripts/install-onnxruntime.sh (or set \
         ORT_DYLIB_PATH)",
        path.display()
    );
    path
}

/// A child engine's environment: `envs`, with `ORT_DYLIB_PATH` the test library unless
/// `envs` sets it; `("ORT_DYLIB_PATH", "")` leaves it unset (a machine without the variable).
pub fn with_test_library(envs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = envs
        .iter()
        .filter(|(key, value)| !(*key == "ORT_DYLIB_PATH" && value.is_empty()))
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect();
    if !envs.iter().any(|(key, _)| *key == "ORT_DYLIB_PATH") {
        let library = onnxruntime_library().to_string_lossy().into_owned();
        all.push(("ORT_DYLIB_PATH".to_owned(), library));
    }
    all
}

/// The onnxruntime reference outputs of the demo models (`testdata/expected/`).
pub fn expected_outputs(model: &str, version: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/expected")
        .join(format!("{model}-{version}.json"));
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    serde_json::from_str(&text).expect("expected outputs are JSON")
}

/// Reads a response's JSON body, failing the test with the raw body if it is not JSON.
pub async fn json_body(response: reqwest::Response) -> Value {
    let text = response.text().await.expect("body");
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("not JSON ({err}): {text:?}"))
}

/// The real `inference-engine` binary running as a child process.
#[derive(Debug)]
pub struct EngineProcess {
    child: Child,
    pub address: SocketAddr,
    stdout_lines: Arc<std::sync::Mutex<Vec<String>>>,
}

impl EngineProcess {
    /// Runs `binary serve --host 127.0.0.1 --port 0` with exactly `envs` (plus PATH) and waits
    /// for its `listening` log line.
    pub fn start(binary: &Path, envs: &[(&str, &str)], working_dir: &Path) -> anyhow::Result<Self> {
        Self::spawn(
            binary,
            &["serve", "--host", "127.0.0.1", "--port", "0"],
            envs,
            working_dir,
            "listening",
        )
    }

    /// Runs `binary worker` and waits for its `worker started` log line.
    pub fn start_worker(
        binary: &Path,
        envs: &[(&str, &str)],
        working_dir: &Path,
    ) -> anyhow::Result<Self> {
        Self::spawn(binary, &["worker"], envs, working_dir, "worker started")
    }

    /// Runs the binary and waits (at most 30 s) for a log line whose `message` is `ready`;
    /// `address` is that line's `address` field, or 0.0.0.0:0 when it has none.
    pub fn spawn(
        binary: &Path,
        args: &[&str],
        envs: &[(&str, &str)],
        working_dir: &Path,
        ready: &str,
    ) -> anyhow::Result<Self> {
        let mut child = Command::new(binary)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            // Tests run engines side by side: gRPC on a free port unless a test picks one.
            .env("GRPC_PORT", "0")
            .envs(with_test_library(envs))
            .current_dir(working_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawning the engine")?;
        let stdout = child.stdout.take().context("stdout")?;
        let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        {
            let lines = Arc::clone(&lines);
            let ready = ready.to_owned();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Ok(entry) = serde_json::from_str::<Value>(&line)
                        && entry["message"] == ready.as_str()
                    {
                        let _ = ready_tx
                            .send(entry["address"].as_str().unwrap_or("0.0.0.0:0").to_owned());
                    }
                    if let Ok(mut lines) = lines.lock() {
                        lines.push(line);
                    }
                }
            });
        }
        let address = match ready_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(address) => address.parse().context("listening address")?,
            Err(_) => {
                let _ = child.kill();
                let output = child.wait_with_output()?;
                bail!(
                    "engine did not start: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
        };
        Ok(Self {
            child,
            address,
            stdout_lines: lines,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM (through `kill`, as an operator would).
    pub fn terminate(&self) -> anyhow::Result<()> {
        self.signal("TERM")
    }

    /// Sends SIGHUP: reload the configuration.
    pub fn hang_up(&self) -> anyhow::Result<()> {
        self.signal("HUP")
    }

    /// Waits (at most `deadline`) for a stdout line containing `text`; false if none came.
    pub async fn wait_for_line(&self, text: &str, deadline: Duration) -> bool {
        let started = Instant::now();
        while started.elapsed() < deadline {
            if self.stdout_lines().iter().any(|line| line.contains(text)) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// Sends SIGKILL: the process dies at once, mid-job if it has one.
    pub fn kill_hard(&mut self) -> anyhow::Result<()> {
        self.signal("KILL")?;
        self.child.wait()?;
        Ok(())
    }

    fn signal(&self, name: &str) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()?;
        if !status.success() {
            bail!("kill -{name} failed: {status}");
        }
        Ok(())
    }

    /// Waits for the process to exit, at most `deadline`.
    pub fn wait(&mut self, deadline: Duration) -> anyhow::Result<ExitStatus> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if started.elapsed() > deadline {
                let _ = self.child.kill();
                bail!("engine did not exit within {deadline:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Log lines written to stdout so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout_lines
            .lock()
            .map(|lines| lines.clone())
            .unwrap_or_default()
    }
}

impl Drop for EngineProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs the binary with `args` and exactly `envs`; returns its exit status and stderr.
pub fn run_to_exit(
    binary: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
    working_dir: &Path,
) -> anyhow::Result<(ExitStatus, String)> {
    let output = Command::new(binary)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(with_test_library(envs))
        .current_dir(working_dir)
        .stdin(Stdio::null())
        .output()
        .context("running the engine")?;
    Ok((
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}
