//! Settings: every knob has a flag and an environment variable; precedence is
//! defaults < environment (`.env` loaded if present, never overriding real variables) < flags.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Environment {
    Development,
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Pretty,
}

/// `ONNX_RUNTIME`: which runtime ONNX models get.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum OnnxRuntimeChoice {
    /// Each model's manifest decides (`runtime`, default `onnxruntime`).
    #[default]
    Manifest,
    /// Every model on tract, whatever its manifest says; ONNX Runtime is not loaded.
    Tract,
}

/// `GRPC_PORT`: the Open Inference Protocol gRPC listener's port on the HTTP API's host, `0`
/// for any free port, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrpcPort {
    Off,
    Port(u16),
}

impl std::str::FromStr for GrpcPort {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        match value.trim() {
            "off" | "none" | "disabled" => Ok(Self::Off),
            port => port
                .parse()
                .map(Self::Port)
                .map_err(|_| format!("{port:?} is not a port number (0-65535) or `off`")),
        }
    }
}

/// Process-wide settings shared by every subcommand.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// `production` turns on the startup guards (real API keys required, no dev models).
    #[arg(
        long = "env",
        env = "ENV",
        value_enum,
        default_value = "development",
        global = true
    )]
    pub environment: Environment,

    /// `key:tenant:scope,scope;...`. Unset outside production: the dev keys `dev-key` and
    /// `admin-key`. Read from the environment only, so keys never show in a process list.
    #[arg(skip = std::env::var("API_KEYS").ok())]
    pub api_keys: Option<String>,

    /// SQLite job store file; its parent directory is created.
    #[arg(
        long,
        env = "SQLITE_DB_PATH",
        default_value = "data/jobs.db",
        global = true
    )]
    pub sqlite_db_path: PathBuf,

    /// Largest accepted request body, in bytes, whatever `Content-Length` claims.
    #[arg(
        long,
        env = "MAX_BODY_BYTES",
        default_value_t = 1_000_000,
        global = true
    )]
    pub max_body_bytes: usize,

    /// Log filter: a level (`info`) or directives (`info,inference_engine_server=debug`).
    #[arg(long, env = "LOG_LEVEL", default_value = "info", global = true)]
    pub log_level: String,

    #[arg(
        long,
        env = "LOG_FORMAT",
        value_enum,
        default_value = "json",
        global = true
    )]
    pub log_format: LogFormat,

    /// `engine.toml` (routing, registry, execution pools, SLA, jobs); default `engine.toml` in
    /// the working directory when present.
    #[arg(long = "config", env = "ENGINE_CONFIG", global = true)]
    pub config: Option<PathBuf>,

    /// Port of the Open Inference Protocol gRPC listener (same host as the HTTP API); `0`
    /// picks a free port, `off` disables it.
    #[arg(long, env = "GRPC_PORT", default_value = "8001", value_parser = clap::value_parser!(GrpcPort), global = true)]
    pub grpc_port: GrpcPort,

    /// Optional internal listener serving `/metrics` and `/debug/*` without authentication
    /// (e.g. `127.0.0.1:9100`); keep it off the public network.
    #[arg(long, env = "ADMIN_LISTEN_ADDR", global = true)]
    pub admin_listen_addr: Option<std::net::SocketAddr>,

    /// Model repository root: `<MODELS_DIR>/<name>/<version>/model.toml`.
    #[arg(long, env = "MODELS_DIR", default_value = "models", global = true)]
    pub models_dir: PathBuf,

    /// ONNX Runtime's shared library (`libonnxruntime.so`). Unset: `onnxruntime/` in the
    /// working directory (where `scripts/install-onnxruntime.sh` puts it), then the system's
    /// library path. A path that does not load stops the start.
    #[arg(long, env = "ORT_DYLIB_PATH", global = true)]
    pub ort_dylib_path: Option<PathBuf>,

    /// `manifest`: each model's `runtime` decides (default ONNX Runtime); `tract`: every ONNX
    /// model runs on tract and ONNX Runtime is not loaded.
    #[arg(
        long,
        env = "ONNX_RUNTIME",
        value_enum,
        default_value = "manifest",
        global = true
    )]
    pub onnx_runtime: OnnxRuntimeChoice,

    /// LRU cap of loaded models; overrides `[registry] max_loaded`.
    #[arg(long, env = "MAX_LOADED_MODELS", global = true)]
    pub max_loaded_models: Option<usize>,

    /// Cap on the memory of loaded models, in MiB of their measured sizes; overrides
    /// `[registry] max_memory_mb`.
    #[arg(long, env = "MAX_LOADED_MEMORY_MB", global = true)]
    pub max_loaded_memory_mb: Option<u64>,

    /// Threads of the `cpu` executor pool; overrides `[execution.pools] cpu`; defaults to the
    /// number of cores.
    #[arg(long, env = "CPU_EXECUTOR_WORKERS", global = true)]
    pub cpu_executor_workers: Option<usize>,

    /// Threads of the `gpu` executor pool; overrides `[execution.pools] gpu`; default 2.
    #[arg(long, env = "GPU_EXECUTOR_WORKERS", global = true)]
    pub gpu_executor_workers: Option<usize>,

    /// Requests that may wait for an executor thread before new ones get 503 `overloaded`.
    #[arg(
        long,
        env = "EXECUTOR_QUEUE_CAPACITY",
        default_value_t = 1_024,
        global = true
    )]
    pub executor_queue_capacity: usize,

    /// Built-in models to serve (`echo,sleep`); default `echo,sleep`, or `echo` in production.
    #[arg(long, env = "BUILTIN_MODELS", global = true)]
    pub builtin_models: Option<String>,

    /// Most job records committed in one transaction by the group-commit writer.
    #[arg(
        long,
        env = "JOB_WRITER_MAX_BATCH",
        default_value_t = 512,
        global = true
    )]
    pub job_writer_max_batch: usize,

    /// Job records that may wait for the writer before request handlers are made to wait.
    #[arg(
        long,
        env = "JOB_WRITER_QUEUE_CAPACITY",
        default_value_t = 8_192,
        global = true
    )]
    pub job_writer_queue_capacity: usize,

    /// Seconds in-flight requests (or a worker's running jobs) get to finish after
    /// SIGTERM/SIGINT before the process exits.
    #[arg(long, env = "SHUTDOWN_TIMEOUT_S", default_value_t = 30, global = true)]
    pub shutdown_timeout_s: u64,

    /// Milliseconds a client gets to send a request's head (request line and headers), from
    /// its connection's accept or its first byte after an idle keep-alive pause; a slower
    /// client (slowloris) is disconnected.
    #[arg(
        long,
        env = "HTTP_HEADER_READ_TIMEOUT_MS",
        default_value_t = 10_000,
        global = true
    )]
    pub http_header_read_timeout_ms: u64,

    /// Seconds a keep-alive connection may sit idle between requests before it is closed.
    #[arg(long, env = "HTTP_IDLE_TIMEOUT_S", default_value_t = 75, global = true)]
    pub http_idle_timeout_s: u64,

    /// Seconds a client gets to send a request's whole body once its head arrived; then 408
    /// `request_timeout` and the connection is closed.
    #[arg(
        long,
        env = "HTTP_BODY_READ_TIMEOUT_S",
        default_value_t = 30,
        global = true
    )]
    pub http_body_read_timeout_s: u64,

    /// Open connections each listener (HTTP API, internal, gRPC) holds at most; past it new
    /// connections are accepted and closed at once. Keep it below the file limit (`ulimit -n`).
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 10_000, global = true)]
    pub max_connections: usize,

    /// PostgreSQL job store (`postgresql://user:pass@host:5432/db`); unset: SQLite. Read from
    /// the environment only, so the password never shows in a process list.
    #[arg(skip = std::env::var("DATABASE_URL").ok().filter(|url| !url.trim().is_empty()))]
    pub database_url: Option<String>,

    /// Milliseconds a request waits for a PostgreSQL connection before it fails with 503
    /// `unavailable` and `Retry-After` (during an outage, rather than stalling until it ends).
    #[arg(
        long,
        env = "DATABASE_ACQUIRE_TIMEOUT_MS",
        default_value_t = 2_000,
        global = true
    )]
    pub database_acquire_timeout_ms: u64,

    /// Largest size of SQLite's write-ahead log, in MiB, after which the job writer copies it
    /// back before writing more. After a full disk, freeing this much lets the store recover.
    #[arg(long, env = "SQLITE_WAL_MAX_MB", default_value_t = 16, global = true)]
    pub sqlite_wal_max_mb: u64,

    /// Redis for the job queue (`redis://host:6379/0`); unset: jobs run in the `serve` process.
    /// Read from the environment only.
    #[arg(skip = std::env::var("REDIS_URL").ok().filter(|url| !url.trim().is_empty()))]
    pub redis_url: Option<String>,

    /// Prefix of every Redis key, so several deployments can share one Redis.
    #[arg(long, env = "REDIS_KEY_PREFIX", default_value = "ie:", global = true)]
    pub redis_key_prefix: String,

    /// Attempts an async job gets unless the request says otherwise (1 to 10); overrides
    /// `[jobs] max_attempts` (default 3).
    #[arg(long, env = "JOBS_MAX_ATTEMPTS", global = true)]
    pub jobs_max_attempts: Option<u32>,

    /// Seconds after which a claimed job that shows no sign of life is given to another worker;
    /// overrides `[jobs] visibility_timeout_s` (default 300).
    #[arg(long, env = "JOBS_VISIBILITY_TIMEOUT_S", global = true)]
    pub jobs_visibility_timeout_s: Option<u64>,

    /// First retry delay in ms; it doubles per attempt (with jitter), up to 60 s.
    #[arg(
        long,
        env = "JOBS_RETRY_BASE_MS",
        default_value_t = 1_000,
        global = true
    )]
    pub jobs_retry_base_ms: u64,

    /// Seconds between scans for jobs a crash left behind (pending but not queued, or running
    /// with an expired heartbeat).
    #[arg(
        long,
        env = "JOBS_RECONCILE_INTERVAL_S",
        default_value_t = 30,
        global = true
    )]
    pub jobs_reconcile_interval_s: u64,

    /// Seconds a pending job may wait before the reconciler assumes the queue lost it.
    #[arg(
        long,
        env = "JOBS_RECONCILE_GRACE_S",
        default_value_t = 60,
        global = true
    )]
    pub jobs_reconcile_grace_s: u64,

    /// Job loops per process (each runs up to `WORKER_BATCH` jobs at once); default 2 per core.
    #[arg(long = "concurrency", env = "WORKER_CONCURRENCY", global = true)]
    pub worker_concurrency: Option<usize>,

    /// Deliveries one job loop takes and runs at once.
    #[arg(long, env = "WORKER_BATCH", default_value_t = 32, global = true)]
    pub worker_batch: usize,

    /// Jobs the in-process queue holds (without Redis) before new ones wait for the reconciler.
    #[arg(
        long,
        env = "LOCAL_QUEUE_CAPACITY",
        default_value_t = 100_000,
        global = true
    )]
    pub local_queue_capacity: usize,
}

impl Settings {
    pub fn is_production(&self) -> bool {
        self.environment == Environment::Production
    }

    /// Threads of the `cpu` pool: the configured number, or one per core.
    pub fn cpu_threads(&self) -> usize {
        self.cpu_executor_workers
            .filter(|n| *n > 0)
            .unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
            })
    }

    /// Job loops per process.
    pub fn worker_loops(&self) -> usize {
        self.worker_concurrency
            .filter(|n| *n > 0)
            .unwrap_or_else(|| {
                2 * std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
            })
    }

    /// Settings for tests and embedding: development defaults with the given SQLite file.
    pub fn for_tests(sqlite_db_path: PathBuf) -> Self {
        Self {
            environment: Environment::Development,
            api_keys: None,
            sqlite_db_path,
            max_body_bytes: 1_000_000,
            log_level: "warn".into(),
            log_format: LogFormat::Json,
            config: None,
            admin_listen_addr: None,
            grpc_port: GrpcPort::Port(0),
            models_dir: PathBuf::from("models"),
            ort_dylib_path: None,
            onnx_runtime: OnnxRuntimeChoice::Manifest,
            max_loaded_models: None,
            max_loaded_memory_mb: None,
            cpu_executor_workers: Some(2),
            gpu_executor_workers: Some(1),
            executor_queue_capacity: 1_024,
            builtin_models: None,
            job_writer_max_batch: 512,
            job_writer_queue_capacity: 8_192,
            shutdown_timeout_s: 30,
            http_header_read_timeout_ms: 10_000,
            http_idle_timeout_s: 75,
            http_body_read_timeout_s: 30,
            max_connections: 10_000,
            database_url: None,
            database_acquire_timeout_ms: 2_000,
            sqlite_wal_max_mb: 16,
            redis_url: None,
            redis_key_prefix: "ie:".into(),
            jobs_max_attempts: None,
            jobs_visibility_timeout_s: None,
            jobs_retry_base_ms: 1_000,
            jobs_reconcile_interval_s: 30,
            jobs_reconcile_grace_s: 60,
            worker_concurrency: Some(2),
            worker_batch: 32,
            local_queue_capacity: 100_000,
        }
    }
}

/// Loads `.env` from the working directory if present; real environment variables win.
pub fn load_dotenv() -> Result<(), String> {
    match dotenvy::dotenv() {
        Ok(_) => Ok(()),
        Err(err) if err.not_found() => Ok(()),
        Err(err) => Err(format!("cannot read .env: {err}")),
    }
}
