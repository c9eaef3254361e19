//! `AppContext`: every long-lived part of a running process, built once from `Settings`.
//!
//! Adapters are chosen here and nowhere else: PostgreSQL when `DATABASE_URL` is set (else
//! SQLite), Redis when `REDIS_URL` is set (else the in-process queue). A configured service that
//! cannot be reached stops the start: there is never a silent fall-back.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use inference_engine_core::auth::{ApiKeyTable, KeyConfigError, KeySource};
use inference_engine_core::config::{EngineConfig, ExecutionPolicy};
use inference_engine_core::jobs::AsyncJobService;
use inference_engine_core::observe::LogEvery;
use inference_engine_core::ports::{Clock, JobQueue, JobStore, QueueError, StoreError};
use inference_engine_core::ratelimit::{LocalRateLimiter, RateLimiter};
use inference_engine_core::redact::redact_url;
use inference_engine_core::registry::{
    BuiltinSet, ModelRegistry, ModelRepository, RegistryError, ServingConfig,
};
use inference_engine_core::runner::{DEFAULT_CANCEL_POLL, JobRunner, RetryPolicy, RunnerConfig};
use inference_engine_core::service::{
    Caller, InferenceService, PredictCommand, PredictFailure, Prediction, TensorCommand,
};
use inference_engine_core::tensor::Tensor;
use inference_engine_redis::{RedisJobQueue, RedisQueueConfig, RedisRateLimiter};
use inference_engine_store::{
    GroupCommitConfig, GroupCommitStore, MigrationReport, PostgresJobStore, SqliteJobStore,
    WalCheckpoints,
};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::clock::TokioClock;
use crate::engine_config::{EngineConfigError, load_engine_config, resolve_config_path};
use crate::lifecycle::Lifecycle;
use crate::local_queue::LocalJobQueue;
use crate::predictions::{Predictions, RunToEnd};
use crate::repository::{FolderRepository, RuntimeError, describe_runtimes, onnx_runtimes};
use crate::settings::Settings;

/// Why the process refuses to start. Each message is one line for stderr, naming the setting
/// to fix and never printing a secret.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("invalid API keys: {0}")]
    ApiKeys(#[from] KeyConfigError),
    #[error("job store: {0}")]
    Store(#[from] StoreError),
    #[error("job queue: {0}")]
    Queue(#[from] QueueError),
    #[error("models: {0}")]
    Registry(#[from] RegistryError),
    #[error("{0}")]
    Config(#[from] EngineConfigError),
    #[error("metrics: {0}")]
    Metrics(String),
    #[error("{0}")]
    OnnxRuntime(#[from] RuntimeError),
    #[error("{setting} {reason}")]
    InvalidSetting {
        setting: &'static str,
        reason: &'static str,
    },
}

/// What the process is for; it decides what must be configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The HTTP API (and, without Redis, the in-process job runner).
    Server,
    /// A queue consumer: needs `REDIS_URL`, serves no API, needs no API keys.
    Worker,
}

/// The job store in use, kept concretely so it can be closed on shutdown. Both batch the job
/// records of concurrent requests into shared transactions: SQLite on its writer thread,
/// PostgreSQL through a [`GroupCommitStore`] in front of it.
#[derive(Debug, Clone)]
enum StoreBackend {
    Sqlite(SqliteJobStore),
    Postgres {
        store: PostgresJobStore,
        writer: Arc<GroupCommitStore>,
    },
}

impl StoreBackend {
    /// PostgreSQL when `DATABASE_URL` is set (refusing to start if it cannot be reached or
    /// migrated), else SQLite at `SQLITE_DB_PATH`.
    async fn open(settings: &Settings) -> Result<(Self, Arc<dyn JobStore>), StoreError> {
        let writer = GroupCommitConfig {
            max_batch_jobs: settings.job_writer_max_batch.max(1),
            queue_capacity: settings.job_writer_queue_capacity.max(1),
        };
        match &settings.database_url {
            Some(url) => {
                let acquire_timeout = Duration::from_millis(settings.database_acquire_timeout_ms);
                let store = PostgresJobStore::connect_with(url, acquire_timeout).await?;
                tracing::info!(
                    database = %redact_url(url),
                    "job store: PostgreSQL, {}",
                    store.migrations()
                );
                let writer = Arc::new(GroupCommitStore::start(Arc::new(store.clone()), &writer));
                let jobs: Arc<dyn JobStore> = writer.clone();
                Ok((Self::Postgres { store, writer }, jobs))
            }
            None => {
                let wal = WalCheckpoints::bounded_to_mb(settings.sqlite_wal_max_mb);
                let sqlite =
                    SqliteJobStore::open_tuned(&settings.sqlite_db_path, &writer, &wal).await?;
                tracing::info!(
                    path = %settings.sqlite_db_path.display(),
                    "job store: SQLite, {}",
                    sqlite.migrations()
                );
                Ok((Self::Sqlite(sqlite.clone()), Arc::new(sqlite)))
            }
        }
    }

    /// What opening the store applied to the schema.
    fn migrations(&self) -> &MigrationReport {
        match self {
            Self::Sqlite(sqlite) => sqlite.migrations(),
            Self::Postgres { store, .. } => store.migrations(),
        }
    }

    /// Commits the queued job records, then closes the store.
    async fn close(&self) {
        match self {
            Self::Sqlite(sqlite) => sqlite.close().await,
            Self::Postgres { store, writer } => {
                writer.close().await;
                store.close().await;
            }
        }
    }
}

/// The queue in use.
#[derive(Debug, Clone)]
pub enum QueueBackend {
    /// No Redis: jobs run in this process.
    InProcess(LocalJobQueue),
    /// Shared by every server and worker process.
    Redis,
}

/// Everything a process shares between requests and jobs.
#[derive(Debug)]
pub struct AppContext {
    pub settings: Settings,
    pub role: Role,
    pub api_keys: Arc<ApiKeyTable>,
    pub inference: InferenceService,
    pub async_jobs: AsyncJobService,
    pub runner: JobRunner,
    pub jobs: Arc<dyn JobStore>,
    pub queue: Arc<dyn JobQueue>,
    pub queue_backend: QueueBackend,
    pub lifecycle: Arc<Lifecycle>,
    pub registry: ModelRegistry,
    /// Charges requests against `[rate_limits]`.
    pub rate_limiter: Arc<dyn RateLimiter>,
    /// Renders the process's metrics (`/metrics`).
    pub metrics: PrometheusHandle,
    /// The `engine.toml` in use, re-read by [`AppContext::reload`].
    pub config_path: Option<PathBuf>,
    /// The `job_queue_depth` series the last `/metrics` reported, so a drained one is set to 0
    /// (see `observe::job_queue_depth`). A std mutex: never held across an `.await`.
    pub queue_depth_series: std::sync::Mutex<std::collections::BTreeSet<(String, String)>>,
    /// Where the gRPC listener listens, once `serve` bound it (`GRPC_PORT=0` picks a port).
    pub grpc_address: std::sync::OnceLock<std::net::SocketAddr>,
    /// Sync predictions whose callers left and which still run (see [`Self::predict`]).
    predictions: Arc<Predictions>,
    store_backend: StoreBackend,
}

/// Every setting that makes the start impossible, in a fixed order: `build` refuses to start on
/// the first, `inference-engine check` reports them all.
pub fn setting_problems(settings: &Settings) -> Vec<StartupError> {
    let mut problems = Vec::new();
    let mut invalid = |setting, reason| {
        problems.push(StartupError::InvalidSetting { setting, reason });
    };
    if settings.max_body_bytes == 0 {
        invalid("MAX_BODY_BYTES", "must be at least 1");
    }
    if settings.executor_queue_capacity == 0 {
        invalid("EXECUTOR_QUEUE_CAPACITY", "must be at least 1");
    }
    if settings
        .jobs_max_attempts
        .is_some_and(|attempts| !(1..=10).contains(&attempts))
    {
        invalid("JOBS_MAX_ATTEMPTS", "must be between 1 and 10");
    }
    if settings.jobs_visibility_timeout_s == Some(0) {
        invalid("JOBS_VISIBILITY_TIMEOUT_S", "must be at least 1");
    }
    if settings.max_loaded_models == Some(0) {
        invalid(
            "MAX_LOADED_MODELS",
            "must be at least 1 (unset it for no cap)",
        );
    }
    if settings.max_loaded_memory_mb == Some(0) {
        invalid(
            "MAX_LOADED_MEMORY_MB",
            "must be at least 1 (unset it for no cap)",
        );
    }
    if settings.worker_batch == 0 {
        invalid("WORKER_BATCH", "must be at least 1");
    }
    problems
}

/// The first of [`setting_problems`], if any.
pub fn validate_settings(settings: &Settings) -> Result<(), StartupError> {
    setting_problems(settings)
        .into_iter()
        .next()
        .map_or(Ok(()), Err)
}

/// The serving part of the configuration: `engine.toml`, overridden by settings.
pub fn serving_config(
    settings: &Settings,
    file: &EngineConfig,
) -> Result<ServingConfig, StartupError> {
    let mut registry = file.registry.clone();
    if settings.max_loaded_models.is_some() {
        registry.max_loaded = settings.max_loaded_models;
    }
    if settings.max_loaded_memory_mb.is_some() {
        registry.max_memory_mb = settings.max_loaded_memory_mb;
    }
    let mut pools = file.execution.pools().clone();
    pools.insert("cpu".into(), settings.cpu_threads());
    pools.insert(
        "gpu".into(),
        settings
            .gpu_executor_workers
            .filter(|threads| *threads > 0)
            .or_else(|| file.execution.pools().get("gpu").copied())
            .unwrap_or(2),
    );
    if settings.cpu_executor_workers.is_none()
        && let Some(threads) = file.execution.pools().get("cpu")
    {
        pools.insert("cpu".into(), *threads);
    }
    let execution = ExecutionPolicy::new(
        file.execution.default_executor().to_owned(),
        pools,
        file.execution.policy().clone(),
    )
    .map_err(EngineConfigError::from)?;
    Ok(ServingConfig {
        registry,
        routing: file.routing.clone(),
        sla: file.sla.clone(),
        execution,
        rate_limits: file.rate_limits.clone(),
        executor_queue_capacity: settings.executor_queue_capacity,
    })
}

/// How long readiness waits for the job store and the queue to answer a ping.
const READINESS_BUDGET: Duration = Duration::from_millis(800);
/// Probes ask `/ready` every few seconds for the whole of an outage: a sample of the causes.
static READINESS_LOG: LogEvery = LogEvery::new(Duration::from_secs(10));

/// `/ready`'s reason for a job store that failed its ping with `err`.
fn store_reason(err: &StoreError) -> &'static str {
    match err {
        StoreError::CannotWrite(_) => "the job store cannot write (disk full or read-only)",
        _ => "the job store is unreachable",
    }
}

/// Why the server should not get traffic now (`/ready`, `/v2/health/ready`, gRPC
/// `ServerReady` and the health service all ask [`AppContext::readiness`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotReady {
    /// `draining`, `loading` or `degraded`.
    pub status: &'static str,
    pub reason: &'static str,
}

impl AppContext {
    /// Ready unless shutting down, warming up, or cut off from the job store or queue.
    pub async fn readiness(&self) -> Result<(), NotReady> {
        if self.lifecycle.is_draining() {
            return Err(NotReady {
                status: "draining",
                reason: "the server is shutting down",
            });
        }
        if self.lifecycle.is_loading() {
            return Err(NotReady {
                status: "loading",
                reason: "the models are warming up",
            });
        }
        // Both checks at once, each within a budget: `/ready` must answer within a second even
        // while a service hangs (a PostgreSQL outage made it wait for the pool's timeout).
        let (store, queue) = tokio::join!(
            tokio::time::timeout(READINESS_BUDGET, self.jobs.ping()),
            tokio::time::timeout(READINESS_BUDGET, self.queue.ping()),
        );
        let timed_out = || format!("no answer within {READINESS_BUDGET:?}");
        let failure = match (store, queue) {
            (Ok(Err(err)), _) => Some((err.to_string(), store_reason(&err))),
            (Err(_), _) => Some((timed_out(), "the job store is unreachable")),
            (_, Ok(Err(err))) => Some((err.to_string(), "the job queue is unreachable")),
            (_, Err(_)) => Some((timed_out(), "the job queue is unreachable")),
            (Ok(Ok(())), Ok(Ok(()))) => None,
        };
        if let Some((error, reason)) = failure {
            if let Some(held_back) = READINESS_LOG.admit() {
                tracing::warn!(%error, similar_not_logged = held_back, "readiness check: {reason}");
            }
            return Err(NotReady {
                status: "degraded",
                reason,
            });
        }
        Ok(())
    }

    /// Validates the settings and builds every part; must run inside a tokio runtime.
    pub async fn build(settings: &Settings, role: Role) -> Result<Self, StartupError> {
        validate_settings(settings)?;
        let api_keys = match role {
            Role::Server => {
                let keys = ApiKeyTable::from_config(
                    settings.api_keys.as_deref(),
                    settings.is_production(),
                )?;
                if keys.source() == KeySource::DevDefaults {
                    tracing::warn!(
                        "API_KEYS is not set: serving with the development keys dev-key and admin-key"
                    );
                }
                keys
            }
            Role::Worker => ApiKeyTable::none(),
        };
        if role == Role::Worker && settings.redis_url.is_none() {
            return Err(StartupError::InvalidSetting {
                setting: "REDIS_URL",
                reason: "is required by `worker` (without it, `serve` runs async jobs itself)",
            });
        }

        let builtins = match &settings.builtin_models {
            Some(list) => BuiltinSet::parse(list)?,
            None => BuiltinSet::default_for(settings.is_production()),
        };
        let metrics = crate::metrics::prometheus().map_err(StartupError::Metrics)?;
        crate::metrics::spawn_upkeep(metrics.clone());
        let config_path = resolve_config_path(settings.config.clone(), None)?;
        let engine_config = match &config_path {
            Some(path) => load_engine_config(path)?,
            None => EngineConfig::default(),
        };
        let runtimes = onnx_runtimes(settings)?;
        match describe_runtimes(&runtimes) {
            Ok(line) => tracing::info!(runtime = %line, "ONNX runtime ready"),
            Err(reason) => {
                tracing::warn!("ONNX models that need ONNX Runtime will not be ready: {reason}")
            }
        }
        let repository: Arc<dyn ModelRepository> =
            Arc::new(FolderRepository::new(settings.models_dir.clone(), runtimes));
        let registry = ModelRegistry::new(
            builtins,
            Some(repository),
            serving_config(settings, &engine_config)?,
        )?;
        let jobs_max_attempts = settings
            .jobs_max_attempts
            .unwrap_or(engine_config.jobs.max_attempts);
        let visibility_timeout = settings
            .jobs_visibility_timeout_s
            .map_or(engine_config.jobs.visibility_timeout, Duration::from_secs);

        let (store_backend, jobs) = StoreBackend::open(settings).await?;

        // Shared by every server process through Redis when there is one, else per process.
        let mut rate_limiter: Arc<dyn RateLimiter> = Arc::new(LocalRateLimiter::new());
        let (queue_backend, queue): (QueueBackend, Arc<dyn JobQueue>) = match &settings.redis_url {
            Some(url) => {
                let mut config =
                    RedisQueueConfig::new(url.clone(), settings.redis_key_prefix.clone());
                config.visibility_timeout = visibility_timeout;
                let redis = RedisJobQueue::connect(config.clone()).await?;
                if role == Role::Server {
                    rate_limiter = Arc::new(RedisRateLimiter::connect(&config).await?);
                }
                tracing::info!(redis = %redact_url(url), "job queue: Redis");
                (QueueBackend::Redis, Arc::new(redis))
            }
            None => {
                let local = LocalJobQueue::new(settings.local_queue_capacity);
                tracing::info!("job queue: in-process (set REDIS_URL to run workers)");
                (QueueBackend::InProcess(local.clone()), Arc::new(local))
            }
        };

        let lifecycle = Arc::new(Lifecycle::default());
        // A server is not ready until warm-up (started by `serve`) has loaded the models.
        if role == Role::Server && registry.serving().config.registry.warmup {
            lifecycle.set_loading(true);
        }
        let clock: Arc<dyn Clock> = Arc::new(TokioClock);
        let inference =
            InferenceService::new(registry.clone(), Arc::clone(&jobs), Arc::clone(&clock));
        let async_jobs = AsyncJobService::new(
            registry.clone(),
            Arc::clone(&jobs),
            Arc::clone(&queue),
            clock,
            jobs_max_attempts,
        );
        let runner = JobRunner::new(
            inference.clone(),
            Arc::clone(&jobs),
            Arc::clone(&queue),
            RunnerConfig {
                batch: settings.worker_batch,
                receive_wait: Duration::from_secs(1),
                visibility_timeout,
                retry: RetryPolicy {
                    base_delay: Duration::from_millis(settings.jobs_retry_base_ms),
                    max_delay: Duration::from_secs(60),
                },
                reconcile_grace: Duration::from_secs(settings.jobs_reconcile_grace_s),
                // One process owns a SQLite file and runs its jobs itself: whatever was left
                // running before this start died with the previous process.
                exclusive_since: matches!(
                    (&store_backend, &queue_backend),
                    (StoreBackend::Sqlite(_), QueueBackend::InProcess(_))
                )
                .then(|| inference.clock().now()),
                result_ttl: engine_config.jobs.result_ttl(),
                cancel_poll: DEFAULT_CANCEL_POLL,
            },
        );
        for pool in registry.serving().executors.pools() {
            tracing::info!(
                pool = pool.name(),
                threads = pool.threads(),
                "executor pool ready"
            );
        }
        tracing::info!(
            config = config_path.as_ref().map(|path| path.display().to_string()),
            models = registry.statuses().len(),
            models_dir = %settings.models_dir.display(),
            "model catalogue ready"
        );
        Ok(Self {
            settings: settings.clone(),
            role,
            api_keys: Arc::new(api_keys),
            inference,
            async_jobs,
            runner,
            jobs,
            queue,
            queue_backend,
            lifecycle,
            registry,
            metrics,
            rate_limiter,
            config_path,
            queue_depth_series: std::sync::Mutex::default(),
            grpc_address: std::sync::OnceLock::new(),
            predictions: Arc::default(),
            store_backend,
        })
    }

    /// Re-reads `engine.toml` and rescans the model repository, installing both in one swap.
    /// An invalid file changes nothing: the running configuration keeps serving.
    pub async fn reload(&self) -> Result<(), StartupError> {
        let engine_config = match &self.config_path {
            Some(path) => load_engine_config(path)?,
            None => EngineConfig::default(),
        };
        let config = serving_config(&self.settings, &engine_config)?;
        let registry = self.registry.clone();
        // Rescanning reads the repository's manifests from disk.
        tokio::task::spawn_blocking(move || registry.reconfigure(config))
            .await
            .map_err(|err| {
                StartupError::Registry(RegistryError::Repository(format!(
                    "the rescan was interrupted: {err}"
                )))
            })??;
        tracing::info!("configuration reloaded and model repository rescanned");
        Ok(())
    }

    /// When warm-up is on, loads every model (up to the LRU cap); `/ready` says `loading`
    /// until this returns.
    pub async fn warm_up(&self) {
        if self.registry.serving().config.registry.warmup {
            self.registry.warm_up().await;
            tracing::info!("warm-up finished");
        }
        self.lifecycle.set_loading(false);
    }

    /// Creates or upgrades the job-store schema without starting anything else, so it needs
    /// no API keys or models.
    /// Returns what it applied.
    pub async fn migrate(settings: &Settings) -> Result<MigrationReport, StartupError> {
        let (store, _) = StoreBackend::open(settings).await?;
        let report = store.migrations().clone();
        store.close().await;
        Ok(report)
    }

    /// In-process mode: hands every unfinished job of a previous process to this one's
    /// runner, so nothing stays `pending` or `running` forever after a restart.
    pub async fn resume_unfinished_jobs(&self) -> Result<usize, StartupError> {
        let QueueBackend::InProcess(local) = &self.queue_backend else {
            return Ok(0);
        };
        let now = self.inference.clock().now();
        let unfinished = self.jobs.stranded(now, now, now, u32::MAX).await?;
        let ids: Vec<_> = unfinished.iter().map(|job| job.id).collect();
        if !ids.is_empty() {
            tracing::info!(
                jobs = ids.len(),
                "resuming unfinished jobs of a previous run"
            );
            local.enqueue(&ids).await?;
        }
        Ok(ids.len())
    }

    /// [`InferenceService::predict`], run to the end: if the caller stops waiting (the client
    /// disconnected), the model run still ends with its job record committed.
    pub async fn predict(
        &self,
        caller: &Caller,
        command: PredictCommand,
    ) -> Result<Prediction, PredictFailure> {
        self.run_to_end(caller, move |inference, caller| async move {
            inference.predict(&caller, command).await
        })
        .await
    }

    /// [`InferenceService::infer_tensors`], run to the end as [`Self::predict`].
    pub async fn infer_tensors(
        &self,
        caller: &Caller,
        command: TensorCommand,
    ) -> Result<Prediction<Vec<Tensor>>, PredictFailure> {
        self.run_to_end(caller, move |inference, caller| async move {
            inference.infer_tensors(&caller, command).await
        })
        .await
    }

    /// `call` with owned handles, so that it can outlive the caller (see [`Predictions`]).
    fn run_to_end<F>(
        &self,
        caller: &Caller,
        call: impl FnOnce(InferenceService, Caller) -> F,
    ) -> RunToEnd<F>
    where
        F: Future + Send + 'static,
    {
        self.predictions
            .run_to_end(call(self.inference.clone(), caller.clone()))
    }

    /// The end of a drain that starts now: `SHUTDOWN_TIMEOUT_S` bounds the whole of it (the
    /// requests in flight, the running jobs, the predictions of clients that left), so a
    /// supervisor's stop timeout set a little above it is never reached.
    pub fn drain_deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + Duration::from_secs(self.settings.shutdown_timeout_s)
    }

    /// Lets the sync predictions still running finish (those whose clients left; until
    /// `deadline`, see [`Self::drain_deadline`]), commits every queued job record and closes
    /// the store. Call after the server stopped taking requests; records of every answered
    /// request are durable when this returns.
    pub async fn shutdown(&self, deadline: tokio::time::Instant) {
        let unfinished = self.predictions.wait_until_finished(deadline).await;
        if unfinished > 0 {
            tracing::error!(
                unfinished,
                "sync predictions still running at shutdown; their job records are lost"
            );
        }
        self.store_backend.close().await;
        tracing::info!("job records flushed; store closed");
    }
}
