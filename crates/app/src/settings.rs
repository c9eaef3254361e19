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

    /// Threads of the `cpu` executor pool; defaults to the number of cores.
    #[arg(long, env = "CPU_EXECUTOR_WORKERS", global = true)]
    pub cpu_executor_workers: Option<usize>,

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

    /// Seconds in-flight requests get to finish after SIGTERM/SIGINT before the server exits.
    #[arg(long, env = "SHUTDOWN_TIMEOUT_S", default_value_t = 30, global = true)]
    pub shutdown_timeout_s: u64,
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

    /// Settings for tests and embedding: development defaults with the given SQLite file.
    pub fn for_tests(sqlite_db_path: PathBuf) -> Self {
        Self {
            environment: Environment::Development,
            api_keys: None,
            sqlite_db_path,
            max_body_bytes: 1_000_000,
            log_level: "warn".into(),
            log_format: LogFormat::Json,
            cpu_executor_workers: Some(2),
            executor_queue_capacity: 1_024,
            builtin_models: None,
            job_writer_max_batch: 512,
            job_writer_queue_capacity: 8_192,
            shutdown_timeout_s: 30,
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
