//! Column encodings shared by every SQL engine, so a job reads back exactly as it was written.

use chrono::{DateTime, Utc};
use inference_engine_core::auth::TenantId;
use inference_engine_core::job::{
    IdempotencyKey, Job, JobFailure, JobId, JobMode, JobStatus, RequestId,
};
use inference_engine_core::model::{ModelKey, ModelName, ModelVersion};
use inference_engine_core::ports::{PendingCount, StoreError};
use inference_engine_core::steps::StepTiming;
use serde::{Deserialize, Serialize};

/// A job as plain column values (the shape every engine stores).
#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    pub id: String,
    pub tenant_id: String,
    pub request_id: String,
    pub mode: String,
    pub status: String,
    pub model: String,
    pub version: Option<String>,
    pub input: Option<String>,
    pub result: Option<String>,
    pub error_type: Option<String>,
    pub error_message: Option<String>,
    pub attempts: i64,
    pub max_attempts: i64,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub timeout_ms: Option<i64>,
    pub idempotency_key: Option<String>,
    pub request_fingerprint: Option<String>,
    pub heartbeat_at: Option<i64>,
    pub not_before: Option<i64>,
    /// A pipeline's step timings as JSON text ([`steps_text`]).
    pub steps: Option<String>,
}

fn corrupt(what: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {detail}"))
}

fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

fn from_micros(value: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(value).ok_or_else(|| corrupt("timestamp", value))
}

pub(crate) fn json_text<T: serde::Serialize>(value: Option<&T>) -> Option<String> {
    // Serialising JSON values (and enums of them) cannot fail: keys are strings and there are
    // no foreign types.
    value.and_then(|value| serde_json::to_string(value).ok())
}

fn parse_json<T: serde::de::DeserializeOwned>(
    column: &str,
    text: Option<String>,
) -> Result<Option<T>, StoreError> {
    text.map(|text| serde_json::from_str(&text).map_err(|err| corrupt(column, err)))
        .transpose()
}

/// One step of the `steps` column: the model version and its times in whole microseconds
/// (what every engine's timestamps keep too), so a record reads back as it was written.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredStep {
    model: ModelName,
    version: ModelVersion,
    queue_us: u64,
    inference_us: u64,
}

fn whole_micros(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// The `steps` column of a pipeline's job: `[{"model", "version", "queue_us",
/// "inference_us"}, ...]` in step order.
pub(crate) fn steps_text(steps: Option<&Vec<StepTiming>>) -> Option<String> {
    let stored: Vec<StoredStep> = steps?
        .iter()
        .map(|step| StoredStep {
            model: step.model.name.clone(),
            version: step.model.version.clone(),
            queue_us: whole_micros(step.queue_time),
            inference_us: whole_micros(step.inference_time),
        })
        .collect();
    json_text(Some(&stored))
}

fn parse_steps(text: Option<String>) -> Result<Option<Vec<StepTiming>>, StoreError> {
    let stored: Option<Vec<StoredStep>> = parse_json("steps", text)?;
    Ok(stored.map(|steps| {
        steps
            .into_iter()
            .map(|step| StepTiming {
                model: ModelKey::new(step.model, step.version),
                queue_time: std::time::Duration::from_micros(step.queue_us),
                inference_time: std::time::Duration::from_micros(step.inference_us),
            })
            .collect()
    }))
}

/// A job's column values, borrowing what is text already: the SQLite writer binds these
/// directly, so a record costs no copy of its ids and names.
#[derive(Debug)]
pub(crate) struct JobColumns<'a> {
    id: [u8; JobId::TEXT_LEN],
    pub(crate) tenant_id: &'a str,
    pub(crate) request_id: &'a str,
    pub(crate) mode: &'static str,
    pub(crate) status: &'static str,
    pub(crate) model: &'a str,
    pub(crate) version: Option<&'a str>,
    pub(crate) input: Option<String>,
    pub(crate) result: Option<String>,
    pub(crate) error_type: Option<&'a str>,
    pub(crate) error_message: Option<&'a str>,
    pub(crate) attempts: i64,
    pub(crate) max_attempts: i64,
    pub(crate) created_at: i64,
    pub(crate) started_at: Option<i64>,
    pub(crate) finished_at: Option<i64>,
    pub(crate) timeout_ms: Option<i64>,
    pub(crate) idempotency_key: Option<&'a str>,
    pub(crate) request_fingerprint: Option<&'a str>,
    pub(crate) heartbeat_at: Option<i64>,
    pub(crate) not_before: Option<i64>,
    pub(crate) steps: Option<String>,
}

impl JobColumns<'_> {
    /// The id as stored: a lowercase hyphenated UUID.
    pub(crate) fn id(&self) -> &str {
        // Written by `JobId::as_text`: ASCII.
        std::str::from_utf8(&self.id).unwrap_or_default()
    }
}

impl<'a> From<&'a Job> for JobColumns<'a> {
    fn from(job: &'a Job) -> Self {
        let mut id = [0; JobId::TEXT_LEN];
        job.id.as_text(&mut id);
        Self {
            id,
            tenant_id: job.tenant_id.as_str(),
            request_id: job.request_id.as_str(),
            mode: job.mode.as_str(),
            status: job.status.as_str(),
            model: job.model.as_str(),
            version: job.version.as_ref().map(ModelVersion::as_str),
            input: json_text(job.input.as_ref()),
            result: json_text(job.result.as_ref()),
            error_type: job.failure.as_ref().map(|f| f.error_type.as_str()),
            error_message: job.failure.as_ref().map(|f| f.message.as_str()),
            attempts: i64::from(job.attempts),
            max_attempts: i64::from(job.max_attempts),
            created_at: micros(job.created_at),
            started_at: job.started_at.map(micros),
            finished_at: job.finished_at.map(micros),
            timeout_ms: job
                .timeout_ms
                .map(|ms| i64::try_from(ms).unwrap_or(i64::MAX)),
            idempotency_key: job.idempotency_key.as_ref().map(IdempotencyKey::as_str),
            request_fingerprint: job.request_fingerprint.as_deref(),
            heartbeat_at: job.heartbeat_at.map(micros),
            not_before: job.not_before.map(micros),
            steps: steps_text(job.steps.as_ref()),
        }
    }
}

impl From<&Job> for JobRow {
    fn from(job: &Job) -> Self {
        let columns = JobColumns::from(job);
        let owned = |text: Option<&str>| text.map(str::to_owned);
        Self {
            id: columns.id().to_owned(),
            tenant_id: columns.tenant_id.to_owned(),
            request_id: columns.request_id.to_owned(),
            mode: columns.mode.to_owned(),
            status: columns.status.to_owned(),
            model: columns.model.to_owned(),
            version: owned(columns.version),
            input: columns.input,
            result: columns.result,
            error_type: owned(columns.error_type),
            error_message: owned(columns.error_message),
            attempts: columns.attempts,
            max_attempts: columns.max_attempts,
            created_at: columns.created_at,
            started_at: columns.started_at,
            finished_at: columns.finished_at,
            timeout_ms: columns.timeout_ms,
            idempotency_key: owned(columns.idempotency_key),
            request_fingerprint: owned(columns.request_fingerprint),
            heartbeat_at: columns.heartbeat_at,
            not_before: columns.not_before,
            steps: columns.steps,
        }
    }
}

impl TryFrom<JobRow> for Job {
    type Error = StoreError;

    fn try_from(row: JobRow) -> Result<Self, StoreError> {
        let failure = match (row.error_type, row.error_message) {
            (Some(error_type), message) => Some(JobFailure {
                error_type,
                message: message.unwrap_or_default(),
            }),
            (None, _) => None,
        };
        let count =
            |column: &str, value: i64| u32::try_from(value).map_err(|err| corrupt(column, err));
        Ok(Job {
            id: row.id.parse::<JobId>().map_err(|err| corrupt("id", err))?,
            tenant_id: TenantId::parse(row.tenant_id).map_err(|err| corrupt("tenant_id", err))?,
            request_id: RequestId::from_stored(row.request_id),
            mode: row
                .mode
                .parse::<JobMode>()
                .map_err(|err| corrupt("mode", err))?,
            status: row
                .status
                .parse::<JobStatus>()
                .map_err(|err| corrupt("status", err))?,
            model: ModelName::parse(row.model).map_err(|err| corrupt("model", err))?,
            version: row
                .version
                .map(ModelVersion::parse)
                .transpose()
                .map_err(|err| corrupt("version", err))?,
            input: parse_json("input", row.input)?,
            result: parse_json("result", row.result)?,
            failure,
            attempts: count("attempts", row.attempts)?,
            max_attempts: count("max_attempts", row.max_attempts)?,
            created_at: from_micros(row.created_at)?,
            started_at: row.started_at.map(from_micros).transpose()?,
            finished_at: row.finished_at.map(from_micros).transpose()?,
            timeout_ms: row
                .timeout_ms
                .map(|ms| u64::try_from(ms).map_err(|err| corrupt("timeout_ms", err)))
                .transpose()?,
            idempotency_key: row.idempotency_key.map(IdempotencyKey::from_stored),
            request_fingerprint: row.request_fingerprint,
            heartbeat_at: row.heartbeat_at.map(from_micros).transpose()?,
            not_before: row.not_before.map(from_micros).transpose()?,
            steps: parse_steps(row.steps)?,
        })
    }
}

/// One row of a `pending_by_model` query: the `model` and `version` columns and their count.
pub(crate) fn pending_count(
    model: String,
    version: Option<String>,
    pending: i64,
) -> Result<PendingCount, StoreError> {
    Ok(PendingCount {
        model: ModelName::parse(model).map_err(|err| corrupt("model", err))?,
        version: version
            .map(ModelVersion::parse)
            .transpose()
            .map_err(|err| corrupt("version", err))?,
        pending: u64::try_from(pending).map_err(|err| corrupt("pending count", err))?,
    })
}
