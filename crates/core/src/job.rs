//! Jobs: the durable record of every inference request, sync or async.
//!
//! The job store is the audit trail and, for async work, the source of truth. A job's
//! lifecycle is `pending → running → succeeded | failed`, or `pending | running → cancelled`;
//! sync requests are stored once, already in their final state.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::auth::TenantId;
use crate::model::{ModelName, ModelVersion};
use crate::steps::StepTiming;

/// A job's identity: a UUIDv7, so ids sort by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(Uuid);

impl JobId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }

    /// The id as text (lowercase, hyphenated, as stored and shown), written into `buffer`
    /// instead of a new `String`.
    pub fn as_text<'b>(&self, buffer: &'b mut [u8; Self::TEXT_LEN]) -> &'b str {
        self.0.hyphenated().encode_lower(buffer)
    }

    /// The length of [`Self::as_text`].
    pub const TEXT_LEN: usize = uuid::fmt::Hyphenated::LENGTH;

    /// The smallest id a job created at `at` can have. Ids are UUIDv7 (48 bits of Unix
    /// milliseconds first), so every job created earlier has a smaller id: a primary-key range
    /// selects jobs by age without an index on a timestamp.
    pub fn first_at(at: DateTime<Utc>) -> Self {
        let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
        let mut bytes = [0u8; 16];
        bytes[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
        bytes[6] = 0x70; // version 7
        bytes[8] = 0x80; // RFC 4122 variant
        Self(Uuid::from_bytes(bytes))
    }
}

impl Default for JobId {
    fn default() -> Self {
        Self::new()
    }
}

impl From<Uuid> for JobId {
    fn from(value: Uuid) -> Self {
        Self(value)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("job id {0:?} is not a UUID")]
pub struct InvalidJobId(pub String);

impl FromStr for JobId {
    type Err = InvalidJobId;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(value)
            .map(Self)
            .map_err(|_| InvalidJobId(value.chars().take(64).collect()))
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Pending,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub const ALL: [Self; 5] = [
        Self::Pending,
        Self::Running,
        Self::Succeeded,
        Self::Failed,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

impl FromStr for JobStatus {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == value)
            .ok_or_else(|| format!("unknown job status {value:?}"))
    }
}

/// How the job was requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobMode {
    /// Answered in the request; stored once in its final state.
    Sync,
    /// Accepted with 202 and run later.
    Async,
}

impl JobMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sync => "sync",
            Self::Async => "async",
        }
    }
}

impl FromStr for JobMode {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "sync" => Ok(Self::Sync),
            "async" => Ok(Self::Async),
            other => Err(format!("unknown job mode {other:?}")),
        }
    }
}

const MAX_REQUEST_ID_LEN: usize = 128;

/// The id that ties a response, its log lines and its job together.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(from = "String")]
pub struct RequestId(Arc<str>);

serialize_as_str!(RequestId);

impl From<String> for RequestId {
    /// For values read back (from the store or a queue), which were validated when written.
    fn from(value: String) -> Self {
        Self(value.into())
    }
}

impl RequestId {
    /// Accepts 1 to 128 visible ASCII characters; anything else is refused (and replaced by the
    /// caller with a generated id).
    pub fn parse(value: &str) -> Option<Self> {
        let visible = value.bytes().all(|byte| byte.is_ascii_graphic());
        (!value.is_empty() && value.len() <= MAX_REQUEST_ID_LEN && visible)
            .then(|| Self(value.into()))
    }

    /// The request's id: the one the client sent if it is valid (`true`), else a new one
    /// (`false`).
    pub fn sent_or_generated(sent: Option<&str>) -> (Self, bool) {
        match sent.and_then(Self::parse) {
            Some(id) => (id, true),
            None => (Self::generate(), false),
        }
    }

    pub fn generate() -> Self {
        let mut text = [0; uuid::fmt::Hyphenated::LENGTH];
        Self(Uuid::new_v4().hyphenated().encode_lower(&mut text).into())
    }

    /// For values read back from the store, which were validated when written.
    pub fn from_stored(value: String) -> Self {
        Self::from(value)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// A client's `Idempotency-Key`: the same tenant, key and body always mean the same job.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Accepts 1 to 255 visible ASCII characters.
    pub fn parse(value: &str) -> Result<Self, String> {
        let visible = value.bytes().all(|byte| byte.is_ascii_graphic());
        if value.is_empty() || value.len() > MAX_IDEMPOTENCY_KEY_LEN || !visible {
            return Err(format!(
                "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"
            ));
        }
        Ok(Self(value.to_owned()))
    }

    /// For values read back from the store, which were validated when written.
    pub fn from_stored(value: String) -> Self {
        Self(value)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a job runs: one example or a batch of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Payload {
    Single(Value),
    Batch(Vec<Value>),
}

/// Why a job failed (or was cancelled): a stable type and a human sentence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobFailure {
    /// Stable snake_case, e.g. `invalid_input`, `inference_error`, `timeout`, `worker_lost`.
    pub error_type: String,
    pub message: String,
}

/// One job as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: JobId,
    pub tenant_id: TenantId,
    pub request_id: RequestId,
    pub mode: JobMode,
    pub status: JobStatus,
    pub model: ModelName,
    /// The resolved version; `None` when the request failed before a version was chosen.
    pub version: Option<ModelVersion>,
    /// The request's data, kept for async jobs that must be run later; `None` for sync jobs.
    pub input: Option<Payload>,
    pub result: Option<Value>,
    pub failure: Option<JobFailure>,
    pub attempts: u32,
    pub max_attempts: u32,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The caller's deadline for one run of the model, in milliseconds (async jobs).
    pub timeout_ms: Option<u64>,
    /// The tenant-scoped `Idempotency-Key` the job was submitted with, if any.
    pub idempotency_key: Option<IdempotencyKey>,
    /// A digest of the submitted request, to tell a replay from a conflicting reuse of the key.
    pub request_fingerprint: Option<String>,
    /// Last sign of life from the worker running it; a running job whose heartbeat is older than
    /// the visibility timeout is considered lost.
    pub heartbeat_at: Option<DateTime<Utc>>,
    /// A pending job is not run before this time (retry backoff).
    pub not_before: Option<DateTime<Utc>>,
    /// What each step of a pipeline took (the last attempt's), in order; `None` for models
    /// that are not pipelines.
    pub steps: Option<Vec<StepTiming>>,
}

impl Job {
    /// A job that has not run: `pending`, no attempts, no input, no outcome. Callers set what
    /// they know with struct-update syntax, so every constructor shares these defaults.
    pub fn new(
        mode: JobMode,
        tenant_id: TenantId,
        request_id: RequestId,
        model: ModelName,
        created_at: DateTime<Utc>,
    ) -> Self {
        Self {
            id: JobId::new(),
            tenant_id,
            request_id,
            mode,
            status: JobStatus::Pending,
            model,
            version: None,
            input: None,
            result: None,
            failure: None,
            attempts: 0,
            max_attempts: 1,
            created_at,
            started_at: None,
            finished_at: None,
            timeout_ms: None,
            idempotency_key: None,
            request_fingerprint: None,
            heartbeat_at: None,
            not_before: None,
            steps: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_at_is_below_every_id_created_from_that_millisecond_on() {
        let earlier = JobId::new();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let boundary = JobId::first_at(Utc::now());
        let later = JobId::new();
        assert!(
            earlier < boundary && boundary <= later,
            "{earlier} {boundary} {later}"
        );
        // The text form (SQLite's column) sorts the same way.
        assert!(earlier.to_string() < boundary.to_string());
        assert!(boundary.to_string() <= later.to_string());
        assert_eq!(boundary.as_uuid().get_version_num(), 7);
    }

    #[test]
    fn job_ids_round_trip_and_sort_by_creation() {
        let first = JobId::new();
        let second = JobId::new();
        assert!(first < second);
        assert_eq!(first.to_string().parse::<JobId>(), Ok(first));
        assert!("not-a-uuid".parse::<JobId>().is_err());
    }

    #[test]
    fn request_ids_must_be_short_visible_ascii() {
        assert!(RequestId::parse("abc-123_XYZ").is_some());
        assert!(RequestId::parse("").is_none());
        assert!(RequestId::parse("has space").is_none());
        assert!(RequestId::parse("é").is_none());
        assert!(RequestId::parse(&"x".repeat(129)).is_none());
        assert!(RequestId::parse(&"x".repeat(128)).is_some());
    }

    #[test]
    fn statuses_round_trip() {
        for status in JobStatus::ALL {
            assert_eq!(status.as_str().parse::<JobStatus>(), Ok(status));
        }
        assert!(JobStatus::Cancelled.is_terminal());
        assert!(!JobStatus::Running.is_terminal());
    }
}
