//! Async jobs, the client side: submit (with idempotency), read, list and cancel.
//!
//! A job answered with 202 is committed to the store first; the queue is only told afterwards.
//! If telling the queue fails, the job is still safe: it is `pending` in the store and the
//! reconciler enqueues it again.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::auth::{Principal, TenantId};
use crate::error::{Classified, ErrorKind};
use crate::job::{IdempotencyKey, Job, JobFailure, JobId, JobMode, JobStatus, Payload};
use crate::model::{ModelName, ModelVersion};
use crate::ports::{CancelOutcome, Clock, JobFilter, JobQueue, JobStore, StoreError, Submitted};
use crate::registry::{ModelRegistry, ResolveError};
use crate::service::Caller;

/// How long an idempotency key keeps pointing at its job.
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Attempts a job may take, at most, whatever the request asks.
pub const MAX_ATTEMPTS_LIMIT: u32 = 10;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "Idempotency-Key {0:?} was already used by this tenant for a different request within 24 h"
    )]
    IdempotencyConflict(String),
    #[error("job {0} not found")]
    NotFound(JobId),
    #[error("job {id} is already {} and cannot be cancelled", status.as_str())]
    NotCancellable { id: JobId, status: JobStatus },
    /// A non-admin key asked for another tenant's jobs.
    #[error("listing the jobs of {0} needs an API key with the \"admin\" scope")]
    OtherTenant(String),
}

/// Whose jobs a listing shows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TenantSelection {
    /// The caller's own tenant.
    #[default]
    Own,
    /// One tenant: the caller's own, or for admins any.
    Tenant(TenantId),
    /// Every tenant (admins only).
    All,
}

impl Classified for JobError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Resolve(err) => err.kind(),
            Self::Store(err) => err.kind(),
            Self::IdempotencyConflict(_) | Self::NotCancellable { .. } => ErrorKind::Conflict,
            Self::NotFound(_) => ErrorKind::NotFound,
            Self::OtherTenant(_) => ErrorKind::Forbidden,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::Resolve(err) => err.code(),
            Self::Store(err) => err.code(),
            Self::IdempotencyConflict(_) => "idempotency_conflict",
            Self::NotFound(_) => "job_not_found",
            Self::NotCancellable { .. } => "job_not_cancellable",
            Self::OtherTenant(_) => "forbidden",
        }
    }
}

/// An async request after validation.
#[derive(Debug, Clone)]
pub struct SubmitCommand {
    pub model: ModelName,
    pub version: Option<ModelVersion>,
    pub payload: Payload,
    /// `None` takes the configured default.
    pub max_attempts: Option<u32>,
    pub timeout: Option<Duration>,
    pub idempotency_key: Option<IdempotencyKey>,
}

impl SubmitCommand {
    /// A digest of everything that defines the job, so a replay with the same key can be told
    /// from a different request reusing it.
    fn fingerprint(&self) -> String {
        #[derive(Serialize)]
        struct Fingerprinted<'a> {
            model: &'a str,
            version: Option<&'a str>,
            payload: &'a Payload,
            max_attempts: Option<u32>,
            timeout_ms: Option<u128>,
        }
        let canonical = serde_json::to_vec(&Fingerprinted {
            model: self.model.as_str(),
            version: self.version.as_ref().map(ModelVersion::as_str),
            payload: &self.payload,
            max_attempts: self.max_attempts,
            timeout_ms: self.timeout.map(|timeout| timeout.as_millis()),
        })
        .unwrap_or_default();
        Sha256::digest(&canonical)
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }
}

/// What a submission produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Submission {
    /// A new job, committed and handed to the queue.
    Accepted(Job),
    /// The same tenant sent the same request with the same idempotency key: the original job.
    Replayed(Job),
}

impl Submission {
    pub fn job(&self) -> &Job {
        match self {
            Self::Accepted(job) | Self::Replayed(job) => job,
        }
    }
}

/// Submits, reads, lists and cancels async jobs for a caller.
#[derive(Debug, Clone)]
pub struct AsyncJobService {
    registry: ModelRegistry,
    store: Arc<dyn JobStore>,
    queue: Arc<dyn JobQueue>,
    clock: Arc<dyn Clock>,
    default_max_attempts: u32,
}

impl AsyncJobService {
    pub fn new(
        registry: ModelRegistry,
        store: Arc<dyn JobStore>,
        queue: Arc<dyn JobQueue>,
        clock: Arc<dyn Clock>,
        default_max_attempts: u32,
    ) -> Self {
        Self {
            registry,
            store,
            queue,
            clock,
            default_max_attempts: default_max_attempts.clamp(1, MAX_ATTEMPTS_LIMIT),
        }
    }

    /// Commits a `pending` job, then enqueues it. The version is resolved now, exactly as for
    /// a sync request, and the worker runs that version.
    pub async fn submit(
        &self,
        caller: &Caller,
        command: SubmitCommand,
    ) -> Result<Submission, JobError> {
        let now = self.clock.now();
        let fingerprint = command.fingerprint();
        let mut job = Job {
            max_attempts: command
                .max_attempts
                .unwrap_or(self.default_max_attempts)
                .clamp(1, MAX_ATTEMPTS_LIMIT),
            timeout_ms: command
                .timeout
                .map(|timeout| u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX)),
            ..Job::new(
                JobMode::Async,
                caller.tenant.clone(),
                caller.request_id.clone(),
                command.model.clone(),
                now,
            )
        };

        let routed =
            self.registry
                .serving()
                .route(&command.model, command.version.as_ref(), || {
                    caller.routing_bucket()
                });
        let key = match routed {
            Ok(key) => key,
            Err(err) => {
                // Recorded like any failed request, so the audit trail is complete.
                job.status = JobStatus::Failed;
                job.failure = Some(JobFailure {
                    error_type: err.code().to_owned(),
                    message: err.to_string(),
                });
                job.finished_at = Some(now);
                self.store.insert(vec![job]).await?;
                return Err(err.into());
            }
        };
        job.version = Some(key.version);
        job.input = Some(command.payload);
        job.idempotency_key = command.idempotency_key;
        job.request_fingerprint = Some(fingerprint.clone());

        match self.store.submit(job.clone(), IDEMPOTENCY_TTL).await? {
            Submitted::Created => {
                if let Err(err) = self.queue.enqueue(&[job.id]).await {
                    tracing::warn!(job_id = %job.id, error = %err, "job committed but not enqueued; the reconciler will enqueue it");
                }
                Ok(Submission::Accepted(job))
            }
            Submitted::Existing(existing)
                if existing.request_fingerprint.as_deref() == Some(fingerprint.as_str()) =>
            {
                Ok(Submission::Replayed(*existing))
            }
            Submitted::Existing(existing) => Err(JobError::IdempotencyConflict(
                existing
                    .idempotency_key
                    .map(|key| key.as_str().to_owned())
                    .unwrap_or_default(),
            )),
        }
    }

    /// A job the caller may see: its tenant's, or any for admins.
    pub async fn get(&self, principal: &Principal, id: JobId) -> Result<Job, JobError> {
        self.store
            .get(id)
            .await?
            .filter(|job| principal.can_read_tenant(&job.tenant_id))
            .ok_or(JobError::NotFound(id))
    }

    /// The jobs of the tenants `tenants` selects, newest first: the caller's own unless an
    /// admin asks for another tenant or for all of them (`filter.tenant` is set from it).
    pub async fn list(
        &self,
        principal: &Principal,
        tenants: TenantSelection,
        mut filter: JobFilter,
    ) -> Result<Vec<Job>, JobError> {
        filter.tenant = match tenants {
            TenantSelection::Own => Some(principal.tenant().clone()),
            TenantSelection::Tenant(tenant)
                if principal.is_admin() || &tenant == principal.tenant() =>
            {
                Some(tenant)
            }
            TenantSelection::All if principal.is_admin() => None,
            TenantSelection::Tenant(tenant) => {
                return Err(JobError::OtherTenant(format!("tenant \"{tenant}\"")));
            }
            TenantSelection::All => return Err(JobError::OtherTenant("every tenant".to_owned())),
        };
        Ok(self.store.list(&filter).await?)
    }

    pub async fn cancel(&self, principal: &Principal, id: JobId) -> Result<Job, JobError> {
        // Check visibility first so other tenants' jobs are neither cancelled nor revealed.
        self.get(principal, id).await?;
        match self.store.cancel(id, self.clock.now()).await? {
            CancelOutcome::Cancelled(job) => Ok(*job),
            CancelOutcome::AlreadyTerminal(job) => Err(JobError::NotCancellable {
                id,
                status: job.status,
            }),
            CancelOutcome::NotFound => Err(JobError::NotFound(id)),
        }
    }
}
