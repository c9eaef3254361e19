//! `AppContext`: every long-lived part of a running process, built once from `Settings`.

use std::sync::Arc;

use inference_engine_core::auth::{ApiKeyTable, KeyConfigError, KeySource};
use inference_engine_core::executor::{ExecutorConfig, ExecutorPool};
use inference_engine_core::ports::{JobStore, StoreError};
use inference_engine_core::registry::{BuiltinSet, ModelRegistry, RegistryError};
use inference_engine_core::service::InferenceService;
use inference_engine_store::{GroupCommitConfig, GroupCommitStore, SqliteJobStore};

use crate::clock::TokioClock;
use crate::lifecycle::Lifecycle;
use crate::settings::Settings;

/// Why the process refuses to start. Each message is one line for stderr, naming the setting
/// to fix and never printing a secret.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("invalid API keys: {0}")]
    ApiKeys(#[from] KeyConfigError),
    #[error("job store: {0}")]
    Store(#[from] StoreError),
    #[error("BUILTIN_MODELS: {0}")]
    Registry(#[from] RegistryError),
    #[error("cannot start the executor threads: {0}")]
    Executor(#[source] std::io::Error),
    #[error("{setting} {reason}")]
    InvalidSetting {
        setting: &'static str,
        reason: &'static str,
    },
}

/// Everything a serving process shares between requests.
#[derive(Debug)]
pub struct AppContext {
    pub settings: Settings,
    pub api_keys: Arc<ApiKeyTable>,
    pub inference: InferenceService,
    pub jobs: Arc<dyn JobStore>,
    pub lifecycle: Arc<Lifecycle>,
    pub executor: Arc<ExecutorPool>,
    job_writer: Arc<GroupCommitStore>,
    sqlite: SqliteJobStore,
}

impl AppContext {
    /// Validates the settings and builds every part; must run inside a tokio runtime.
    pub async fn build(settings: &Settings) -> Result<Self, StartupError> {
        if settings.max_body_bytes == 0 {
            return Err(StartupError::InvalidSetting {
                setting: "MAX_BODY_BYTES",
                reason: "must be at least 1",
            });
        }
        if settings.executor_queue_capacity == 0 {
            return Err(StartupError::InvalidSetting {
                setting: "EXECUTOR_QUEUE_CAPACITY",
                reason: "must be at least 1",
            });
        }
        let api_keys = Arc::new(ApiKeyTable::from_config(
            settings.api_keys.as_deref(),
            settings.is_production(),
        )?);
        if api_keys.source() == KeySource::DevDefaults {
            tracing::warn!(
                "API_KEYS is not set: serving with the development keys dev-key and admin-key"
            );
        }

        let builtins = match &settings.builtin_models {
            Some(list) => BuiltinSet::parse(list)?,
            None => BuiltinSet::default_for(settings.is_production()),
        };
        let registry = Arc::new(ModelRegistry::with_builtins(builtins)?);

        let executor = Arc::new(
            ExecutorPool::start(&ExecutorConfig {
                name: "cpu".into(),
                threads: settings.cpu_threads(),
                queue_capacity: settings.executor_queue_capacity,
            })
            .map_err(StartupError::Executor)?,
        );

        let sqlite = SqliteJobStore::open(&settings.sqlite_db_path).await?;
        let job_writer = Arc::new(GroupCommitStore::start(
            Arc::new(sqlite.clone()),
            &GroupCommitConfig {
                max_batch_jobs: settings.job_writer_max_batch.max(1),
                queue_capacity: settings.job_writer_queue_capacity.max(1),
            },
        ));
        let jobs: Arc<dyn JobStore> = job_writer.clone();
        tracing::info!(
            path = %settings.sqlite_db_path.display(),
            executor_threads = executor.threads(),
            "job store and executors ready"
        );

        let inference = InferenceService::new(
            registry,
            Arc::clone(&executor),
            Arc::clone(&jobs),
            Arc::new(TokioClock),
        );
        Ok(Self {
            settings: settings.clone(),
            api_keys,
            inference,
            jobs,
            lifecycle: Arc::new(Lifecycle::default()),
            executor,
            job_writer,
            sqlite,
        })
    }

    /// Creates or upgrades the job-store schema without starting anything else, so it needs
    /// no API keys or models.
    pub async fn migrate(settings: &Settings) -> Result<(), StartupError> {
        let sqlite = SqliteJobStore::open(&settings.sqlite_db_path).await?;
        sqlite.close().await;
        Ok(())
    }

    /// Commits every queued job record and closes the store. Call after the server stopped
    /// taking requests; records of every answered request are durable when this returns.
    pub async fn shutdown(&self) {
        self.job_writer.close().await;
        self.sqlite.close().await;
        tracing::info!("job records flushed; store closed");
    }
}
