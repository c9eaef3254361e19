//! The SQLite job store: the zero-setup default (`SQLITE_DB_PATH`, `data/jobs.db`).
//!
//! WAL journal with `synchronous=NORMAL`: a commit survives a crash of the process (the WAL is
//! written before `COMMIT` returns) and readers never block the writer. Job records are
//! committed by a writer thread with its own connection ([`writer`]), which batches the records
//! of concurrent requests into one transaction; everything else goes through the sqlx pool.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use inference_engine_core::job::{Job, JobId};
use inference_engine_core::ports::{
    CancelOutcome, Claim, ClaimRequest, CommitReport, JobFilter, JobStore, PendingCommit,
    PendingCount, SettleRequest, StoreError, Submitted,
};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, SqlSafeStr, Sqlite, Transaction};

use crate::codec::{JobRow, pending_count};
use crate::common::{
    CANCELLED_ERROR_TYPE, CANCELLED_MESSAGE, SUBMIT_ROUNDS, SettleColumns, SettleKind,
    claim_outcome, distinct, distinct_claims, expand_claims, expand_settled, idempotency_cutoff,
};
use crate::group_commit::GroupCommitConfig;
use crate::migrations::{MigrationReport, PendingMigrations};
use crate::write_health::WriteHealth;

/// How long a connection waits for a lock held by another process before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Readers (job lookups) and the writes other than job records (claims, settlements,
/// idempotent submissions); job records have the writer thread's own connection.
const MAX_CONNECTIONS: u32 = 4;

/// Ids per `IN (…)` list, well under SQLite's 32,766 variables.
const IDS_PER_STATEMENT: usize = 10_000;

/// Every column of `jobs`, in [`JobRow`] order; a macro so queries stay `&'static str`.
macro_rules! job_columns {
    () => {
        "id, tenant_id, request_id, mode, status, model, version, input, result, error_type, \
         error_message, attempts, max_attempts, created_at, started_at, finished_at, timeout_ms, \
         idempotency_key, request_fingerprint, heartbeat_at, not_before, steps"
    };
}

mod writer;

/// Pending async jobs per model and version. The `status IN (…)` term repeats the condition of
/// the partial index `jobs_unfinished`: SQLite uses a partial index only when the query states
/// the index's own condition (it does not derive it from `status = 'pending'`), and without it
/// this would scan every job ever recorded. A test checks the plan.
const PENDING_BY_MODEL: &str = "SELECT model, version, COUNT(*) AS pending FROM jobs \
     WHERE status IN ('pending', 'running') AND status = 'pending' AND mode = 'async' \
     GROUP BY model, version";

/// The ordered, embedded SQLite migrations. Additive only; a test rejects `DROP`.
pub const MIGRATIONS: [(i64, &str, &str); 3] = [
    (
        1,
        "jobs",
        include_str!("../migrations/sqlite/0001_jobs.sql"),
    ),
    (
        2,
        "async jobs",
        include_str!("../migrations/sqlite/0002_async_jobs.sql"),
    ),
    (
        3,
        "pipeline steps",
        include_str!("../migrations/sqlite/0003_pipeline_steps.sql"),
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
    crate::common::store_error(err)
}

/// Jobs in a local SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteJobStore {
    pool: SqlitePool,
    /// Commits the job records ([`JobStore::insert`]) on a thread of its own.
    writer: Arc<writer::JobWriter>,
    /// Open while writes fail for lack of space (or a read-only file): `ping` then fails.
    health: Arc<WriteHealth>,
    path: PathBuf,
    migrations: MigrationReport,
}

impl SqliteJobStore {
    /// Opens (creating the file and its parent directory if needed) and migrates, with the
    /// default batching of the job writer.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, &GroupCommitConfig::default()).await
    }

    /// [`Self::open`] with the job writer's batch size and queue capacity.
    pub async fn open_with(path: &Path, writer: &GroupCommitConfig) -> Result<Self, StoreError> {
        Self::open_tuned(path, writer, &WalCheckpoints::default()).await
    }

    /// [`Self::open_with`] with the WAL's checkpoint schedule.
    pub async fn open_tuned(
        path: &Path,
        writer: &GroupCommitConfig,
        checkpoints: &WalCheckpoints,
    ) -> Result<Self, StoreError> {
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
            .busy_timeout(BUSY_TIMEOUT)
            // Checkpoints run in the background (below), not inside whichever commit happens
            // to cross the threshold: that commit would stall every request waiting on it.
            .pragma("wal_autocheckpoint", "0")
            .pragma("journal_size_limit", checkpoints.max_wal_bytes.to_string());
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect_with(options)
            .await
            .map_err(|err| {
                StoreError::Unavailable(format!("cannot open {}: {err}", path.display()))
            })?;
        let migrations = migrate(&pool, path).await?;
        // After migrating: the writer's statement needs the current schema. Opening a file is
        // blocking work, so it runs off the async runtime.
        let health = Arc::new(WriteHealth::default());
        let writer = {
            let (path, config) = (path.to_owned(), writer.clone());
            let guard = writer::WalGuard {
                wal_path: wal_path(&path),
                max_bytes: checkpoints.max_wal_bytes,
                health: Arc::clone(&health),
            };
            tokio::task::spawn_blocking(move || {
                writer::JobWriter::start(&path, BUSY_TIMEOUT, &config, guard)
            })
            .await
            .map_err(|err| StoreError::Unavailable(format!("opening the SQLite writer: {err}")))??
        };
        let writer = Arc::new(writer);
        // Opened once and closed only after every connection: closing any descriptor of the
        // database file drops every POSIX lock this process holds on it (SQLite's "how to
        // corrupt" §2.2), and another process's client would then delete the WAL we write into.
        let database_file = {
            let database = path.to_owned();
            tokio::task::spawn_blocking(move || std::fs::File::open(database))
                .await
                .map_err(|err| StoreError::Unavailable(format!("opening the SQLite file: {err}")))?
                .map_err(|err| {
                    StoreError::Unavailable(format!("cannot open {}: {err}", path.display()))
                })?
        };
        tokio::spawn(checkpoint_periodically(
            pool.clone(),
            Arc::new(database_file),
            Arc::clone(&writer),
            Arc::clone(&health),
            checkpoints.clone(),
        ));
        Ok(Self {
            pool,
            writer,
            health,
            path: path.to_owned(),
            migrations,
        })
    }

    /// Applies pending migrations; a no-op when the schema is current.
    pub async fn migrate(&self) -> Result<MigrationReport, StoreError> {
        migrate(&self.pool, &self.path).await
    }

    /// What opening the store applied to the schema.
    pub fn migrations(&self) -> &MigrationReport {
        &self.migrations
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Commits the job records still queued, then closes every connection, checkpointing the
    /// WAL. Records inserted later are refused with [`StoreError::Closed`].
    pub async fn close(&self) {
        self.writer.close().await;
        self.pool.close().await;
    }
}

async fn migrate(pool: &SqlitePool, path: &Path) -> Result<MigrationReport, StoreError> {
    let before = applied_versions(pool).await;
    migrator()
        .run(pool)
        .await
        .map_err(|err| StoreError::Unavailable(format!("migrating {}: {err}", path.display())))?;
    let after = applied_versions(pool).await;
    Ok(MigrationReport::between(&MIGRATIONS, &before, &after))
}

/// What the next start would apply to the SQLite file at `path`, read without writing to it
/// (every migration when the file does not exist yet).
pub async fn pending_migrations(path: &Path) -> Result<PendingMigrations, StoreError> {
    if !path.exists() {
        return Ok(PendingMigrations::after(&MIGRATIONS, &BTreeSet::new()));
    }
    let options = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .busy_timeout(BUSY_TIMEOUT);
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .map_err(|err| StoreError::Unavailable(format!("cannot open {}: {err}", path.display())))?;
    let applied = applied_versions(&pool).await;
    pool.close().await;
    Ok(PendingMigrations::after(&MIGRATIONS, &applied))
}

/// The versions sqlx's migrations table records as applied; none before the first run
/// (no table yet).
async fn applied_versions(pool: &SqlitePool) -> BTreeSet<i64> {
    sqlx::query_scalar::<_, i64>("SELECT version FROM _sqlx_migrations WHERE success")
        .fetch_all(pool)
        .await
        .map(|versions| versions.into_iter().collect())
        .unwrap_or_default()
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
        steps: row.try_get("steps")?,
    })
}

fn decode(row: &SqliteRow) -> Result<Job, StoreError> {
    read_row(row)
        .map_err(|err| StoreError::Corrupt(err.to_string()))
        .and_then(Job::try_from)
}

fn decode_pending(row: &SqliteRow) -> Result<PendingCount, StoreError> {
    let corrupt = |err: sqlx::Error| StoreError::Corrupt(err.to_string());
    pending_count(
        row.try_get("model").map_err(corrupt)?,
        row.try_get("version").map_err(corrupt)?,
        row.try_get("pending").map_err(corrupt)?,
    )
}

async fn fetch_job(
    connection: &mut SqliteConnection,
    id: JobId,
) -> Result<Option<Job>, StoreError> {
    sqlx::query(concat!(
        "SELECT ",
        job_columns!(),
        " FROM jobs WHERE id = ?"
    ))
    .bind(id.to_string())
    .fetch_optional(&mut *connection)
    .await
    .map_err(|err| unavailable(&err))?
    .as_ref()
    .map(decode)
    .transpose()
}

/// One `INSERT` of `row`, ending in `suffix` (a conflict clause); returns the number of rows
/// inserted (0 when the conflict clause skipped it).
async fn insert_row(
    connection: &mut SqliteConnection,
    row: JobRow,
    suffix: &str,
) -> Result<u64, StoreError> {
    let mut insert =
        QueryBuilder::<Sqlite>::new(concat!("INSERT INTO jobs (", job_columns!(), ") "));
    insert.push_values(std::iter::once(row), |mut values, row| {
        values
            .push_bind(row.id)
            .push_bind(row.tenant_id)
            .push_bind(row.request_id)
            .push_bind(row.mode)
            .push_bind(row.status)
            .push_bind(row.model)
            .push_bind(row.version)
            .push_bind(row.input)
            .push_bind(row.result)
            .push_bind(row.error_type)
            .push_bind(row.error_message)
            .push_bind(row.attempts)
            .push_bind(row.max_attempts)
            .push_bind(row.created_at)
            .push_bind(row.started_at)
            .push_bind(row.finished_at)
            .push_bind(row.timeout_ms)
            .push_bind(row.idempotency_key)
            .push_bind(row.request_fingerprint)
            .push_bind(row.heartbeat_at)
            .push_bind(row.not_before)
            .push_bind(row.steps);
    });
    insert.push(suffix);
    Ok(insert
        .build()
        .execute(&mut *connection)
        .await
        .map_err(|err| unavailable(&err))?
        .rows_affected())
}

impl SqliteJobStore {
    /// A write transaction that takes the write lock at `BEGIN`. A deferred transaction that
    /// reads first and writes later can fail with `SQLITE_BUSY` (its snapshot went stale) in a
    /// way the busy timeout does not retry; `IMMEDIATE` waits for the lock instead.
    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|err| unavailable(&err))
    }
}

/// When the WAL is copied back into the database file.
#[derive(Debug, Clone)]
pub struct WalCheckpoints {
    /// How often a background checkpoint runs.
    pub every: Duration,
    /// A WAL longer than this many frames (pages) after a background checkpoint is finished
    /// by the job writer ([`checkpoint_periodically`]).
    pub reset_at_frames: i64,
    /// The WAL's bound in bytes (`SQLITE_WAL_MAX_MB`): past it the job writer finishes a
    /// checkpoint, and each restart truncates the file to it (`journal_size_limit`). After a
    /// full disk, freeing this much lets the store write again (`writer::make_room`).
    pub max_wal_bytes: u64,
}

impl WalCheckpoints {
    /// The default schedule with a WAL bound of `max_mb` MiB.
    pub fn bounded_to_mb(max_mb: u64) -> Self {
        Self {
            max_wal_bytes: max_mb.saturating_mul(1 << 20),
            ..Self::default()
        }
    }
}

/// SQLite's write-ahead log beside `database`.
fn wal_path(database: &Path) -> PathBuf {
    let mut wal = database.as_os_str().to_owned();
    wal.push("-wal");
    PathBuf::from(wal)
}

impl Default for WalCheckpoints {
    fn default() -> Self {
        Self {
            every: Duration::from_secs(1),
            // 16 MiB of 4 KiB pages.
            reset_at_frames: 4_096,
            max_wal_bytes: 16 << 20,
        }
    }
}

/// Copies the WAL into the database file, until the pool is closed (closing checkpoints one
/// last time).
///
/// The copy is `PASSIVE`, on a pool connection: it blocks neither readers nor the job writer,
/// and its `fsync`s happen here rather than inside a commit that requests wait on. But SQLite
/// starts the WAL over only once a checkpoint has copied all of it, and under sustained load the
/// job writer appends frames all the while a checkpoint runs: the WAL then grows without end
/// (600 MB after five seconds of `predict_echo`). So when a checkpoint leaves a long WAL, the
/// job writer is asked to copy the rest between two of its transactions, when nothing can be
/// appended, and its next commit starts the WAL over. That step's copy and `fsync`s hold the
/// writer, and with it every request waiting for a commit, for about a millisecond per MiB left
/// to copy (measured here: the `fsync` of a file costs ≈ 1 ms per MiB written since the last).
/// So before asking, the background does all it can of that work ([`catch_up`]), and the writer
/// is left a tail of about a MiB instead of the 10-20 MB that one long pass leaves under
/// `predict_echo` (10-35 ms without commits, once a second, measured before this was done).
async fn checkpoint_periodically(
    pool: SqlitePool,
    database_file: Arc<std::fs::File>,
    writer: Arc<writer::JobWriter>,
    health: Arc<WriteHealth>,
    checkpoints: WalCheckpoints,
) {
    let mut ticks = tokio::time::interval(checkpoints.every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if pool.is_closed() {
            return;
        }
        if health.is_failing() {
            // No traffic may come to find out that space was freed (a load balancer stops
            // sending any while `/ready` says degraded), so the store tries for itself.
            if probe_write(&pool).await.is_ok() {
                health.recovered();
            }
            continue;
        }
        match passive_checkpoint(&pool).await {
            Ok(wal_frames) => {
                if wal_frames > checkpoints.reset_at_frames {
                    catch_up(&pool, &database_file, wal_frames).await;
                    writer.request_checkpoint();
                }
            }
            Err(err) => {
                if pool.is_closed() {
                    return;
                }
                tracing::warn!(error = %err, "SQLite WAL checkpoint failed; retrying");
            }
        }
    }
}

/// Whether the store can write again after an incident: the WAL copied back and truncated (so
/// its space is free), then one page written. `user_version` is a header field nothing else
/// uses (sqlx keeps its migrations in a table), and writing it appends a WAL frame like any
/// other write.
async fn probe_write(pool: &SqlitePool) -> Result<(), sqlx::Error> {
    let (busy, _, _) = sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(TRUNCATE)")
        .fetch_one(pool)
        .await?;
    if busy != 0 {
        return Err(sqlx::Error::Protocol("the WAL is still in use".into()));
    }
    let (version,) = sqlx::query_as::<_, (i64,)>("PRAGMA user_version")
        .fetch_one(pool)
        .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "PRAGMA user_version = {version}"
    )))
    .execute(pool)
    .await
    .map(drop)
}

/// A WAL tail the job writer may be left to copy: 1 MiB of 4 KiB pages.
const WRITER_TAIL_FRAMES: i64 = 256;
/// Passes [`catch_up`] runs at most: each takes about as long as the tail it copies, so the
/// tail shrinks with every pass until it is small, unless the writer outpaces the copy.
const CATCH_UP_PASSES: usize = 4;

/// Copies what the WAL holds into the database; returns the WAL's length in frames when it
/// started (frames appended during the copy are left for the next pass).
async fn passive_checkpoint(pool: &SqlitePool) -> Result<i64, sqlx::Error> {
    sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(pool)
        .await
        .map(|(_busy, wal_frames, _copied)| wal_frames)
}

/// Prepares the job writer's finishing step after a pass that started at `wal_frames`. What
/// that step would copy is what was appended during the last pass, so more passes run while
/// the previous one still had more than [`WRITER_TAIL_FRAMES`] to copy. And what its `fsync`
/// of the database file would write is every page copied since the last complete checkpoint:
/// SQLite syncs the database only at the end of a pass that copied the whole WAL, which under
/// load only the writer's step does. So the file is synced here first (an `fsync` writes the
/// file's dirty pages whichever descriptor asks), then one more pass copies what was appended
/// meanwhile.
async fn catch_up(pool: &SqlitePool, database_file: &Arc<std::fs::File>, mut wal_frames: i64) {
    for _ in 0..CATCH_UP_PASSES {
        let Ok(now) = passive_checkpoint(pool).await else {
            return;
        };
        // Negative when the WAL started over in between: then nothing is left to catch up on.
        let appended = now - wal_frames;
        wal_frames = now;
        if appended <= WRITER_TAIL_FRAMES {
            break;
        }
    }
    let database_file = Arc::clone(database_file);
    let synced = tokio::task::spawn_blocking(move || database_file.sync_data())
        .await
        .map_err(std::io::Error::other)
        .and_then(std::convert::identity);
    if let Err(err) = synced {
        // Only slower: the writer's step syncs the file all the same.
        tracing::warn!(error = %err, "cannot sync the SQLite database file before a WAL restart");
    }
    let _ = passive_checkpoint(pool).await;
}

#[async_trait]
impl JobStore for SqliteJobStore {
    async fn insert(&self, jobs: Vec<Job>) -> Result<(), StoreError> {
        self.queue_insert(jobs).await
    }

    fn queue_insert(&self, jobs: Vec<Job>) -> PendingCommit {
        self.writer.queue(jobs)
    }

    fn queue_insert_reporting(
        &self,
        jobs: Vec<Job>,
        report: CommitReport,
    ) -> Result<(), (Vec<Job>, CommitReport)> {
        self.writer.queue_reporting(jobs, report)
    }

    async fn get(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        let mut connection = self.pool.acquire().await.map_err(|err| unavailable(&err))?;
        fetch_job(&mut connection, id).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.health.check()?;
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(|err| unavailable(&err))
    }

    async fn submit(&self, job: Job, idempotency_ttl: Duration) -> Result<Submitted, StoreError> {
        let Some(key) = job.idempotency_key.clone() else {
            self.insert(vec![job]).await?;
            return Ok(Submitted::Created);
        };
        let tenant = job.tenant_id.to_string();
        let cutoff = idempotency_cutoff(job.created_at, idempotency_ttl).timestamp_micros();
        let row = JobRow::from(&job);
        let mut transaction = self.begin_write().await?;
        // An expired holder gives the key up first, so the insert below only conflicts with a
        // holder that is still within the TTL.
        sqlx::query(
            "UPDATE jobs SET idempotency_key = NULL \
             WHERE tenant_id = ? AND idempotency_key = ? AND created_at < ?",
        )
        .bind(&tenant)
        .bind(key.as_str())
        .bind(cutoff)
        .execute(&mut *transaction)
        .await
        .map_err(|err| unavailable(&err))?;
        for _ in 0..SUBMIT_ROUNDS {
            let inserted = insert_row(
                &mut transaction,
                row.clone(),
                " ON CONFLICT (tenant_id, idempotency_key) \
                  WHERE idempotency_key IS NOT NULL DO NOTHING",
            )
            .await?;
            if inserted == 1 {
                transaction
                    .commit()
                    .await
                    .map_err(|err| unavailable(&err))?;
                return Ok(Submitted::Created);
            }
            let holder = sqlx::query(concat!(
                "SELECT ",
                job_columns!(),
                " FROM jobs WHERE tenant_id = ? AND idempotency_key = ?"
            ))
            .bind(&tenant)
            .bind(key.as_str())
            .fetch_optional(&mut *transaction)
            .await
            .map_err(|err| unavailable(&err))?;
            if let Some(holder) = holder {
                // Nothing may change when the key is taken, not even an expired holder's key.
                transaction
                    .rollback()
                    .await
                    .map_err(|err| unavailable(&err))?;
                return Ok(Submitted::Existing(Box::new(decode(&holder)?)));
            }
        }
        Err(StoreError::Unavailable(format!(
            "idempotency key of tenant {tenant} is contended; retry"
        )))
    }

    async fn list(&self, filter: &JobFilter) -> Result<Vec<Job>, StoreError> {
        let mut query = QueryBuilder::<Sqlite>::new(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE 1 = 1"
        ));
        if let Some(tenant) = &filter.tenant {
            query
                .push(" AND tenant_id = ")
                .push_bind(tenant.to_string());
        }
        if let Some(status) = filter.status {
            query.push(" AND status = ").push_bind(status.as_str());
        }
        if let Some(model) = &filter.model {
            query.push(" AND model = ").push_bind(model.to_string());
        }
        if let Some(before) = filter.before {
            query.push(" AND id < ").push_bind(before.to_string());
        }
        query
            .push(" ORDER BY id DESC LIMIT ")
            .push_bind(i64::from(filter.limit));
        query
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(|err| unavailable(&err))?
            .iter()
            .map(decode)
            .collect()
    }

    async fn cancel(&self, id: JobId, now: DateTime<Utc>) -> Result<CancelOutcome, StoreError> {
        let mut connection = self.pool.acquire().await.map_err(|err| unavailable(&err))?;
        let cancelled = sqlx::query(concat!(
            "UPDATE jobs SET status = 'cancelled', finished_at = ?, error_type = ?, \
             error_message = ? WHERE id = ? AND status IN ('pending', 'running') RETURNING ",
            job_columns!()
        ))
        .bind(now.timestamp_micros())
        .bind(CANCELLED_ERROR_TYPE)
        .bind(CANCELLED_MESSAGE)
        .bind(id.to_string())
        .fetch_optional(&mut *connection)
        .await
        .map_err(|err| unavailable(&err))?;
        if let Some(row) = cancelled {
            return Ok(CancelOutcome::Cancelled(Box::new(decode(&row)?)));
        }
        // Terminal states are final, so a job the update skipped stays terminal.
        Ok(match fetch_job(&mut connection, id).await? {
            Some(job) => CancelOutcome::AlreadyTerminal(Box::new(job)),
            None => CancelOutcome::NotFound,
        })
    }

    async fn claim(
        &self,
        requests: &[ClaimRequest],
        now: DateTime<Utc>,
    ) -> Result<Vec<Claim>, StoreError> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        let (unique, slots) = distinct_claims(requests);
        let now = now.timestamp_micros();
        let mut outcomes = Vec::with_capacity(unique.len());
        let mut transaction = self.begin_write().await?;
        for request in &unique {
            let takeover = request
                .take_over_if_heartbeat_before
                .map(|cutoff| cutoff.timestamp_micros());
            let started = sqlx::query(concat!(
                "UPDATE jobs SET status = 'running', attempts = attempts + 1, started_at = ?, \
                 heartbeat_at = ?, not_before = NULL \
                 WHERE id = ? AND (status = 'pending' OR (status = 'running' AND ? IS NOT NULL \
                 AND (heartbeat_at IS NULL OR heartbeat_at < ?))) RETURNING ",
                job_columns!()
            ))
            .bind(now)
            .bind(now)
            .bind(request.id.to_string())
            .bind(takeover)
            .bind(takeover)
            .fetch_optional(&mut *transaction)
            .await
            .map_err(|err| unavailable(&err))?;
            let outcome = match started {
                Some(row) => Claim::Started(Box::new(decode(&row)?)),
                None => claim_outcome(None, fetch_job(&mut transaction, request.id).await?),
            };
            outcomes.push(outcome);
        }
        transaction
            .commit()
            .await
            .map_err(|err| unavailable(&err))?;
        Ok(expand_claims(outcomes, &slots))
    }

    async fn settle(
        &self,
        settlements: Vec<SettleRequest>,
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError> {
        if settlements.is_empty() {
            return Ok(Vec::new());
        }
        let (unique, slots) = distinct(settlements, |request| request.id);
        let now = now.timestamp_micros();
        let mut recorded = Vec::with_capacity(unique.len());
        let mut transaction = self.begin_write().await?;
        for request in unique.into_iter().map(SettleColumns::from) {
            let query = match request.kind {
                SettleKind::Succeeded => sqlx::query(
                    "UPDATE jobs SET status = 'succeeded', result = ?, error_type = NULL, \
                     error_message = NULL, finished_at = ?, steps = ? \
                     WHERE id = ? AND status = 'running' AND attempts = ?",
                )
                .bind(request.result)
                .bind(now)
                .bind(request.steps),
                SettleKind::Failed => sqlx::query(
                    "UPDATE jobs SET status = 'failed', error_type = ?, error_message = ?, \
                     finished_at = ?, steps = ? \
                     WHERE id = ? AND status = 'running' AND attempts = ?",
                )
                .bind(request.error_type)
                .bind(request.error_message)
                .bind(now)
                .bind(request.steps),
                SettleKind::Retry => sqlx::query(
                    "UPDATE jobs SET status = 'pending', error_type = ?, error_message = ?, \
                     not_before = ?, heartbeat_at = NULL, steps = ? \
                     WHERE id = ? AND status = 'running' AND attempts = ?",
                )
                .bind(request.error_type)
                .bind(request.error_message)
                .bind(request.not_before.map(|at| at.timestamp_micros()))
                .bind(request.steps),
            };
            let changed = query
                .bind(request.id.to_string())
                .bind(request.attempt)
                .execute(&mut *transaction)
                .await
                .map_err(|err| unavailable(&err))?
                .rows_affected();
            recorded.push(changed == 1);
        }
        transaction
            .commit()
            .await
            .map_err(|err| unavailable(&err))?;
        Ok(expand_settled(&recorded, &slots))
    }

    async fn heartbeat(&self, ids: &[JobId], now: DateTime<Utc>) -> Result<(), StoreError> {
        // Independent rows: no transaction is needed across chunks.
        for chunk in ids.chunks(IDS_PER_STATEMENT) {
            let mut update = QueryBuilder::<Sqlite>::new("UPDATE jobs SET heartbeat_at = ");
            update
                .push_bind(now.timestamp_micros())
                .push(" WHERE status = 'running' AND id IN (");
            let mut list = update.separated(", ");
            for id in chunk {
                list.push_bind(id.to_string());
            }
            update.push(")");
            update
                .build()
                .execute(&self.pool)
                .await
                .map_err(|err| unavailable(&err))?;
        }
        Ok(())
    }

    async fn cancelled_among(&self, ids: &[JobId]) -> Result<Vec<JobId>, StoreError> {
        let mut cancelled = Vec::new();
        for chunk in ids.chunks(IDS_PER_STATEMENT) {
            let mut select = QueryBuilder::<Sqlite>::new(
                "SELECT id FROM jobs WHERE status = 'cancelled' AND id IN (",
            );
            let mut list = select.separated(", ");
            for id in chunk {
                list.push_bind(id.to_string());
            }
            select.push(")");
            let found: Vec<String> = select
                .build_query_scalar()
                .fetch_all(&self.pool)
                .await
                .map_err(|err| unavailable(&err))?;
            cancelled.extend(
                chunk
                    .iter()
                    .filter(|id| found.iter().any(|text| *text == id.to_string())),
            );
        }
        Ok(cancelled)
    }

    async fn stranded(
        &self,
        now: DateTime<Utc>,
        pending_before: DateTime<Utc>,
        lease_expired_before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Job>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE \
             (status = 'pending' AND created_at < ? AND (not_before IS NULL OR not_before <= ?)) \
             OR (status = 'running' AND (heartbeat_at IS NULL OR heartbeat_at < ?)) \
             ORDER BY created_at, id LIMIT ?"
        ))
        .bind(pending_before.timestamp_micros())
        .bind(now.timestamp_micros())
        .bind(lease_expired_before.timestamp_micros())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(|err| unavailable(&err))?
        .iter()
        .map(decode)
        .collect()
    }

    async fn purge_finished(&self, created_before: JobId, limit: u32) -> Result<u64, StoreError> {
        // A range of the primary key (ids sort by creation time), so no timestamp index is
        // needed and the insert path pays for none.
        let done = sqlx::query(
            "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE id < ? \
             AND status IN ('succeeded', 'failed', 'cancelled') ORDER BY id LIMIT ?)",
        )
        .bind(created_before.to_string())
        .bind(i64::from(limit))
        .execute(&self.pool)
        .await
        .map_err(|err| unavailable(&err))?;
        Ok(done.rows_affected())
    }

    async fn pending_by_model(&self) -> Result<Vec<PendingCount>, StoreError> {
        sqlx::query(PENDING_BY_MODEL)
            .fetch_all(&self.pool)
            .await
            .map_err(|err| unavailable(&err))?
            .iter()
            .map(decode_pending)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeDelta, Utc};
    use inference_engine_core::auth::TenantId;
    use inference_engine_core::job::{JobFailure, JobMode, JobStatus, RequestId};
    use inference_engine_core::model::{ModelName, ModelVersion};
    use serde_json::json;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_starts_over_while_writes_never_pause() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.db");
        let checkpoints = WalCheckpoints {
            every: Duration::from_millis(20),
            reset_at_frames: 64,
            ..WalCheckpoints::default()
        };
        let store = Arc::new(
            SqliteJobStore::open_tuned(&path, &GroupCommitConfig::default(), &checkpoints)
                .await
                .unwrap(),
        );
        const WRITERS: usize = 16;
        const JOBS_EACH: usize = 4_000;
        // Writers that never pause, so the job writer commits without a break.
        let writers: Vec<_> = (0..WRITERS)
            .map(|_| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    for _ in 0..JOBS_EACH {
                        store.insert(vec![job(JobStatus::Succeeded)]).await.unwrap();
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.await.unwrap();
        }
        let wal = std::fs::read(dir.path().join("jobs.db-wal")).unwrap();
        // The WAL header's checkpoint sequence number counts the times the WAL started over.
        let restarts = u32::from_be_bytes(wal[12..16].try_into().unwrap());
        assert!(restarts >= 3, "the WAL started over {restarts} times");
        // Without restarts it holds every frame written: over 200 MB here. With them, it holds
        // what was written between two restarts, which depends on how promptly the checkpoint
        // task runs; on a machine busy with other tests that was up to 37 MB.
        assert!(wal.len() < 48 << 20, "the WAL grew to {} bytes", wal.len());
        let (rows,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM jobs")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(rows, (WRITERS * JOBS_EACH) as i64);
    }

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
            steps: None,
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

    #[tokio::test]
    async fn pending_counts_read_the_unfinished_jobs_index_not_the_whole_table() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteJobStore::open(&dir.path().join("jobs.db"))
            .await
            .unwrap();
        let plan: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(format!(
            "EXPLAIN QUERY PLAN {PENDING_BY_MODEL}"
        )))
        .fetch_all(&store.pool)
        .await
        .unwrap()
        .iter()
        .map(|row| row.get::<String, _>("detail"))
        .collect();
        assert!(
            plan.iter()
                .any(|step| step.contains("INDEX jobs_unfinished")),
            "{plan:?}"
        );
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
