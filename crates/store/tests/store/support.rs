//! Fixtures: a fresh store per engine and jobs to put in it.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use inference_engine_core::auth::TenantId;
use inference_engine_core::job::{Job, JobId, JobMode, JobStatus, RequestId};
use inference_engine_core::model::ModelName;
use inference_engine_core::ports::JobStore;
use inference_engine_store::testing::{TestPostgres, TestSqlite};
use inference_engine_store::{PostgresJobStore, SqliteJobStore};

/// Runs each listed `async fn case(harness: &Harness)` of the calling module twice, as
/// `case::sqlite` and `case::postgres`.
macro_rules! both_engines {
    ($($case:ident),* $(,)?) => {
        $(
            mod $case {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    let harness = crate::support::Harness::sqlite().await;
                    super::$case(&harness).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    let harness = crate::support::Harness::postgres().await;
                    super::$case(&harness).await;
                }
            }
        )*
    };
}

/// Where a harness keeps its data; dropped (file deleted, database dropped) after the store.
#[derive(Debug)]
pub(crate) enum Database {
    Sqlite(TestSqlite),
    Postgres(TestPostgres),
}

/// One engine's store on a database of its own.
#[derive(Debug)]
pub(crate) struct Harness {
    pub(crate) store: Arc<dyn JobStore>,
    pub(crate) database: Database,
}

impl Harness {
    pub(crate) async fn sqlite() -> Self {
        let database = TestSqlite::new().unwrap();
        let store = Arc::new(database.open().await.unwrap());
        Self {
            store,
            database: Database::Sqlite(database),
        }
    }

    /// Fails the test when PostgreSQL cannot be reached: it is never skipped.
    pub(crate) async fn postgres() -> Self {
        let database = TestPostgres::create()
            .await
            .unwrap_or_else(|err| panic!("{err}"));
        let store = Arc::new(database.connect().await.unwrap());
        Self {
            store,
            database: Database::Postgres(database),
        }
    }

    /// A second store on the same database, as another process would open it.
    pub(crate) async fn reopen(&self) -> Arc<dyn JobStore> {
        match &self.database {
            Database::Sqlite(database) => {
                Arc::new(SqliteJobStore::open(database.path()).await.unwrap())
            }
            Database::Postgres(database) => {
                Arc::new(PostgresJobStore::connect(database.url()).await.unwrap())
            }
        }
    }

    pub(crate) async fn insert(&self, jobs: &[Job]) {
        self.store.insert(jobs.to_vec()).await.unwrap();
    }

    pub(crate) async fn get(&self, id: JobId) -> Job {
        self.store.get(id).await.unwrap().expect("job exists")
    }
}

/// Now, at the microsecond precision both engines store.
pub(crate) fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap()
}

pub(crate) fn seconds(n: i64) -> TimeDelta {
    TimeDelta::seconds(n)
}

pub(crate) fn tenant(name: &str) -> TenantId {
    TenantId::parse(name).unwrap()
}

pub(crate) fn model(name: &str) -> ModelName {
    ModelName::parse(name).unwrap()
}

/// A fresh async job of `tenant_a` for model `echo`, pending, created now.
pub(crate) fn job() -> Job {
    let now = now();
    Job {
        input: Some(inference_engine_core::job::Payload::Single(
            serde_json::json!({"x": 1}),
        )),
        max_attempts: 3,
        ..Job::new(
            JobMode::Async,
            tenant("tenant_a"),
            RequestId::generate(),
            model("echo"),
            now,
        )
    }
}

/// A job in `status`, with the fields a job in that status has.
pub(crate) fn job_in(status: JobStatus) -> Job {
    let mut job = job();
    job.status = status;
    if status != JobStatus::Pending {
        job.attempts = 1;
        job.started_at = Some(job.created_at);
        job.heartbeat_at = Some(job.created_at);
    }
    if status.is_terminal() {
        job.finished_at = Some(job.created_at + seconds(1));
    }
    job
}
