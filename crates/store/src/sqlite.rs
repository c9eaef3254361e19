//! The SQLite job store: the zero-setup default (`SQLITE_DB_PATH`, `data/jobs.db`).
//!
//! WAL journal with `synchronous=NORMAL`: a commit survives a crash of the process (the WAL is
//! written before `COMMIT` returns) and readers never block the writer. Writes arrive already
//! batched by the group-commit writer, so each call is one transaction.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use inference_engine_core::job::{Job, JobId};
use chrono::{DateTime, Utc};
use inference_engine_core::ports::{
    CancelOutcome, Claim, ClaimRequest, JobFilter, JobStore, SettleRequest, StoreError, Submitted,
};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, SqlSafeStr, Sqlite};

use crate::codec::JobRow;

/// How long a connection waits for a lock held by another process before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Readers (job lookups) plus the one writer.
const MAX_CONNECTIONS: u32 = 4;
/// Rows per INSERT statement: 21 columns × 512 rows stays under SQLite's 32,766 variables.
const ROWS_PER_STATEMENT: usize = 512;

const JOB_COLUMNS: &str = "id, tenant_id, request_id, mode, status, model, version, input, \
     result, error_type, error_message, attempts, max_attempts, created_at, started_at, \
     finished_at, timeout_ms, idempotency_key, request_fingerprint, heartbeat_at, not_before";

/// The ordered, embedded SQLite migrations. Additive only; a test rejects `DROP`.
pub const MIGRATIONS: [(i64, &str, &str); 2] = [
    (1, "jobs", include_str!("../migrations/sqlite/0001_jobs.sql")),
    (
        2,
        "async jobs",
        include_str!("../migrations/sqlite/0002_async_jobs.sql"),
    ),
];

fn migrator() -> Migrator {
    Migrator::with_migrations(
        MIGRATIONS
            .iter()
            .map(|(version, description, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*description),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

fn unavailable(err: &sqlx::Error) -> StoreError {
    StoreError::Unavailable(err.to_string())
}

/// Jobs in a local SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteJobStore {
    pool: SqlitePool,
    path: PathBuf,
}

impl SqliteJobStore {
    /// Opens (creating the file and its parent directory if needed) and migrates.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(parent) = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent).map_err(|err| {
                StoreError::Unavailable(format!("cannot create {}: {err}", parent.display()))
            })?;
        }
        let options = SqliteConnectOptions::from_str("sqlite:")
            .map_err(|err| unavailable(&err))?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect_with(options)
            .await
            .map_err(|err| {
                StoreError::Unavailable(format!("cannot open {}: {err}", path.display()))
            })?;
        let store = Self {
            pool,
            path: path.to_owned(),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Applies pending migrations; a no-op when the schema is current.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        migrator().run(&self.pool).await.map_err(|err| {
            StoreError::Unavailable(format!("migrating {}: {err}", self.path.display()))
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes every connection, checkpointing the WAL.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn read_row(row: &SqliteRow) -> Result<JobRow, sqlx::Error> {
    Ok(JobRow {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        request_id: row.try_get("request_id")?,
        mode: row.try_get("mode")?,
        status: row.try_get("status")?,
        model: row.try_get("model")?,
        version: row.try_get("version")?,
        input: row.try_get("input")?,
        result: row.try_get("result")?,
        error_type: row.try_get("error_type")?,
        error_message: row.try_get("error_message")?,
        attempts: row.try_get("attempts")?,
        max_attempts: row.try_get("max_attempts")?,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        timeout_ms: row.try_get("timeout_ms")?,
        idempotency_key: row.try_get("idempotency_key")?,
        request_fingerprint: row.try_get("request_fingerprint")?,
        heartbeat_at: row.try_get("heartbeat_at")?,
        not_before: row.try_get("not_before")?,
    })
}

#[async_trait]
impl JobStore for SqliteJobStore {
    async fn insert(&self, jobs: Vec<Job>) -> Result<(), StoreError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let rows: Vec<JobRow> = jobs.iter().map(JobRow::from).collect();
        let mut transaction = self.pool.begin().await.map_err(|err| unavailable(&err))?;
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let mut insert =
                QueryBuilder::<Sqlite>::new(format!("INSERT INTO jobs ({JOB_COLUMNS}) "));
            insert.push_values(chunk, |mut values, row| {
                values
                    .push_bind(row.id.clone())
                    .push_bind(row.tenant_id.clone())
                    .push_bind(row.request_id.clone())
                    .push_bind(row.mode.clone())
                    .push_bind(row.status.clone())
                    .push_bind(row.model.clone())
                    .push_bind(row.version.clone())
                    .push_bind(row.input.clone())
                    .push_bind(row.result.clone())
                    .push_bind(row.error_type.clone())
                    .push_bind(row.error_message.clone())
                    .push_bind(row.attempts)
                    .push_bind(row.max_attempts)
                    .push_bind(row.created_at)
                    .push_bind(row.started_at)
                    .push_bind(row.finished_at)
                    .push_bind(row.timeout_ms)
                    .push_bind(row.idempotency_key.clone())
                    .push_bind(row.request_fingerprint.clone())
                    .push_bind(row.heartbeat_at)
                    .push_bind(row.not_before);
            });
            insert
                .build()
                .execute(&mut *transaction)
                .await
                .map_err(|err| unavailable(&err))?;
        }
        transaction.commit().await.map_err(|err| unavailable(&err))
    }

    async fn get(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?"
        )))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(|err| unavailable(&err))?;
        row.map(|row| {
            read_row(&row)
                .map_err(|err| StoreError::Corrupt(err.to_string()))
                .and_then(Job::try_from)
        })
        .transpose()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(|err| unavailable(&err))
    }

    async fn submit(&self, _job: Job, _ttl: Duration) -> Result<Submitted, StoreError> {
        Err(not_yet())
    }

    async fn list(&self, _filter: &JobFilter) -> Result<Vec<Job>, StoreError> {
        Err(not_yet())
    }

    async fn cancel(&self, _id: JobId, _now: DateTime<Utc>) -> Result<CancelOutcome, StoreError> {
        Err(not_yet())
    }

    async fn claim(
        &self,
        _requests: &[ClaimRequest],
        _now: DateTime<Utc>,
    ) -> Result<Vec<Claim>, StoreError> {
        Err(not_yet())
    }

    async fn settle(
        &self,
        _settlements: Vec<SettleRequest>,
        _now: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError> {
        Err(not_yet())
    }

    async fn heartbeat(&self, _ids: &[JobId], _now: DateTime<Utc>) -> Result<(), StoreError> {
        Err(not_yet())
    }

    async fn stranded(
        &self,
        _now: DateTime<Utc>,
        _pending_before: DateTime<Utc>,
        _lease_expired_before: DateTime<Utc>,
        _limit: u32,
    ) -> Result<Vec<Job>, StoreError> {
        Err(not_yet())
    }
}

// PLACEHOLDER until the async-job queries land.
fn not_yet() -> StoreError {
    StoreError::Unavailable("not implemented yet".into())
}

#[cfg(test)]
mod tests {
    use chrono::{TimeDelta, Utc};
    use inference_engine_core::auth::TenantId;
    use inference_engine_core::job::{JobFailure, JobMode, JobStatus, RequestId};
    use inference_engine_core::model::{ModelName, ModelVersion};
    use serde_json::json;

    use super::*;

    fn job(status: JobStatus) -> Job {
        let now = Utc::now();
        Job {
            id: JobId::new(),
            tenant_id: TenantId::parse("tenant_a").unwrap(),
            request_id: RequestId::parse("req-1").unwrap(),
            mode: JobMode::Sync,
            status,
            model: ModelName::parse("echo").unwrap(),
            version: Some(ModelVersion::parse("v1").unwrap()),
            input: None,
            result: (status == JobStatus::Succeeded).then(|| json!({"a": [1, 2.5, "x", null]})),
            failure: (status == JobStatus::Failed).then(|| JobFailure {
                error_type: "invalid_input".into(),
                message: "bad".into(),
            }),
            attempts: 1,
            max_attempts: 1,
            created_at: now,
            started_at: Some(now + TimeDelta::microseconds(5)),
            finished_at: Some(now + TimeDelta::microseconds(9)),
            timeout_ms: Some(250),
            idempotency_key: None,
            request_fingerprint: Some("abc".into()),
            heartbeat_at: None,
            not_before: Some(now),
        }
    }

    /// Timestamps are stored with microsecond precision.
    fn truncated(mut job: Job) -> Job {
        fn trim(at: chrono::DateTime<Utc>) -> chrono::DateTime<Utc> {
            chrono::DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap()
        }
        job.created_at = trim(job.created_at);
        job.started_at = job.started_at.map(trim);
        job.finished_at = job.finished_at.map(trim);
        job.not_before = job.not_before.map(trim);
        job
    }

    #[tokio::test]
    async fn jobs_read_back_exactly_as_written_after_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dir/jobs.db");
        let succeeded = job(JobStatus::Succeeded);
        let failed = job(JobStatus::Failed);
        {
            let store = SqliteJobStore::open(&path).await.unwrap();
            store
                .insert(vec![succeeded.clone(), failed.clone()])
                .await
                .unwrap();
            store.close().await;
        }
        let reopened = SqliteJobStore::open(&path).await.unwrap();
        assert_eq!(
            reopened.get(succeeded.id).await.unwrap(),
            Some(truncated(succeeded))
        );
        assert_eq!(
            reopened.get(failed.id).await.unwrap(),
            Some(truncated(failed))
        );
        assert_eq!(reopened.get(JobId::new()).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_batch_is_atomic_a_duplicate_id_commits_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteJobStore::open(&dir.path().join("jobs.db"))
            .await
            .unwrap();
        let existing = job(JobStatus::Succeeded);
        store.insert(vec![existing.clone()]).await.unwrap();
        let fresh = job(JobStatus::Succeeded);
        let result = store.insert(vec![fresh.clone(), existing]).await;
        assert!(result.is_err());
        assert_eq!(store.get(fresh.id).await.unwrap(), None);
    }

    #[tokio::test]
    async fn large_batches_span_several_statements() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteJobStore::open(&dir.path().join("jobs.db"))
            .await
            .unwrap();
        let jobs: Vec<Job> = (0..1_100).map(|_| job(JobStatus::Succeeded)).collect();
        let last = jobs[1_099].id;
        store.insert(jobs).await.unwrap();
        assert!(store.get(last).await.unwrap().is_some());
    }

    #[test]
    fn migrations_never_drop_anything() {
        for (version, _, sql) in MIGRATIONS {
            let upper: String = sql
                .lines()
                .filter(|line| !line.trim_start().starts_with("--"))
                .collect::<Vec<_>>()
                .join("\n")
                .to_ascii_uppercase();
            assert!(
                !upper.contains("DROP ") && !upper.contains("DELETE "),
                "migration {version} drops data"
            );
        }
    }
}
