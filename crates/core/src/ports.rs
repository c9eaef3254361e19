//! Ports: what the domain needs from the outside world, implemented by adapter crates.
//!
//! The job store is the source of truth; the queue is only transport. Every state change of a
//! job is a conditional write in the store (`claim` only takes runnable jobs, `settle` only
//! records the outcome of the attempt that is still current), so a duplicated or late delivery
//! can never run a finished job again or overwrite a cancellation.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use serde_json::Value;

use crate::auth::TenantId;
use crate::error::{Classified, ErrorKind};
use crate::job::{Job, JobFailure, JobId, JobStatus};
use crate::model::{ModelName, ModelVersion};
use crate::steps::StepTiming;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store refused this operation; the caller may retry.
    #[error("job store unavailable: {0}")]
    Unavailable(String),
    /// The store cannot be reached at all (connection refused or timed out, no pooled
    /// connection within the acquire timeout): every operation fails alike until it is back.
    #[error("job store unreachable: {0}")]
    Unreachable(String),
    /// The store answers but cannot write (disk full, read-only file system): reads work, every
    /// write fails alike until space is freed.
    #[error("job store cannot write: {0}")]
    CannotWrite(String),
    /// A stored row could not be read back into a job.
    #[error("job store returned an unreadable record: {0}")]
    Corrupt(String),
    /// The store is shutting down and accepts no more writes.
    #[error("job store is shutting down")]
    Closed,
}

impl StoreError {
    /// Whether the failure is the store's as a whole rather than this operation's: retrying
    /// the same writes one by one would only fail again (and wait again for each).
    pub fn is_store_wide(&self) -> bool {
        matches!(
            self,
            Self::Unreachable(_) | Self::CannotWrite(_) | Self::Closed
        )
    }
}

impl Classified for StoreError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Unavailable(_) | Self::Unreachable(_) | Self::CannotWrite(_) | Self::Closed => {
                ErrorKind::Unavailable
            }
            Self::Corrupt(_) => ErrorKind::Internal,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::Unavailable(_) | Self::Unreachable(_) | Self::CannotWrite(_) | Self::Closed => {
                "unavailable"
            }
            Self::Corrupt(_) => "internal",
        }
    }
}

/// Which jobs `GET /jobs` lists: newest first, strictly older than `before` when given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFilter {
    /// `None` lists every tenant (admin).
    pub tenant: Option<TenantId>,
    pub status: Option<JobStatus>,
    pub model: Option<ModelName>,
    /// Cursor: the last job id of the previous page (ids sort by creation time).
    pub before: Option<JobId>,
    pub limit: u32,
}

/// Outcome of [`JobStore::submit`].
#[derive(Debug, Clone, PartialEq)]
pub enum Submitted {
    Created,
    /// The tenant already submitted a job with this idempotency key within the retention
    /// window; nothing was written. The caller compares fingerprints.
    Existing(Box<Job>),
}

/// Outcome of [`JobStore::cancel`].
#[derive(Debug, Clone, PartialEq)]
pub enum CancelOutcome {
    Cancelled(Box<Job>),
    /// Already succeeded, failed or cancelled; unchanged.
    AlreadyTerminal(Box<Job>),
    NotFound,
}

/// One job a worker wants to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimRequest {
    pub id: JobId,
    /// A `running` job is taken over only if its heartbeat is older than this (or missing):
    /// its worker is then presumed dead. `None` never takes a running job over. A redelivery
    /// alone is no proof of death (a duplicate queue entry looks the same), the heartbeat is.
    pub take_over_if_heartbeat_before: Option<DateTime<Utc>>,
}

/// Outcome of claiming one job.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// Now `running`, with `attempts` incremented, `started_at` and `heartbeat_at` set.
    Started(Box<Job>),
    /// Terminal, or running under a live worker: do not run it.
    NotRunnable(Box<Job>),
    NotFound,
}

/// The outcome of one attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Settlement {
    Succeeded(Value),
    Failed(JobFailure),
    /// Back to `pending`, not to run before `not_before`; the failure is kept as the last error.
    Retry {
        failure: JobFailure,
        not_before: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct SettleRequest {
    pub id: JobId,
    /// The attempt this outcome belongs to; a superseded attempt's outcome is discarded.
    pub attempt: u32,
    pub settlement: Settlement,
    /// What the steps of a pipeline took in this attempt (replacing an earlier attempt's);
    /// `None` for models that are not pipelines.
    pub steps: Option<Vec<StepTiming>>,
}

/// How many async jobs of one model version are `pending`: waiting to run, or waiting for a
/// retry. Sync jobs are recorded in their final state and never count.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PendingCount {
    pub model: ModelName,
    /// `None` for jobs recorded before a version was chosen.
    pub version: Option<ModelVersion>,
    pub pending: u64,
}

/// Writes queued by [`JobStore::queue_insert`]: resolves once they are committed.
pub type PendingCommit = BoxFuture<'static, Result<(), StoreError>>;

/// Where [`JobStore::queue_insert_reporting`] reports the commit of the writes it queued.
pub type CommitReport = futures_channel::oneshot::Sender<Result<(), StoreError>>;

/// Durable storage of jobs. Every async method returns only once its writes are committed.
#[async_trait]
pub trait JobStore: Send + Sync + fmt::Debug {
    /// Commits all the jobs atomically.
    async fn insert(&self, jobs: Vec<Job>) -> Result<(), StoreError>;

    /// [`Self::insert`] in two steps: queues the jobs without waiting, from any thread (an
    /// executor thread records the run it has just finished), and returns what to await for
    /// their commit. A store without a write queue, or a full queue, does its waiting in that
    /// future.
    fn queue_insert(&self, jobs: Vec<Job>) -> PendingCommit;

    /// [`Self::queue_insert`] for a caller that waits on a channel of its own: queues the jobs
    /// at once and sends their commit's outcome to `report`, with no future to poll (an
    /// executor thread hands the record of its run to the store this way, and the request,
    /// already waiting on the channel, is woken once, by the commit). Hands both back when it
    /// cannot queue without waiting (a full queue, a store without a write queue); the caller
    /// then uses `queue_insert`.
    fn queue_insert_reporting(
        &self,
        jobs: Vec<Job>,
        report: CommitReport,
    ) -> Result<(), (Vec<Job>, CommitReport)> {
        Err((jobs, report))
    }

    async fn get(&self, id: JobId) -> Result<Option<Job>, StoreError>;

    /// Cheap round trip used by readiness checks.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Inserts a new job unless its tenant already used its idempotency key within
    /// `idempotency_ttl`; an older holder of the key gives it up.
    async fn submit(&self, job: Job, idempotency_ttl: Duration) -> Result<Submitted, StoreError>;

    /// Newest first, at most `filter.limit`.
    async fn list(&self, filter: &JobFilter) -> Result<Vec<Job>, StoreError>;

    /// `pending | running → cancelled`, with `error_type = "cancelled"`.
    async fn cancel(&self, id: JobId, now: DateTime<Utc>) -> Result<CancelOutcome, StoreError>;

    /// Moves runnable jobs to `running`, one outcome per request, in order.
    async fn claim(
        &self,
        requests: &[ClaimRequest],
        now: DateTime<Utc>,
    ) -> Result<Vec<Claim>, StoreError>;

    /// Records outcomes; returns, per request, whether it was recorded (false when the job was
    /// cancelled meanwhile or the attempt was superseded).
    async fn settle(
        &self,
        settlements: Vec<SettleRequest>,
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError>;

    /// Refreshes `heartbeat_at` of running jobs.
    async fn heartbeat(&self, ids: &[JobId], now: DateTime<Utc>) -> Result<(), StoreError>;

    /// Those of `ids` whose job has been cancelled, so their worker can stop them. Polled
    /// several times a second per running batch: stores answer it from the primary key.
    async fn cancelled_among(&self, ids: &[JobId]) -> Result<Vec<JobId>, StoreError> {
        let mut cancelled = Vec::new();
        for &id in ids {
            if self
                .get(id)
                .await?
                .is_some_and(|job| job.status == JobStatus::Cancelled)
            {
                cancelled.push(id);
            }
        }
        Ok(cancelled)
    }

    /// Jobs that may need to be (re-)enqueued: `pending` ones due by `now` and created before
    /// `pending_before`, and `running` ones whose heartbeat is older than `lease_expired_before`.
    /// Oldest first, at most `limit`.
    async fn stranded(
        &self,
        now: DateTime<Utc>,
        pending_before: DateTime<Utc>,
        lease_expired_before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Job>, StoreError>;

    /// Deletes up to `limit` finished jobs (succeeded, failed or cancelled) whose id is below
    /// `created_before` (see [`JobId::first_at`]), oldest first; returns how many. Jobs that are
    /// still pending or running are never deleted, whatever their age.
    async fn purge_finished(&self, created_before: JobId, limit: u32) -> Result<u64, StoreError>;

    /// Pending async jobs per model and version, one entry per pair that has any, in no
    /// particular order. Counts every process's jobs: this is the queue depth the store sees.
    async fn pending_by_model(&self) -> Result<Vec<PendingCount>, StoreError>;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("job queue unavailable: {0}")]
    Unavailable(String),
    #[error("job queue is shutting down")]
    Closed,
}

impl Classified for QueueError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Unavailable
    }

    fn code(&self) -> &'static str {
        "unavailable"
    }
}

/// One job handed to one worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub job_id: JobId,
    /// Transport handle for `ack` / `extend` (a stream entry id).
    pub receipt: String,
    /// The previous delivery of this entry was lost (its worker died or stalled).
    pub redelivered: bool,
}

/// Transport of job ids from submitters to workers. At-least-once: a delivery not acknowledged
/// within the visibility timeout is handed out again.
#[async_trait]
pub trait JobQueue: Send + Sync + fmt::Debug {
    async fn enqueue(&self, jobs: &[JobId]) -> Result<(), QueueError>;

    /// Enqueues `job` once `delay` has passed (retry backoff).
    async fn enqueue_after(&self, job: JobId, delay: Duration) -> Result<(), QueueError>;

    /// Up to `max` deliveries: lost ones first, then new ones, waiting at most `wait`.
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError>;

    /// Tells the queue these deliveries are still being worked on.
    async fn extend(&self, deliveries: &[Delivery]) -> Result<(), QueueError>;

    /// Removes finished deliveries for good.
    async fn ack(&self, deliveries: &[Delivery]) -> Result<(), QueueError>;

    async fn ping(&self) -> Result<(), QueueError>;

    /// How many times the queue came back from an outage or found its state lost (a Redis
    /// restart without persistence). Jobs committed meanwhile may be missing from it, so the
    /// reconciler re-enqueues pending jobs at once when this changes. A queue that cannot lose
    /// jobs this way keeps it at 0.
    fn recoveries(&self) -> u64 {
        0
    }
}

/// Time, injectable so tests can control it.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> DateTime<Utc>;

    /// Completes after `duration`; used for deadlines.
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()>;
}
