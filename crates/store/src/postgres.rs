//! The PostgreSQL job store: one database shared by every API and worker process.
//!
//! Batch calls (`insert`, `claim`, `settle`, `heartbeat`) cost a constant number of round trips
//! whatever the batch size: the batch travels as arrays and is unpacked with `unnest`, so a
//! worker pool's throughput is bounded by rows, not by network latency per job. Every batch
//! update first locks its rows in id order (`ORDER BY id FOR NO KEY UPDATE`), so two batches
//! naming the same jobs in different orders wait for each other instead of deadlocking.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use inference_engine_core::job::{Job, JobId};
use inference_engine_core::ports::{
    CancelOutcome, Claim, ClaimRequest, JobFilter, JobStore, PendingCommit, PendingCount,
    SettleRequest, StoreError, Submitted,
};
use inference_engine_core::redact::url_host;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgArguments, PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::query::Query;
use sqlx::{Connection, Postgres, QueryBuilder, Row, SqlSafeStr};
use uuid::Uuid;

use crate::codec::{JobRow, json_text, pending_count, steps_text};
use crate::common::{
    CANCELLED_ERROR_TYPE, CANCELLED_MESSAGE, SUBMIT_ROUNDS, SettleColumns, claim_outcome, distinct,
    distinct_claims, expand_claims, expand_settled, idempotency_cutoff,
};
use crate::migrations::MigrationReport;

/// Enough for the request path's readers plus a worker pool's claim/settle batches; Postgres'
/// default server limit is 100 connections for every process together.
const MAX_CONNECTIONS: u32 = 16;
/// How long the first connection may take before the store reports itself unavailable, so an
/// unreachable server fails startup fast.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// [`PostgresJobStore::connect`]'s wait for a pooled connection (`DATABASE_ACQUIRE_TIMEOUT_MS`).
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// The ordered, embedded PostgreSQL migrations. Additive only; a test rejects `DROP`.
pub const MIGRATIONS: [(i64, &str, &str); 2] = [
    (
        1,
        "jobs",
        include_str!("../migrations/postgres/0001_jobs.sql"),
    ),
    (
        2,
        "pipeline steps",
        include_str!("../migrations/postgres/0002_pipeline_steps.sql"),
    ),
];

fn migrator() -> Migrator {
    // `with_migrations` keeps the migrator's advisory lock on, so processes that start together
    // apply each migration once.
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

/// Every column of `jobs` aliased `j`, in [`JobRow`] order, JSON read back as its stored text.
/// A macro so queries stay `&'static str` (and are prepared once per connection).
macro_rules! job_columns {
    () => {
        "j.id, j.tenant_id, j.request_id, j.mode, j.status, j.model, j.version, \
         j.input::text AS input, j.result::text AS result, j.error_type, j.error_message, \
         j.attempts, j.max_attempts, j.created_at, j.started_at, j.finished_at, j.timeout_ms, \
         j.idempotency_key, j.request_fingerprint, j.heartbeat_at, j.not_before, \
         j.steps::text AS steps"
    };
}

/// `INSERT` of the rows bound by [`InsertColumns::bind`], one array per column.
macro_rules! insert_unnest {
    () => {
        "INSERT INTO jobs (id, tenant_id, request_id, mode, status, model, version, input, \
         result, error_type, error_message, attempts, max_attempts, created_at, started_at, \
         finished_at, timeout_ms, idempotency_key, request_fingerprint, heartbeat_at, not_before, \
         steps) \
         SELECT id, tenant_id, request_id, mode, status, model, version, input::json, \
         result::json, error_type, error_message, attempts, max_attempts, created_at, \
         started_at, finished_at, timeout_ms, idempotency_key, request_fingerprint, \
         heartbeat_at, not_before, steps::json \
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
         $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::int8[], \
         $13::int8[], $14::timestamptz[], $15::timestamptz[], $16::timestamptz[], \
         $17::int8[], $18::text[], $19::text[], $20::timestamptz[], $21::timestamptz[], \
         $22::text[]) \
         AS row(id, tenant_id, request_id, mode, status, model, version, input, result, \
         error_type, error_message, attempts, max_attempts, created_at, started_at, \
         finished_at, timeout_ms, idempotency_key, request_fingerprint, heartbeat_at, not_before, \
         steps)"
    };
}

/// The versions sqlx's migrations table records as applied; none before the first run
/// (no table yet).
async fn applied_versions(pool: &PgPool) -> BTreeSet<i64> {
    sqlx::query_scalar::<_, i64>("SELECT version FROM _sqlx_migrations WHERE success")
        .fetch_all(pool)
        .await
        .map(|versions| versions.into_iter().collect())
        .unwrap_or_default()
}

fn unavailable(err: &sqlx::Error) -> StoreError {
    crate::common::store_error(err)
}

/// The password in a connection URL, in the userinfo or a `password=` parameter.
fn passwords(url: &str) -> Vec<&str> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let mut found: Vec<&str> = rest[..authority_end]
        .rsplit_once('@')
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, password)| password)
        .into_iter()
        .collect();
    if let Some((_, query)) = rest.split_once('?') {
        found.extend(
            query
                .split(['&', '#'])
                .filter_map(|pair| pair.strip_prefix("password=")),
        );
    }
    found.retain(|password| !password.is_empty());
    found
}

/// A connection error for `url`: names the host, never the password (even if a driver message
/// were to quote the URL).
fn connect_error(url: &str, what: &str, detail: impl std::fmt::Display) -> StoreError {
    let mut message = format!("{what} PostgreSQL at {}: {detail}", url_host(url));
    for password in passwords(url) {
        message = message.replace(password, "***");
    }
    StoreError::Unavailable(message)
}

/// Jobs in a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PostgresJobStore {
    pool: PgPool,
    migrations: MigrationReport,
}

impl PostgresJobStore {
    /// Connects, migrates and opens a pool of up to 16 connections. Fails within about five
    /// seconds when the server cannot be reached.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, DEFAULT_ACQUIRE_TIMEOUT).await
    }

    /// [`Self::connect`], with how long an operation waits for a pooled connection (opening one
    /// if needed) before it fails with [`StoreError::Unreachable`]: during an outage, requests
    /// fail after this long instead of waiting for the server to come back.
    pub async fn connect_with(url: &str, acquire_timeout: Duration) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|err| connect_error(url, "invalid URL for", err))?;
        // One direct connection first: a refused or failed connection reports its own cause at
        // once, where the pool would retry until its timeout and only say "timed out".
        let probe = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options))
            .await
            .map_err(|_| {
                connect_error(
                    url,
                    "cannot reach",
                    format_args!("no answer within {CONNECT_TIMEOUT:?}"),
                )
            })?
            .map_err(|err| connect_error(url, "cannot connect to", err))?;
        // The pool opens its own connections; closing the probe is a courtesy to the server.
        let _ = probe.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(acquire_timeout)
            .connect_with(options)
            .await
            .map_err(|err| connect_error(url, "cannot connect to", err))?;
        // Through the pool rather than the probe: a future holding `&mut PgConnection` across
        // the migrator is not `Send` for every lifetime, which would keep callers from spawning
        // `connect`.
        let before = applied_versions(&pool).await;
        if let Err(err) = migrator().run(&pool).await {
            pool.close().await;
            return Err(connect_error(url, "cannot migrate", err));
        }
        let after = applied_versions(&pool).await;
        let migrations = MigrationReport::between(&MIGRATIONS, &before, &after);
        Ok(Self { pool, migrations })
    }

    /// What connecting applied to the schema.
    pub fn migrations(&self) -> &MigrationReport {
        &self.migrations
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn read_row(row: &PgRow) -> Result<JobRow, sqlx::Error> {
    let micros = |at: DateTime<Utc>| at.timestamp_micros();
    Ok(JobRow {
        id: row.try_get::<Uuid, _>("id")?.to_string(),
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
        created_at: micros(row.try_get("created_at")?),
        started_at: row
            .try_get::<Option<DateTime<Utc>>, _>("started_at")?
            .map(micros),
        finished_at: row
            .try_get::<Option<DateTime<Utc>>, _>("finished_at")?
            .map(micros),
        timeout_ms: row.try_get("timeout_ms")?,
        idempotency_key: row.try_get("idempotency_key")?,
        request_fingerprint: row.try_get("request_fingerprint")?,
        heartbeat_at: row
            .try_get::<Option<DateTime<Utc>>, _>("heartbeat_at")?
            .map(micros),
        not_before: row
            .try_get::<Option<DateTime<Utc>>, _>("not_before")?
            .map(micros),
        steps: row.try_get("steps")?,
    })
}

fn decode(row: &PgRow) -> Result<Job, StoreError> {
    read_row(row)
        .map_err(|err| StoreError::Corrupt(err.to_string()))
        .and_then(Job::try_from)
}

fn decode_pending(row: &PgRow) -> Result<PendingCount, StoreError> {
    let corrupt = |err: sqlx::Error| StoreError::Corrupt(err.to_string());
    pending_count(
        row.try_get("model").map_err(corrupt)?,
        row.try_get("version").map_err(corrupt)?,
        row.try_get("pending").map_err(corrupt)?,
    )
}

fn decode_all(rows: &[PgRow]) -> Result<Vec<Job>, StoreError> {
    rows.iter().map(decode).collect()
}

fn uuids(ids: impl IntoIterator<Item = JobId>) -> Vec<Uuid> {
    ids.into_iter().map(|id| id.as_uuid()).collect()
}

/// Jobs as one array per column, for [`insert_unnest!`].
#[derive(Debug, Default)]
struct InsertColumns {
    id: Vec<Uuid>,
    tenant_id: Vec<String>,
    request_id: Vec<String>,
    mode: Vec<&'static str>,
    status: Vec<&'static str>,
    model: Vec<String>,
    version: Vec<Option<String>>,
    input: Vec<Option<String>>,
    result: Vec<Option<String>>,
    error_type: Vec<Option<String>>,
    error_message: Vec<Option<String>>,
    attempts: Vec<i64>,
    max_attempts: Vec<i64>,
    created_at: Vec<DateTime<Utc>>,
    started_at: Vec<Option<DateTime<Utc>>>,
    finished_at: Vec<Option<DateTime<Utc>>>,
    timeout_ms: Vec<Option<i64>>,
    idempotency_key: Vec<Option<String>>,
    request_fingerprint: Vec<Option<String>>,
    heartbeat_at: Vec<Option<DateTime<Utc>>>,
    not_before: Vec<Option<DateTime<Utc>>>,
    steps: Vec<Option<String>>,
}

impl InsertColumns {
    fn of(jobs: &[Job]) -> Self {
        let mut columns = Self::default();
        for job in jobs {
            columns.id.push(job.id.as_uuid());
            columns.tenant_id.push(job.tenant_id.to_string());
            columns.request_id.push(job.request_id.to_string());
            columns.mode.push(job.mode.as_str());
            columns.status.push(job.status.as_str());
            columns.model.push(job.model.to_string());
            columns
                .version
                .push(job.version.as_ref().map(ToString::to_string));
            columns.input.push(json_text(job.input.as_ref()));
            columns.result.push(json_text(job.result.as_ref()));
            columns
                .error_type
                .push(job.failure.as_ref().map(|f| f.error_type.clone()));
            columns
                .error_message
                .push(job.failure.as_ref().map(|f| f.message.clone()));
            columns.attempts.push(i64::from(job.attempts));
            columns.max_attempts.push(i64::from(job.max_attempts));
            columns.created_at.push(job.created_at);
            columns.started_at.push(job.started_at);
            columns.finished_at.push(job.finished_at);
            columns.timeout_ms.push(
                job.timeout_ms
                    .map(|ms| i64::try_from(ms).unwrap_or(i64::MAX)),
            );
            columns.idempotency_key.push(
                job.idempotency_key
                    .as_ref()
                    .map(|key| key.as_str().to_owned()),
            );
            columns
                .request_fingerprint
                .push(job.request_fingerprint.clone());
            columns.heartbeat_at.push(job.heartbeat_at);
            columns.not_before.push(job.not_before);
            columns.steps.push(steps_text(job.steps.as_ref()));
        }
        columns
    }

    fn bind<'q>(self, query: Query<'q, Postgres, PgArguments>) -> Query<'q, Postgres, PgArguments> {
        query
            .bind(self.id)
            .bind(self.tenant_id)
            .bind(self.request_id)
            .bind(self.mode)
            .bind(self.status)
            .bind(self.model)
            .bind(self.version)
            .bind(self.input)
            .bind(self.result)
            .bind(self.error_type)
            .bind(self.error_message)
            .bind(self.attempts)
            .bind(self.max_attempts)
            .bind(self.created_at)
            .bind(self.started_at)
            .bind(self.finished_at)
            .bind(self.timeout_ms)
            .bind(self.idempotency_key)
            .bind(self.request_fingerprint)
            .bind(self.heartbeat_at)
            .bind(self.not_before)
            .bind(self.steps)
    }
}

#[async_trait]
impl JobStore for PostgresJobStore {
    async fn insert(&self, jobs: Vec<Job>) -> Result<(), StoreError> {
        if jobs.is_empty() {
            return Ok(());
        }
        // One statement is one implicit transaction: every row commits or none does.
        InsertColumns::of(&jobs)
            .bind(sqlx::query(insert_unnest!()))
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(|err| unavailable(&err))
    }

    fn queue_insert(&self, jobs: Vec<Job>) -> PendingCommit {
        // No queue of its own (`GroupCommitStore` puts one in front): the insert runs when
        // the future is awaited.
        let store = self.clone();
        Box::pin(async move { store.insert(jobs).await })
    }

    async fn get(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs AS j WHERE j.id = $1"
        ))
        .bind(id.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(|err| unavailable(&err))?
        .as_ref()
        .map(decode)
        .transpose()
    }

    async fn ping(&self) -> Result<(), StoreError> {
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
        let cutoff = idempotency_cutoff(job.created_at, idempotency_ttl);
        let jobs = [job];
        let mut transaction = self.pool.begin().await.map_err(|err| unavailable(&err))?;
        // An expired holder gives the key up first (its row lock also makes a concurrent
        // submitter of the same key wait for this transaction), so the insert below only
        // conflicts with a holder that is still within the TTL.
        sqlx::query(
            "UPDATE jobs SET idempotency_key = NULL \
             WHERE tenant_id = $1 AND idempotency_key = $2 AND created_at < $3",
        )
        .bind(&tenant)
        .bind(key.as_str())
        .bind(cutoff)
        .execute(&mut *transaction)
        .await
        .map_err(|err| unavailable(&err))?;
        for _ in 0..SUBMIT_ROUNDS {
            // A concurrent insert of the same key makes this one wait for it to commit, then
            // do nothing: the unique violation becomes "read the winner" below.
            let inserted = InsertColumns::of(&jobs)
                .bind(sqlx::query(concat!(
                    insert_unnest!(),
                    " ON CONFLICT (tenant_id, idempotency_key) \
                     WHERE idempotency_key IS NOT NULL DO NOTHING"
                )))
                .execute(&mut *transaction)
                .await
                .map_err(|err| unavailable(&err))?
                .rows_affected();
            if inserted == 1 {
                transaction
                    .commit()
                    .await
                    .map_err(|err| unavailable(&err))?;
                return Ok(Submitted::Created);
            }
            // Read committed: this statement sees the winner that made the insert skip.
            let holder = sqlx::query(concat!(
                "SELECT ",
                job_columns!(),
                " FROM jobs AS j WHERE j.tenant_id = $1 AND j.idempotency_key = $2"
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
        let mut query = QueryBuilder::<Postgres>::new(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs AS j WHERE TRUE"
        ));
        if let Some(tenant) = &filter.tenant {
            query
                .push(" AND j.tenant_id = ")
                .push_bind(tenant.to_string());
        }
        if let Some(status) = filter.status {
            query.push(" AND j.status = ").push_bind(status.as_str());
        }
        if let Some(model) = &filter.model {
            query.push(" AND j.model = ").push_bind(model.to_string());
        }
        if let Some(before) = filter.before {
            query.push(" AND j.id < ").push_bind(before.as_uuid());
        }
        query
            .push(" ORDER BY j.id DESC LIMIT ")
            .push_bind(i64::from(filter.limit));
        let rows = query
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(|err| unavailable(&err))?;
        decode_all(&rows)
    }

    async fn cancel(&self, id: JobId, now: DateTime<Utc>) -> Result<CancelOutcome, StoreError> {
        let cancelled = sqlx::query(concat!(
            "UPDATE jobs AS j SET status = 'cancelled', finished_at = $1, error_type = $2, \
             error_message = $3 WHERE j.id = $4 AND j.status IN ('pending', 'running') \
             RETURNING ",
            job_columns!()
        ))
        .bind(now)
        .bind(CANCELLED_ERROR_TYPE)
        .bind(CANCELLED_MESSAGE)
        .bind(id.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(|err| unavailable(&err))?;
        if let Some(row) = cancelled {
            return Ok(CancelOutcome::Cancelled(Box::new(decode(&row)?)));
        }
        // Terminal states are final, so a job the update skipped stays terminal.
        Ok(match self.get(id).await? {
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
        let ids = uuids(unique.iter().map(|request| request.id));
        let (take_over, cutoffs): (Vec<Uuid>, Vec<DateTime<Utc>>) = unique
            .iter()
            .filter_map(|request| {
                request
                    .take_over_if_heartbeat_before
                    .map(|cutoff| (request.id.as_uuid(), cutoff))
            })
            .unzip();
        let started = sqlx::query(concat!(
            "WITH locked AS MATERIALIZED ( \
                 SELECT id FROM jobs WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE), \
             takeover AS (SELECT * FROM unnest($2::uuid[], $4::timestamptz[]) AS t(id, cutoff)) \
             UPDATE jobs AS j SET status = 'running', attempts = j.attempts + 1, \
                 started_at = $3, heartbeat_at = $3, not_before = NULL \
             FROM locked LEFT JOIN takeover ON takeover.id = locked.id \
             WHERE j.id = locked.id \
                 AND (j.status = 'pending' OR (j.status = 'running' \
                     AND takeover.cutoff IS NOT NULL \
                     AND (j.heartbeat_at IS NULL OR j.heartbeat_at < takeover.cutoff))) \
             RETURNING ",
            job_columns!()
        ))
        .bind(&ids)
        .bind(&take_over)
        .bind(now)
        .bind(&cutoffs)
        .fetch_all(&self.pool)
        .await
        .map_err(|err| unavailable(&err))?;
        let mut started: HashMap<JobId, Job> = decode_all(&started)?
            .into_iter()
            .map(|job| (job.id, job))
            .collect();
        let missed: Vec<Uuid> = unique
            .iter()
            .filter(|request| !started.contains_key(&request.id))
            .map(|request| request.id.as_uuid())
            .collect();
        let mut current: HashMap<JobId, Job> = if missed.is_empty() {
            HashMap::new()
        } else {
            let rows = sqlx::query(concat!(
                "SELECT ",
                job_columns!(),
                " FROM jobs AS j WHERE j.id = ANY($1)"
            ))
            .bind(&missed)
            .fetch_all(&self.pool)
            .await
            .map_err(|err| unavailable(&err))?;
            decode_all(&rows)?
                .into_iter()
                .map(|job| (job.id, job))
                .collect()
        };
        let outcomes = unique
            .iter()
            .map(|request| claim_outcome(started.remove(&request.id), current.remove(&request.id)))
            .collect();
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
        let unique: Vec<SettleColumns> = unique.into_iter().map(SettleColumns::from).collect();
        let ids = uuids(unique.iter().map(|request| request.id));
        let attempts: Vec<i64> = unique.iter().map(|request| request.attempt).collect();
        let statuses: Vec<&str> = unique.iter().map(|request| request.kind.status()).collect();
        let results: Vec<Option<&str>> = unique
            .iter()
            .map(|request| request.result.as_deref())
            .collect();
        let error_types: Vec<Option<&str>> = unique
            .iter()
            .map(|request| request.error_type.as_deref())
            .collect();
        let error_messages: Vec<Option<&str>> = unique
            .iter()
            .map(|request| request.error_message.as_deref())
            .collect();
        let not_befores: Vec<Option<DateTime<Utc>>> =
            unique.iter().map(|request| request.not_before).collect();
        let steps: Vec<Option<&str>> = unique
            .iter()
            .map(|request| request.steps.as_deref())
            .collect();
        // One statement: all outcomes are recorded in one implicit transaction.
        let recorded: Vec<Uuid> = sqlx::query_scalar(
            "WITH outcome AS ( \
                 SELECT * FROM unnest($1::uuid[], $2::int8[], $3::text[], $4::text[], \
                     $5::text[], $6::text[], $7::timestamptz[], $9::text[]) \
                 AS o(id, attempt, status, result, error_type, error_message, not_before, \
                     steps)), \
             locked AS MATERIALIZED ( \
                 SELECT id FROM jobs WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE) \
             UPDATE jobs AS j SET \
                 status = o.status, \
                 result = CASE WHEN o.status = 'succeeded' THEN o.result::json ELSE j.result END, \
                 error_type = o.error_type, \
                 error_message = o.error_message, \
                 finished_at = CASE WHEN o.status = 'pending' THEN j.finished_at \
                     ELSE $8::timestamptz END, \
                 not_before = CASE WHEN o.status = 'pending' THEN o.not_before \
                     ELSE j.not_before END, \
                 heartbeat_at = CASE WHEN o.status = 'pending' THEN NULL ELSE j.heartbeat_at END, \
                 steps = o.steps::json \
             FROM outcome AS o, locked \
             WHERE j.id = o.id AND locked.id = j.id \
                 AND j.status = 'running' AND j.attempts = o.attempt \
             RETURNING j.id",
        )
        .bind(&ids)
        .bind(&attempts)
        .bind(&statuses)
        .bind(&results)
        .bind(&error_types)
        .bind(&error_messages)
        .bind(&not_befores)
        .bind(now)
        .bind(&steps)
        .fetch_all(&self.pool)
        .await
        .map_err(|err| unavailable(&err))?;
        let recorded: HashSet<Uuid> = recorded.into_iter().collect();
        let recorded: Vec<bool> = unique
            .iter()
            .map(|request| recorded.contains(&request.id.as_uuid()))
            .collect();
        Ok(expand_settled(&recorded, &slots))
    }

    async fn heartbeat(&self, ids: &[JobId], now: DateTime<Utc>) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "WITH locked AS MATERIALIZED ( \
                 SELECT id FROM jobs WHERE id = ANY($1) AND status = 'running' \
                 ORDER BY id FOR NO KEY UPDATE) \
             UPDATE jobs AS j SET heartbeat_at = $2 FROM locked \
             WHERE j.id = locked.id AND j.status = 'running'",
        )
        .bind(uuids(ids.iter().copied()))
        .bind(now)
        .execute(&self.pool)
        .await
        .map(drop)
        .map_err(|err| unavailable(&err))
    }

    async fn cancelled_among(&self, ids: &[JobId]) -> Result<Vec<JobId>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let found: Vec<Uuid> =
            sqlx::query_scalar("SELECT id FROM jobs WHERE id = ANY($1) AND status = 'cancelled'")
                .bind(uuids(ids.iter().copied()))
                .fetch_all(&self.pool)
                .await
                .map_err(|err| unavailable(&err))?;
        Ok(ids
            .iter()
            .copied()
            .filter(|id| found.contains(&id.as_uuid()))
            .collect())
    }

    async fn stranded(
        &self,
        now: DateTime<Utc>,
        pending_before: DateTime<Utc>,
        lease_expired_before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Job>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs AS j WHERE \
             (j.status = 'pending' AND j.created_at < $1 \
                 AND (j.not_before IS NULL OR j.not_before <= $2)) \
             OR (j.status = 'running' AND (j.heartbeat_at IS NULL OR j.heartbeat_at < $3)) \
             ORDER BY j.created_at, j.id LIMIT $4"
        ))
        .bind(pending_before)
        .bind(now)
        .bind(lease_expired_before)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(|err| unavailable(&err))?;
        decode_all(&rows)
    }

    async fn purge_finished(&self, created_before: JobId, limit: u32) -> Result<u64, StoreError> {
        // A range of the primary key (UUIDv7 ids sort by creation time): no timestamp index.
        let done = sqlx::query(
            "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE id < $1 \
             AND status IN ('succeeded', 'failed', 'cancelled') ORDER BY id LIMIT $2)",
        )
        .bind(created_before.as_uuid())
        .bind(i64::from(limit))
        .execute(&self.pool)
        .await
        .map_err(|err| unavailable(&err))?;
        Ok(done.rows_affected())
    }

    async fn pending_by_model(&self) -> Result<Vec<PendingCount>, StoreError> {
        // Served by the partial index `jobs_unfinished`: the planner derives its condition
        // from `status = 'pending'`, so terminal jobs are never read.
        sqlx::query(
            "SELECT model, version, COUNT(*) AS pending FROM jobs \
             WHERE status = 'pending' AND mode = 'async' GROUP BY model, version",
        )
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
    use super::*;

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

    #[test]
    fn connection_errors_name_the_host_and_hide_passwords() {
        let url = "postgres://app:s3cr3t@db.internal:5432/jobs?password=other";
        let StoreError::Unavailable(message) =
            connect_error(url, "cannot connect to", "auth failed for s3cr3t and other")
        else {
            panic!("not unavailable");
        };
        assert!(message.contains("db.internal:5432"), "{message}");
        assert!(
            !message.contains("s3cr3t") && !message.contains("other"),
            "{message}"
        );
    }
}
